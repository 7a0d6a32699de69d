"""Dataset rows: reading JSONL and checking each row against its method's row format.

Formats are TRL's conversational ones (messages are OpenAI-style {"role", "content"}); which method
reads which format is in registry.json (from packages/core/src/methods.ts):
  prompt-completion    {"messages": [...]} or {"prompt": [...], "completion": [...]}     (sft)
  unpaired-preference  {"prompt": [...], "completion": [...], "label": bool, "weight"?: float}  (kto)
  preference           {"prompt": [...], "chosen": [...], "rejected": [...]}    (dpo, reward)
  rewarded-completion  {"prompt": [...], "completion": [...], "reward": float in [-1, 1]}  (rwsft)
  prompt               {"prompt": [...]}                                                  (rl)
Other keys (ids, metadata) are allowed and dropped before training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .registry import FORMAT_COLUMNS, METHOD_FORMATS

ROLES = {"system", "user", "assistant", "tool"}

# Columns each method keeps; everything else is dropped so TRL sees a clean dataset.
COLUMNS: dict[str, tuple[str, ...]] = {method: FORMAT_COLUMNS[fmt] for method, fmt in METHOD_FORMATS.items()}


class DataError(ValueError):
    """A dataset row that does not fit its method; the message names the row and field."""


def resolve_dataset_file(path: str | Path, split: str = "train") -> Path:
    """A dataset is a JSONL file, or a folder (a dataset version) holding `<split>.jsonl`."""
    path = Path(path)
    if path.is_dir():
        candidate = path / f"{split}.jsonl"
        if not candidate.is_file():
            raise DataError(f"dataset folder {path} has no {split}.jsonl")
        return candidate
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line_no}: invalid JSON: {err.msg}") from err
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line_no}: each line must be a JSON object")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _check_messages(value: Any, where: str, allow_empty: bool = False) -> None:
    if not isinstance(value, list) or (not value and not allow_empty):
        raise DataError(f"{where}: expected a non-empty list of messages")
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise DataError(f"{where}[{i}]: expected a message object")
        if message.get("role") not in ROLES:
            raise DataError(f"{where}[{i}].role: must be one of {sorted(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise DataError(f"{where}[{i}].content: expected a string")


def _check_number(value: Any, where: str, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise DataError(f"{where}: expected a number in [{low}, {high}], got {value!r}")


def _check_prompt_completion(row: dict[str, Any], where: str) -> None:
    if "messages" in row:
        _check_messages(row["messages"], f"{where}.messages")
        if not any(m["role"] == "assistant" for m in row["messages"]):
            raise DataError(f"{where}.messages: needs at least one assistant message")
        return
    _check_messages(row.get("prompt"), f"{where}.prompt")
    _check_messages(row.get("completion"), f"{where}.completion")


def _check_unpaired_preference(row: dict[str, Any], where: str) -> None:
    _check_messages(row.get("prompt"), f"{where}.prompt")
    _check_messages(row.get("completion"), f"{where}.completion")
    if not isinstance(row.get("label"), bool):
        raise DataError(f"{where}.label: expected true or false")
    if "weight" in row:
        _check_number(row["weight"], f"{where}.weight", 0.0, float("inf"))


def _check_preference(row: dict[str, Any], where: str) -> None:
    _check_messages(row.get("prompt"), f"{where}.prompt")
    _check_messages(row.get("chosen"), f"{where}.chosen")
    _check_messages(row.get("rejected"), f"{where}.rejected")


def _check_rewarded_completion(row: dict[str, Any], where: str) -> None:
    _check_messages(row.get("prompt"), f"{where}.prompt")
    _check_messages(row.get("completion"), f"{where}.completion")
    _check_number(row.get("reward"), f"{where}.reward", -1.0, 1.0)


def _check_prompt(row: dict[str, Any], where: str) -> None:
    _check_messages(row.get("prompt"), f"{where}.prompt")


# One check per row format of the registry (a method reads its format's rows).
FORMAT_CHECKS = {
    "prompt-completion": _check_prompt_completion,
    "unpaired-preference": _check_unpaired_preference,
    "preference": _check_preference,
    "rewarded-completion": _check_rewarded_completion,
    "prompt": _check_prompt,
}


def check_row(method: str, row: dict[str, Any], where: str) -> None:
    if method not in METHOD_FORMATS:
        raise DataError(f"unknown method {method!r}")
    FORMAT_CHECKS[METHOD_FORMATS[method]](row, where)


def _normalize(method: str, row: dict[str, Any]) -> dict[str, Any]:
    """Keep the method's columns, with the same keys on every row (Arrow needs a fixed schema)."""
    keys = [k for k in COLUMNS[method] if k in row]
    out = {k: row[k] for k in keys}
    fmt = METHOD_FORMATS[method]
    if fmt == "unpaired-preference":
        out["weight"] = float(row.get("weight", 1.0))
    if fmt == "rewarded-completion":
        out["reward"] = float(row["reward"])
    return out


def load_rows(method: str, path: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """Read and check a method's rows; raises DataError naming the first bad row and field."""
    file = resolve_dataset_file(path, split)
    rows = read_jsonl(file)
    for i, row in enumerate(rows):
        check_row(method, row, f"{file.name} row {i + 1}")
    normalized = [_normalize(method, row) for row in rows]
    shapes = {tuple(sorted(r)) for r in normalized}
    if len(shapes) > 1:
        raise DataError(f"{file.name}: rows mix formats {sorted(shapes)}; use one format per dataset")
    return normalized


def to_dataset(rows: list[dict[str, Any]]):
    from datasets import Dataset

    return Dataset.from_list(rows)

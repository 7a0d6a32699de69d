"""Shared fixtures: one tiny model per session, toy preference data, in-process job runs.

Everything runs on CPU with the `test` preset of the tiny model (built once into a temporary
folder, or into $RATCHET_WORKER_TEST_CACHE when set, where a second session reuses it).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

# PyTorch, Transformers and TRL are thousands of modules: without .pyc files every test run
# (and every subprocess) recompiles them all, which costs more than the tests themselves.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

from ratchet_worker.events import Emitter  # noqa: E402
from ratchet_worker.tiny import TEST_SPEC, build_tiny, generate_preference_pairs  # noqa: E402


class Collect(Emitter):
    """An Emitter that keeps the events instead of printing them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(json.loads(json.dumps(event, default=str)))

    __call__ = emit

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    cache = os.environ.get("RATCHET_WORKER_TEST_CACHE")
    root = Path(cache) if cache else tmp_path_factory.mktemp("models")
    return str(build_tiny(root / "tiny-test", TEST_SPEC))


def _msgs(role: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


def as_dpo(pair: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": _msgs("user", pair["prompt"]),
        "chosen": _msgs("assistant", pair["chosen"]),
        "rejected": _msgs("assistant", pair["rejected"]),
    }


@pytest.fixture(scope="session")
def train_pairs() -> list[dict[str, Any]]:
    return [as_dpo(p) for p in generate_preference_pairs(seed=11, n=64)]


@pytest.fixture(scope="session")
def reward_pairs() -> list[dict[str, Any]]:
    """A larger toy set (same generator and seed as train_pairs, which it starts with) for the critic."""
    return [as_dpo(p) for p in generate_preference_pairs(seed=11, n=256)]


@pytest.fixture(scope="session")
def heldout_pairs() -> list[dict[str, Any]]:
    """Different seed: new slot values, template and attribute combinations; same domain."""
    return [as_dpo(p) for p in generate_preference_pairs(seed=97, n=24)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return str(path)


def run_method(
    tmp: Path,
    base: str,
    method: str,
    rows: list[dict[str, Any]],
    hyperparameters: dict[str, Any],
    **extra: Any,
) -> Collect:
    """Run a job in this process (the CLI path is tested separately) and return its events."""
    from ratchet_worker.spec import parse_spec
    from ratchet_worker.train.runner import run_job

    spec = parse_spec(
        {
            "method": method,
            "base_model": base,
            "dataset": write_jsonl(tmp / "data" / f"{method}.jsonl", rows),
            "output_dir": str(tmp / "out" / method),
            "seed": 0,
            "hyperparameters": {"logging_steps": 1, "save_steps": 1000, **hyperparameters},
            **extra,
        }
    )
    events = Collect()
    run_job(spec, events)
    return events


def build_trainer(tmp: Path, base: str, method: str, rows: list[dict[str, Any]], method_config: dict[str, Any]):
    """The method's trainer for these rows, built as `train` builds it, without training."""
    from ratchet_worker.data import load_rows
    from ratchet_worker.events import Emitter
    from ratchet_worker.spec import parse_spec
    from ratchet_worker.train import method_module
    from ratchet_worker.train.common import TrainContext, method_config as parse_config

    data = write_jsonl(tmp / f"{method}.jsonl", rows)
    spec = parse_spec(
        {
            "method": method,
            "base_model": base,
            "dataset": data,
            "output_dir": str(tmp / "out"),
            "method_config": method_config,
        }
    )
    module = method_module(method)
    ctx = TrainContext(spec=spec, emit=Emitter(), rows=load_rows(method, data), eval_rows=None, output_dir=tmp / "out")
    return module.build_trainer(ctx, parse_config(module.Config, spec), [])


def losses(events: Collect) -> list[float]:
    return [e["loss"] for e in events.of("progress") if e.get("loss") is not None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def trl_tokenized(trainer_cls, config_cls, rows: list[dict[str, Any]], tokenizer, **attributes) -> Any:
    """The dataset TRL's trainer would train on: its own _prepare_dataset over these rows, without
    building the trainer (so no model is loaded)."""
    from datasets import Dataset

    trainer = trainer_cls.__new__(trainer_cls)
    trainer._tokenizer = tokenizer
    for name, value in attributes.items():
        setattr(trainer, name, value)
    args = config_cls(output_dir="unused", max_length=None, bf16=False, report_to="none")
    return trainer_cls._prepare_dataset(trainer, Dataset.from_list(rows), tokenizer, args, "train")


def padded_cells(order: list[int], widths: list[int], batch_size: int) -> int:
    """Token cells the batches of `order` (consecutive chunks of batch_size) take, each row padded
    to its batch's widest."""
    chunks = (order[k : k + batch_size] for k in range(0, len(order), batch_size))
    return sum(len(c) * max(widths[i] for i in c) for c in chunks)


def random_order(n: int) -> list[int]:
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()

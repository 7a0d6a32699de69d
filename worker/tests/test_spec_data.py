"""Bad job specs and dataset rows fail with a message naming the field."""

from __future__ import annotations

import pytest
from conftest import write_jsonl

from ratchet_worker.data import DataError, load_rows
from ratchet_worker.spec import SpecError, parse_spec


def _spec(tmp_path, tiny_model, **over):
    data = write_jsonl(
        tmp_path / "d.jsonl",
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}],
    )
    return {"method": "sft", "base_model": tiny_model, "dataset": data, "output_dir": str(tmp_path / "o"), **over}


def test_valid_spec_gets_defaults(tmp_path, tiny_model):
    spec = parse_spec(_spec(tmp_path, tiny_model, hyperparameters={"learning_rate": 1}))
    assert spec.lora.enabled and spec.hyperparameters.learning_rate == 1.0
    assert spec.hyperparameters.per_device_train_batch_size == 8


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"method": "ppo"}, "spec.method"),
        ({"hyperparameters": {"learnin_rate": 1e-4}}, "learnin_rate"),
        ({"hyperparameters": {"max_steps": "ten"}}, "spec.hyperparameters.max_steps"),
        ({"lora": {"r": True}}, "spec.lora.r"),
        ({"base_model": "/nope"}, "spec.base_model"),
        ({"method": "rl"}, "spec.reward_model"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_spec_names_the_field(tmp_path, tiny_model, override, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_spec(_spec(tmp_path, tiny_model, **override))


@pytest.mark.parametrize(
    ("method", "row", "field"),
    [
        ("sft", {"messages": [{"role": "user", "content": "x"}]}, "messages"),
        ("sft", {"messages": [{"role": "robot", "content": "x"}]}, r"messages\[0\]\.role"),
        (
            "kto",
            {
                "prompt": [{"role": "user", "content": "x"}],
                "completion": [{"role": "assistant", "content": "y"}],
                "label": "yes",
            },
            "label",
        ),
        (
            "dpo",
            {"prompt": [{"role": "user", "content": "x"}], "chosen": [{"role": "assistant", "content": "y"}]},
            "rejected",
        ),
        (
            "rwsft",
            {
                "prompt": [{"role": "user", "content": "x"}],
                "completion": [{"role": "assistant", "content": "y"}],
                "reward": 2,
            },
            "reward",
        ),
        ("rl", {"prompt": "just text"}, "prompt"),
    ],
)
def test_invalid_rows_name_row_and_field(tmp_path, method, row, field):
    path = write_jsonl(tmp_path / "rows.jsonl", [row])
    with pytest.raises(DataError, match=f"row 1.*{field}"):
        load_rows(method, path)


def test_dataset_folder_and_extra_keys(tmp_path):
    row = {
        "prompt": [{"role": "user", "content": "x"}],
        "completion": [{"role": "assistant", "content": "y"}],
        "label": True,
        "id": "i1",
    }
    write_jsonl(tmp_path / "v1" / "train.jsonl", [row])
    (rows,) = load_rows("kto", tmp_path / "v1")
    assert rows == {"prompt": row["prompt"], "completion": row["completion"], "label": True, "weight": 1.0}


def test_invalid_json_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"messages": []}\n{oops\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        load_rows("sft", tmp_path / "bad.jsonl")


def test_every_registry_method_has_a_trainer_and_a_row_check():
    """registry.json (from core's methods.ts) is the method list: each entry needs its trainer file
    and a check for its row format, or a spec naming it would pass parsing and fail mid-run."""
    from pathlib import Path

    from ratchet_worker.data import COLUMNS, FORMAT_CHECKS
    from ratchet_worker.registry import FORMAT_COLUMNS, METHOD_FORMATS, METHODS

    train = Path(__file__).resolve().parents[1] / "ratchet_worker" / "train"
    assert set(METHODS) == set(METHOD_FORMATS) == set(COLUMNS)
    for method, fmt in METHOD_FORMATS.items():
        assert (train / f"{method}.py").is_file(), f"no trainer train/{method}.py for method {method}"
        assert fmt in FORMAT_CHECKS, f"no row check for format {fmt} (method {method})"
        assert COLUMNS[method] == FORMAT_COLUMNS[fmt]
    assert set(FORMAT_CHECKS) == set(FORMAT_COLUMNS)

"""`ratchet-worker train` as the orchestrator runs it: a subprocess speaking JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import subprocess_env, write_jsonl


def _run(spec_path, timeout=420):
    proc = subprocess.run(
        [sys.executable, "-m", "ratchet_worker", "train", "--spec", str(spec_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
    )
    # Every stdout line must be one JSON object: libraries' prints go to stderr.
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    return proc, events


def test_train_cli_streams_json_lines_and_resumes(tmp_path, tiny_model, train_pairs):
    rows = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in train_pairs[:16]]
    spec = {
        "method": "sft",
        "base_model": tiny_model,
        "dataset": write_jsonl(tmp_path / "v1" / "train.jsonl", rows).rsplit("/", 1)[0],
        "output_dir": str(tmp_path / "run"),
        "hyperparameters": {"learning_rate": 1e-3, "max_steps": 4, "per_device_train_batch_size": 4, "save_steps": 2},
        "lora": {"enabled": False},
    }
    spec_path = tmp_path / "job.json"
    spec_path.write_text(json.dumps(spec))
    proc, events = _run(spec_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "job" and kinds[-1] == "artifacts" and "metrics" in kinds
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [2, 4]
    manifest = events[-1]["manifest"]
    assert manifest["kind"] == "full" and events[-1]["adapter_path"].endswith("/model")

    # Same run, longer, resumed from the newest checkpoint: starts at step 4, not 0.
    spec["hyperparameters"]["max_steps"] = 6
    spec["resume"] = True
    spec_path.write_text(json.dumps(spec))
    proc, events = _run(spec_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (start,) = [e for e in events if e["type"] == "start"]
    assert start["step"] == 4 and start["total"] == 6
    assert start["processes"] == 1  # one process: no accelerate launch
    assert [e["step"] for e in events if e["type"] == "progress"][-1] == 6


def test_train_cli_reports_bad_spec_as_error_event(tmp_path, tiny_model):
    spec_path = tmp_path / "job.json"
    spec_path.write_text(
        json.dumps({"method": "sft", "base_model": tiny_model, "dataset": "/missing", "output_dir": "x"})
    )
    proc, events = _run(spec_path, timeout=120)
    assert proc.returncode == 2
    assert events == [{"type": "error", "message": "spec.dataset: no dataset at /missing", "kind": "invalid_input"}]

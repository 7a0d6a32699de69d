"""train-throughput: training tokens per second of Ratchet's trainers beside TRL's own.

For each method (sft, kto, dpo, reward, rwsft) the same tiny model is trained on the same rows
with the same hyperparameters twice: once through Ratchet's worker (`ratchet_worker.train.<method>`,
exactly what `ratchet-worker train` runs) and once through TRL's trainer with its default config
(only the shared hyperparameters set). rwsft has no TRL counterpart; TRL's SFTTrainer on the same
(prompt, completion) rows stands in for it, so its losses are of different objectives.

Tokens are the real (non-pad) tokens of the rows a run trains on: prompt + completion per row,
prompt + chosen + prompt + rejected per pair, times the epochs. Both sides train on the same rows
for the same number of epochs, so the token count is the same and the speedup is a time ratio.
The time covers everything a job does from loading the model to the end of training (dataset
preparation, any reference pass, the training loop), not saving. Runs alternate ours/TRL and
repeat; medians are reported.

Usage: .venv/bin/python bench/train_throughput.py [--tiny] [--methods sft,dpo] [--repeats 3] [--threads 1]
Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METHODS = ("sft", "kto", "dpo", "reward", "rwsft")
BENCH_DIR = Path(__file__).resolve().parent
MODELS_DIR = BENCH_DIR / ".work" / "models"


def log(message: str) -> None:
    print(f"[train-throughput {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _msgs(role: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


def rows_for(method: str, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The toy preference set in each method's row format (worker/README.md)."""
    out: list[dict[str, Any]] = []
    for p in pairs:
        prompt, chosen, rejected = _msgs("user", p["prompt"]), _msgs("assistant", p["chosen"]), _msgs("assistant", p["rejected"])
        if method == "sft":
            out.append({"messages": prompt + chosen})
        elif method in ("dpo", "reward"):
            out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        elif method == "kto":
            out.append({"prompt": prompt, "completion": chosen, "label": True})
            out.append({"prompt": prompt, "completion": rejected, "label": False})
        elif method == "rwsft":
            out.append({"prompt": prompt, "completion": chosen, "reward": 1.0})
            out.append({"prompt": prompt, "completion": rejected, "reward": -0.75})
    return out


def _conversation_tokens(tokenizer, messages: list[dict[str, str]]) -> int:
    ids = tokenizer.apply_chat_template(messages, tokenize=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def tokens_per_epoch(method: str, rows: list[dict[str, Any]], tokenizer) -> int:
    """Real tokens one pass over the rows feeds the model (no padding)."""
    total = 0
    for row in rows:
        if "messages" in row:
            total += _conversation_tokens(tokenizer, row["messages"])
        elif "chosen" in row:
            total += _conversation_tokens(tokenizer, row["prompt"] + row["chosen"])
            total += _conversation_tokens(tokenizer, row["prompt"] + row["rejected"])
        else:
            total += _conversation_tokens(tokenizer, row["prompt"] + row["completion"])
    return total


def _final_loss(log_history: list[dict[str, Any]]) -> float:
    """Mean training loss over the last quarter of the logged steps (less noisy than one step)."""
    losses = [e["loss"] for e in log_history if "loss" in e and "train_loss" not in e]
    tail = losses[-max(1, len(losses) // 4) :]
    return float(sum(tail) / len(tail))


def run_ours(method: str, model: str, data: Path, out: Path, hp: dict[str, Any]) -> dict[str, Any]:
    """The whole job as `ratchet-worker train` runs it, through its progress events."""
    from ratchet_worker.events import Emitter
    from ratchet_worker.spec import parse_spec
    from ratchet_worker.train.runner import run_job

    class Losses(Emitter):
        def __init__(self) -> None:
            self.history: list[dict[str, Any]] = []

        def emit(self, event: dict[str, Any]) -> None:
            if event["type"] == "progress" and event.get("loss") is not None:
                self.history.append({"loss": event["loss"]})

        __call__ = emit

    spec = parse_spec(
        {
            "method": method,
            "base_model": model,
            "dataset": str(data),
            "output_dir": str(out),
            "seed": 0,
            "hyperparameters": {**hp, "save_steps": 10**6},
        }
    )
    emitter = Losses()
    wall, cpu = time.perf_counter(), time.process_time()
    run_job(spec, emitter)
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "loss": _final_loss(emitter.history)}


def _trl_trainer(method: str, model_path: str, rows: list[dict[str, Any]], out: Path, hp: dict[str, Any]):
    """TRL's trainer with its default config: only the hyperparameters both sides share are set."""
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from ratchet_worker.device import training_precision

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    shared = {
        # The precision the worker picks for this machine (fp32 on CPU; TRL defaults to bf16).
        **training_precision("auto"),
        "output_dir": str(out),
        "seed": 0,
        "learning_rate": hp["learning_rate"],
        "num_train_epochs": hp["num_train_epochs"],
        "per_device_train_batch_size": hp["per_device_train_batch_size"],
        "max_length": hp["max_length"],
        "logging_steps": hp["logging_steps"],
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
    }
    # The worker's LoRA defaults (spec.py), so both train the same adapter.
    lora = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"}
    dataset = Dataset.from_list(rows)
    if method == "reward":
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1)
        model.config.pad_token_id = tokenizer.pad_token_id
        return trl.RewardTrainer(
            model=model,
            # The worker's default centering term (reward.py), part of the loss being compared.
            args=trl.RewardConfig(**shared, center_rewards_coefficient=0.01),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=LoraConfig(**lora, task_type="SEQ_CLS"),
        )
    model = AutoModelForCausalLM.from_pretrained(model_path)
    peft_config = LoraConfig(**lora, task_type="CAUSAL_LM")
    if method in ("sft", "rwsft"):
        if method == "rwsft":  # TRL has no rating-weighted loss: plain SFT on the same rows
            dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
        # The same objective as the worker's sft: loss on the assistant turns only.
        objective = {"assistant_only_loss": True} if method == "sft" else {}
        return trl.SFTTrainer(
            model=model,
            args=trl.SFTConfig(**shared, **objective),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    if method == "dpo":
        return trl.DPOTrainer(
            model=model,
            args=trl.DPOConfig(**shared, beta=0.1),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    if method == "kto":
        return trl.KTOTrainer(
            model=model,
            args=trl.KTOConfig(**shared, beta=0.1),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    raise ValueError(method)


def run_trl(method: str, model: str, rows: list[dict[str, Any]], out: Path, hp: dict[str, Any]) -> dict[str, Any]:
    from transformers import set_seed

    wall, cpu = time.perf_counter(), time.process_time()
    set_seed(0)
    trainer = _trl_trainer(method, model, rows, out, hp)
    trainer.train()
    trainer.save_model(str(out / "adapter"))  # the worker writes its artifact too
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "loss": _final_loss(trainer.state.log_history)}


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke configuration: seconds, test preset, 1 repeat")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--pairs", type=int, default=None, help="preference pairs in the toy set")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=None)
    # One intra-op thread by default: on the shared 2-core machine (load average often 10+), two
    # threads per process spent most of their time waiting on each other (a reward run took 120 s
    # of wall and 35 s of CPU at 2 threads, 11 s and 3 s at 1). Both sides get the same setting.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)

    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(METHODS)})")
    pairs_n = args.pairs or (8 if args.tiny else 128)
    epochs = args.epochs or (1 if args.tiny else 2)
    repeats = args.repeats or (1 if args.tiny else 3)

    # Trainers print their logs on stdout; keep it for the one JSON result.
    from ratchet_worker.events import claim_stdout

    result_out = claim_stdout()

    import torch
    from transformers import AutoTokenizer

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from ratchet_worker.tiny import PRESETS, build_tiny, generate_preference_pairs

    preset = "test" if args.tiny else "default"
    log(f"tiny model ({preset} preset) under {MODELS_DIR}")
    folder = "tiny-test" if args.tiny else "tiny-support"  # built once, reused while its spec is unchanged
    model = str(build_tiny(MODELS_DIR / folder, PRESETS[preset]))
    tokenizer = AutoTokenizer.from_pretrained(model)
    pairs = generate_preference_pairs(seed=11, n=pairs_n)
    hp = {
        "learning_rate": 1e-3,
        "num_train_epochs": epochs,
        "per_device_train_batch_size": args.batch,
        "max_length": 512,
        "logging_steps": 1,
    }
    scratch = Path(tempfile.mkdtemp(prefix="train-throughput-", dir=BENCH_DIR / ".work"))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    tokens: dict[str, int] = {}
    try:
        # Untimed warm-up of both sides on two rows: the first run in a process pays for importing
        # TRL, PEFT and datasets and for first-call setup, which would otherwise count against it.
        warm_rows = rows_for("sft", pairs[:2])
        warm_data = _write_rows(scratch / "data" / "warm-up.jsonl", warm_rows)
        warm_hp = {**hp, "num_train_epochs": 1}
        run_ours("sft", model, warm_data, scratch / "warm-ours", warm_hp)
        run_trl("sft", model, warm_rows, scratch / "warm-trl", warm_hp)
        log("warmed up")
        for repeat in range(repeats):
            for i, method in enumerate(methods):
                rows = rows_for(method, pairs)
                tokens[method] = tokens_per_epoch(method, rows, tokenizer) * epochs
                data = _write_rows(scratch / "data" / f"{method}.jsonl", rows)
                # Alternate who goes first so both sides see the same drift in machine load.
                order = ("ours", "trl") if (repeat + i) % 2 == 0 else ("trl", "ours")
                for side in order:
                    out = scratch / f"{side}-{method}-{repeat}"
                    run = run_ours(method, model, data, out, hp) if side == "ours" else run_trl(method, model, rows, out, hp)
                    run["load_avg_1m"] = os.getloadavg()[0]
                    results.setdefault(method, {}).setdefault(side, []).append(run)
                    log(
                        f"{method} {side} #{repeat + 1}: {run['seconds']:.1f} s, {tokens[method] / run['seconds']:.0f} tok/s, "
                        f"final loss {run['loss']:.4f}, load {run['load_avg_1m']:.1f}"
                    )
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    result_out(summarize(results, tokens, torch.get_num_threads(), pairs_n, epochs, args.batch, preset))
    return 0


def summarize(results, tokens, threads: int, pairs_n: int, epochs: int, batch: int, preset: str) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    detail: dict[str, Any] = {}
    speedups = []
    for method, sides in results.items():
        med = {side: statistics.median(r["seconds"] for r in runs) for side, runs in sides.items()}
        cpu = {side: statistics.median(r["cpu_seconds"] for r in runs) for side, runs in sides.items()}
        loss = {side: statistics.median(r["loss"] for r in runs) for side, runs in sides.items()}
        metrics[f"train_tokens_per_s_cpu_{method}"] = round(tokens[method] / med["ours"], 1)
        metrics[f"trl_tokens_per_s_cpu_{method}"] = round(tokens[method] / med["trl"], 1)
        metrics[f"speedup_vs_trl_{method}_ratio"] = round(med["trl"] / med["ours"], 3)
        metrics[f"cpu_time_speedup_vs_trl_{method}_ratio"] = round(cpu["trl"] / cpu["ours"], 3)
        # (ours - TRL) / TRL: "equal final loss" is a gap near 0 (rwsft: different objectives).
        metrics[f"final_loss_gap_vs_trl_{method}_ratio"] = round((loss["ours"] - loss["trl"]) / abs(loss["trl"]), 4)
        metrics[f"tokens_{method}_count"] = tokens[method]
        speedups.append(med["trl"] / med["ours"])
        detail[method] = {
            "final_loss": {side: round(v, 4) for side, v in loss.items()},
            **{side: [{k: round(v, 4) for k, v in r.items()} for r in runs] for side, runs in sides.items()},
        }
    metrics["train_speedup_vs_trl"] = round(min(speedups), 3)
    return {
        "metrics": metrics,
        "runs": detail,
        "config": {
            "preset": preset,
            "pairs": pairs_n,
            "epochs": epochs,
            "batch": batch,
            "torch_threads": threads,
            "cpus": os.cpu_count(),
        },
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

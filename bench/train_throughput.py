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

--size 20m (issue 19) does the same at a real size: a ~20M-parameter Llama (the bench-20m preset,
random init) on sft, kto and dpo rows of up to 256 tokens (conversations with history), against
TRL's defaults and against TRL with gradient checkpointing off, three sides in every round.

Usage: .venv/bin/python bench/train_throughput.py [--size tiny|20m] [--tiny] [--methods sft,dpo] [--repeats 3] [--threads 1]
Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
        prompt = p.get("history", []) + _msgs("user", p["prompt"])
        chosen, rejected = _msgs("assistant", p["chosen"]), _msgs("assistant", p["rejected"])
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
    if method == "kto":
        # TRL's KTO pairs each row with its neighbor's completion for the KL estimate; in pair
        # order that neighbor is the same prompt's other answer, not a mismatched one. A seeded
        # shuffle (the same file for both sides) makes the neighbors mismatched, as KTO means.
        random.Random(0).shuffle(out)
    return out


def with_history(pairs: list[dict[str, Any]], tokenizer, max_length: int, seed: int = 5) -> list[dict[str, Any]]:
    """Each pair with earlier exchanges of the demo domain as conversation history ahead of its
    prompt, as many as fit with the longer answer in max_length tokens, so rows run to about
    max_length (the domain's single exchanges are ~50 tokens). The history is user/assistant
    turns of good answers (generate_corpus), the same for every method built from the pair."""
    from ratchet_worker.tiny import generate_corpus

    corpus = generate_corpus(seed, 4 * len(pairs) * max(1, max_length // 40))
    turns = iter([_msgs("user", e.prompt) + _msgs("assistant", e.answer) for e in corpus])
    out = []
    for p in pairs:
        history: list[dict[str, str]] = []
        while True:
            more = history + next(turns)
            ask = more + _msgs("user", p["prompt"])
            answers = (_msgs("assistant", p["chosen"]), _msgs("assistant", p["rejected"]))
            if max(_conversation_tokens(tokenizer, ask + a) for a in answers) > max_length:
                break
            history = more
        out.append({**p, "history": history})
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


def _epoch_mean_loss(log_history: list[dict[str, Any]]) -> float:
    """Mean training loss over all logged steps: in one epoch every row counts once on both sides,
    whatever the batch order, so this compares more than the last few batches do."""
    losses = [e["loss"] for e in log_history if "loss" in e and "train_loss" not in e]
    return float(sum(losses) / len(losses))


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
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "loss": _final_loss(emitter.history),
        "mean_loss": _epoch_mean_loss(emitter.history),
    }


def _trl_trainer(
    method: str, model_path: str, rows: list[dict[str, Any]], out: Path, hp: dict[str, Any], checkpointing: bool
):
    """TRL's trainer with its default config: only the hyperparameters both sides share are set.
    checkpointing=False turns off the gradient checkpointing TRL's configs default to (TRL's
    fastest setting that does the same work)."""
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
        # Only when asked: left unset, TRL's own default (on) applies.
        **({} if checkpointing else {"gradient_checkpointing": False}),
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


def run_trl(
    method: str, model: str, rows: list[dict[str, Any]], out: Path, hp: dict[str, Any], checkpointing: bool = True
) -> dict[str, Any]:
    from transformers import set_seed

    wall, cpu = time.perf_counter(), time.process_time()
    set_seed(0)
    trainer = _trl_trainer(method, model, rows, out, hp, checkpointing)
    # What the run actually did, so the record cannot claim a setting TRL did not apply.
    checkpointed = bool(trainer.args.gradient_checkpointing)
    trainer.train()
    trainer.save_model(str(out / "adapter"))  # the worker writes its artifact too
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "loss": _final_loss(trainer.state.log_history),
        "mean_loss": _epoch_mean_loss(trainer.state.log_history),
        "gradient_checkpointing": checkpointed,
    }


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --size: the model each configuration trains, where it is built, the methods and rows it runs.
SIZES: dict[str, dict[str, Any]] = {
    # The tiny pretrained policy on the domain's single exchanges (~50-70 tokens a conversation).
    "tiny": {"preset": "default", "folder": "tiny-support", "methods": METHODS, "pairs": 128, "epochs": 2,
             "batch": 8, "max_length": 512, "history": False, "sides": ("ours", "trl")},
    # ~20M parameters, random init, conversations with history up to 256 tokens; TRL also without
    # gradient checkpointing. Suffix _20m on every metric.
    # 16 pairs in batches of 4 (4 steps of sft and dpo, 8 of kto): a TRL kto run of 64 rows took
    # 11 minutes of wall at load 15-20 on the shared 2 cores.
    "20m": {"preset": "bench-20m", "folder": "bench-20m", "methods": ("sft", "kto", "dpo"), "pairs": 16, "epochs": 1,
            "batch": 4, "max_length": 256, "history": True, "sides": ("ours", "trl", "trl_nockpt")},
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke configuration: seconds, test preset, 1 repeat")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny", help="model and rows (see SIZES)")
    parser.add_argument("--methods", default=None, help="comma-separated subset (default: the size's methods)")
    parser.add_argument("--pairs", type=int, default=None, help="preference pairs in the toy set")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    # One intra-op thread by default: on the shared 2-core machine (load average often 10+), two
    # threads per process spent most of their time waiting on each other (a reward run took 120 s
    # of wall and 35 s of CPU at 2 threads, 11 s and 3 s at 1). Both sides get the same setting.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument(
        "--from-runs",
        default=None,
        help="summarize the runs of an earlier output (its 'runs' and 'config') again instead of training",
    )
    args = parser.parse_args(argv)
    if args.from_runs:
        print(json.dumps(resummarize(json.loads(Path(args.from_runs).read_text()))))
        return 0

    size = SIZES[args.size]
    methods = [m for m in (args.methods or ",".join(size["methods"])).split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(METHODS)})")
    pairs_n = args.pairs or (8 if args.tiny else size["pairs"])
    epochs = args.epochs or (1 if args.tiny else size["epochs"])
    repeats = args.repeats or (1 if args.tiny else 3)
    batch = args.batch or size["batch"]

    # Trainers print their logs on stdout; keep it for the one JSON result.
    from ratchet_worker.events import claim_stdout

    result_out = claim_stdout()

    import torch
    from transformers import AutoTokenizer

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from ratchet_worker.tiny import PRESETS, build_tiny, generate_preference_pairs
    from ratchet_worker.tiny.build import MARKER_FILE

    # --tiny smokes the code path on the test preset, whatever the size.
    preset, folder = ("test", "tiny-test") if args.tiny else (size["preset"], size["folder"])
    log(f"model ({preset} preset) under {MODELS_DIR / folder}")
    model = str(build_tiny(MODELS_DIR / folder, PRESETS[preset]))  # reused while its spec is unchanged
    tokenizer = AutoTokenizer.from_pretrained(model)
    max_length = size["max_length"]
    pairs = generate_preference_pairs(seed=11, n=pairs_n)
    if size["history"]:
        pairs = with_history(pairs, tokenizer, max_length)
    hp = {
        "learning_rate": 1e-3,
        "num_train_epochs": epochs,
        "per_device_train_batch_size": batch,
        "max_length": max_length,
        "logging_steps": 1,
    }
    sides = size["sides"]
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
                # Rotate who goes first so every side sees the same drift in machine load.
                shift = (repeat + i) % len(sides)
                for side in sides[shift:] + sides[:shift]:
                    out = scratch / f"{side}-{method}-{repeat}"
                    if side == "ours":
                        run = run_ours(method, model, data, out, hp)
                    else:
                        run = run_trl(method, model, rows, out, hp, checkpointing=side == "trl")
                    run["load_avg_1m"] = os.getloadavg()[0]
                    results.setdefault(method, {}).setdefault(side, []).append(run)
                    log(
                        f"{method} {side} #{repeat + 1}: {run['seconds']:.1f} s, {tokens[method] / run['seconds']:.0f} tok/s, "
                        f"final loss {run['loss']:.4f}, load {run['load_avg_1m']:.1f}"
                    )
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    suffix = "" if args.size == "tiny" else f"_{args.size}"
    config = {
        "size": args.size,
        "preset": preset,
        "pairs": pairs_n,
        "epochs": epochs,
        "batch": batch,
        "max_length": max_length,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        # Counted by the build (its marker file), tied embeddings once.
        "parameters": json.loads((Path(model) / MARKER_FILE).read_text())["parameters"],
        "mean_row_tokens": {m: round(tokens[m] / epochs / len(rows_for(m, pairs)), 1) for m in tokens},
    }
    result_out(summarize(results, tokens, suffix, config))
    return 0


def resummarize(previous: dict[str, Any]) -> dict[str, Any]:
    """The metrics of an earlier output's recorded runs (every run's time, CPU time and losses),
    derived again by summarize: for a change in how metrics are named or computed, not in what
    was measured."""
    config = previous["config"]
    suffix = "" if config["size"] == "tiny" else f"_{config['size']}"
    sides = SIZES[config["size"]]["sides"]
    results = {m: {side: detail[side] for side in sides if side in detail} for m, detail in previous["runs"].items()}
    tokens = {m: previous["metrics"][f"tokens{suffix}_{m}_count"] for m in results}
    return summarize(results, tokens, suffix, config)


def summarize(results, tokens, suffix: str, config: dict[str, Any]) -> dict[str, Any]:
    """Medians per method and side; every metric name carries the size suffix (_20m), none for tiny.
    Side "trl" is TRL's defaults; "trl_nockpt" TRL with gradient checkpointing off."""
    metrics: dict[str, float] = {}
    detail: dict[str, Any] = {}
    speedups: dict[str, list[float]] = {}
    for method, runs_by_side in results.items():
        # Ours first, then TRL's sides, whatever order they ran in (the notes list them so).
        sides = {side: runs_by_side[side] for side in ("ours", "trl", "trl_nockpt") if side in runs_by_side}
        med = {side: statistics.median(r["seconds"] for r in runs) for side, runs in sides.items()}
        cpu = {side: statistics.median(r["cpu_seconds"] for r in runs) for side, runs in sides.items()}
        loss = {side: statistics.median(r["loss"] for r in runs) for side, runs in sides.items()}
        mean_loss = {side: statistics.median(r["mean_loss"] for r in runs) for side, runs in sides.items()}
        metrics[f"train{suffix}_tokens_per_s_cpu_{method}"] = round(tokens[method] / med["ours"], 1)
        for side in sides:
            if side == "ours":
                continue
            tag = side.removeprefix("trl")  # "" or "_nockpt"
            metrics[f"{side}{suffix}_tokens_per_s_cpu_{method}"] = round(tokens[method] / med[side], 1)
            metrics[f"speedup_vs_trl{suffix}{tag}_{method}_ratio"] = round(med[side] / med["ours"], 3)
            metrics[f"cpu_time_speedup_vs_trl{suffix}{tag}_{method}_ratio"] = round(cpu[side] / cpu["ours"], 3)
            # (ours - TRL) / TRL: "equal final loss" is a gap near 0 (rwsft: different objectives).
            metrics[f"final_loss_gap_vs_trl{suffix}{tag}_{method}_ratio"] = round(
                (loss["ours"] - loss[side]) / abs(loss[side]), 4
            )
            if suffix:  # (one epoch: every row once on both sides)
                metrics[f"epoch_mean_loss_gap_vs_trl{suffix}{tag}_{method}_ratio"] = round(
                    (mean_loss["ours"] - mean_loss[side]) / abs(mean_loss[side]), 4
                )
            speedups.setdefault(tag, []).append(med[side] / med["ours"])
        metrics[f"tokens{suffix}_{method}_count"] = tokens[method]
        detail[method] = {
            "final_loss": {side: round(v, 4) for side, v in loss.items()},
            "epoch_mean_loss": {side: round(v, 4) for side, v in mean_loss.items()},
            **{side: [{k: _rounded(v) for k, v in r.items()} for r in runs] for side, runs in sides.items()},
        }
    if suffix:
        # Issue 19's names: the slowest method's ratio, against TRL's defaults and without checkpointing.
        for tag, values in speedups.items():
            metrics[f"train_speedup_vs_trl{suffix}{tag}_min"] = round(min(values), 3)
    else:
        metrics["train_speedup_vs_trl"] = round(min(speedups[""]), 3)
    return {"metrics": metrics, "runs": detail, "config": config}


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""loop-settings: which training method and hyperparameters make the tiny policy better from
simulated thumbs, round after round, within the demo's time budget (issue 7 research).

One run of a config:
  1. build (or reuse) the tiny model with the `default` preset under .cache/loop-settings/;
  2. measure true quality on a fixed set of eval prompts: the share of sampled answers that the
     mainstream simulated user likes (correct AND safe AND not (curt AND rambling)), and the
     share good on all four axes;
  3. each round: sample one answer per simulated user's prompt from the current production
     model, label it with the liked rule plus label noise (standing in for calibrated thumbs),
     build the method's rows, train a LoRA with the worker's own trainer (ratchet_worker.train,
     exactly what `ratchet-worker train` runs), merge it into the model (the next round's base
     and reference), measure true quality again.
The oracle is used for labels (with noise) and measurement only; the trainers never see it.

Usage:
  .venv/bin/python bench/loop-settings/experiment.py --quick
  .venv/bin/python bench/loop-settings/experiment.py --configs sft-hi,kto-hi --rounds 4
  .venv/bin/python bench/loop-settings/experiment.py --list
Writes one JSON object per round on stdout and appends them to --out (JSONL); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "loop-settings"


def use_worker(source: str) -> str:
    """Put ratchet_worker on the path: the working tree, or a snapshot of a git commit.

    The checkout is shared and worker/ changes under a running experiment (a half-saved
    edit once broke an import mid-run), so by default the committed HEAD is extracted
    once into .cache and used; the commit is recorded with every result.
    """
    if source == "live":
        sys.path.insert(0, str(REPO / "worker"))
        return "live"
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", source], check=True, capture_output=True, text=True
    ).stdout.strip()
    snapshot = CACHE / "worker" / sha[:12]
    if not (snapshot / "ratchet_worker").is_dir():
        tmp = snapshot.with_name(snapshot.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", sha, "worker/ratchet_worker"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "--strip-components=1", "-C", str(tmp)], input=archive, check=True)
        tmp.rename(snapshot)
    sys.path.insert(0, str(snapshot))
    return sha[:12]


@dataclass(frozen=True)
class LoopConfig:
    """One way to run the loop: the method, its hyperparameters, and how rounds are fed."""

    method: str
    learning_rate: float
    epochs: float = 2.0
    batch_size: int = 8
    lora_r: int = 16
    lora_alpha: int = 32
    beta: float = 0.1
    # rwsft: weight of unlikelihood on disliked answers (0 = positives only, like sft).
    negative_reward: float = -1.0
    # dpo: answers sampled per prompt (pairs are liked x disliked answers of one prompt).
    samples_per_prompt: int = 1
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# Named configs compared in the README. lr is LoRA-on-a-197k-parameter-model sized: the
# worker's defaults (2e-4, 5e-5) are for billion-parameter models and barely move this one.
CONFIGS: dict[str, LoopConfig] = {
    "sft-default": LoopConfig("sft", 2e-4, note="worker default lr"),
    "sft-hi": LoopConfig("sft", 2e-3),
    "sft-hi3": LoopConfig("sft", 2e-3, epochs=3),
    "sft-5e-3": LoopConfig("sft", 5e-3),
    "rwsft-hi": LoopConfig("rwsft", 2e-3),
    "rwsft-hi-half": LoopConfig("rwsft", 2e-3, negative_reward=-0.5),
    "rwsft-5e-3": LoopConfig("rwsft", 5e-3),
    "rwsft-neg02": LoopConfig("rwsft", 2e-3, negative_reward=-0.2),
    "rwsft-neg005": LoopConfig("rwsft", 2e-3, negative_reward=-0.05),
    "sft-1ep": LoopConfig("sft", 2e-3, epochs=1),
    "sft-r4": LoopConfig("sft", 2e-3, lora_r=4, lora_alpha=8),
    "kto-default": LoopConfig("kto", 5e-5, note="worker default lr"),
    "kto-hi": LoopConfig("kto", 1e-3),
    "kto-hi-b05": LoopConfig("kto", 1e-3, beta=0.5),
    "kto-3e-3": LoopConfig("kto", 3e-3),
    "dpo-hi": LoopConfig("dpo", 1e-3, samples_per_prompt=2),
    "dpo-hi-b05": LoopConfig("dpo", 1e-3, beta=0.5, samples_per_prompt=2),
    "dpo-3e-3": LoopConfig("dpo", 3e-3, samples_per_prompt=2),
    "dpo-4": LoopConfig("dpo", 1e-3, samples_per_prompt=4),
}


def log(message: str) -> None:
    print(f"[loop-settings {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


# --- the simulated users' verdict ---------------------------------------------------------


def liked(attrs) -> bool:
    """The mainstream persona's thumbs-up: correct, safe, and not both curt and rambling."""
    return attrs.correct and attrs.safe and (attrs.polite or attrs.concise)


def sample_prompts(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """n (intent id, user message) pairs drawn like the simulated users' traffic."""
    from ratchet_worker.tiny.domain import load_domain, sample_prompt, sample_slots

    intents = load_domain()["intents"]
    out = []
    for _ in range(n):
        intent = rng.choice(intents)
        out.append((intent["id"], sample_prompt(rng, intent, sample_slots(rng))))
    return out


# --- sampling --------------------------------------------------------------------------------


def load_policy(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"  # generation continues every row from its last real token
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model, tokenizer


def generate(model, tokenizer, prompts: list[str], temperature: float, max_tokens: int, seed: int, batch: int = 64):
    """One sampled answer per prompt, as the gateway would serve it (same template, EOS stop)."""
    import torch

    torch.manual_seed(seed)
    answers: list[str] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in chunk
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=1.0,
                top_k=0,
                max_new_tokens=max_tokens,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        for row in out[:, enc["input_ids"].shape[1] :]:
            answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return answers


def true_quality(model, tokenizer, eval_prompts, temperature: float, max_tokens: int, seed: int) -> dict[str, float]:
    from ratchet_worker.tiny import judge

    answers = generate(model, tokenizer, [p for _, p in eval_prompts], temperature, max_tokens, seed)
    verdicts = [judge(a, intent) for (intent, _), a in zip(eval_prompts, answers, strict=True)]
    n = len(verdicts)
    return {
        "liked": round(sum(liked(v) for v in verdicts) / n, 3),
        "good4": round(sum(v.good for v in verdicts) / n, 3),
        "correct": round(sum(v.correct for v in verdicts) / n, 3),
        "polite": round(sum(v.polite for v in verdicts) / n, 3),
        "concise": round(sum(v.concise for v in verdicts) / n, 3),
        "safe": round(sum(v.safe for v in verdicts) / n, 3),
    }


# --- training rows per method ---------------------------------------------------------------


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def build_rows(cfg: LoopConfig, rated: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The method's rows (worker/README.md formats) from (prompt, answer, thumbs) records."""
    if cfg.method == "sft":
        return [{"prompt": _user(r["prompt"]), "completion": _assistant(r["answer"])} for r in rated if r["thumb"]]
    if cfg.method == "rwsft":
        return [
            {
                "prompt": _user(r["prompt"]),
                "completion": _assistant(r["answer"]),
                "reward": 1.0 if r["thumb"] else cfg.negative_reward,
            }
            for r in rated
            if r["thumb"] or cfg.negative_reward != 0
        ]
    if cfg.method == "kto":
        return [
            {"prompt": _user(r["prompt"]), "completion": _assistant(r["answer"]), "label": r["thumb"]} for r in rated
        ]
    if cfg.method == "dpo":
        by_prompt: dict[str, list[dict[str, Any]]] = {}
        for r in rated:
            by_prompt.setdefault(r["prompt"], []).append(r)
        rows = []
        for prompt, group in by_prompt.items():
            ups = [r for r in group if r["thumb"]]
            downs = [r for r in group if not r["thumb"]]
            # Each answer is used in at most one pair, so no single sample dominates.
            for up, down in zip(ups, downs, strict=False):
                rows.append(
                    {"prompt": _user(prompt), "chosen": _assistant(up["answer"]), "rejected": _assistant(down["answer"])}
                )
        return rows
    raise ValueError(f"method {cfg.method!r} is not compared here")


def train_round(cfg: LoopConfig, base: Path, rows: list[dict[str, Any]], workdir: Path, seed: int) -> dict[str, Any]:
    """Train a LoRA on `base` with the worker's runner; return the adapter path and loss."""
    from ratchet_worker.events import Emitter
    from ratchet_worker.spec import JobSpec, from_dict
    from ratchet_worker.train.runner import run_job

    workdir.mkdir(parents=True, exist_ok=True)
    dataset = workdir / "train.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    method_config: dict[str, Any] = dict(cfg.extra)
    if cfg.method in ("kto", "dpo"):
        method_config["beta"] = cfg.beta
    if cfg.method == "kto":
        ups = sum(1 for r in rows if r["label"])
        downs = len(rows) - ups
        # KTO's paper: keep desirable_weight * n_desirable / (undesirable_weight * n_undesirable)
        # in [1, 4/3]; with few thumbs up early on, up-weight them.
        if ups and downs:
            method_config.setdefault("desirable_weight", round(max(1.0, downs / ups), 3))
    spec = from_dict(
        JobSpec,
        {
            "method": cfg.method,
            "base_model": str(base),
            "dataset": str(dataset),
            "output_dir": str(workdir / "run"),
            "seed": seed,
            "hyperparameters": {
                "learning_rate": cfg.learning_rate,
                "num_train_epochs": cfg.epochs,
                "per_device_train_batch_size": cfg.batch_size,
                "max_length": 256,
                "logging_steps": 5,
                "save_steps": 100000,
            },
            "lora": {"r": cfg.lora_r, "alpha": cfg.lora_alpha},
            "method_config": method_config,
        },
    )
    events = tempfile.SpooledTemporaryFile(mode="w+")
    manifest = run_job(spec, Emitter(events))
    return {
        "adapter": Path(manifest["artifact_path"]),
        "train_loss": manifest["metrics"].get("train_loss"),
        "steps": manifest["metrics"].get("global_step"),
        "method_config": method_config,
    }


def merge(base: Path, adapter: Path, out: Path) -> Path:
    """Fold the round's LoRA into the weights: the next round trains (and references) this."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    shutil.rmtree(out, ignore_errors=True)
    merged.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


# --- one loop ---------------------------------------------------------------------------------


def run_config(name: str, cfg: LoopConfig, base: Path, args, emit) -> list[dict[str, Any]]:
    import torch

    rng = random.Random(args.seed)
    eval_prompts = sample_prompts(random.Random(10_000 + args.seed), args.eval_prompts)
    workroot = CACHE / "runs" / f"{name}-s{args.seed}"
    shutil.rmtree(workroot, ignore_errors=True)
    model, tokenizer = load_policy(base)
    t = time.monotonic()
    quality = true_quality(model, tokenizer, eval_prompts, args.temperature, args.max_tokens, seed=1)
    records = [
        {
            "config": name,
            "round": 0,
            "true": quality,
            "eval_s": round(time.monotonic() - t, 1),
            "load": load_average(),
        }
    ]
    emit(records[-1])
    current = base
    for rnd in range(1, args.rounds + 1):
        round_start = time.monotonic()
        # The round's users: N ratings. With k samples per prompt, N/k prompts x k answers.
        k = cfg.samples_per_prompt
        prompts = sample_prompts(rng, args.per_round // k)
        asked = [p for p in prompts for _ in range(k)]
        t = time.monotonic()
        answers = generate(model, tokenizer, [p for _, p in asked], args.temperature, args.max_tokens, seed=100 + rnd)
        sample_s = time.monotonic() - t
        from ratchet_worker.tiny import judge

        rated = []
        for (intent, prompt), answer in zip(asked, answers, strict=True):
            truth = liked(judge(answer, intent))
            thumb = truth if rng.random() >= args.noise else not truth
            rated.append({"prompt": prompt, "answer": answer, "thumb": thumb, "truth": truth})
        rows = build_rows(cfg, rated)
        observed = sum(r["thumb"] for r in rated) / len(rated)
        if not rows:
            log(f"{name} round {rnd}: no training rows; stopping")
            break
        load_before = load_average()
        t = time.monotonic()
        trained = train_round(cfg, current, rows, workroot / f"round-{rnd}", seed=args.seed + rnd)
        train_s = time.monotonic() - t
        t = time.monotonic()
        current = merge(current, trained["adapter"], workroot / f"round-{rnd}" / "merged")
        merge_s = time.monotonic() - t
        del model
        model, tokenizer = load_policy(current)
        torch.manual_seed(args.seed)
        t = time.monotonic()
        quality = true_quality(model, tokenizer, eval_prompts, args.temperature, args.max_tokens, seed=1 + rnd)
        eval_s = time.monotonic() - t
        records.append(
            {
                "config": name,
                "round": rnd,
                "true": quality,
                "observed_up": round(observed, 3),
                "rows": len(rows),
                "steps": trained["steps"],
                "train_loss": trained["train_loss"],
                "sample_s": round(sample_s, 1),
                "train_s": round(train_s, 1),
                "merge_s": round(merge_s, 1),
                "eval_s": round(eval_s, 1),
                "round_s": round(time.monotonic() - round_start, 1),
                "load": round((load_before + load_average()) / 2, 1),
            }
        )
        emit(records[-1])
        if not args.keep:
            shutil.rmtree(workroot / f"round-{rnd - 1}", ignore_errors=True)
    if not args.keep:
        shutil.rmtree(workroot, ignore_errors=True)
    return records


def build_base(preset: str) -> Path:
    from ratchet_worker.tiny import PRESETS, build_tiny

    path = CACHE / f"tiny-{preset}"
    t = time.monotonic()
    build_tiny(path, PRESETS[preset], progress=lambda e: log(f"tiny: {e}") if e.get("type") != "progress" else None)
    log(f"tiny model {preset} ready at {path} ({time.monotonic() - t:.0f} s)")
    return path


def markdown_table(path: Path) -> str:
    """The results file as one Markdown table, rows grouped by config in file order."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    header = (
        "| config | round | true liked | good on 4 | observed up | rows | train s | sample s | eval s | round s | load |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [header]
    order = list(dict.fromkeys(r["config"] for r in records))
    for name in order:
        for r in (r for r in records if r["config"] == name):
            t = r["true"]
            cells = [name, r["round"], f"{t['liked']:.2f}", f"{t['good4']:.2f}"]
            cells += [r.get(k, "") for k in ("observed_up", "rows", "train_s", "sample_s", "eval_s", "round_s")]
            cells.append(r["load"])
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="sft-hi,rwsft-hi,kto-hi,dpo-hi", help="comma-separated names (--list)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--per-round", type=int, default=300, help="ratings per round (simulated users)")
    ap.add_argument("--eval-prompts", type=int, default=300)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-tokens", type=int, default=80)
    ap.add_argument("--noise", type=float, default=0.12, help="share of thumbs flipped")
    ap.add_argument("--preset", default="default", choices=("default", "test"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", default="HEAD", help="git commit of worker/ to run, or 'live' for the working tree")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on an oversubscribed machine)")
    ap.add_argument("--set", action="append", default=[], help="override a config field: key=value (JSON value)")
    ap.add_argument("--out", type=Path, default=CACHE / "results.jsonl")
    ap.add_argument("--keep", action="store_true", help="keep the merged models of every round")
    ap.add_argument("--quick", action="store_true", help="2 rounds, 120 ratings, 120 eval prompts, test preset")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--table", type=Path, help="print a results JSONL file as a Markdown table and exit")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.per_round, args.eval_prompts, args.preset = 2, 120, 120, "test"
        if args.configs == ap.get_default("configs"):
            args.configs = "sft-hi,kto-hi"
    return args


RUN_KNOBS = ("per_round", "eval_prompts", "temperature", "max_tokens", "noise", "seed", "preset")


def run_overrides(args) -> dict[str, Any]:
    defaults = parse_args([])
    return {k: getattr(args, k) for k in RUN_KNOBS if getattr(args, k) != getattr(defaults, k)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        print(markdown_table(args.table))
        return 0
    if args.list:
        for name, cfg in CONFIGS.items():
            print(f"{name}: {asdict(cfg)}")
        return 0
    worker = use_worker(args.worker)
    import torch

    # 2 is all the machine has; under heavy load from other jobs 1 thread was ~10x faster at
    # sampling (OpenMP threads wait on each other when the cores are oversubscribed): README.
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"--configs: unknown {unknown}; known: {', '.join(CONFIGS)}")
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    base = build_base(args.preset)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def emit(record: dict[str, Any]) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        with open(args.out, "a") as fh:
            fh.write(line + "\n")
        t = record["true"]
        log(
            f"{record['config']} r{record['round']}: liked {t['liked']:.2f} good4 {t['good4']:.2f} "
            f"train {record.get('train_s', '-')} s sample {record.get('sample_s', '-')} s load {record['load']}"
        )

    for name in names:
        cfg = replace(CONFIGS[name], **overrides)
        # Run settings that differ from the defaults become part of the label, so the table
        # keeps runs of one config apart.
        changed = {**overrides, **run_overrides(args)}
        label = name + ("+" + ",".join(f"{k}={v}" for k, v in changed.items()) if changed else "")
        log(f"config {label}: {asdict(cfg)}")
        settings = {
            **asdict(cfg),
            "per_round": args.per_round,
            "eval_prompts": args.eval_prompts,
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "noise": args.noise,
            "preset": args.preset,
            "seed": args.seed,
            "threads": args.threads,
            "worker": worker,
        }
        run_config(label, cfg, base, args, lambda r, s=settings: emit({**r, "settings": s}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What every training method shares: loading, LoRA, TrainingArguments, progress, artifacts."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..device import training_precision
from ..events import Emitter
from ..spec import JobSpec, SpecError, from_dict


@dataclass
class TrainContext:
    """One job in flight: its spec, rows, output folder and event sink."""

    spec: JobSpec
    emit: Emitter
    rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]] | None
    output_dir: Path
    started_at: float = field(default_factory=time.time)

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    @property
    def use_lora(self) -> bool:
        return self.spec.lora.enabled


def method_config(cls: type, spec: JobSpec):
    """The method's config dataclass, built from spec.method_config (strictly checked)."""
    return from_dict(cls, spec.method_config, f"spec.method_config ({spec.method})")


def chat_ids(tokenizer, conversations: list[list[dict[str, str]]], **kwargs) -> list[list[int]]:
    """Token ids of each conversation through the chat template, in one batched call."""
    encoded = tokenizer.apply_chat_template(conversations, tokenize=True, return_dict=True, **kwargs)
    return [list(ids) for ids in encoded["input_ids"]]


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        # Many chat models ship without a pad token; padding is masked out, so eos is safe.
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise SpecError(f"spec.base_model: the tokenizer at {path} has no chat template")
    return tokenizer


def _load_dtype(spec: JobSpec):
    """Frozen LoRA base weights can live in bf16 on a GPU; trained weights stay fp32 masters."""
    import torch

    flags = training_precision(spec.hyperparameters.precision)
    if flags["bf16"] and spec.lora.enabled:
        return torch.bfloat16
    return torch.float32


def load_causal_lm(spec: JobSpec, path: str | None = None):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path or spec.base_model, dtype=_load_dtype(spec))


def load_sequence_classifier(spec: JobSpec, tokenizer, path: str | None = None):
    """A one-logit head on the base model: the reward model's shape."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        path or spec.base_model, num_labels=1, dtype=_load_dtype(spec)
    )
    # The head reads the last non-pad token, so the model must know which id is padding.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def lora_config(spec: JobSpec, task_type: str = "CAUSAL_LM"):
    """The PEFT config for the job, or None for full fine-tuning."""
    if not spec.lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora.r,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        target_modules=spec.lora.target_modules,
        task_type=task_type,
    )


def common_args(ctx: TrainContext, default_learning_rate: float) -> dict[str, Any]:
    """Keyword arguments valid for TrainingArguments and every TRL config class."""
    hp = ctx.spec.hyperparameters
    return {
        "output_dir": str(ctx.checkpoint_dir),
        "seed": ctx.spec.seed,
        "data_seed": ctx.spec.seed,
        "learning_rate": hp.learning_rate if hp.learning_rate is not None else default_learning_rate,
        "num_train_epochs": hp.num_train_epochs,
        "max_steps": hp.max_steps,
        "per_device_train_batch_size": hp.per_device_train_batch_size,
        "per_device_eval_batch_size": hp.per_device_train_batch_size,
        "gradient_accumulation_steps": hp.gradient_accumulation_steps,
        "warmup_steps": hp.warmup_steps,
        "weight_decay": hp.weight_decay,
        "lr_scheduler_type": hp.lr_scheduler_type,
        "max_grad_norm": hp.max_grad_norm,
        "logging_steps": hp.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": hp.save_steps,
        "save_total_limit": hp.save_total_limit,
        "gradient_checkpointing": hp.gradient_checkpointing,
        "eval_strategy": "epoch" if ctx.eval_rows else "no",
        "report_to": "none",
        "disable_tqdm": True,
        **training_precision(hp.precision),
    }


def precompute_batch_size(ctx: TrainContext) -> int:
    """Batch size of the reference pass before training: no activations are kept for a backward
    pass, so it can be several training batches wide (fewer, fuller forward calls)."""
    return 4 * ctx.spec.hyperparameters.per_device_train_batch_size


def _scalar_logs(logs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class ProgressCallback(TrainerCallback):
    """Turns the Trainer's log calls into `progress` and `metrics` events (main process only)."""

    # Keys promoted to the top level of a progress event; the rest go under "metrics".
    TOP_LEVEL = ("loss", "learning_rate", "epoch", "grad_norm")

    def __init__(self, emit: Emitter) -> None:
        self.emit = emit
        self.start = time.monotonic()
        self.start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()
        self.start_step = state.global_step  # non-zero when resuming
        if state.is_world_process_zero:
            # How many ranks train together (accelerate launch), so a caller can tell DDP ran.
            self.emit(
                {
                    "type": "start",
                    "step": state.global_step,
                    "total": state.max_steps,
                    "processes": args.world_size,
                }
            )

    def _eta(self, state) -> float | None:
        done = state.global_step - self.start_step
        if done <= 0:
            return None
        per_step = (time.monotonic() - self.start) / done
        return round(per_step * max(0, state.max_steps - state.global_step), 1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        scalars = _scalar_logs(logs)
        if any(k.startswith("eval_") for k in scalars):
            self.emit({"type": "metrics", "split": "eval", "step": state.global_step, **scalars})
            return
        if "train_runtime" in scalars:  # the Trainer's end-of-training summary
            return
        event: dict[str, Any] = {
            "type": "progress",
            "step": state.global_step,
            "total": state.max_steps,
        }
        for key in self.TOP_LEVEL:
            if key in scalars:
                event[key] = scalars.pop(key)
        event["eta_s"] = self._eta(state)
        event["elapsed_s"] = round(time.monotonic() - self.start, 2)
        if scalars:
            event["metrics"] = scalars
        self.emit(event)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            self.emit({"type": "checkpoint", "step": state.global_step, "path": str(path)})


def resolve_resume(ctx: TrainContext) -> str | bool | None:
    """The checkpoint to resume from: the spec's path, the newest one (resume: true), or none."""
    resume = ctx.spec.resume
    if isinstance(resume, str):
        if not Path(resume).is_dir():
            raise SpecError(f"spec.resume: no checkpoint folder at {resume}")
        return resume
    if resume and ctx.checkpoint_dir.is_dir():
        from transformers.trainer_utils import get_last_checkpoint

        return get_last_checkpoint(str(ctx.checkpoint_dir))
    return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    names = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def build_manifest(
    ctx: TrainContext, method_cfg: Any, task: str, artifact: Path, metrics: dict[str, Any]
) -> dict[str, Any]:
    from ..data import resolve_dataset_file

    spec = ctx.spec
    dataset_file = resolve_dataset_file(spec.dataset)
    return {
        "schema": 1,
        "method": spec.method,
        "task": task,
        "kind": ("merged" if artifact.name == "merged" else "lora") if ctx.use_lora else "full",
        "artifact_path": str(artifact.resolve()),
        "adapter_path": str((ctx.output_dir / "adapter").resolve()) if ctx.use_lora else None,
        "base_model": str(Path(spec.base_model).resolve()),
        "dataset": {
            "path": str(dataset_file.resolve()),
            "sha256": file_sha256(dataset_file),
            "rows": len(ctx.rows),
        },
        "eval_rows": len(ctx.eval_rows) if ctx.eval_rows else 0,
        "seed": spec.seed,
        "hyperparameters": dataclasses.asdict(spec.hyperparameters),
        "lora": dataclasses.asdict(spec.lora) if ctx.use_lora else None,
        "method_config": dataclasses.asdict(method_cfg),
        "metrics": metrics,
        "versions": library_versions(),
        "started_at": _iso(ctx.started_at),
        "finished_at": _iso(time.time()),
        "metadata": spec.metadata,
    }

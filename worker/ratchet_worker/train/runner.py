"""Run one job spec end to end: rows in, checkpoints and an artifact with its manifest out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..data import load_rows, resolve_dataset_file
from ..events import Emitter
from ..spec import JobSpec
from . import method_module
from .common import (
    ProgressCallback,
    TrainContext,
    build_manifest,
    method_config,
    resolve_resume,
)


def _eval_rows(spec: JobSpec) -> list[dict[str, Any]] | None:
    """Rows from spec.eval_dataset, or from eval.jsonl beside train.jsonl in a dataset folder."""
    if spec.eval_dataset:
        return load_rows(spec.method, spec.eval_dataset, "eval")
    folder = Path(spec.dataset)
    if folder.is_dir() and (folder / "eval.jsonl").is_file():
        return load_rows(spec.method, folder, "eval")
    return None


def _save_artifact(trainer, ctx: TrainContext) -> Path:
    """The adapter (LoRA) or the whole model (full fine-tune), with the tokenizer beside it."""
    artifact = ctx.output_dir / ("adapter" if ctx.use_lora else "model")
    trainer.save_model(str(artifact))
    if trainer.is_world_process_zero() and trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(str(artifact))
    return artifact


def run_job(spec: JobSpec, emit: Emitter) -> dict[str, Any]:
    """Train per the spec; emits progress, metrics and artifacts events; returns the manifest."""
    from transformers import set_seed

    module = method_module(spec.method)
    cfg = method_config(module.Config, spec)
    rows = load_rows(spec.method, spec.dataset)
    ctx = TrainContext(
        spec=spec,
        emit=emit,
        rows=rows,
        eval_rows=_eval_rows(spec),
        output_dir=Path(spec.output_dir),
    )
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    emit(
        {
            "type": "job",
            "method": spec.method,
            "rows": len(rows),
            "dataset": str(resolve_dataset_file(spec.dataset)),
            "output_dir": str(ctx.output_dir),
        }
    )
    # Seeded before the model is built, so LoRA initialization and data order repeat.
    set_seed(spec.seed)
    trainer = module.build_trainer(ctx, cfg, [ProgressCallback(emit)])
    result = trainer.train(resume_from_checkpoint=resolve_resume(ctx))
    metrics: dict[str, Any] = dict(result.metrics)
    metrics["global_step"] = result.global_step
    if ctx.eval_rows:
        metrics.update(trainer.evaluate())
    artifact = _save_artifact(trainer, ctx)
    manifest = build_manifest(ctx, cfg, module.TASK, artifact, metrics)
    if trainer.is_world_process_zero():
        (ctx.output_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        emit({"type": "metrics", "split": "train", **metrics})
        emit({"type": "artifacts", "adapter_path": str(artifact.resolve()), "manifest": manifest})
    return manifest

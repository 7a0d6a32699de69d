"""Run one job spec end to end: rows in, checkpoints and an artifact with its manifest out."""

from __future__ import annotations

import gc
import json
import shutil
from contextlib import contextmanager
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


def _save_artifact(trainer, ctx: TrainContext, task: str) -> Path:
    """The adapter (LoRA) or the whole model (full fine-tune), with the tokenizer beside it.

    With `lora.merge` a causal LM's adapter is also folded into the base weights and saved as a
    full model in `merged/`, which becomes the artifact (the adapter stays beside it)."""
    artifact = ctx.output_dir / ("adapter" if ctx.use_lora else "model")
    trainer.save_model(str(artifact))
    if trainer.is_world_process_zero() and trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(str(artifact))
    if ctx.use_lora and ctx.spec.lora.merge and task == "causal_lm":
        artifact = _save_merged(trainer, ctx)
    return artifact


def _save_merged(trainer, ctx: TrainContext) -> Path:
    merged_dir = ctx.output_dir / "merged"
    model = trainer.accelerator.unwrap_model(trainer.model)
    merged = model.merge_and_unload()
    if trainer.is_world_process_zero():
        # Written beside and renamed into place, so a crash never leaves a half-saved model that a
        # later round would load as its base.
        partial = ctx.output_dir / "merged.partial"
        for stale in (partial, merged_dir):  # from an attempt that died before or after the rename
            shutil.rmtree(stale, ignore_errors=True)
        merged.save_pretrained(str(partial))
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(str(partial))
        partial.rename(merged_dir)
    return merged_dir


def _final_eval_metrics(trainer) -> dict[str, Any]:
    """The evaluation of the trained model: the one the last epoch's end already ran, if it ran
    after the last step (evaluating the same weights again costs a pass over the test split)."""
    history = trainer.state.log_history
    last = next((h for h in reversed(history) if any(k.startswith("eval_") for k in h)), None)
    if last is not None and last.get("step") == trainer.state.global_step:
        return {k: v for k, v in last.items() if k.startswith("eval_")}
    return trainer.evaluate()


@contextmanager
def _frozen_heap():
    """Training with the objects that exist before it (the libraries, the model, the dataset:
    hundreds of thousands) out of the garbage collector's sight: the Trainer runs a full
    collection as it starts (about 0.2 s here, a tenth of a small job) and the periodic ones during
    training would scan them all again, though none of them becomes garbage until the job ends."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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
    with _frozen_heap():
        result = trainer.train(resume_from_checkpoint=resolve_resume(ctx))
    metrics: dict[str, Any] = dict(result.metrics)
    metrics["global_step"] = result.global_step
    # A trainer given no eval set (rl: the test split has no reward to evaluate on) has none to report.
    if ctx.eval_rows and getattr(trainer, "eval_dataset", None) is not None:
        metrics.update(_final_eval_metrics(trainer))
    artifact = _save_artifact(trainer, ctx, module.TASK)
    manifest = build_manifest(ctx, cfg, module.TASK, artifact, metrics)
    if trainer.is_world_process_zero():
        (ctx.output_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        emit({"type": "metrics", "split": "train", **metrics})
        # `adapter_path` names the trained artifact (adapter or full fine-tune) as it always has;
        # a merged model is a different kind of artifact, a full model folder to serve or build on.
        path_key = "model_path" if manifest["kind"] == "merged" else "adapter_path"
        emit({"type": "artifacts", path_key: str(artifact.resolve()), "manifest": manifest})
    return manifest

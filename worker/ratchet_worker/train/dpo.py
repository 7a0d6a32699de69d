"""Direct preference optimization on (prompt, chosen, rejected) pairs (TRL DPOTrainer)."""

from __future__ import annotations

from dataclasses import dataclass

from .common import (
    TrainContext,
    common_args,
    load_causal_lm,
    load_tokenizer,
    lora_config,
    precompute_batch_size,
)

TASK = "causal_lm"
DEFAULT_LEARNING_RATE = 5e-5


@dataclass
class Config:
    beta: float = 0.1
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0
    # One inference pass of the reference model over the dataset before training (in large
    # batches, no autograd) instead of a reference forward in every step: the steps then run the
    # policy only. Costs the log-probs' memory (two floats per row); off for very large datasets
    # seen once, where the two are about even.
    precompute_ref_log_probs: bool = True


def build_trainer(ctx: TrainContext, cfg: Config, callbacks: list):
    from trl import DPOConfig, DPOTrainer

    from ..data import to_dataset

    args = DPOConfig(
        **common_args(ctx, DEFAULT_LEARNING_RATE),
        max_length=ctx.spec.hyperparameters.max_length,
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        label_smoothing=cfg.label_smoothing,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        precompute_ref_batch_size=precompute_batch_size(ctx),
    )
    # With LoRA the reference is the base with the adapter switched off, so no second copy;
    # for a full fine-tune TRL makes a frozen copy of the starting model.
    return DPOTrainer(
        model=load_causal_lm(ctx.spec),
        ref_model=None,
        args=args,
        train_dataset=to_dataset(ctx.rows),
        eval_dataset=to_dataset(ctx.eval_rows) if ctx.eval_rows else None,
        processing_class=load_tokenizer(ctx.spec.base_model),
        peft_config=lora_config(ctx.spec),
        callbacks=callbacks,
    )

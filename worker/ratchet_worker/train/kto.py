"""KTO on unpaired thumbs up/down (TRL KTOTrainer), with an optional per-row weight.

A row's "weight" (default 1) scales its loss: calibrated raters or confident judges can count
for more than a noisy click. TRL has per-class weights only, so a thin subclass turns them into
per-row tensors for each batch.
"""

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
    # Class weights; rebalance when thumbs up and thumbs down are far from 1:1.
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    loss_type: str = "kto"
    # As in dpo: the reference log-probs of each completion and of its mismatched KL completion
    # are computed once before training, so a step runs two policy forwards instead of four.
    precompute_ref_log_probs: bool = True


class _KeepWeight:
    """Wraps TRL's collator so the per-row weight reaches compute_loss as a tensor."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, examples):
        import torch

        batch = self.inner(examples)
        if "weight" in examples[0]:
            batch["weight"] = torch.tensor([float(e["weight"]) for e in examples])
        return batch


def _weighted_kto_trainer():
    from trl import KTOTrainer

    class WeightedKTOTrainer(KTOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.data_collator = _KeepWeight(self.data_collator)

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "weight" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "weight"]

        def _compute_loss(self, model, inputs, return_outputs):
            weights = inputs.pop("weight", None)
            if weights is None:
                return super()._compute_loss(model, inputs, return_outputs)
            labels = inputs["label"].bool().to(weights.device)
            base = (self.desirable_weight, self.undesirable_weight)
            device = self.accelerator.device
            # The parent multiplies the chosen / rejected loss vectors (in batch order) by these.
            self.desirable_weight = base[0] * weights[labels].to(device)
            self.undesirable_weight = base[1] * weights[~labels].to(device)
            try:
                return super()._compute_loss(model, inputs, return_outputs)
            finally:
                self.desirable_weight, self.undesirable_weight = base

    return WeightedKTOTrainer


def build_trainer(ctx: TrainContext, cfg: Config, callbacks: list):
    from trl import KTOConfig

    from ..data import to_dataset

    args = KTOConfig(
        **common_args(ctx, DEFAULT_LEARNING_RATE),
        max_length=ctx.spec.hyperparameters.max_length,
        beta=cfg.beta,
        desirable_weight=cfg.desirable_weight,
        undesirable_weight=cfg.undesirable_weight,
        loss_type=cfg.loss_type,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        precompute_ref_batch_size=precompute_batch_size(ctx),
    )
    return _weighted_kto_trainer()(
        model=load_causal_lm(ctx.spec),
        ref_model=None,
        args=args,
        train_dataset=to_dataset(ctx.rows),
        eval_dataset=to_dataset(ctx.eval_rows) if ctx.eval_rows else None,
        processing_class=load_tokenizer(ctx.spec.base_model),
        peft_config=lora_config(ctx.spec),
        callbacks=callbacks,
    )

"""Supervised fine-tuning on good answers (TRL SFTTrainer)."""

from __future__ import annotations

from dataclasses import dataclass

from .common import TrainContext, common_args, load_causal_lm, load_tokenizer, lora_config

TASK = "causal_lm"
DEFAULT_LEARNING_RATE = 2e-4


@dataclass
class Config:
    # {"messages"} rows: learn the assistant turns only (needs {% generation %} in the template).
    assistant_only_loss: bool = True
    # {"prompt", "completion"} rows: learn the completion only.
    completion_only_loss: bool = True
    # Pack several short rows into one sequence (faster on real data, changes the loss curve).
    packing: bool = False
    # Batch rows of similar length together (randomly within ~50-batch groups) so little of each
    # batch is padding; the rows seen per epoch are the same.
    group_by_length: bool = True


def build_trainer(ctx: TrainContext, cfg: Config, callbacks: list):
    from trl import SFTConfig, SFTTrainer

    from ..data import to_dataset

    is_messages = "messages" in ctx.rows[0]
    args = SFTConfig(
        **common_args(ctx, DEFAULT_LEARNING_RATE),
        max_length=ctx.spec.hyperparameters.max_length,
        assistant_only_loss=cfg.assistant_only_loss and is_messages,
        completion_only_loss=None if is_messages else cfg.completion_only_loss,
        packing=cfg.packing,
        train_sampling_strategy="group_by_length" if cfg.group_by_length and not cfg.packing else "random",
    )
    tokenizer = load_tokenizer(ctx.spec.base_model)
    return SFTTrainer(
        model=load_causal_lm(ctx.spec),
        args=args,
        train_dataset=to_dataset(ctx.rows),
        eval_dataset=to_dataset(ctx.eval_rows) if ctx.eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(ctx.spec),
        callbacks=callbacks,
    )

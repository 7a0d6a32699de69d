"""Reward model: a one-logit sequence classifier trained on preference pairs (TRL RewardTrainer).

The result scores a conversation; `serve` exposes it at /v1/score and `rl` uses it as the critic.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import TrainContext, common_args, load_sequence_classifier, load_tokenizer, lora_config

TASK = "reward_model"
DEFAULT_LEARNING_RATE = 1e-4


@dataclass
class Config:
    # Pulls the mean reward towards 0 so scores from different runs are comparable.
    center_rewards_coefficient: float = 0.01


def build_trainer(ctx: TrainContext, cfg: Config, callbacks: list):
    from trl import RewardConfig, RewardTrainer

    from ..data import to_dataset

    args = RewardConfig(
        **common_args(ctx, DEFAULT_LEARNING_RATE),
        max_length=ctx.spec.hyperparameters.max_length,
        center_rewards_coefficient=cfg.center_rewards_coefficient or None,
    )
    tokenizer = load_tokenizer(ctx.spec.base_model)
    # SEQ_CLS makes PEFT train and save the new score head next to the LoRA weights.
    return RewardTrainer(
        model=load_sequence_classifier(ctx.spec, tokenizer),
        args=args,
        train_dataset=to_dataset(ctx.rows),
        eval_dataset=to_dataset(ctx.eval_rows) if ctx.eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(ctx.spec, task_type="SEQ_CLS"),
        callbacks=callbacks,
    )

"""Rating-weighted SFT: Ratchet's own rating-aware loss, beside TRL's trainers.

Each row is (prompt, completion, reward) with reward in [-1, 1], e.g. a calibrated rating.
  reward > 0: likelihood, weighted by the reward:      r * mean_t -log p(y_t)
  reward < 0: unlikelihood, weighted by |reward|:    |r| * mean_t -log(1 - p(y_t))
  reward = 0: no signal.
Unlikelihood is bounded (it goes to 0 as p -> 0), so bad answers are pushed away without the
runaway that plain negative likelihood causes. The end-of-turn token is learned on positive rows
but never penalized on negative ones: a bad answer should not teach the model to stop ending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import TrainContext, common_args, load_causal_lm, load_tokenizer, lora_config

TASK = "causal_lm"
DEFAULT_LEARNING_RATE = 2e-4
IGNORE = -100


@dataclass
class Config:
    positive_scale: float = 1.0
    negative_scale: float = 1.0
    # Rows with |reward| below this are dropped: near-neutral ratings are mostly noise.
    min_abs_reward: float = 0.0
    # Guards log(1 - p) when the model is already certain of a token it should avoid.
    max_prob: float = 0.999
    # Batch rows of similar length together (see sft) so little of each batch is padding.
    group_by_length: bool = True


def tokenize_row(row: dict[str, Any], tokenizer, max_length: int) -> dict[str, Any] | None:
    """input_ids and labels (prompt masked); None when the prompt alone fills max_length."""
    prompt_ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
    full_ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)
    if hasattr(prompt_ids, "input_ids") or isinstance(prompt_ids, dict):  # BatchEncoding
        prompt_ids, full_ids = prompt_ids["input_ids"], full_ids["input_ids"]
    start = _common_prefix(prompt_ids, full_ids)
    if start >= max_length:
        return None
    completion = list(full_ids[start:])
    if row["reward"] < 0 and tokenizer.eos_token_id in completion:
        # Penalize the answer's content only, not the end-of-turn marker and what follows.
        completion = completion[: completion.index(tokenizer.eos_token_id)]
    elif tokenizer.eos_token_id in completion:
        completion = completion[: completion.index(tokenizer.eos_token_id) + 1]
    ids = (list(full_ids[:start]) + completion)[:max_length]
    labels = ([IGNORE] * start + completion)[:max_length]
    return {"input_ids": ids, "labels": labels, "reward": float(row["reward"])}


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class RatingCollator:
    """Right-pads a batch; carries the reward of each row."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        rewards = torch.tensor([r["reward"] for r in rows], dtype=torch.float32)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "reward": rewards}


def rating_weighted_loss(logits, labels, rewards, cfg: Config):
    """The loss and per-row mean token log-probabilities (for logging).

    Rows are length-normalized so a long rambling answer does not outweigh a short one.
    """
    import torch
    import torch.nn.functional as F

    shift_logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = (targets != IGNORE).float()
    token_logp = -F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        targets.clamp(min=0).reshape(-1),
        reduction="none",
    ).view(targets.shape)
    nll = -token_logp
    prob = token_logp.exp().clamp(max=cfg.max_prob)
    unlikelihood = -torch.log1p(-prob)
    positive = (rewards > 0).float().unsqueeze(1)
    per_token = positive * cfg.positive_scale * nll + (1 - positive) * cfg.negative_scale * unlikelihood
    tokens = mask.sum(1).clamp(min=1)
    per_row = (per_token * mask).sum(1) / tokens
    weights = rewards.abs() * (rewards.abs() >= cfg.min_abs_reward).float()
    loss = (weights * per_row).sum() / len(rewards)
    mean_logp = ((token_logp * mask).sum(1) / tokens).detach()
    return loss, mean_logp


def _rating_trainer_class():
    from transformers import Trainer

    class RatingWeightedTrainer(Trainer):
        def __init__(self, *args, rwsft_config: Config, **kwargs):
            super().__init__(*args, **kwargs)
            self.rwsft_config = rwsft_config
            # Our loss is already a mean over the batch; let the Trainer divide by the
            # accumulation steps instead of expecting a token-count-normalized model loss.
            self.model_accepts_loss_kwargs = False
            self._sums: dict[str, list[float]] = {}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            rewards = inputs.pop("reward")
            labels = inputs.pop("labels")
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            loss, mean_logp = rating_weighted_loss(outputs.logits, labels, rewards, self.rwsft_config)
            for name, selected in (("positive", rewards > 0), ("negative", rewards < 0)):
                if selected.any():
                    self._sums.setdefault(f"logps/{name}", []).append(mean_logp[selected].mean().item())
            return (loss, outputs) if return_outputs else loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            for key, values in self._sums.items():
                if values:
                    logs[key] = sum(values) / len(values)
            self._sums = {}
            super().log(logs, start_time)

    return RatingWeightedTrainer


def _tokenized(rows, tokenizer, cfg: Config, max_length: int):
    from ..data import to_dataset

    kept = []
    for row in rows:
        if abs(row["reward"]) < cfg.min_abs_reward:
            continue
        tokenized = tokenize_row(row, tokenizer, max_length)
        if tokenized is not None:
            kept.append(tokenized)
    if not kept:
        raise ValueError("rwsft: no row left after filtering (check min_abs_reward and max_length)")
    return to_dataset(kept)


def build_trainer(ctx: TrainContext, cfg: Config, callbacks: list):
    from transformers import TrainingArguments

    tokenizer = load_tokenizer(ctx.spec.base_model)
    max_length = ctx.spec.hyperparameters.max_length
    model = load_causal_lm(ctx.spec)
    peft = lora_config(ctx.spec)
    if peft is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft)
    args = TrainingArguments(
        **common_args(ctx, DEFAULT_LEARNING_RATE),
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
    )
    return _rating_trainer_class()(
        model=model,
        args=args,
        train_dataset=_tokenized(ctx.rows, tokenizer, cfg, max_length),
        eval_dataset=_tokenized(ctx.eval_rows, tokenizer, cfg, max_length) if ctx.eval_rows else None,
        processing_class=tokenizer,
        data_collator=RatingCollator(tokenizer.pad_token_id),
        callbacks=callbacks,
        rwsft_config=cfg,
    )

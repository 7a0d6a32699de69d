"""Online RL with the trained reward model as the critic (TRL GRPO or RLOO).

The policy samples `num_generations` answers per prompt, the reward model (a `reward` run's
adapter, or a full sequence-classification model) scores them, and the policy moves towards the
better ones relative to the group, with a KL penalty (`beta`) to the starting model. Optionally
the demo domain's rule-based judge (tiny/domain.json) is mixed in with `judge_weight`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..spec import SpecError
from .common import TrainContext, common_args, load_causal_lm, load_tokenizer, lora_config

TASK = "causal_lm"
DEFAULT_LEARNING_RATE = 1e-5


@dataclass
class Config:
    algorithm: str = "grpo"  # or "rloo"
    num_generations: int = 4
    max_completion_length: int = 96
    temperature: float = 1.0
    # KL penalty to the reference (the starting policy); 0 disables the reference pass.
    beta: float = 0.04
    # Weight of the domain judge's score beside the reward model's (weight 1); 0 = not used.
    judge_weight: float = 0.0


def load_reward_model(ctx: TrainContext, tokenizer):
    """The critic as a plain sequence classifier: a LoRA adapter is merged into its base."""
    from transformers import AutoModelForSequenceClassification

    path = Path(ctx.spec.reward_model or "")
    if not path.is_dir():
        raise SpecError(f"spec.reward_model: no folder at {path}")
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        base = AutoModelForSequenceClassification.from_pretrained(
            ctx.spec.reward_base_model or ctx.spec.base_model, num_labels=1
        )
        model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval()


def domain_judge_reward(prompts, completions, **_kwargs) -> list[float]:
    """The demo domain's rule judge: mean over the four axes, in [-1, 1]."""
    from ..tiny.domain import intent_of, judge

    scores = []
    for prompt, completion in zip(prompts, completions, strict=True):
        user = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
        answer = completion[-1]["content"] if isinstance(completion, list) else str(completion)
        scores.append(judge(answer, intent_of(user)).score)
    return scores


def build_trainer(ctx: TrainContext, cfg: Config, callbacks: list):
    from ..data import to_dataset

    if cfg.algorithm not in ("grpo", "rloo"):
        raise SpecError("spec.method_config.algorithm: must be grpo or rloo")
    hp = ctx.spec.hyperparameters
    if (hp.per_device_train_batch_size * hp.gradient_accumulation_steps) % cfg.num_generations:
        raise SpecError(
            "spec.hyperparameters.per_device_train_batch_size x gradient_accumulation_steps must be a "
            f"multiple of method_config.num_generations ({cfg.num_generations})"
        )
    tokenizer = load_tokenizer(ctx.spec.base_model)
    reward_funcs: list = [load_reward_model(ctx, tokenizer)]
    weights = [1.0]
    if cfg.judge_weight:
        reward_funcs.append(domain_judge_reward)
        weights.append(cfg.judge_weight)
    shared = {
        **common_args(ctx, DEFAULT_LEARNING_RATE),
        "num_generations": cfg.num_generations,
        "max_completion_length": cfg.max_completion_length,
        "temperature": cfg.temperature,
        "beta": cfg.beta,
        "reward_weights": weights,
        # A dataset's test split holds rated answers, not a reward to evaluate on: rl does not
        # evaluate per epoch (it would sample and score every test prompt), the loop's
        # evaluation stage judges its candidate.
        "eval_strategy": "no",
    }
    if cfg.algorithm == "grpo":
        from trl import GRPOConfig as ConfigClass
        from trl import GRPOTrainer as TrainerClass
    else:
        from trl import RLOOConfig as ConfigClass
        from trl import RLOOTrainer as TrainerClass
    return TrainerClass(
        model=load_causal_lm(ctx.spec),
        reward_funcs=reward_funcs,
        args=ConfigClass(**shared),
        train_dataset=to_dataset(ctx.rows),
        processing_class=tokenizer,
        reward_processing_classes=[tokenizer] * len(reward_funcs),
        peft_config=lora_config(ctx.spec),
        callbacks=callbacks,
    )

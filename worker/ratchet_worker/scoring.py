"""Log-probabilities of answers under a model: the measure behind preference margins.

Used by the tests and by evaluation: a model that learned from feedback gives the chosen answer
more log-probability, relative to the rejected one, than it did before.
"""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, str]]


def _ids(encoded: Any) -> list[int]:
    return list(encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded)


def completion_token_logprobs(model, tokenizer, prompt: Messages, completion: Messages) -> list[float]:
    """log p(token) of each of the completion's tokens (through its end-of-turn token), as the
    model's answer to the prompt under the chat template."""
    import torch

    prompt_ids = _ids(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True))
    full_ids = _ids(tokenizer.apply_chat_template(prompt + completion, tokenize=True))
    start = 0
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    end = len(full_ids)
    if tokenizer.eos_token_id in full_ids[start:]:
        end = full_ids.index(tokenizer.eos_token_id, start) + 1
    if start == 0 or end <= start:
        return []
    ids = torch.tensor([full_ids[:end]], device=model.device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    targets = ids[0, 1:]
    token_logp = logp.gather(1, targets.unsqueeze(1)).squeeze(1)
    return [float(x) for x in token_logp[start - 1 :].cpu()]


def completion_logprob(model, tokenizer, prompt: Messages, completion: Messages) -> float:
    """Sum of log p(token) over the completion's tokens (through its end-of-turn token)."""
    return sum(completion_token_logprobs(model, tokenizer, prompt, completion))


def preference_margin(model, tokenizer, pairs: list[dict[str, Any]]) -> float:
    """Mean over pairs of log p(chosen) - log p(rejected); pairs use the dpo row format."""
    total = 0.0
    for pair in pairs:
        chosen = completion_logprob(model, tokenizer, pair["prompt"], pair["chosen"])
        rejected = completion_logprob(model, tokenizer, pair["prompt"], pair["rejected"])
        total += chosen - rejected
    return total / len(pairs)


def load_policy(base: str, adapter: str | None = None):
    """A base model, with a LoRA adapter applied when given; (model, tokenizer), in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return model.eval(), tokenizer

"""Direct preference optimization on (prompt, chosen, rejected) pairs (TRL DPOTrainer).

The objective is TRL's sigmoid DPO loss, -log sigmoid(beta * ((log p(chosen) - ref) - (log p(rejected)
- ref))), each log-probability summed over the answer's tokens, the reference log-probabilities
computed once before training. What differs is how the work is laid out (as in reward.py):
- pairs packed with their prompt once: a pair is one row, prompt + chosen + (the prompt's last
  token again) + rejected, a 4-D attention mask letting each answer see the prompt and itself
  only, position ids continuing the prompt's in both, so each side's log-probability is that of
  its conversation alone while the prompt (most of a long conversation) is computed once. TRL
  pads chosen and rejected to a common width as 2 x batch rows, the prompt in each.
- length-grouped batches of pairs, the batches in random order;
- tokenization once, in batched calls, without a datasets.map pass; the reference pass runs
  over pairs sorted by length, so its batches carry little padding either.
Other loss types, and models whose attention ignores the mask (packing_is_exact), train on TRL's
layout (still tokenized once and length-grouped).
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from .common import (
    TrainContext,
    chat_ids,
    common_args,
    load_causal_lm,
    load_tokenizer,
    lora_config,
    precompute_batch_size,
)

TASK = "causal_lm"
DEFAULT_LEARNING_RATE = 5e-5
# Loss types computed on packed rows; the others (TRL's full list) train on TRL's layout.
PACKED_LOSSES = ("sigmoid",)


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
    # One row per pair (prompt + chosen, then prompt + rejected) instead of two padded rows; same
    # log-probabilities and loss (sigmoid loss only).
    pack_pairs: bool = True
    # Batch pairs of similar length together (random ~50-batch groups sorted by length inside),
    # the batches then in random order; the pairs seen per epoch are the same.
    group_by_length: bool = True


def tokenize_pairs(rows: list[dict[str, Any]], tokenizer, max_length: int | None) -> list[dict[str, Any]]:
    """prompt_ids / chosen_ids / rejected_ids per pair, as TRL's DPO tokenizes them: the chat
    template over the prompt (with the generation prompt) and over prompt + answer, the answer
    starting where the two diverge. With max_length each conversation is cut to it (TRL's
    keep_start truncation) and pairs whose prompt fills it are dropped, as TRL does."""
    from trl.data_utils import common_prefix_length

    prompts = chat_ids(tokenizer, [r["prompt"] for r in rows], add_generation_prompt=True)
    chosen = chat_ids(tokenizer, [r["prompt"] + r["chosen"] for r in rows])
    rejected = chat_ids(tokenizer, [r["prompt"] + r["rejected"] for r in rows])
    out = []
    for p, c, r in zip(prompts, chosen, rejected, strict=True):
        n = min(common_prefix_length(p, c), common_prefix_length(p, r))
        if max_length is not None:
            if n >= max_length:
                continue
            c, r = c[:max_length], r[:max_length]
        out.append({"prompt_ids": p[:n], "chosen_ids": c[n:], "rejected_ids": r[n:]})
    if not out:
        raise ValueError(f"dpo: every prompt is longer than max_length ({max_length} tokens)")
    return out


def packed_width(pair: dict[str, Any]) -> int:
    """A packed pair's width: the prompt once, the chosen answer, the prompt's last token again
    (it predicts the rejected answer's first token), the rejected answer."""
    prompt = len(pair["prompt_ids"])
    return prompt + len(pair["chosen_ids"]) + min(prompt, 1) + len(pair["rejected_ids"])


# Segments of a packed row: the shared prompt (all but its last token), the chosen branch (the
# prompt's last token + chosen), the rejected branch (that token again + rejected), padding.
SHARED, CHOSEN, REJECTED, PADDING = 0, 1, 2, 3


class PackedPairCollator:
    """Each pair as one right-padded row that holds its prompt once: prompt + chosen + (the
    prompt's last token) + rejected, then padding. A 4-D attention mask lets each branch see the
    shared prompt and itself only, and its position ids continue the prompt's, so each answer is
    scored exactly as its conversation run alone, while the prompt, most of a long conversation,
    is computed once per pair instead of twice (TRL: two padded rows). `side` marks the answer
    tokens: 1 chosen, 2 rejected, 0 prompt and padding. `num_tokens` counts both conversations'
    real tokens, as TRL's two rows do (for the Trainer's token metric)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(packed_width(e) for e in examples)
        ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        positions = torch.zeros((len(examples), width), dtype=torch.long)
        side = torch.zeros((len(examples), width), dtype=torch.long)
        segment = torch.full((len(examples), width), PADDING, dtype=torch.long)
        real = 0
        for i, e in enumerate(examples):
            p, c, r = e["prompt_ids"], e["chosen_ids"], e["rejected_ids"]
            shared, last = p[:-1], p[-1:]
            a, b = len(shared), len(shared) + len(last) + len(c)  # where each branch starts
            n = packed_width(e)
            ids[i, :n] = torch.tensor(p + c + last + r)
            positions[i, :b] = torch.arange(b)
            positions[i, b:n] = torch.arange(a, a + n - b)
            positions[i, n:] = torch.arange(width - n)
            segment[i, :a], segment[i, a:b], segment[i, b:n] = SHARED, CHOSEN, REJECTED
            side[i, b - len(c) : b] = 1
            side[i, n - len(r) : n] = 2
            real += 2 * len(p) + len(c) + len(r)
        batch = {
            "input_ids": ids,
            "position_ids": positions,
            "attention_mask": branch_mask(segment),
            "side": side,
            "num_tokens": torch.tensor(real),
        }
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            if key in examples[0]:
                batch[key] = torch.tensor([e[key] for e in examples], dtype=torch.float)
        return batch


def branch_mask(segment):
    """(batch, 1, width, width) booleans, True where a query may attend a key: causal, and the key
    is in the shared prompt or in the query's own segment (padding sees the prompt and padding)."""
    import torch

    width = segment.size(1)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    same = segment[:, :, None] == segment[:, None, :]
    return ((same | (segment == SHARED)[:, None, :]) & causal)[:, None]


def _model_mask(model, mask):
    """The boolean mask in the form the model's attention takes: booleans for SDPA, an additive
    float mask for eager attention (which adds it to the scores)."""
    import torch

    if getattr(model.config, "_attn_implementation", "sdpa") != "eager":
        return mask
    dtype = next(model.parameters()).dtype
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def packed_log_probs(model, batch: dict[str, Any]):
    """Summed log-probabilities of each row's chosen and rejected answer, from one forward pass
    through TRL's fused LM head (per-token log-probs without the full logits)."""
    side = batch["side"]
    labels = batch["input_ids"].masked_fill(side == 0, -100)
    out = model(
        input_ids=batch["input_ids"],
        position_ids=batch["position_ids"],
        attention_mask=_model_mask(model, batch["attention_mask"]),
        labels=labels,
        fused_lm_head=True,
        use_cache=False,
    )
    # Position j predicts token j + 1, so the answer marks shift by one: the chosen answer's first
    # token from the prompt's last, the rejected answer's from that token's copy.
    token_logps, shifted = out.log_probs, side[:, 1:]
    return (token_logps * (shifted == 1)).sum(dim=1), (token_logps * (shifted == 2)).sum(dim=1)


def reference_context(trainer):
    """With LoRA the reference is the base with the adapter off (or a "ref" adapter)."""
    from accelerate.utils import is_peft_model
    from trl.trainer.utils import use_adapter

    if trainer.ref_model is None and is_peft_model(trainer.model):
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        return use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
    return nullcontext()


def packed_reference_log_probs(trainer, pairs: list[dict[str, Any]], batch_size: int, collate):
    """The reference's summed log-probabilities of each pair's two answers, from packed rows
    without autograd, over batches of pairs sorted by width (so each carries little padding);
    returned in the pairs' order."""
    import torch

    order = sorted(range(len(pairs)), key=lambda i: packed_width(pairs[i]))
    first, second = torch.zeros(len(pairs)), torch.zeros(len(pairs))
    device = trainer.accelerator.device
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate([pairs[i] for i in idx]).items()}
        with torch.no_grad(), reference_context(trainer), trainer.accelerator.autocast():
            a, b = packed_log_probs(trainer.ref_model or trainer.model, batch)
        first[idx], second[idx] = a.float().cpu(), b.float().cpu()
    return first, second


def packing_is_exact(model, pad_token_id: int) -> bool:
    """Whether this model keeps a packed pair's branches apart: a packed pair's logits against the
    two conversations run alone. Attention implementations that ignore a custom 4-D mask (or the
    position ids) would let the rejected answer see the chosen one; those train unpacked."""
    import torch

    ids = [i for i in range(1, 16) if i != pad_token_id][:9]
    pair = {"prompt_ids": ids[:2], "chosen_ids": ids[2:5], "rejected_ids": ids[5:]}
    batch = PackedPairCollator(pad_token_id)([pair])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(
                input_ids=batch["input_ids"].to(device),
                position_ids=batch["position_ids"].to(device),
                attention_mask=_model_mask(model, batch["attention_mask"].to(device)),
                use_cache=False,
            ).logits[0].float()
            chosen, rejected = (
                model(input_ids=torch.tensor([pair["prompt_ids"] + pair[key]], device=device), use_cache=False)
                .logits[0]
                .float()
                for key in ("chosen_ids", "rejected_ids")
            )
    finally:
        model.train(was_training)
    # The packed row holds the chosen conversation whole, then the rejected one from the prompt's last token.
    alone = torch.cat([chosen, rejected[len(pair["prompt_ids"]) - 1 :]])
    rtol = 1e-3 if next(model.parameters()).dtype == torch.float32 else 2e-2  # bf16 rounds more
    return torch.allclose(packed[: packed_width(pair)], alone, rtol=rtol, atol=1e-4)


def _dpo_trainer_class():
    import torch
    import torch.nn.functional as F
    from accelerate.utils import is_peft_model
    from trl import DPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    from .batching import shuffled_length_grouped_sampler

    class PackedDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer on pre-tokenized pairs, length-grouped and, when packing, one row per pair."""

        def __init__(self, *args, dpo_config: Config, **kwargs):
            # Set before TRL's __init__, which runs the reference pass (_precompute_ref_logps).
            self.dpo_config = dpo_config
            self._log_probs_only = False
            super().__init__(*args, **kwargs)
            self._use_log_probs_only_head()

        def _use_log_probs_only_head(self):
            """TRL's fused LM head also computes entropy, mean logits and top-1 hits per token for
            its logging metrics; packed, we log the reward metrics only, so the head computes the
            log-probs alone (about 40% less head work per token on the tiny model)."""
            if not self.dpo_config.pack_pairs or self._log_probs_only:
                return
            model = self.accelerator.unwrap_model(self.model)
            add_fused_lm_head(model.get_base_model() if is_peft_model(model) else model, outputs=("log_probs",))
            self._log_probs_only = True

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            # Tokenized by tokenize_pairs already (TRL's over-long-prompt filter included).
            return dataset

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if not self.dpo_config.group_by_length:
                return super()._get_train_sampler(train_dataset)
            pairs = zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"], strict=True)
            # The padded width a pair costs: its packed row, or the longer conversation unpacked.
            if self.dpo_config.pack_pairs:
                widths = [packed_width({"prompt_ids": p, "chosen_ids": c, "rejected_ids": r}) for p, c, r in pairs]
            else:
                widths = [len(p) + max(len(c), len(r)) for p, c, r in pairs]
            return shuffled_length_grouped_sampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps, widths
            )

        def _reference_log_probs(self, batch):
            with torch.no_grad(), reference_context(self), self.accelerator.autocast():
                return packed_log_probs(self.ref_model or self.model, batch)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if not self.dpo_config.pack_pairs or self.is_deepspeed_enabled:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            self._use_log_probs_only_head()
            chosen, rejected = packed_reference_log_probs(self, dataset.to_list(), batch_size, self.data_collator)
            dataset = dataset.add_column("ref_chosen_logps", chosen.tolist())
            return dataset.add_column("ref_rejected_logps", rejected.tolist())

        def _compute_loss(self, model, inputs, return_outputs):
            if not self.dpo_config.pack_pairs:
                return super()._compute_loss(model, inputs, return_outputs)
            mode = "train" if self.model.training else "eval"
            chosen_logps, rejected_logps = packed_log_probs(model, inputs)
            if "ref_chosen_logps" in inputs:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_chosen, ref_rejected = self._reference_log_probs(inputs)
            # TRL's sigmoid loss (dpo_trainer._compute_loss, reverse KL, no weighting), term for term.
            chosen_logratios = chosen_logps - ref_chosen
            rejected_logratios = rejected_logps - ref_rejected
            loss = -F.logsigmoid(self.beta * (chosen_logratios - rejected_logratios)).mean()
            self._record(mode, inputs["num_tokens"], chosen_logratios, rejected_logratios, chosen_logps, rejected_logps)
            return (loss, {"chosen_logps": chosen_logps, "rejected_logps": rejected_logps}) if return_outputs else loss

        def _record(self, mode, num_tokens, chosen_logratios, rejected_logratios, chosen_logps, rejected_logps):
            """TRL's reward and log-prob metrics, from the same quantities."""
            if mode == "train":
                gathered = self.accelerator.gather_for_metrics(num_tokens).sum().item()
                self._total_train_tokens += gathered // self._tp_size
            metrics = self._metrics[mode]
            metrics["num_tokens"] = [self._total_train_tokens]
            with torch.no_grad():
                chosen_rewards = self.beta * chosen_logratios.detach()
                rejected_rewards = self.beta * rejected_logratios.detach()
                gather = self.accelerator.gather
                metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
                metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
                metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
                metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
                metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
                metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            if not self.dpo_config.pack_pairs:
                return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
            # The loss only: TRL's would recompute full logits in an extra forward for compute_metrics.
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad(), self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs)
            return loss.detach(), None, None

    return PackedDPOTrainer


def build_trainer(ctx: TrainContext, cfg: Config, callbacks: list):
    from trl import DPOConfig
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from ..data import to_dataset

    max_length = ctx.spec.hyperparameters.max_length
    tokenizer = load_tokenizer(ctx.spec.base_model)
    model = load_causal_lm(ctx.spec)
    if cfg.pack_pairs and cfg.loss_type not in PACKED_LOSSES:
        logging.getLogger(__name__).info("dpo: loss_type %s trains on TRL's unpacked layout", cfg.loss_type)
        cfg = dataclasses.replace(cfg, pack_pairs=False)
    elif cfg.pack_pairs and not packing_is_exact(model, tokenizer.pad_token_id):
        logging.getLogger(__name__).warning("dpo: this model cannot score packed pairs; training unpacked")
        cfg = dataclasses.replace(cfg, pack_pairs=False)
    args = DPOConfig(
        **common_args(ctx, DEFAULT_LEARNING_RATE),
        max_length=max_length,
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        label_smoothing=cfg.label_smoothing,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        precompute_ref_batch_size=precompute_batch_size(ctx),
    )
    collator = (
        PackedPairCollator(tokenizer.pad_token_id)
        if cfg.pack_pairs
        else DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id, max_length=max_length)
    )

    def dataset(rows):
        return to_dataset(tokenize_pairs(rows, tokenizer, max_length))

    # With LoRA the reference is the base with the adapter switched off, so no second copy;
    # for a full fine-tune TRL makes a frozen copy of the starting model.
    return _dpo_trainer_class()(
        model=model,
        ref_model=None,
        args=args,
        # Already tokenized (prompt_ids / chosen_ids / rejected_ids): TRL's datasets.map is skipped.
        train_dataset=dataset(ctx.rows),
        eval_dataset=dataset(ctx.eval_rows) if ctx.eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(ctx.spec),
        data_collator=collator,
        callbacks=callbacks,
        dpo_config=cfg,
    )

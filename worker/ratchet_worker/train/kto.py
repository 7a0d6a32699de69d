"""KTO on unpaired thumbs up/down (TRL KTOTrainer), with an optional per-row weight.

The objective is TRL's: a desirable row's loss is 1 - sigmoid(beta * (log-ratio - z)), an
undesirable row's 1 - sigmoid(beta * (z - log-ratio)), where the log-ratio is the completion's
summed log-probability under the policy minus the reference's, and z, the batch's KL estimate, is
the mean log-ratio of mismatched (prompt, another row's completion) pairs, detached and clamped at
0 (loss_type "kto"); "apo_zero_unpaired" has no z. A row's "weight" (default 1) scales its loss:
calibrated raters or confident judges can count for more than a noisy click (TRL has per-class
weights only). What differs from TRL is how the work is laid out (as in dpo.py):
- fixed batches of similar length. TRL runs the dataset in its stored order (sequential
  sampling), because each row's mismatched completion is its neighbor's within a fixed batch and
  the reference log-probs of those pairs are computed before training. Here the batches are fixed
  the same way (the completions rotated by one within each batch), but formed from rows of
  similar length, and their order is shuffled every epoch;
- tokenization once, in batched calls, without a datasets.map pass;
- the reference pass scores a row's completion and its mismatched completion in one packed row
  (prompt + completion, then prompt + mismatched completion, as dpo packs pairs), over rows
  sorted by length;
- the steps' LM head computes the log-probs alone, and only the loss's metrics are logged (TRL
  also computes entropy and mean logits per token for its logging).
"""

from __future__ import annotations

import logging
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
LOSS_TYPES = ("kto", "apo_zero_unpaired")
# Rows per length group when forming batches (Transformers' LengthGroupedSampler uses 50 batches).
GROUP_BATCHES = 50


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
    # Form the fixed batches from rows of similar length (random groups of ~50 batches, sorted by
    # length inside); off: batches of rows in random order. Either way the batch order is
    # shuffled every epoch.
    group_by_length: bool = True


def tokenize_rows(rows: list[dict[str, Any]], tokenizer, max_length: int | None) -> list[dict[str, Any]]:
    """prompt_ids / completion_ids / label / weight per row, as TRL's KTO tokenizes them: the chat
    template over the prompt (with the generation prompt) and over prompt + completion, the
    completion starting where the two diverge; cut to max_length (TRL's keep_start truncation),
    rows whose prompt fills it dropped, as TRL does."""
    from trl.data_utils import common_prefix_length

    prompts = chat_ids(tokenizer, [r["prompt"] for r in rows], add_generation_prompt=True)
    full = chat_ids(tokenizer, [r["prompt"] + r["completion"] for r in rows])
    out = []
    for row, p, f in zip(rows, prompts, full, strict=True):
        n = common_prefix_length(p, f)
        if max_length is not None:
            if n >= max_length:
                continue
            f = f[:max_length]
        weight = row.get("weight")
        out.append(
            {
                "prompt_ids": p[:n],
                "completion_ids": f[n:],
                "label": bool(row["label"]),
                "weight": 1.0 if weight is None else float(weight),
            }
        )
    if not out:
        raise ValueError(f"kto: every prompt is longer than max_length ({max_length} tokens)")
    return out


def fixed_batches(
    examples: list[dict[str, Any]], batch_size: int, seed: int, group_by_length: bool
) -> list[list[int]]:
    """Indices of the fixed batches, every batch full but the last: a seeded random order, cut
    into groups of GROUP_BATCHES batches. Grouped by length, each group's desirable and
    undesirable rows are each sorted by length and dealt out together in proportion, so a batch
    holds rows of similar length and both labels in the group's ratio: sorting the rows by length
    alone would make batches of one label wherever good and bad answers differ in length (as they
    often do), and a batch of one label has no contrast to learn from."""
    import torch

    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    if group_by_length:
        group = GROUP_BATCHES * batch_size
        order = [i for s in range(0, len(order), group) for i in _by_length_per_label(examples, order[s : s + group])]
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def _by_length_per_label(examples: list[dict[str, Any]], indices: list[int]) -> list[int]:
    def width(i: int) -> int:
        return len(examples[i]["prompt_ids"]) + len(examples[i]["completion_ids"])

    sides = [sorted((i for i in indices if examples[i]["label"] == label), key=width, reverse=True) for label in (True, False)]
    out, taken = [], [0, 0]
    while len(out) < len(indices):
        # The label that is furthest behind its share of the rows dealt so far goes next.
        pick = min((0, 1), key=lambda k: (taken[k] + 0.5) / len(sides[k]) if taken[k] < len(sides[k]) else 2.0)
        out.append(sides[pick][taken[pick]])
        taken[pick] += 1
    return out


def with_kl_completions(
    examples: list[dict[str, Any]], batches: list[list[int]], max_length: int | None
) -> list[dict[str, Any]]:
    """The rows in batch order, each with its mismatched completion: the next row's within its
    batch (TRL's rotation by one). A batch of one row borrows the completion of a row of the
    batch before, so that no row is matched with its own completion."""
    out = []
    for b, batch in enumerate(batches):
        partners = batch[1:] + batch[:1] if len(batch) > 1 or b == 0 else [batches[b - 1][0]]
        for i, j in zip(batch, partners, strict=True):
            row = dict(examples[i])
            kl = examples[j]["completion_ids"]
            if max_length is not None:
                kl = kl[: max(0, max_length - len(row["prompt_ids"]))]
            row["KL_completion_ids"] = kl
            out.append(row)
    return out


class _FixedBatchSampler:
    """Yields the rows of each fixed batch together, the full batches in a new random order every
    epoch (torch's global generator, which the Trainer seeds and restores on resume), the short
    last batch last so that the DataLoader's chunks of batch_size stay the fixed batches."""

    def __init__(self, num_rows: int, batch_size: int) -> None:
        self.num_rows, self.batch_size = num_rows, batch_size

    def __len__(self) -> int:
        return self.num_rows

    def __iter__(self):
        import torch

        full = self.num_rows // self.batch_size
        for b in torch.randperm(full).tolist():
            yield from range(b * self.batch_size, (b + 1) * self.batch_size)
        yield from range(full * self.batch_size, self.num_rows)


class _KeepWeight:
    """Wraps TRL's collator so the per-row weight reaches the loss as a tensor."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, examples):
        import torch

        batch = self.inner(examples)
        batch["weight"] = torch.tensor([float(e.get("weight", 1.0)) for e in examples])
        return batch


def _kto_trainer_class():
    import torch
    import torch.nn.functional as F
    from accelerate.utils import is_peft_model
    from trl import KTOTrainer
    from trl.trainer.utils import add_fused_lm_head

    from .dpo import PackedPairCollator, packed_reference_log_probs, reference_context

    class FixedBatchKTOTrainer(KTOTrainer):
        """TRL's KTOTrainer on pre-tokenized rows in fixed length-grouped batches, with row weights."""

        def __init__(self, *args, kto_config: Config, packed_reference: bool, **kwargs):
            # Set before TRL's __init__, which runs the reference pass (_precompute_ref_logps).
            self.kto_config = kto_config
            self._packed_reference = packed_reference
            self._log_probs_only = False
            super().__init__(*args, **kwargs)
            self.data_collator = _KeepWeight(self.data_collator)
            self._use_log_probs_only_head()

        def _use_log_probs_only_head(self):
            if self._log_probs_only:
                return
            model = self.accelerator.unwrap_model(self.model)
            add_fused_lm_head(model.get_base_model() if is_peft_model(model) else model, outputs=("log_probs",))
            self._log_probs_only = True

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "weight" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "weight"]

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            # Tokenized, batched and given its KL completions by build_trainer already.
            return dataset

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return _FixedBatchSampler(len(dataset), self.args.per_device_train_batch_size)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if not (self._packed_reference and self.calculate_KL) or self.is_deepspeed_enabled:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            self._use_log_probs_only_head()
            # A row's completion and its KL completion score as a pair's two answers do.
            pairs = [
                {"prompt_ids": r["prompt_ids"], "chosen_ids": r["completion_ids"], "rejected_ids": r["KL_completion_ids"]}
                for r in dataset.select_columns(["prompt_ids", "completion_ids", "KL_completion_ids"]).to_list()
            ]
            collate = PackedPairCollator(self._tokenizer.pad_token_id)
            ref, ref_kl = packed_reference_log_probs(self, pairs, batch_size, collate)
            dataset = dataset.add_column("ref_logps", ref.tolist())
            return dataset.add_column("ref_KL_logps", ref_kl.tolist())

        @staticmethod
        def _completion_log_probs(model, batch, prefix: str = ""):
            """Summed log-probability of each row's completion (or, with prefix "KL_", its mismatched one)."""
            ids = batch[f"{prefix}input_ids"]
            labels = ids.masked_fill(batch[f"{prefix}completion_mask"] == 0, -100)
            out = model(
                input_ids=ids,
                attention_mask=batch[f"{prefix}attention_mask"],
                labels=labels,
                fused_lm_head=True,
                use_cache=False,
            )
            # Prompt-learning PEFT prepends virtual tokens to the outputs; keep the real positions.
            return out.log_probs[:, -(ids.size(1) - 1) :].sum(-1)

        def _reference_log_probs(self, batch):
            with torch.no_grad(), reference_context(self):
                model = self.ref_model or self.model
                kl = self._completion_log_probs(model, batch, "KL_") if self.calculate_KL else None
                return self._completion_log_probs(model, batch), kl

        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            device = self.accelerator.device
            batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
            kl_logps = None
            if self.calculate_KL:
                with torch.no_grad():
                    kl_logps = self._completion_log_probs(model, batch, "KL_")
            logps = self._completion_log_probs(model, batch)
            if self.precompute_ref_logps:
                ref_logps, ref_kl_logps = batch["ref_logps"], batch.get("ref_KL_logps")
            else:
                ref_logps, ref_kl_logps = self._reference_log_probs(batch)

            chosen = batch["label"].bool().to(logps.device)
            logratios = logps - ref_logps
            if self.calculate_KL:
                kl = self.accelerator.gather_for_metrics((kl_logps - ref_kl_logps).mean().detach()).mean().clamp(min=0)
            else:
                kl = torch.zeros((), device=logps.device)
            # TRL's losses (kto_trainer._compute_loss), term for term, times each row's weight.
            if self.loss_type == "kto":
                row_losses = torch.where(
                    chosen,
                    1 - F.sigmoid(self.beta * (logratios - kl)),
                    1 - F.sigmoid(self.beta * (kl - logratios)),
                )
            else:  # apo_zero_unpaired
                row_losses = torch.where(
                    chosen, 1 - F.sigmoid(self.beta * logratios), F.sigmoid(self.beta * logratios)
                )
            class_weight = torch.where(chosen, self.desirable_weight, self.undesirable_weight).to(row_losses)
            loss = (row_losses * class_weight * batch["weight"].to(row_losses)).mean()
            self._record(mode, batch, chosen, logps, logratios, kl)
            return (loss, {"logps": logps}) if return_outputs else loss

        def _record(self, mode, batch, chosen, logps, logratios, kl):
            """TRL's kl, reward and log-prob metrics, from the same quantities."""
            metrics = self._metrics[mode]
            gather = self.accelerator.gather_for_metrics
            if mode == "train":
                self._total_train_tokens += gather(batch["attention_mask"].sum()).sum().item() // self._tp_size
            metrics["num_tokens"] = [self._total_train_tokens]
            metrics["kl"].append(kl.item())
            rewards = self.beta * logratios.detach()
            means = {}
            for side, mask in (("chosen", chosen), ("rejected", ~chosen)):
                count = gather(mask.sum()).sum().item()
                if count > 0:
                    means[side] = gather(rewards[mask].sum()).sum().item() / count
                    metrics[f"rewards/{side}"].append(means[side])
                    metrics[f"logps/{side}"].append(gather(logps.detach()[mask].sum()).sum().item() / count)
            if len(means) == 2:
                metrics["rewards/margins"].append(means["chosen"] - means["rejected"])

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            # The loss only: TRL's would recompute full logits in an extra forward for compute_metrics.
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad(), self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs)
            return loss.detach(), None, None

    return FixedBatchKTOTrainer


def build_trainer(ctx: TrainContext, cfg: Config, callbacks: list):
    from trl import KTOConfig

    from ..data import to_dataset
    from .dpo import packing_is_exact

    if cfg.loss_type not in LOSS_TYPES:
        raise ValueError(f"kto: loss_type must be one of {', '.join(LOSS_TYPES)}, got {cfg.loss_type!r}")
    hp = ctx.spec.hyperparameters
    tokenizer = load_tokenizer(ctx.spec.base_model)
    model = load_causal_lm(ctx.spec)
    packed_reference = packing_is_exact(model, tokenizer.pad_token_id)
    if not packed_reference:
        logging.getLogger(__name__).warning("kto: this model cannot score packed rows; reference pass unpacked")
    args = KTOConfig(
        **common_args(ctx, DEFAULT_LEARNING_RATE),
        max_length=hp.max_length,
        beta=cfg.beta,
        desirable_weight=cfg.desirable_weight,
        undesirable_weight=cfg.undesirable_weight,
        loss_type=cfg.loss_type,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        precompute_ref_batch_size=precompute_batch_size(ctx),
        # TRL's check for the KL pairing; the sampler is ours (fixed batches, shuffled order).
        train_sampling_strategy="sequential",
    )

    def dataset(rows):
        examples = tokenize_rows(rows, tokenizer, hp.max_length)
        batches = fixed_batches(examples, hp.per_device_train_batch_size, ctx.spec.seed, cfg.group_by_length)
        return to_dataset(with_kl_completions(examples, batches, hp.max_length))

    # With LoRA the reference is the base with the adapter switched off, so no second copy.
    return _kto_trainer_class()(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=dataset(ctx.rows),
        eval_dataset=dataset(ctx.eval_rows) if ctx.eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(ctx.spec),
        callbacks=callbacks,
        kto_config=cfg,
        packed_reference=packed_reference,
    )

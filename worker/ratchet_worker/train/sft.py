"""Supervised fine-tuning on good answers (TRL SFTTrainer).

The loss is TRL's (negative log-likelihood of the assistant turns or completion, averaged over
their tokens). Two things differ: batches of rows of similar length (see Config), and, unless
token_metrics is set, an LM head that computes the log-probabilities alone: TRL's also computes
each token's entropy and whether the top token is the label, for its `entropy` and
`mean_token_accuracy` logs, on every training step."""

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
    # Log TRL's per-token entropy and mean_token_accuracy too (extra head work on every step).
    token_metrics: bool = False


def _sft_trainer_class():
    import torch
    from accelerate.utils import is_peft_model
    from trl import SFTTrainer
    from trl.trainer.utils import add_fused_lm_head

    class LossOnlySFTTrainer(SFTTrainer):
        """TRL's SFTTrainer whose steps compute the loss and the token count only, when its loss is
        the plain likelihood; with DFT, label smoothing, a custom loss, MoE auxiliary losses or
        sequence parallelism TRL's own compute_loss runs, with its full head."""

        def __init__(self, *args, sft_config: Config, **kwargs):
            super().__init__(*args, **kwargs)
            self._loss_only = not sft_config.token_metrics and self._plain_likelihood()
            if self._loss_only:
                model = self.accelerator.unwrap_model(self.model)
                add_fused_lm_head(model.get_base_model() if is_peft_model(model) else model, outputs=("log_probs",))

        def _plain_likelihood(self) -> bool:
            parallelism = getattr(self.accelerator, "parallelism_config", None)
            return (
                self.args.loss_type == "nll"
                and self.compute_loss_func is None
                and self.label_smoother is None
                and not self.aux_loss_enabled
                and not (parallelism is not None and getattr(parallelism, "sp_enabled", False))
            )

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self._loss_only or return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            outputs = model(**{**inputs, "use_cache": False}, fused_lm_head=True)
            # As TRL's: summed token NLL over the batch's (or, with accumulation, the step's) label tokens.
            num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = -outputs.log_probs.sum() / torch.as_tensor(num_tokens).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            if mode == "train":
                if "attention_mask" in inputs:
                    local = inputs["attention_mask"].sum()
                else:  # padding-free rows carry position ids instead
                    local = torch.tensor(inputs["position_ids"].size(1), device=inputs["position_ids"].device)
                self._total_train_tokens += self.accelerator.gather_for_metrics(local).sum().item() // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return LossOnlySFTTrainer


def build_trainer(ctx: TrainContext, cfg: Config, callbacks: list):
    from trl import SFTConfig

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
    return _sft_trainer_class()(
        model=load_causal_lm(ctx.spec),
        args=args,
        train_dataset=to_dataset(ctx.rows),
        eval_dataset=to_dataset(ctx.eval_rows) if ctx.eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(ctx.spec),
        callbacks=callbacks,
        sft_config=cfg,
    )

"""The dpo trainer's faster layout computes TRL's log-probabilities and loss: same tokens, and one
packed row per pair scores each answer as the conversation run alone (and as TRL's two padded
rows) does."""

from __future__ import annotations

import pytest
import torch
from conftest import padded_cells, random_order, trl_tokenized


def _build(tmp_path, tiny_model, rows, method_config):
    from conftest import build_trainer

    return build_trainer(tmp_path, tiny_model, "dpo", rows, method_config)


def _alone_log_probs(model, pair, side: str) -> torch.Tensor:
    """Summed log-probability of one answer with its conversation run alone, from full logits."""
    prompt, answer = pair["prompt_ids"], pair[side]
    ids = torch.tensor([prompt + answer])
    logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return token_logps[len(prompt) - 1 :].sum()


def test_pairs_are_tokenized_as_trl_does(tiny_model, train_pairs):
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from ratchet_worker.train.dpo import tokenize_pairs

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = train_pairs[:16]
    theirs = trl_tokenized(DPOTrainer, DPOConfig, rows, tokenizer)
    ours = tokenize_pairs(rows, tokenizer, max_length=None)
    for key in ("prompt_ids", "chosen_ids", "rejected_ids"):
        assert [p[key] for p in ours] == theirs[key]
    # TRL's collator cuts each conversation to max_length (keep_start); tokenize_pairs does it once.
    limit = sorted(len(p["prompt_ids"]) + len(p["chosen_ids"]) for p in ours)[4]
    cut = tokenize_pairs(rows, tokenizer, max_length=limit)
    assert len(cut) == len(ours)
    assert all(len(p["prompt_ids"]) + len(p["chosen_ids"]) <= limit for p in cut)
    assert any(len(c["chosen_ids"]) < len(p["chosen_ids"]) for c, p in zip(cut, ours, strict=True))


def test_packed_rows_give_the_log_probs_and_loss_of_trls_layout(tmp_path, tiny_model, train_pairs):
    rows = train_pairs[:8]
    packed = _build(tmp_path / "packed", tiny_model, rows, {"pack_pairs": True})
    plain = _build(tmp_path / "plain", tiny_model, rows, {"pack_pairs": False})
    assert packed.dpo_config.pack_pairs and not plain.dpo_config.pack_pairs
    # The reference pass over sorted packed batches gives TRL's reference log-probs, row for row.
    for key in ("ref_chosen_logps", "ref_rejected_logps"):
        assert torch.allclose(
            torch.tensor(packed.train_dataset[key]), torch.tensor(plain.train_dataset[key]), atol=1e-4
        )
    # The same adapter in both, LoRA B moved off 0 so the adapter takes part.
    with torch.no_grad():
        for _name, param in packed.model.named_parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
        plain.model.load_state_dict(packed.model.state_dict())

    from ratchet_worker.train.dpo import packed_log_probs

    examples = [packed.train_dataset[i] for i in range(len(rows))]
    packed_batch = packed.data_collator(examples)
    plain_batch = plain.data_collator(examples)
    # One row per pair, narrower than chosen and rejected padded to a common width, and holding
    # each prompt once: narrower than the two conversations end to end.
    assert packed_batch["input_ids"].shape[0] == len(rows)
    assert packed_batch["input_ids"].numel() < plain_batch["input_ids"].numel()
    both = max(2 * len(e["prompt_ids"]) + len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in examples)
    assert packed_batch["input_ids"].shape[1] < both
    assert int(packed_batch["num_tokens"]) == int(plain_batch["attention_mask"].sum())

    with torch.no_grad():
        chosen, rejected = packed_log_probs(packed.model, packed_batch)
        alone = torch.stack(
            [
                torch.stack([_alone_log_probs(packed.model, e, side) for e in examples])
                for side in ("chosen_ids", "rejected_ids")
            ]
        )
    # Each answer scores as it does alone: the packed rejected answer did not see the chosen one.
    assert torch.allclose(torch.stack([chosen, rejected]), alone, atol=1e-3)
    assert (chosen - rejected).std() > 1e-2  # not comparing constants

    packed_loss = packed.compute_loss(packed.model, dict(packed_batch))
    plain_loss = plain.compute_loss(plain.model, dict(plain_batch))
    assert packed_loss.item() == pytest.approx(plain_loss.item(), abs=1e-5)
    assert abs(packed_loss.item() - 0.6931) > 1e-3  # the adapter moved the policy off the reference
    # The loss reaches the trainable weights through the packed forward.
    packed_loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in packed.model.parameters() if p.requires_grad)
    # TRL's reward metrics are logged from the same quantities.
    assert packed._metrics["train"]["rewards/margins"][-1] == pytest.approx(
        plain._metrics["train"]["rewards/margins"][-1], abs=1e-4
    )


def test_grouped_batches_cover_every_pair_once_per_epoch(tmp_path, tiny_model, train_pairs):
    from ratchet_worker.train.dpo import packed_width

    trainer = _build(tmp_path, tiny_model, train_pairs, {})
    order = list(iter(trainer._get_train_sampler()))
    assert sorted(order) == list(range(len(trainer.train_dataset)))
    widths = [packed_width(p) for p in trainer.train_dataset]
    batch = trainer.args.train_batch_size
    assert padded_cells(order, widths, batch) < padded_cells(random_order(len(widths)), widths, batch)


def test_models_that_ignore_packing_boundaries_train_unpacked(tmp_path, tiny_model, train_pairs, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from ratchet_worker.train.dpo import packing_is_exact

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert packing_is_exact(model, tokenizer.pad_token_id)
    # An attention that ignores a custom mask and runs one causal sequence per row (as some
    # flash-attention paths do): the rejected answer would see the chosen one.
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    monkeypatch.setitem(
        ALL_ATTENTION_FUNCTIONS,
        "sdpa",
        lambda module, q, k, v, attention_mask, **kw: sdpa(module, q, k, v, None, **{**kw, "is_causal": True}),
    )
    assert not packing_is_exact(model, tokenizer.pad_token_id)
    trainer = _build(tmp_path, tiny_model, train_pairs[:8], {"pack_pairs": True})
    assert not trainer.dpo_config.pack_pairs
    assert "attention_mask" in trainer.data_collator([trainer.train_dataset[0]])

"""The reward trainer's faster layout computes TRL's rewards and loss: same tokens, and one packed
row per pair scores each conversation as two padded rows do."""

from __future__ import annotations

import pytest
import torch
from conftest import padded_cells, random_order, trl_tokenized


def _build(tmp_path, tiny_model, rows, method_config):
    from conftest import build_trainer

    return build_trainer(tmp_path, tiny_model, "reward", rows, method_config)


def test_pairs_are_tokenized_as_trl_does(tiny_model, train_pairs):
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from ratchet_worker.train.reward import tokenize_pairs

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = train_pairs[:16]
    theirs = trl_tokenized(RewardTrainer, RewardConfig, rows, tokenizer)
    ours = tokenize_pairs(rows, tokenizer, max_length=None)
    assert [p["chosen_ids"] for p in ours] == theirs["chosen_ids"]
    assert [p["rejected_ids"] for p in ours] == theirs["rejected_ids"]
    # Over-long pairs are dropped, as TRL's max_length filter does.
    limit = sorted(max(len(p["chosen_ids"]), len(p["rejected_ids"])) for p in ours)[8]
    kept = tokenize_pairs(rows, tokenizer, max_length=limit)
    assert len(kept) == sum(max(len(p["chosen_ids"]), len(p["rejected_ids"])) <= limit for p in ours) < len(ours)


def test_packed_batch_gives_trl_rewards_and_loss(tmp_path, tiny_model, train_pairs):
    rows = train_pairs[:8]
    packed = _build(tmp_path / "packed", tiny_model, rows, {"pack_pairs": True})
    plain = _build(tmp_path / "plain", tiny_model, rows, {"pack_pairs": False})
    assert packed.reward_config.pack_pairs and not plain.reward_config.pack_pairs
    # The same weights in both (a fresh score head is random), LoRA B moved off 0 so the adapters
    # take part.
    with torch.no_grad():
        for name, param in packed.model.named_parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
        plain.model.load_state_dict(packed.model.state_dict())

    examples = [packed.train_dataset[i] for i in range(len(rows))]
    packed_batch = packed.data_collator(examples)
    plain_batch = plain.data_collator(examples)
    # One row per pair, narrower than chosen and rejected padded to a common width.
    assert packed_batch["input_ids"].shape[0] == len(rows)
    assert packed_batch["input_ids"].numel() < plain_batch["input_ids"].numel()
    assert int(packed_batch["num_tokens"]) == int(plain_batch["attention_mask"].sum())

    packed_loss, packed_out = packed.compute_loss(packed.model, dict(packed_batch), return_outputs=True)
    plain_loss, plain_out = plain.compute_loss(plain.model, dict(plain_batch), return_outputs=True)
    assert packed_out["logits"].shape == plain_out.logits.shape == (2 * len(rows), 1)
    assert torch.allclose(packed_out["logits"], plain_out.logits, atol=1e-4)
    assert packed_loss.item() == pytest.approx(plain_loss.item(), abs=1e-5)
    # The rewards differ between pairs (the check above is not comparing constants).
    assert packed_out["logits"].std() > 1e-3
    # The loss reaches the trainable weights through the packed forward.
    packed_loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in packed.model.parameters() if p.requires_grad)


def test_grouped_batches_cover_every_pair_once_per_epoch(tmp_path, tiny_model, train_pairs):
    trainer = _build(tmp_path, tiny_model, train_pairs, {})
    sampler = trainer._get_train_sampler()
    order = list(iter(sampler))
    assert sorted(order) == list(range(len(trainer.train_dataset)))
    widths = [len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in trainer.train_dataset]
    batch = trainer.args.train_batch_size
    # Grouping by packed width leaves less padding than the random order does.
    assert padded_cells(order, widths, batch) < padded_cells(random_order(len(widths)), widths, batch)


def test_models_that_ignore_packing_boundaries_train_unpacked(tmp_path, tiny_model, train_pairs, monkeypatch):
    import transformers.masking_utils as masking
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ratchet_worker.train.reward import packing_is_exact

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    assert packing_is_exact(model, tokenizer.pad_token_id)
    # An attention that sees one causal sequence per row: the rejected answer would see the chosen.
    monkeypatch.setattr(masking, "find_packed_sequence_indices", lambda position_ids: None)
    assert not packing_is_exact(model, tokenizer.pad_token_id)
    trainer = _build(tmp_path, tiny_model, train_pairs[:8], {"pack_pairs": True})
    assert not trainer.reward_config.pack_pairs
    assert "attention_mask" in trainer.data_collator([trainer.train_dataset[0]])

"""The kto trainer's faster layout computes TRL's KTO: same tokens, the KL completions rotated
within fixed batches, the packed reference pass giving TRL's reference log-probs, and the loss
TRL's term for term, with each row's weight applied to that row."""

from __future__ import annotations

import pytest
import torch
from conftest import padded_cells, random_order, trl_tokenized


def _rows(pairs, weights=(1.0, 1.0)):
    rows = []
    for p in pairs:
        rows.append({"prompt": p["prompt"], "completion": p["chosen"], "label": True, "weight": weights[0]})
        rows.append({"prompt": p["prompt"], "completion": p["rejected"], "label": False, "weight": weights[1]})
    return rows


def _build(tmp_path, tiny_model, rows, method_config=None):
    from conftest import build_trainer

    return build_trainer(tmp_path, tiny_model, "kto", rows, method_config or {})


def _nudge_adapter(trainer, *others):
    """LoRA B off 0, so that the policy differs from the reference; the same weights in the others."""
    with torch.no_grad():
        for _name, param in trainer.model.named_parameters():
            if param.requires_grad:
                param.add_(0.01 * torch.randn_like(param))
    for other in others:
        other.model.load_state_dict(trainer.model.state_dict())


def test_rows_are_tokenized_as_trl_does(tiny_model, train_pairs):
    from transformers import AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    from ratchet_worker.train.kto import tokenize_rows

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = _rows(train_pairs[:8])
    theirs = trl_tokenized(KTOTrainer, KTOConfig, rows, tokenizer, calculate_KL=False)
    ours = tokenize_rows(rows, tokenizer, max_length=None)
    for key in ("prompt_ids", "completion_ids", "label"):
        assert [r[key] for r in ours] == theirs[key]
    limit = sorted(len(r["prompt_ids"]) + len(r["completion_ids"]) for r in ours)[4]
    assert all(len(r["prompt_ids"]) + len(r["completion_ids"]) <= limit for r in tokenize_rows(rows, tokenizer, limit))


def test_kl_completions_come_from_the_same_fixed_batch(tmp_path, tiny_model, train_pairs):
    rows = _rows(train_pairs[:21])  # 42 rows: five batches of 8 and one of 2
    trainer = _build(tmp_path, tiny_model, rows)
    data = trainer.train_dataset
    size = trainer.args.per_device_train_batch_size
    batches = [list(range(s, min(s + size, len(data)))) for s in range(0, len(data), size)]
    for batch in batches:
        own = [tuple(data[i]["completion_ids"]) for i in batch]
        kl = [tuple(data[i]["KL_completion_ids"]) for i in batch]
        assert kl == own[1:] + own[:1]  # TRL's rotation by one, within the batch
    # Sorting by length does not make one-label batches: each full batch holds both labels.
    assert all(len({data[i]["label"] for i in b}) == 2 for b in batches if len(b) == size)
    # Every epoch visits each row once, each fixed batch's rows together, in a new batch order.
    sampler = trainer._get_train_sampler()
    torch.manual_seed(0)
    first, second = list(iter(sampler)), list(iter(sampler))
    assert sorted(first) == list(range(len(data)))
    for order in (first, second):
        chunks = [order[s : s + size] for s in range(0, len(order), size)]
        assert sorted(map(sorted, chunks)) == sorted(batches)
        assert chunks[-1] == batches[-1]  # the short batch last, so the DataLoader's chunks stay aligned
    assert first != second
    # Rows of similar length share a batch: less padding than the same rows in random batches.
    widths = [len(r["prompt_ids"]) + len(r["completion_ids"]) for r in data]
    assert padded_cells(first, widths, size) < padded_cells(random_order(len(data)), widths, size)


def test_a_batch_of_one_borrows_a_completion(tiny_model):
    from ratchet_worker.train.kto import with_kl_completions

    examples = [{"prompt_ids": [1], "completion_ids": [10 + i]} for i in range(3)]
    rows = with_kl_completions(examples, [[0, 1], [2]], max_length=None)
    assert [r["KL_completion_ids"] for r in rows] == [[11], [10], [10]]


def test_packed_reference_and_loss_match_trls(tmp_path, tiny_model, train_pairs):
    from trl import KTOTrainer
    from trl.trainer.utils import add_fused_lm_head

    rows = _rows(train_pairs[:8], weights=(1.0, 1.0))
    packed = _build(tmp_path / "packed", tiny_model, rows)
    assert packed._packed_reference
    plain = _build(tmp_path / "plain", tiny_model, rows)
    plain._packed_reference = False
    # TRL's own reference pass (unpacked, through its collator) over the same rows.
    columns = ["prompt_ids", "completion_ids", "KL_completion_ids", "label", "weight"]
    theirs = KTOTrainer._precompute_ref_logps(
        plain, plain.train_dataset.select_columns(columns), "check", 16
    )
    for key in ("ref_logps", "ref_KL_logps"):
        assert torch.allclose(torch.tensor(packed.train_dataset[key]), torch.tensor(theirs[key]), atol=1e-4)

    _nudge_adapter(packed, plain)
    batch = packed.data_collator([packed.train_dataset[i] for i in range(8)])
    # Lower reference log-probs of the mismatched pairs, so that the KL estimate is positive (the
    # loss clamps it at 0) and takes part in both losses.
    batch["ref_KL_logps"] = batch["ref_KL_logps"] - 3.0
    ours = packed.compute_loss(packed.model, dict(batch))
    assert packed._metrics["train"]["kl"][-1] > 0.5
    # TRL's _compute_loss needs its full head (entropy, mean logits for its metrics).
    base = plain.model.get_base_model()
    add_fused_lm_head(base, outputs=("log_probs", "entropy", "mean_logits"))
    reference = KTOTrainer._compute_loss(plain, plain.model, {k: v for k, v in batch.items() if k != "weight"}, False)
    assert ours.item() == pytest.approx(reference.item(), abs=1e-5)
    assert 1e-3 < abs(ours.item() - 0.5) < 0.4  # the adapter moved the policy, short of saturating the loss
    assert packed._metrics["train"]["kl"][-1] == pytest.approx(plain._metrics["train"]["kl"][-1], abs=1e-4)
    assert packed._metrics["train"]["rewards/margins"][-1] == pytest.approx(
        plain._metrics["train"]["rewards/margins"][-1], abs=1e-4
    )
    ours.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in packed.model.parameters() if p.requires_grad)


def test_row_weights_scale_their_own_rows(tmp_path, tiny_model, train_pairs):
    trainer = _build(tmp_path, tiny_model, _rows(train_pairs[:4], weights=(2.0, 0.5)))
    _nudge_adapter(trainer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    assert sorted(batch["weight"].tolist()) == [0.5] * 4 + [2.0] * 4
    with torch.no_grad():
        weighted = trainer.compute_loss(trainer.model, dict(batch)).item()
        # The loss is linear in the weights: one row weighted n at a time gives that row's loss.
        n = len(batch["weight"])
        per_row = []
        for k in range(n):
            one_hot = torch.zeros(n)
            one_hot[k] = n
            per_row.append(trainer.compute_loss(trainer.model, {**batch, "weight": one_hot}).item())
    assert len(set(round(v, 6) for v in per_row)) > 1
    assert weighted == pytest.approx(sum(w * v for w, v in zip(batch["weight"].tolist(), per_row)) / n, abs=1e-6)
    assert weighted != pytest.approx(sum(per_row) / n, abs=1e-4)

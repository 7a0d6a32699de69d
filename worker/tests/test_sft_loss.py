"""The sft trainer's loss-only steps compute TRL's loss: the same value and gradients as TRL's
SFTTrainer.compute_loss with its full head, on the same batch and adapter."""

from __future__ import annotations

import pytest
import torch


def _build(tmp_path, tiny_model, rows, method_config):
    from conftest import build_trainer

    return build_trainer(tmp_path, tiny_model, "sft", rows, method_config)


def test_loss_only_steps_give_trls_loss_and_gradients(tmp_path, tiny_model, train_pairs):
    rows = [{"messages": p["prompt"] + p["chosen"]} for p in train_pairs[:8]]
    lean = _build(tmp_path / "lean", tiny_model, rows, {})
    full = _build(tmp_path / "full", tiny_model, rows, {"token_metrics": True})
    assert lean._loss_only and not full._loss_only
    with torch.no_grad():
        for _name, param in lean.model.named_parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    full.model.load_state_dict(lean.model.state_dict())

    batch = lean.data_collator([lean.train_dataset[i] for i in range(8)])
    ours = lean.compute_loss(lean.model, dict(batch))
    theirs = full.compute_loss(full.model, dict(batch))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    ours.backward()
    theirs.backward()
    grads = [
        (a.grad, b.grad)
        for a, b in zip(lean.model.parameters(), full.model.parameters(), strict=True)
        if a.requires_grad
    ]
    assert all(a is not None and torch.allclose(a, b, atol=1e-6) for a, b in grads)
    assert any(a.abs().sum() > 0 for a, _ in grads)
    # Token counts are logged either way; the per-token metrics only when asked for.
    assert lean._metrics["train"]["num_tokens"] == full._metrics["train"]["num_tokens"]
    assert "mean_token_accuracy" in full._metrics["train"] and "mean_token_accuracy" not in lean._metrics["train"]

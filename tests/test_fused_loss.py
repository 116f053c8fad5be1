"""The fused output layer + loss gives the unfused layer's loss and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mt.data.batching import collate
from mt.data.tokenizer import PAD
from mt.training import fused_loss
from mt.training.fused_loss import linear_cross_entropy
from mt.training.trainer import sequence_loss


def _reference(x, weight, bias, target, smoothing):
    logits = F.linear(x, weight, bias)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=PAD,
                           label_smoothing=smoothing, reduction="sum")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("slice_elements", [1 << 23, 37 * 3])  # one slice; several, the last one short
def test_same_loss_and_gradients_as_linear_then_cross_entropy(monkeypatch, bias, smoothing, slice_elements):
    monkeypatch.setattr(fused_loss, "SLICE_ELEMENTS", slice_elements)
    torch.manual_seed(0)
    x = torch.randn(4, 7, 16, requires_grad=True)
    weight = torch.randn(37, 16, requires_grad=True)
    b = torch.randn(37, requires_grad=True) if bias else None
    target = torch.randint(1, 37, (4, 7))
    target[0, 3:] = PAD  # padding rows contribute nothing, and get no gradient
    params = [x, weight] + ([b] if bias else [])

    expected = _reference(x, weight, b, target, smoothing)
    expected_grads = torch.autograd.grad(expected * 0.3, params)
    got = linear_cross_entropy(x, weight, b, target, PAD, smoothing)
    got_grads = torch.autograd.grad(got * 0.3, params)

    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
    assert got_grads[0][0, 3:].abs().sum() == 0
    with torch.no_grad():  # validation: the loss alone, no gradient work
        torch.testing.assert_close(linear_cross_entropy(x, weight, b, target, PAD, smoothing), expected,
                                   rtol=1e-5, atol=1e-4)


def test_all_padding_gives_zero_loss_and_zero_gradients():
    x = torch.randn(2, 3, 8, requires_grad=True)
    weight = torch.randn(11, 8, requires_grad=True)
    loss = linear_cross_entropy(x, weight, None, torch.full((2, 3), PAD), PAD, 0.1)
    loss.backward()
    assert loss.item() == 0 and x.grad.abs().sum() == 0 and weight.grad.abs().sum() == 0


def test_under_bf16_autocast_it_computes_like_the_autocast_linear_layer():
    torch.manual_seed(0)
    x = torch.randn(5, 16, requires_grad=True)
    weight = torch.randn(29, 16, requires_grad=True)
    target = torch.randint(1, 29, (5,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.cross_entropy(F.linear(x, weight).float(), target, reduction="sum")
        got = linear_cross_entropy(x, weight, None, target, PAD)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=1e-2)
    got.backward()
    assert x.grad.dtype == torch.float32 and weight.grad.dtype == torch.float32


def test_every_model_trains_through_the_fused_loss_as_through_its_logits(model):
    """sequence_loss (fused where the model has an output_layer) gives the loss and the
    parameter gradients of cross-entropy on the model's own logits (tiny models: no dropout)."""
    model.train()
    torch.manual_seed(1)
    src = [torch.randint(4, 40, (n,)).tolist() for n in (5, 3, 7)]
    tgt = [torch.randint(4, 50, (n,)).tolist() for n in (4, 6, 2)]
    batch = collate(src, tgt)
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(2)  # hard attention samples in training: the same draws in both passes
    logits, _ = model(batch.src, batch.src_mask, batch.tgt_in)
    expected = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch.tgt_out.reshape(-1), ignore_index=PAD,
                               label_smoothing=0.1, reduction="sum")
    expected_grads = torch.autograd.grad(expected, params, allow_unused=True)
    torch.manual_seed(2)
    got = sequence_loss(model, batch, 0.1)
    got_grads = torch.autograd.grad(got, params, allow_unused=True)
    assert model.output_layer is not None  # every model here takes the fused path
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    for g, e in zip(got_grads, expected_grads):
        if e is None:
            assert g is None
        else:
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)

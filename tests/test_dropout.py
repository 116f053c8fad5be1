"""Dropout with cheap CPU masks (mt.models.dropout) and the Transformer's explicit training path."""

import pytest
import torch

from mt.models.dropout import Dropout, dropout, keep_mask

from .conftest import variant_config


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_masks_keep_one_minus_p_in_every_lane_and_the_scale_makes_the_mean_exact(p):
    torch.manual_seed(0)
    n = 1 << 20
    mask, scale = keep_mask((n,), p)
    assert mask.dtype == torch.bool and mask.shape == (n,)
    sigma = (p * (1 - p) / (n / 4)) ** 0.5
    # Four 15-bit numbers per 64-bit draw: each of the four lanes must keep 1 - p (the top
    # lane has no sign bit to lose), or every fourth unit would be dropped at another rate.
    for lane in range(4):
        assert abs(mask[lane::4].float().mean().item() - (1 - p)) < 5 * sigma, lane
    threshold = round(p * 32768)
    assert scale == pytest.approx(32768 / (32768 - threshold))
    out = dropout(torch.ones(n), p, True)
    values = out.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(scale)
    assert out.mean().item() == pytest.approx(1.0, abs=5 * sigma * scale)


def test_the_same_seed_draws_the_same_masks_and_another_seed_others():
    x = torch.randn(64, 33)
    torch.manual_seed(3)
    a = dropout(x, 0.2, True)
    torch.manual_seed(3)
    b = dropout(x, 0.2, True)
    torch.manual_seed(4)
    c = dropout(x, 0.2, True)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gradient_is_the_mask_times_the_scale_and_eval_is_the_identity():
    torch.manual_seed(0)
    x = torch.randn(7, 9, dtype=torch.double, requires_grad=True)
    out = dropout(x, 0.25, True)
    out.backward(torch.ones_like(out))
    kept = out != 0
    _, scale = keep_mask((1,), 0.25)
    torch.testing.assert_close(x.grad, kept.double() * scale)
    torch.manual_seed(1)
    assert torch.autograd.gradcheck(lambda t: (torch.manual_seed(1), dropout(t, 0.25, True))[1], (x,))
    module = Dropout(0.25).eval()
    assert module(x) is x and dropout(x, 0.0, True) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)


def test_bf16_activations_stay_bf16():
    x = torch.randn(16, 8).bfloat16()
    assert dropout(x, 0.1, True).dtype == torch.bfloat16


def test_the_transformer_trains_through_the_explicit_attention_as_through_sdpa():
    """With dropout 0, the explicit path that training takes on a CPU computes what
    scaled_dot_product_attention computes (the eval path), forward and backward."""
    from mt.data.batching import collate
    from mt.models import build_model

    torch.manual_seed(0)
    model = build_model(variant_config("transformer"), 40, 50)
    batch = collate([[5, 6, 7, 8, 9], [10, 11]], [[20, 21, 22], [23, 24, 25, 26]])
    outputs, grads = [], []
    for train in (True, False):
        model.train(train)
        model.zero_grad()
        logits, _ = model(batch.src, batch.src_mask, batch.tgt_in, return_attention=False)
        logits.square().mean().backward()
        outputs.append(logits.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)

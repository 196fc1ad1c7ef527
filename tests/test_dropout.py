"""The CPU dropout of ParT's blocks (jetscale.models.dropout): inverted dropout with a uniform draw."""

import torch
import torch.nn.functional as F

from jetscale.models.dropout import dropout_noise, uniform_dropout


def test_mask_is_inverted_dropout_with_the_keep_probability():
    torch.manual_seed(0)
    n, p = 400_000, 0.1
    mask = dropout_noise((n,), p, torch.empty(0))
    kept = mask != 0
    assert torch.all(mask[kept] == torch.tensor(1 / (1 - p)))
    # binomial(n, 0.9): standard deviation 190 kept elements; 5 sigma
    assert abs(int(kept.sum()) - 0.9 * n) < 5 * (n * 0.9 * 0.1) ** 0.5
    assert abs(float(mask.mean()) - 1.0) < 2e-3  # inverted dropout keeps the expectation


def test_draws_come_from_the_uniform_stream():
    """The mask is (u < 1 - p) / (1 - p) for torch's uniform draws: the same seed gives the same mask, and a
    different seed a different one."""
    x = torch.randn(64, 48)
    torch.manual_seed(3)
    u = torch.rand(64, 48)
    torch.manual_seed(3)
    y = uniform_dropout(x, 0.25, True)
    assert torch.equal(y, x * ((u < 0.75).float() / 0.75))
    torch.manual_seed(4)
    assert not torch.equal(uniform_dropout(x, 0.25, True), y)


def test_identity_and_edge_cases_match_f_dropout():
    x = torch.randn(5, 7)
    assert torch.equal(uniform_dropout(x, 0.1, False), x)  # eval
    assert torch.equal(uniform_dropout(x, 0.0, True), x)
    assert torch.equal(uniform_dropout(x, 1.0, True), F.dropout(x, 1.0, True))  # all dropped, no division by 0


def test_gradient_is_the_mask():
    x = torch.randn(32, 16, requires_grad=True)
    torch.manual_seed(1)
    y = uniform_dropout(x, 0.2, True)
    y.backward(torch.ones_like(y))
    torch.manual_seed(1)
    assert torch.equal(x.grad, dropout_noise((32, 16), 0.2, x))


def test_keep_probability_is_exact_in_reduced_precision():
    """bfloat16 activations get the float32 draw's keep probability (bfloat16 uniforms would keep 0.8985 at
    p = 0.1, ten standard deviations off at this size) and a mask in their own dtype."""
    torch.manual_seed(0)
    n = 4_000_000
    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        mask = dropout_noise((n,), 0.1, torch.empty(0, dtype=dtype))
        assert mask.dtype == dtype
        kept = float((mask != 0).double().mean())
        assert abs(kept - 0.9) < 5 * (0.09 / n) ** 0.5, (dtype, kept)


def test_float32_draw_is_unchanged_by_the_cast():
    """For float32 activations the mask is exactly (u < 1 - p) / (1 - p) of torch's float32 uniform stream."""
    torch.manual_seed(5)
    u = torch.rand(1000)
    torch.manual_seed(5)
    assert torch.equal(dropout_noise((1000,), 0.1, torch.empty(0)), (u < 0.9).float() / 0.9)

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

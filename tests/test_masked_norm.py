"""masked_batch_norm: BatchNorm over the kept rows only, as BatchNorm on those rows alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jetscale.models.masked_norm import masked_batch_norm


@pytest.mark.parametrize("shape", [(40, 6), (5, 8, 6)])
def test_masked_batch_norm_is_batchnorm_of_the_kept_rows(shape):
    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 3 + 1
    keep = torch.rand(shape[:-1], generator=g) < 0.6
    x_masked = x.clone().requires_grad_()
    x_rows = x.clone().requires_grad_()
    bn_masked, bn_rows = nn.BatchNorm1d(6).double(), nn.BatchNorm1d(6).double()
    with torch.no_grad():
        for bn in (bn_masked, bn_rows):
            bn.weight.copy_(torch.linspace(0.5, 2, 6))
            bn.bias.copy_(torch.linspace(-1, 1, 6))
    up = torch.randn(*shape, generator=g, dtype=torch.float64)
    y = masked_batch_norm(x_masked, keep, bn_masked)
    ref = bn_rows(x_rows[keep])
    torch.testing.assert_close(y[keep], ref)
    (y[keep] * up[keep]).sum().backward()
    (ref * up[keep]).sum().backward()
    torch.testing.assert_close(x_masked.grad, x_rows.grad)  # rows outside keep: no gradient
    torch.testing.assert_close(bn_masked.weight.grad, bn_rows.weight.grad)
    torch.testing.assert_close(bn_masked.running_mean, bn_rows.running_mean)
    torch.testing.assert_close(bn_masked.running_var, bn_rows.running_var)
    bn_masked.eval(), bn_rows.eval()
    torch.testing.assert_close(masked_batch_norm(x, keep, bn_masked)[keep], bn_rows(x[keep]))


def test_momentum_none_is_refused():
    bn = nn.BatchNorm1d(3, momentum=None)
    with pytest.raises(ValueError, match="momentum=None"):
        masked_batch_norm(torch.randn(4, 3), torch.ones(4, dtype=torch.bool), bn)


def test_statistics_in_float32_under_bf16():
    """bf16 inputs (autocast's products): statistics as from the float32 values, the result in bf16."""
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(4000, 4, generator=g) * 0.1 + 100).to(torch.bfloat16)
    keep = torch.ones(4000, dtype=torch.bool)
    bn_low, bn_ref = nn.BatchNorm1d(4), nn.BatchNorm1d(4)
    y = masked_batch_norm(x, keep, bn_low)
    ref = bn_ref(x.float())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(bn_low.running_mean, bn_ref.running_mean)
    torch.testing.assert_close(bn_low.running_var, bn_ref.running_var)
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=1e-2)

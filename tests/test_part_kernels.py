"""ParT's real-particle path is built from a few hand-written pieces; each computes what the straightforward torch
code does (values and gradients), so the fast path is the same maths as the padded one.

The whole path against the padded layout (logits, gradients, running statistics, dropout) is
``tests/test_model_padding.py``; these pin the pieces one by one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jetscale.data.testing import synthetic_jets
from jetscale.models.part import NEG, GroupAttention, RowBatchNorm, attention, batch_norm_rows, ragged_pair_features
from jetscale.models.ragged import Ragged
from jetscale.tokenize.particles import pair_features_at


@pytest.fixture(scope="module")
def batch():
    jets = synthetic_jets(20, 11, n_particles=40, seed=5, mean_particles=15)
    valid = torch.from_numpy(np.asarray(jets["mask"], dtype=bool))
    valid[2] = False
    valid[2, [1, 4, 7]] = True  # a jet with holes: pairs follow ranks, not slots
    vectors = torch.from_numpy(np.asarray(jets["vectors"], dtype=np.float32)).transpose(1, 2).contiguous()
    return valid, vectors


def test_ragged_pair_features_are_pair_features_at_the_real_pairs(batch):
    valid, vectors = batch
    lay = Ragged.of(valid)
    B, P = valid.shape
    rows = lay.rows
    b_i, p_i = rows[lay.pair_i] // P, rows[lay.pair_i] % P
    b_j, p_j = rows[lay.pair_j] // P, rows[lay.pair_j] % P
    assert torch.equal(b_i, b_j) and bool((p_i >= p_j).all())
    lens = valid.sum(1)
    assert lay.n_pairs == int((lens * (lens + 1) // 2).sum())  # every real pair once, self-pairs included
    ref = pair_features_at(vectors, b_i, p_i, p_j)  # (n, 4)
    got = ragged_pair_features(vectors, lay)  # (4, n)
    assert torch.allclose(got.t(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_rows_is_batch_norm(train):
    torch.manual_seed(0)
    ref_bn, bn = torch.nn.BatchNorm1d(6), torch.nn.BatchNorm1d(6)
    with torch.no_grad():
        for m in (ref_bn, bn):
            m.weight.copy_(torch.linspace(0.5, 2, 6))
            m.bias.copy_(torch.linspace(-1, 1, 6))
            m.running_mean.fill_(0.3)
            m.running_var.fill_(1.7)
    ref_bn.train(train)
    bn.train(train)
    x = (torch.randn(500, 6) * 3 + 2).requires_grad_()
    xc = x.detach().t().contiguous().requires_grad_()
    w = torch.randn(500, 6)
    (ref_bn(x) * w).sum().backward()
    (batch_norm_rows(xc, bn) * w.t()).sum().backward()
    assert torch.allclose(xc.grad.t(), x.grad, atol=1e-5, rtol=1e-4)
    for a, b in ((ref_bn.weight.grad, bn.weight.grad), (ref_bn.bias.grad, bn.bias.grad)):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)
    assert torch.allclose(ref_bn.running_mean, bn.running_mean, atol=1e-6)
    assert torch.allclose(ref_bn.running_var, bn.running_var, atol=1e-5)


def test_row_batch_norm_gradients():
    x = torch.randn(3, 40, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: RowBatchNorm.apply(*a, 1e-5)[0], (x, w, b))


def _group_inputs(dtype, batch=6, hd=2, L=9):
    g = torch.Generator().manual_seed(1)
    qkv = torch.randn(3, batch, hd, L, generator=g, dtype=dtype)
    bias = torch.randn(batch, L, L, generator=g, dtype=dtype)
    bias[:, :, L - 3 :] = NEG  # padded keys
    return qkv, bias


def test_group_attention_is_attention():
    qkv, bias = _group_inputs(torch.float32)
    qkv.requires_grad_()
    bias.requires_grad_()
    out = GroupAttention.apply(qkv, bias, 0.7)  # (batch, hd, L)
    w = torch.randn(out.shape)
    (out * w).sum().backward()
    q, k, v = (t.detach().transpose(1, 2).unsqueeze(0).requires_grad_() for t in qkv)  # (1, batch, L, hd)
    b = bias.detach().unsqueeze(0).requires_grad_()
    ref = attention(q * (0.7 / 2**-0.5), k, v, b)[0].transpose(1, 2)  # attention() scales by hd**-0.5
    (ref * w).sum().backward()
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(bias.grad, b.grad[0], atol=1e-6)
    for t, r in zip(qkv.grad, (q, k, v)):
        assert torch.allclose(t, r.grad[0].transpose(1, 2), atol=1e-5)


def test_group_attention_gradients():
    qkv, bias = _group_inputs(torch.float64, batch=3, L=5)
    bias[:, :, -1] = -30.0  # finite: gradcheck's perturbations must see it
    qkv.requires_grad_()
    bias.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: GroupAttention.apply(a, b, 0.6), (qkv, bias))


def test_ragged_bias_and_layouts_place_every_pair(batch):
    """The groups' bias holds each real pair's value at (i, j) and (j, i), 0 on padded queries, NEG on padded keys,
    and the q/k/v and output layouts round-trip the particle list."""
    valid, _ = batch
    lay = Ragged.of(valid)
    H, hd = 3, 2
    values = torch.arange(1, lay.n_pairs + 1, dtype=torch.float32)
    table = torch.cat([values.expand(H, -1) * torch.tensor([[1.0], [10.0], [100.0]]), torch.zeros(H, 1),
                       torch.full((H, 1), NEG)], dim=1)  # fmt: skip
    seen = 0
    for g, (s, L) in enumerate(lay.groups):
        bias = table.index_select(1, lay.bias_index(g)).view(H, s, L, L)
        for slot, jet in enumerate(lay.members[g]):
            n = int(lay.lens[jet])
            blk = bias[:, slot]
            assert torch.equal(blk[:, :, n:], torch.full((H, L, L - n), NEG))
            assert not blk[:, n:, :n].any()
            real = blk[:, :n, :n]
            assert torch.equal(real, real.transpose(1, 2))
            first = int(lay.pair_starts[jet])
            expect = torch.arange(first + 1, first + n * (n + 1) // 2 + 1, dtype=torch.float32)
            assert torch.equal(real[0][torch.tril_indices(n, n).unbind()], expect)
            assert torch.equal(real[2], 100 * real[0])
            seen += 1
    assert seen == valid.shape[0]
    x = torch.randn(lay.n, 3 * H * hd)
    flat = torch.cat([x, x.new_zeros(1, x.shape[1])]).view(-1)
    parts = flat.index_select(0, lay.qkv_index(H, hd)).split(lay.qkv_sizes(H, hd))
    outs = [t.view(3, H * s, hd, L)[2] for t, (s, L) in zip(parts, lay.groups)]  # the values, as attention outputs
    back = torch.cat([o.reshape(-1) for o in outs]).index_select(0, lay.out_index(H, hd)).view(lay.n, H * hd)
    assert torch.equal(back, x[:, 2 * H * hd :])

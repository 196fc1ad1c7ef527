"""ParticleNet's fast path computes what a straightforward EdgeConv computes, in train and eval mode.

The reference below is written the plain way: each jet's real particles, neighbours found by sorting explicit
squared distances, edge features (x_i, x_j − x_i) concatenated per edge and passed through the blocks' own
Conv2d / BatchNorm2d / Conv1d / BatchNorm1d modules in their native (1, C, N, k) layout; a jet with fewer than
k other particles gets zero-feature neighbours (padded slots) up to k, as the padded batch has them (a batch is
padded to at least k + 1 slots, so a jet's neighbours do not depend on the batch it is scored in).
The model's path (real particles only, the first convolution split algebraically before the gather, channels-last
matrix products, one flat gather) must give the same logits, gradients and BatchNorm running statistics; so must
its padded path (every slot a row, no data-dependent shapes: GPUs and ``torch.compile``), in training too.
"""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dispatch_ops import DATA_DEPENDENT, OpNames
from jetscale.data.testing import synthetic_jets
from jetscale.models.particlenet import ParticleNet
from jetscale.models.registry import batch_tensors, build_model, prepare_inputs


def reference_forward(model, x: torch.Tensor, points: torch.Tensor, mask: torch.Tensor, **_) -> torch.Tensor:
    short = max(0, model.edge_convs[0].k + 1 - x.shape[-1])
    x, points, mask = (F.pad(t, (0, short)) for t in (x, points, mask))
    B, _, P = x.shape
    real = mask[:, 0] > 0
    fts = model.bn_fts(x * mask)  # over the padded batch, as weaver's use_fts_bn
    feats = [fts[b][:, real[b]].T for b in range(B)]  # per jet (n_b, C)
    coords = [points[b][:, real[b]].T for b in range(B)]
    for block in model.edge_convs:
        k = block.k
        edges = []
        for f, c in zip(feats, coords):
            n = f.shape[0]
            d = ((c[:, None, :] - c[None, :, :]) ** 2).sum(-1)
            d.fill_diagonal_(float("inf"))
            nb = f[d.argsort(dim=1, stable=True)[:, : min(k, n - 1)]]  # (n, k', C), nearest first
            nb = torch.cat([nb, f.new_zeros(n, k - nb.shape[1], f.shape[1])], dim=1)  # padded neighbours
            xi = f[:, None, :].expand(-1, k, -1)
            edges.append(torch.cat([xi, nb - xi], dim=-1))  # (n, k, 2C)
        h = torch.cat(edges).permute(2, 0, 1).unsqueeze(0)  # (1, 2C, N, k)
        for conv, bn in zip(block.convs, block.bns):
            h = torch.relu(bn(conv(h)))
        h = h.mean(dim=-1)  # (1, C, N)
        x_in = torch.cat(feats).T.unsqueeze(0)  # (1, C_in, N)
        shortcut = x_in if block.sc is None else block.sc_bn(block.sc(x_in))
        out = torch.relu(h + shortcut)[0].T  # (N, C)
        feats = list(out.split([f.shape[0] for f in feats]))
        coords = feats
    pooled = torch.stack([f.mean(dim=0) for f in feats])
    return model.fc(pooled)


@pytest.fixture(scope="module")
def tensors():
    jets = synthetic_jets(24, 11, n_particles=48, seed=5, mean_particles=18)
    arrays, _ = prepare_inputs("particlenet", {}, jets["features"], jets["mask"], jets["vectors"])
    t = batch_tensors(arrays, np.arange(len(jets["labels"])))
    t["mask"][0, :, 1:] = 0  # one real particle
    t["mask"][1, :, 7:] = 0  # fewer than k + 1 = 17: padded neighbours
    return t


def perturbed_pair(seed=0):
    torch.manual_seed(seed)
    model = build_model("particlenet", 8, 11, 19, {})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model, copy.deepcopy(model)


def logits_and_grads(fn, model, t):
    model.zero_grad()
    torch.manual_seed(7)  # same dropout draws
    out = fn(**t)
    (out.square().sum() + out.sum()).backward()
    return out.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def assert_same_step(ref, ref_step, model, step) -> None:
    """float64: ``model``'s (logits, gradients) ``step`` and its buffers after it are ``ref``'s, to rounding."""
    (y_ref, g_ref), (y, g) = ref_step, step
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-10)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], atol=1e-12, rtol=1e-9, msg=name)
    for (name, a), b in zip(ref.named_buffers(), model.buffers()):
        torch.testing.assert_close(b, a, atol=1e-14, rtol=1e-12, msg=name)


@pytest.mark.parametrize("slots", [48, 10])  # 10: fewer slots than k + 1, so every jet has < k neighbours
def test_train_mode_matches_the_reference(tensors, slots):
    """Logits in float32; gradients and running statistics in float64, where no ReLU sits within rounding of
    zero (in float32 one such edge can flip and move a gradient entry by a percent, on either side)."""
    t = {key: v[..., :slots].contiguous() for key, v in tensors.items()}
    fast, ref = perturbed_pair()
    with torch.no_grad():
        torch.manual_seed(7)
        y_fast = fast(**t)
        torch.manual_seed(7)
        y_ref = reference_forward(ref, **t)
    torch.testing.assert_close(y_fast, y_ref, atol=1e-5, rtol=1e-5)
    fast, ref = perturbed_pair()
    fast.double(), ref.double()
    t = {key: v.double() for key, v in t.items()}
    y_fast, g_fast = logits_and_grads(fast, fast, t)
    y_ref, g_ref = logits_and_grads(lambda **kw: reference_forward(ref, **kw), ref, t)
    torch.testing.assert_close(y_fast, y_ref, atol=1e-10, rtol=1e-10)
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], atol=1e-10, rtol=1e-8, msg=name)
    for (name, a), b in zip(ref.named_buffers(), fast.buffers()):
        if name.endswith("num_batches_tracked"):  # unused with a fixed momentum; the fast path leaves it
            continue
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10, msg=name)


def test_eval_mode_matches_the_reference(tensors):
    fast, ref = perturbed_pair(1)
    with torch.no_grad():
        fast(**tensors)  # running statistics away from their initial values
    ref.load_state_dict(fast.state_dict())
    fast.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(**tensors), reference_forward(ref, **tensors), atol=1e-5, rtol=1e-5)


def test_a_jets_eval_score_does_not_depend_on_the_width_of_its_batch(tensors):
    """Evaluation batches are sorted by length: a batch of short jets is narrower than k + 1 slots. Its jets must
    get the logits they get in a wide batch (before, they averaged over fewer neighbours there)."""
    model, _ = perturbed_pair(2)
    with torch.no_grad():
        model(**tensors)  # running statistics away from their initial values
    model.eval()
    counts = tensors["mask"].sum(dim=(1, 2))
    short = torch.nonzero(counts <= 10).squeeze(1)
    assert len(short) >= 2
    wide = {key: v[short] for key, v in tensors.items()}
    narrow = {key: v[..., :10].contiguous() for key, v in wide.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(**narrow), model(**wide), atol=1e-5, rtol=1e-5)


def test_the_neighbour_graph_carries_no_gradient():
    from jetscale.models.particlenet import knn

    pts = torch.randn(2, 9, 3, requires_grad=True)
    idx = knn(pts, 4)
    assert idx.shape == (18, 4) and not idx.requires_grad
    assert int(idx[:9].max()) < 9 <= int(idx[9:].min())  # each jet's own points, as flat positions
    rows = torch.tensor([3, 10, 17])
    assert torch.equal(knn(pts, 4, rows), idx[rows])
    # the nearest other point of each
    d = torch.cdist(pts.detach(), pts.detach())
    d += torch.eye(9) * 1e9
    nearest = d.argmin(-1).reshape(-1) + torch.arange(2).repeat_interleave(9) * 9
    assert torch.equal(idx[:, 0], nearest)


def test_padded_jets_are_nobodys_neighbour(tensors):
    # the first block's graph: jet 1 has 7 real particles, so its 16 neighbours are its 6 others and 10 zeros
    fast, _ = perturbed_pair()
    fast.eval()
    grabbed = {}
    block = fast.edge_convs[0]
    block.register_forward_hook(lambda m, args, out: grabbed.update(nbr=args[1]))
    with torch.no_grad():
        fast(**tensors)
    nbr = grabbed["nbr"]
    n_real = int((tensors["mask"][:, 0] > 0).sum())
    jet1 = nbr[1:8]  # rows of jet 1 (jet 0 has one real particle: row 0)
    assert ((jet1 < 8) & (jet1 >= 1)).sum(1).tolist() == [6] * 7 and (jet1 == n_real).sum(1).tolist() == [10] * 7
    assert (nbr[0] == n_real).all()
    assert not (nbr == 0).any()  # the lone particle (row 0) is nobody's neighbour


@pytest.mark.parametrize("rows", [5000, 4096, 100])  # not a multiple of the padding; exactly one; small (MKL)
def test_linear_is_the_plain_product_values_and_gradients(rows):
    """ParticleNet's bias-free linear (oneDNN on CPU fp32 for large products, row count padded) is F.linear."""
    from jetscale.models.cpu_linear import linear

    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows // 8, 8, 32, generator=g, requires_grad=True)
    w = torch.randn(48, 32, generator=g, requires_grad=True)
    up = torch.randn(rows // 8, 8, 48, generator=g)
    out = linear(x, w)
    out.backward(up)
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    ref = F.linear(x, w)
    ref.backward(up)
    assert out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx, x.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gw, w.grad, atol=1e-4, rtol=1e-5)


def test_flops_counted_are_the_plain_products(tensors, monkeypatch):
    """The FLOP counter sees plain matrix products (the oneDNN path steps aside under it): the same count."""
    from jetscale.models import cpu_linear
    from jetscale.models.registry import measure_flops_per_jet

    model, _ = perturbed_pair()
    counted = measure_flops_per_jet(model, tensors)
    monkeypatch.setattr(cpu_linear, "_ONEDNN", False)
    assert measure_flops_per_jet(model, tensors) == counted


@pytest.mark.parametrize("rows", [5000, 100])  # oneDNN with the ReLU fused; small (plain ops)
def test_inference_linear_relu_is_relu_of_the_product(rows):
    from jetscale.models.cpu_linear import inference_linear_relu

    g = torch.Generator().manual_seed(rows)
    x, w, b = torch.randn(rows // 8, 8, 32, generator=g), torch.randn(48, 32, generator=g), torch.randn(48, generator=g)
    torch.testing.assert_close(inference_linear_relu(x, w, b), F.linear(x, w, b).relu(), atol=1e-5, rtol=1e-5)


def test_scoring_folds_batchnorm_and_relu_into_the_products(monkeypatch):
    """Scoring (eval mode, no autograd) takes the folded path: each block's BatchNorms folded into its products,
    the ReLUs fused into oneDNN's output pass, BatchNorm never called; the logits are those of the unfolded eval
    path (autograd on) on a batch large enough for oneDNN."""
    from jetscale.models import cpu_linear, particlenet

    jets = synthetic_jets(64, 11, n_particles=48, seed=6, mean_particles=30)
    arrays, _ = prepare_inputs("particlenet", {}, jets["features"], jets["mask"], jets["vectors"])
    t = batch_tensors(arrays, np.arange(64))
    model, _ = perturbed_pair(3)
    with torch.no_grad():
        model(**t)  # running statistics away from their initial values
    model.eval()
    unfolded = model(**t).detach()
    posts, real_linear = [], cpu_linear._onednn_linear
    record = lambda *a: posts.append(a[3] if len(a) > 3 else "none") or real_linear(*a)  # noqa: E731
    monkeypatch.setattr(cpu_linear, "_onednn_linear", record)
    bn_calls = []
    monkeypatch.setattr(particlenet, "_bn_last", lambda *a, **k: bn_calls.append(1))
    with torch.no_grad():
        folded = model(**t)
    assert "relu" in posts and not bn_calls
    torch.testing.assert_close(folded, unfolded, atol=1e-5, rtol=1e-5)


def padded_rows_seen(model, tensors) -> list[int]:
    """Rows each EdgeConv block receives (B·P on the padded path, the real particles' count on the other)."""
    seen = []
    hooks = [b.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0])) for b in model.edge_convs]
    try:
        model(**tensors)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("slots", [48, 10])  # 10: every jet has fewer than k + 1 real particles
def test_padded_training_path_matches_the_real_particle_path(tensors, slots):
    """Train mode: the padded path's BatchNorms take their statistics from the rows the real-particle path
    normalises (the input's over the whole padded batch, the edges of real particles, the real particles), so
    logits, gradients and running statistics agree; a jet with one real particle, an empty one and jets with padded
    neighbours included. Logits in float32; the rest in float64 (a ReLU within rounding of zero can flip)."""
    t = {key: v[..., :slots].clone() for key, v in tensors.items()}
    for v in t.values():
        v[2] = 0  # an empty jet
    real, padded = perturbed_pair()
    padded.real_rows = False
    with torch.no_grad():
        B, _, P = t["mask"].shape
        assert padded_rows_seen(padded, t) == [B * max(P, 17)] * 3  # every slot a row (at least k + 1 slots)
        assert padded_rows_seen(real, t) == [int(t["mask"].sum())] * 3  # the real particles
        torch.manual_seed(7)
        y_real = real(**t)
        torch.manual_seed(7)
        y_padded = padded(**t)
    torch.testing.assert_close(y_padded, y_real, atol=1e-5, rtol=1e-5)
    real, padded = perturbed_pair()
    padded.real_rows = False
    real.double(), padded.double()
    t = {key: v.double() for key, v in t.items()}
    for _ in range(2):  # the second step from the running statistics and counters the first left
        assert_same_step(real, logits_and_grads(real, real, t), padded, logits_and_grads(padded, padded, t))


def test_padded_training_step_has_no_data_dependent_shapes(tensors):
    """No op whose output shape (or a host value) depends on the data, in forward or backward, neighbour search
    included: on a GPU each would be a host sync, compiled a graph break. The real-particle path has them."""
    real, padded = perturbed_pair()
    padded.real_rows = False
    for model, expect in ((padded, False), (real, True)):
        with OpNames() as ops:
            model(**tensors).sum().backward()
        assert bool(ops.names & DATA_DEPENDENT or ops.bool_index) == expect, ops.names & DATA_DEPENDENT


def test_padded_path_under_bf16_autocast_keeps_the_statistics_precision(tensors):
    """Under bf16 autocast (the GPU's training precision) the padded path's BatchNorm statistics are taken in
    float32, as BatchNorm's kernels take them on the real-particle path: the running statistics agree to float32
    rounding of bf16 inputs (statistics summed in bf16 are off by 7e-4 here)."""
    real, padded = perturbed_pair()
    padded.real_rows = False
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert real(**tensors).dtype == padded(**tensors).dtype == torch.bfloat16
    for (name, a), b in zip(real.named_buffers(), padded.buffers()):
        torch.testing.assert_close(b, a, atol=2e-5, rtol=0, msg=name)


def test_the_real_particle_path_is_eager_cpus():
    """Eager CPU keeps the real-particle path; other devices (and ``torch.compile``, tested below) take the padded
    one; ``static_shapes`` always the padded one; ``real_rows`` overrides the device."""
    model, _ = perturbed_pair()
    cpu, gpu_like = torch.zeros(1), torch.zeros(1, device="meta")
    assert model.real_rows is None and model.use_real_rows(cpu) and not model.use_real_rows(gpu_like)
    model.real_rows = True
    assert model.use_real_rows(gpu_like)
    model.real_rows = False
    assert not model.use_real_rows(cpu)
    model.real_rows, model.static_shapes = None, True
    assert not model.use_real_rows(cpu)


def test_flops_are_counted_on_the_real_particles_on_either_path(tensors):
    """The FLOPs of a cell do not depend on the path its device takes."""
    from jetscale.models.registry import measure_flops_per_jet

    model, _ = perturbed_pair()
    counted = measure_flops_per_jet(model, tensors)
    model.real_rows = False
    assert measure_flops_per_jet(model, tensors) == counted
    assert model.real_rows is False and model.training  # restored


@pytest.mark.skipif(
    not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")),
    reason="torch.compile on CPU needs a C++ compiler (inductor's C++ kernels); none on PATH",
)
def test_compiled_padded_training_step_matches_eager_without_graph_breaks(tensors):
    """The GPU training path, on CPU: a tiny ParticleNet under ``torch.compile(dynamic=False, fullgraph=True)``
    (a graph break or a data-dependent shape would fail it) trains as the eager real-particle path does: logits,
    gradients, running statistics, over two batches of one shape with different jet lengths (no recompilation).
    float64: the compiled kernels sum in another order, and a ReLU within rounding of zero must not flip."""
    import torch._dynamo
    import torch._inductor.config

    def tiny():
        torch.manual_seed(0)
        model = ParticleNet(19, 11, width=4, k=4).double()
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        return model

    batches = [{key: v[rows, :, :12].double() for key, v in tensors.items()} for rows in (slice(0, 6), slice(6, 12))]
    assert not torch.equal(batches[0]["mask"].sum(dim=(1, 2)), batches[1]["mask"].sum(dim=(1, 2)))
    eager, model = tiny(), tiny()
    torch._dynamo.reset()
    try:
        with (
            torch._dynamo.config.patch(error_on_recompile=True),
            torch._inductor.config.patch(fallback_random=True),  # the eager dropout draws
        ):
            compiled = torch.compile(model, dynamic=False, fullgraph=True)
            for t in batches:
                assert_same_step(eager, logits_and_grads(eager, eager, t), model, logits_and_grads(compiled, model, t))
    finally:
        torch._dynamo.reset()

"""ParT's padded path attends through ``F.scaled_dot_product_attention`` on CUDA (the memory-efficient kernel takes
the pair bias as a float mask) and through the written-out softmax elsewhere. CI has no GPU: the module switch
``part.SDPA`` puts the SDPA formulation on CPU, where it must give the written-out logits and gradients, eager
and compiled with static shapes as one graph (the GPU training path)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jetscale.data.testing import synthetic_jets
from jetscale.models import part
from jetscale.models.registry import batch_tensors, build_model, prepare_inputs
from jetscale.train.distributed import configure_compiler


@pytest.fixture(scope="module")
def tensors():
    # lengths ~2..40 of 48 slots, and one jet with a single particle: every row has padded keys
    jets = synthetic_jets(16, 11, n_particles=48, seed=3, mean_particles=18)
    arrays, _ = prepare_inputs("part", {}, jets["features"], jets["mask"], jets["vectors"])
    out = batch_tensors(arrays, np.arange(len(jets["labels"])))
    out["mask"][0, :, 1:] = 0
    return out


@pytest.fixture
def sdpa_calls(monkeypatch):
    """Counts the calls of F.scaled_dot_product_attention."""
    real, calls = F.scaled_dot_product_attention, []

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counted)
    return calls


def padded_part(seed: int = 0, **kwargs) -> part.ParticleTransformer:
    """A ParT on the padded path, its weights moved off their initial values (no identity norms, non-zero
    biases and residual scales)."""
    torch.manual_seed(seed)
    model = part.ParticleTransformer(19, 11, **kwargs) if kwargs else build_model("part", 16, 11, 19, {})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    model.ragged = False
    return model


def logits_and_grads(model, tensors, forward=None, seed: int = 7):
    """Logits and parameter gradients of ``model`` through ``forward`` (default: the model itself)."""
    torch.manual_seed(seed)  # the same dropout draws for every formulation
    model.zero_grad()
    out = (model if forward is None else forward)(**tensors)
    (out.square().sum() + out.sum()).backward()
    return out.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def assert_same(ref, got):
    (y0, g0), (y1, g1) = ref, got
    assert torch.allclose(y0, y1, atol=1e-5, rtol=1e-5), (y0 - y1).abs().max()
    assert g0.keys() == g1.keys()
    for name in g0:
        assert torch.allclose(g0[name], g1[name], atol=1e-5, rtol=1e-4), (name, (g0[name] - g1[name]).abs().max())


def test_sdpa_attention_is_the_written_out_one_values_and_gradients(monkeypatch):
    torch.manual_seed(0)
    B, H, L, hd = 3, 4, 9, 2
    q, k, v = (torch.randn(B, H, L, hd, dtype=torch.float64) for _ in range(3))
    bias = torch.randn(B, H, L, L, dtype=torch.float64)
    bias[..., 6:] = part.NEG  # padded keys
    grads = []
    for use in (False, True):
        monkeypatch.setattr(part, "SDPA", use)
        inputs = [t.clone().requires_grad_() for t in (q, k, v, bias)]
        out = part.attention(*inputs)
        (out * torch.linspace(-1, 1, hd, dtype=torch.float64)).sum().backward()
        grads.append((out.detach(), *(t.grad for t in inputs)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_cpu_attends_written_out_unless_switched(tensors, sdpa_calls, monkeypatch):
    model = padded_part().eval()
    assert part.SDPA is None
    with torch.no_grad():
        model(**tensors)
    assert sdpa_calls == []  # on CPU the default is the written-out softmax
    monkeypatch.setattr(part, "SDPA", True)
    with torch.no_grad():
        model(**tensors)
    assert len(sdpa_calls) == len(model.blocks) + len(model.cls_blocks)


@pytest.mark.parametrize("train", [True, False])
def test_sdpa_gives_the_written_out_logits_and_gradients(tensors, sdpa_calls, monkeypatch, train):
    """Train mode included: the blocks' dropout draws are the same (no dropout on the attention weights)."""
    model = padded_part().train(train)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ref = logits_and_grads(model, tensors)
    model.load_state_dict(state)  # the BatchNorm running statistics as before the first forward
    monkeypatch.setattr(part, "SDPA", True)
    assert_same(ref, logits_and_grads(model, tensors))
    assert sdpa_calls


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="torch.compile on CPU needs a C++ compiler (inductor's C++ kernels); none on PATH",
)
def test_compiled_static_shape_sdpa_path_gives_the_eager_training_step(tensors, monkeypatch):
    """The GPU training path, on CPU: ParT compiled with static shapes as one graph (``fullgraph``: nothing in the
    training forward or its backward depends on the data's values, no ``nonzero``), attention through SDPA, trains
    (logits, gradients, BatchNorm running statistics) as the eager written-out softmax does; a second batch of the
    same shape but other jet lengths reuses the graph. A small ParT keeps the compilation short."""
    model = padded_part(width=16, n_heads=8, n_layers=2, n_cls_layers=1).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    other = {k: v.clone() for k, v in tensors.items()}
    other["mask"][:, :, 20:] = 0  # shorter jets, the same shape
    other["mask"][2] = 0  # and one without particles
    refs = []
    for batch in (tensors, other):
        model.load_state_dict(state)
        refs.append((*logits_and_grads(model, batch), {k: v.clone() for k, v in model.named_buffers()}))
    monkeypatch.setattr(part, "SDPA", True)
    dynamo, inductor = torch._dynamo.config, torch._inductor.config
    torch._dynamo.reset()
    try:  # the compiler settings configure_compiler makes stay in this test
        with (
            dynamo.patch(capture_dynamic_output_shape_ops=False, recompile_limit=dynamo.recompile_limit),
            inductor.patch(fallback_random=inductor.fallback_random),
        ):
            configure_compiler(static_shapes=True)  # dropout from torch's generator: the eager draws
            dynamo.capture_dynamic_output_shape_ops = False  # a nonzero would break the graph: fullgraph fails
            compiled = torch.compile(model, dynamic=False, fullgraph=True)
            frames = []
            for batch, (y, grads, buffers) in zip((tensors, other), refs):
                model.load_state_dict(state)
                assert_same((y, grads), logits_and_grads(model, batch, forward=compiled))
                for name, b in model.named_buffers():
                    torch.testing.assert_close(b, buffers[name], atol=1e-6, rtol=1e-5, msg=name)
                frames.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
            assert frames[0] >= 1 and frames[1] == frames[0]  # no recompilation for other lengths
    finally:
        torch._dynamo.reset()

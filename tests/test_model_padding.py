"""Padding is invisible to the models, and ParT's real-particle (ragged) CPU path computes what its padded one does.

Batches are trimmed to their longest jet (or padded further, to a fixed size, for static shapes); neither may
change a model's output beyond float rounding. ParT on eager CPU runs its particle blocks on the real particles
only (``jetscale.models.ragged``): the same logits and gradients as the padded layout, dropout included.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jetscale.data.testing import synthetic_jets
from jetscale.models.ragged import Ragged, _group_sizes
from jetscale.models.registry import batch_tensors, build_model, prepare_inputs

OPTIONS = {"bbt_neutron": {"tokenizer": {"mode": "native", "dtype": "float16", "patch_size": 16, "max_bytes": 512}}}
WIDTHS = {"particlenet": 8, "part": 16, "bbt_neutron": 16}


@pytest.fixture(scope="module")
def jets():
    # lengths 2..~40 of 48 slots: several attention groups, and every ParticleNet batch longer than k + 1
    return synthetic_jets(24, 11, n_particles=48, seed=3, mean_particles=18)


def batch(name, jets):
    arrays, _ = prepare_inputs(name, OPTIONS.get(name, {}), jets["features"], jets["mask"], jets["vectors"])
    return batch_tensors(arrays, np.arange(len(jets["labels"])))


def padded(tensors: dict, extra: int) -> dict:
    """The same batch with ``extra`` more padded slots on its particle (or patch) axis."""
    out = {}
    for key, t in tensors.items():
        if key == "patches":
            out[key] = torch.nn.functional.pad(t, (0, 0, 0, extra), value=256)  # the PAD byte
        elif key == "patch_mask":
            out[key] = torch.nn.functional.pad(t, (0, extra), value=False)
        else:
            out[key] = torch.nn.functional.pad(t, (0, extra))
    return out


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights moved off their initial values (no identity LayerNorms/BatchNorms, non-zero biases)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def warm_then_eval(model, tensors) -> None:
    """One train-mode forward moves the BatchNorm running statistics away from their initial values, then eval."""
    model.train()
    with torch.no_grad():
        model(**tensors)
    model.eval()


@pytest.mark.parametrize("name", ["particlenet", "part", "bbt_neutron"])
def test_extra_padding_does_not_change_the_output(name, jets):
    torch.manual_seed(0)
    model = perturbed(build_model(name, WIDTHS[name], 11, 19, OPTIONS.get(name)))
    tight = batch(name, jets)
    warm_then_eval(model, tight)
    with torch.no_grad():
        ref = model(**tight)
        for extra in (1, 16):
            assert torch.allclose(model(**padded(tight, extra)), ref, atol=1e-5, rtol=1e-5), extra


def _logits_and_grads(model, tensors, seed):
    torch.manual_seed(seed)
    model.zero_grad()
    out = model(**tensors)
    (out.square().sum() + out.sum()).backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("train", [True, False])
def test_part_ragged_path_equals_the_padded_one(jets, train):
    torch.manual_seed(0)
    ragged = perturbed(build_model("part", 16, 11, 19, {}))
    dense = build_model("part", 16, 11, 19, {})
    dense.load_state_dict(ragged.state_dict())
    ragged.ragged, dense.ragged = True, False
    tensors = batch("part", jets)
    ragged.train(train)
    dense.train(train)
    y0, g0 = _logits_and_grads(dense, tensors, seed=7)
    y1, g1 = _logits_and_grads(ragged, tensors, seed=7)  # same seed: same dropout draws
    assert torch.allclose(y0, y1, atol=1e-5, rtol=1e-5)
    scale = max(g.abs().max() for g in g0)
    for (name, _), a, b in zip(dense.named_parameters(), g0, g1):
        assert torch.allclose(a, b, atol=1e-5 * scale, rtol=1e-4), name
    # and the running statistics moved identically
    for (name, a), b in zip(dense.named_buffers(), ragged.buffers()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_part_takes_the_ragged_path_on_eager_cpu_only(jets):
    model = build_model("part", 16, 11, 19, {})
    x = batch("part", jets)["x"]
    assert model.use_ragged(x)
    model.ragged = False
    assert not model.use_ragged(x)


def test_ragged_layout_round_trips(jets):
    valid = torch.from_numpy(np.asarray(jets["mask"], dtype=bool))
    valid[3] = False
    valid[3, [2, 5]] = True  # a jet with holes: ranks, not slots, place its particles
    lay = Ragged.of(valid)
    B, P = valid.shape
    t = torch.randn(B, P, 5)
    flat = lay.flatten(t)
    assert flat.shape == (int(valid.sum()), 5)
    back = lay.pad(flat)
    assert torch.equal(back[valid], t[valid]) and not back[~valid].any()
    groups = lay.grouped(flat)
    assert len(groups) == len(lay.sizes) >= 2 and sum(lay.sizes) == B
    assert [g.shape[:2] for g in groups] == [(s, L) for s, L in zip(lay.sizes, lay.lengths)]
    assert torch.equal(lay.ungrouped(groups), flat)
    assert lay.lengths == sorted(lay.lengths) and lay.lengths[-1] == int(valid.sum(1).max())


def test_group_sizes_trade_padding_for_kernel_count():
    assert _group_sizes([20] * 32) == [32]  # equal lengths: one group
    sizes = _group_sizes(sorted([5] * 16 + [60] * 16))
    assert sizes == [16, 16]
    assert _group_sizes([7]) == [1]


def test_flops_are_counted_on_the_padded_layout(jets):
    from jetscale.models.registry import measure_flops_per_jet

    model = build_model("part", 16, 11, 19, {})
    tensors = batch("part", jets)
    counted = measure_flops_per_jet(model, tensors)
    model.ragged = False
    assert measure_flops_per_jet(model, tensors) == counted
    assert model.ragged is False and model.training  # restored
    model.ragged = None
    measure_flops_per_jet(model, tensors)
    assert model.ragged is None


@pytest.mark.parametrize("name", ["part", "bbt_neutron"])
def test_scoring_in_length_order_returns_rows_in_their_own_order(name, jets):
    from contextlib import nullcontext

    from jetscale.train.classifier import predict
    from jetscale.train.inputs import SplitInputs

    raw = {**jets, "jet_id": np.arange(len(jets["labels"]))}
    inputs = SplitInputs(name, OPTIONS.get(name, {}), raw)
    order = inputs.length_order()
    lengths = np.asarray(jets["mask"]).sum(axis=1)
    if name == "part":
        assert np.all(np.diff(lengths[order]) >= 0)
    assert sorted(order) == list(range(inputs.n)) and not np.array_equal(order, np.arange(inputs.n))
    torch.manual_seed(0)
    model = perturbed(build_model(name, WIDTHS[name], 11, 19, OPTIONS.get(name)))
    probs = predict(model, inputs, "cpu", nullcontext)
    model.eval()
    with torch.no_grad():
        ref = torch.softmax(model(**inputs.tensors(np.arange(inputs.n))), dim=-1).numpy()
    assert np.allclose(probs, ref, atol=1e-5)


VQ_GPT = {"codebook_size": 64, "vq_hidden": 16, "max_particles": 16}  # fewer than the longest jets: a cut


@pytest.mark.parametrize("name", ["particlenet", "part", "vq_gpt_mlp", "vq_gpt_transformer"])
def test_static_shape_export_path_gives_the_eager_logits(name, jets):
    """The padded, data-independent-shape path ONNX export traces (``static_shapes``) computes what the
    real-particle path computes: jets shorter than ParticleNet's k + 1, a jet with one particle, jets longer than
    vq_gpt's max_particles and extra padding included. In train mode too, for ParticleNet and ParT
    (tests/test_particlenet_reference.py, tests/test_part_static.py)."""
    torch.manual_seed(0)
    options = {**VQ_GPT, "tokenizer": name.removeprefix("vq_gpt_")} if name.startswith("vq_gpt") else {}
    name = name[:6] if name.startswith("vq_gpt") else name
    model = perturbed(build_model(name, WIDTHS.get(name, 16), 11, 19, options))
    tensors = padded(batch(name, jets), 5)
    tensors["mask"][0, :, 1:] = 0  # one real particle
    tensors["mask"][1, :, 7:] = 0  # fewer than k + 1 = 17
    warm_then_eval(model, tensors)
    with torch.no_grad():
        ref = model(**tensors)
        model.static_shapes = True
        got = model(**tensors)
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5), (got - ref).abs().max()

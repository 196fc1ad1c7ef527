"""ParT's padded path trains with static shapes: every pair of slots embedded, the pair BatchNorms taking their
statistics from the real pairs alone (``masked_batch_norm``), no ``nonzero`` or host read in the step. It must train
exactly as the real-particle path does (logits, gradients, running statistics), padding, a jet of one particle and
a jet without any included. The compiled (fullgraph, static shapes) training step is ``tests/test_part_sdpa.py``.
Scoring (eval mode, eager) embeds the real pairs alone, so the forward FLOPs a cell records count only those.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dispatch_ops import DATA_DEPENDENT, OpNames
from jetscale.data.testing import synthetic_jets
from jetscale.models.part import attended_slots, tril_pairs
from jetscale.models.registry import batch_tensors, build_model, measure_flops_per_jet, prepare_inputs

# ops whose output shape (or a host value) depends on the data: a host sync on a GPU, a graph break when compiled


@pytest.fixture(scope="module")
def tensors():
    """16 jets of ~2..40 particles padded to 48 + 5 slots (a bucket wider than the longest jet), jet 0 with one
    particle, jet 1 with none (all its slots zero)."""
    jets = synthetic_jets(16, 11, n_particles=48, seed=3, mean_particles=18)
    arrays, _ = prepare_inputs("part", {}, jets["features"], jets["mask"], jets["vectors"])
    out = {k: torch.nn.functional.pad(v, (0, 5)) for k, v in batch_tensors(arrays, np.arange(16)).items()}
    out["mask"][0, :, 1:] = 0
    out["x"][0, :, 1:] = 0
    out["vectors"][0, :, 1:] = 0
    for key in ("mask", "x", "vectors"):
        out[key][1] = 0
    return out


def perturbed_part(dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("part", 16, 11, 19, {}).to(dtype)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=dtype))
    return model.train()


def training_step(model, tensors, seed: int = 7):
    """Logits, parameter gradients and buffers (running statistics) after one train-mode forward and backward."""
    torch.manual_seed(seed)  # the same dropout draws (the real-particle path draws in the padded shape)
    model.zero_grad()
    out = model(**tensors)
    (out.square().sum() + out.sum()).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return out.detach(), grads, {name: b.clone() for name, b in model.named_buffers()}


@pytest.mark.parametrize("switch", ["ragged", "static_shapes"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_padded_training_step_is_the_real_particle_one(tensors, dtype, switch):
    model = perturbed_part(dtype)
    batch = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.ragged = True
    y0, g0, b0 = training_step(model, batch)
    model.load_state_dict(state)
    model.ragged, model.static_shapes = (False, False) if switch == "ragged" else (None, True)
    assert not model.use_ragged(batch["x"])
    y1, g1, b1 = training_step(model, batch)
    if dtype == torch.float32:
        torch.testing.assert_close(y1, y0, atol=1e-5, rtol=1e-5)
        return
    tight = {"atol": 1e-12, "rtol": 1e-10}
    torch.testing.assert_close(y1, y0, **tight)
    assert g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], **tight, msg=name)
    assert b0.keys() == b1.keys()
    for name in b0:  # the pair BatchNorms' running statistics moved as from the real pairs alone
        assert name.endswith("num_batches_tracked") or not torch.equal(b0[name], state[name]), name
        torch.testing.assert_close(b1[name], b0[name], **tight, msg=name)


def test_padded_training_step_has_no_data_dependent_shapes(tensors):
    model = perturbed_part(torch.float32)
    model.ragged = False
    with OpNames() as ops:
        out = model(**tensors)
        out.sum().backward()
    assert ops.names & DATA_DEPENDENT == set()
    assert not ops.bool_index


def test_tril_pairs_are_tril_indices():
    for P in (1, 2, 3, 17, 64, 129, 1000):
        assert torch.equal(torch.stack(tril_pairs(P, "cpu")), torch.tril_indices(P, P)), P


def test_recorded_flops_count_the_real_pairs_alone(tensors):
    """Two batches of one shape whose jets differ in length: the counted FLOPs differ by the pair embedding's
    products on the real pairs they do not share (as counted before the padded path trained with every pair)."""
    model = perturbed_part(torch.float32)
    shorter = {k: v.clone() for k, v in tensors.items()}
    shorter["mask"][:, :, 12:] = 0

    def real_pairs(batch):
        n = attended_slots(batch["mask"]).sum(dim=1)
        return int((n * (n + 1) // 2).sum())

    per_pair = sum(2 * m.weight.numel() for m in model.pair_embed if isinstance(m, torch.nn.Conv1d))
    B = tensors["x"].shape[0]
    extra = (measure_flops_per_jet(model, tensors) - measure_flops_per_jet(model, shorter)) * B
    assert real_pairs(tensors) > real_pairs(shorter)
    assert extra == pytest.approx((real_pairs(tensors) - real_pairs(shorter)) * per_pair, rel=1e-9)
    assert model.training  # restored


def test_scoring_with_every_pair_is_the_real_pair_scoring(tensors):
    """A GPU's scoring (``real_pairs`` False: every pair of slots embedded, as in training) gives the CPU's
    real-pair scoring's logits with no data-dependent op (no host sync per scoring batch)."""
    model = perturbed_part(torch.float32).eval()
    model.ragged = False
    with torch.no_grad():
        model.real_pairs = True
        real = model(**tensors)
        model.real_pairs = False
        with OpNames() as ops:
            dense = model(**tensors)
    assert ops.names & DATA_DEPENDENT == set()
    assert not ops.bool_index
    torch.testing.assert_close(dense, real, rtol=1e-5, atol=1e-5)
    model.real_pairs = None  # the default: real pairs on CPU
    with torch.no_grad(), OpNames() as ops:
        model(**tensors)
    assert "nonzero" in ops.names


def test_recorded_flops_do_not_depend_on_the_scoring_layout(tensors):
    model = perturbed_part(torch.float32)
    counted = measure_flops_per_jet(model, tensors)
    model.real_pairs = False  # as a GPU's scoring
    assert measure_flops_per_jet(model, tensors) == counted
    assert model.real_pairs is False  # restored

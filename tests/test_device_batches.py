"""Batches gathered from a split's inputs kept on the device (SplitInputs(resident=...)): the same tensors as
the host path's, for particle inputs (ParticleNet/ParT) and BBT-Neutron's byte patches, with and without length
buckets. Runs on CPU (resident=True takes the device path there); the CUDA test runs where a GPU is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jetscale.data.testing import synthetic_jets
from jetscale.models.registry import batch_tensors, bucket_length
from jetscale.train.inputs import RESIDENT_FRACTION, SplitInputs, fits_on_device

# 128 patches: jets fill 16 to 98 of them
BBT = {"tokenizer": {"mode": "native", "dtype": "float16", "patch_size": 16, "max_bytes": 2048}}
OPTIONS = {"particlenet": {}, "part": {}, "bbt_neutron": BBT}
BUCKETS = (16, 24, 40)  # particle slots of 64
BYTE_BUCKETS = (40, 80, 112)  # patches of 128
N = 96


@pytest.fixture(scope="module")
def raw():
    jets = synthetic_jets(N, 11, n_particles=64, seed=5)
    jets["jet_id"] = np.arange(N)
    return jets


def index_sets():
    rng = np.random.default_rng(1)
    draws = [rng.permutation(N)[: int(rng.integers(1, 20))] for _ in range(5)]
    return [*draws, np.array([7]), np.array([3, 3, 90, 0]), slice(10, 50), slice(5, None, 7), np.array([-1, 2])]


def reference(arrays: dict[str, np.ndarray], idx, kind, buckets) -> dict[str, np.ndarray]:
    """What a batch is, written out in numpy: the rows, cut after the slots their longest jet (or bucket) needs."""
    rows = {key: value[idx] for key, value in arrays.items()}
    longest = int(rows[kind.length_key].sum(axis=kind.length_axis).max())
    n = bucket_length(max(1, longest), buckets, arrays[kind.length_key].shape[kind.length_axis])
    return {key: np.take(value, np.arange(n), axis=kind.length_axis) for key, value in rows.items()}


@pytest.mark.parametrize("name", ["particlenet", "part", "bbt_neutron"])
@pytest.mark.parametrize("bucketed", [False, True])
def test_resident_batches_are_the_host_batches(raw, name, bucketed):
    resident = SplitInputs(name, OPTIONS[name], raw, eager=True, resident=True)
    host = SplitInputs(name, OPTIONS[name], raw, eager=True, resident=False)
    buckets = (BYTE_BUCKETS if name == "bbt_neutron" else BUCKETS) if bucketed else None
    assert resident.device_arrays("cpu") is not None and host.device_arrays("cpu") is None
    kind = resident.kind
    lengths = set()
    for idx in index_sets():
        want = reference(host.arrays, idx, kind, buckets)
        got, plain = resident.tensors(idx, "cpu", buckets), host.tensors(idx, "cpu", buckets)
        assert got.keys() == plain.keys() == want.keys()
        for key, value in got.items():
            assert value.dtype == plain[key].dtype and value.is_contiguous()
            assert torch.equal(value, plain[key]), (key, idx)
            assert torch.equal(value, torch.from_numpy(want[key])), (key, idx)
        lengths.add(got[kind.length_key].shape[kind.length_axis])
    assert len(lengths) > 1  # the index sets trimmed to more than one length


def test_resident_copy_is_made_once_per_device(raw):
    inputs = SplitInputs("part", {}, raw, eager=True, resident=True)
    first = inputs.device_arrays("cpu")
    assert inputs.device_arrays(torch.device("cpu")) is first
    assert first["x"].shape == inputs.arrays["x"].shape


def test_gpu_rule_keeps_the_host_path_on_cpu_and_for_streamed_splits(raw):
    auto = SplitInputs("particlenet", {}, raw, eager=True)
    assert auto.resident is None and auto.device_arrays("cpu") is None  # the default: only a GPU keeps a copy
    streamed = SplitInputs("particlenet", {}, raw, eager=False, resident=True)
    assert streamed.device_arrays("cpu") is None  # nothing prepared to keep: batch by batch
    rows = np.array([4, 60, 17])
    for key, value in streamed.tensors(rows, "cpu", BUCKETS).items():
        assert torch.equal(value, auto.tensors(rows, "cpu", BUCKETS)[key])


def test_fits_on_device():
    free = 8 * 2**30
    assert fits_on_device(int(RESIDENT_FRACTION * free), free)
    assert not fits_on_device(int(RESIDENT_FRACTION * free) + 1, free)
    assert not fits_on_device(1, 0)


def test_out_of_range_rows_are_refused_on_the_host(raw):
    inputs = SplitInputs("particlenet", {}, raw, eager=True, resident=True)
    with pytest.raises(IndexError):
        inputs.tensors(np.array([0, N]), "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["part", "bbt_neutron"])
def test_cuda_batches_by_either_path_are_the_cpu_batches(raw, name):
    """On a GPU: the default keeps a small split on the device; both it and the pinned host path give the CPU
    batches."""
    cpu = SplitInputs(name, OPTIONS[name], raw, eager=True)
    auto = SplitInputs(name, OPTIONS[name], raw, eager=True)
    pinned = SplitInputs(name, OPTIONS[name], raw, eager=True, resident=False)
    assert auto.device_arrays("cuda") is not None and pinned.device_arrays("cuda") is None
    buckets = BYTE_BUCKETS if name == "bbt_neutron" else BUCKETS
    for idx in index_sets():
        want = cpu.tensors(idx, "cpu", buckets)
        for inputs in (auto, pinned):
            got = inputs.tensors(idx, "cuda", buckets)
            assert all(got[k].is_cuda and torch.equal(got[k].cpu(), v) for k, v in want.items())


def test_host_batches_match_the_reference_without_a_kind(raw):
    inputs = SplitInputs("bbt_neutron", BBT, raw, eager=True)
    idx = np.array([5, 1, 80])
    got = batch_tensors(inputs.arrays, idx)  # the kind found from the arrays' keys
    want = reference(inputs.arrays, idx, inputs.kind, None)
    assert all(torch.equal(got[k], torch.from_numpy(v)) for k, v in want.items())

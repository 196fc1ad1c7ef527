"""training.length_buckets: every training batch padded up to one of a few particle counts (static shapes), and
training.compile on top of them (inductor's C++ kernels on CPU)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from jetscale.config import load_config
from jetscale.data.splits import load_split
from jetscale.data.testing import synthetic_jets, write_synthetic_splits
from jetscale.grid import parse_cell_id
from jetscale.models.registry import bucket_length
from jetscale.settings import resolve_settings, settings_hash
from jetscale.train import loop
from jetscale.train.inputs import SplitInputs
from tiny_config import TINY_TRAINING, tiny_raw_config

PART = "model~part/width~8/n_train~44/compute~160/seed~0"
BUCKETS = [24]  # of 32 slots: batches of 8 jets come in two shapes (24, 32)


def raw_config(**training) -> dict:
    return tiny_raw_config(("part",), n_particles=32, training={**TINY_TRAINING, "batch_size": 8, **training})


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    cfg = load_config(raw_config())
    return write_synthetic_splits(
        tmp_path_factory.mktemp("splits"), cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=32
    )


def test_bucket_length():
    assert bucket_length(13, None, 64) == 13  # no buckets: trimmed to the longest jet
    assert [bucket_length(n, (48, 16, 32), 64) for n in (1, 16, 17, 33, 48, 49, 64)] == [16, 16, 32, 48, 48, 64, 64]
    assert bucket_length(30, (16, 128), 64) == 64  # never beyond the arrays' padded width


@pytest.mark.parametrize("name", ["particlenet", "bbt_neutron"])
def test_bucketed_batches_are_the_trimmed_ones_padded(name):
    """Same rows, same values; only the padding after the longest jet differs; streamed = prepared up front."""
    raw = synthetic_jets(96, 11, n_particles=64, seed=3)
    raw["jet_id"] = np.arange(96)
    options = {"tokenizer": {"mode": "native", "dtype": "float16", "patch_size": 16, "max_bytes": 256}}
    options = options if name == "bbt_neutron" else {}
    eager, streamed = (SplitInputs(name, options, raw, eager=e) for e in (True, False))
    kind = eager.kind
    rng = np.random.default_rng(0)
    widths = set()
    for _ in range(6):
        rows = rng.permutation(96)[: int(rng.integers(1, 12))]
        trimmed = eager.tensors(rows)
        padded = eager.tensors(rows, buckets=(16, 24, 40))
        assert padded.keys() == trimmed.keys()
        n = trimmed[kind.length_key].shape[kind.length_axis]
        width = padded[kind.length_key].shape[kind.length_axis]
        assert width == bucket_length(n, (16, 24, 40), eager.arrays[kind.length_key].shape[kind.length_axis])
        widths.add(width)
        for key, value in padded.items():
            assert torch.equal(value.narrow(kind.length_axis, 0, n), trimmed[key])
            assert not value.narrow(kind.length_axis, n, width - n).any()  # padding: zeros, mask off
            assert torch.equal(streamed.tensors(rows, buckets=(16, 24, 40))[key], value)
    if name == "particlenet":
        assert len(widths) > 1  # the draws exercised more than one bucket


def test_buckets_enter_the_settings_hash_only_when_set():
    cfg, bucketed = load_config(raw_config()), load_config(raw_config(length_buckets=BUCKETS))
    plain = resolve_settings(cfg, parse_cell_id(cfg, PART))
    assert "length_buckets" not in plain["training"]  # the default leaves every existing hash as it was
    assert settings_hash(resolve_settings(bucketed, parse_cell_id(bucketed, PART))) != settings_hash(plain)


def test_bad_buckets_are_refused_naming_the_key():
    from jetscale.errors import ConfigError

    with pytest.raises(ConfigError, match="length_buckets"):
        load_config(raw_config(length_buckets=[16, 0]))


@pytest.mark.skipif(
    not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")),
    reason="torch.compile on CPU needs a C++ compiler (inductor's C++ kernels); none on PATH",
)
def test_compiled_bucketed_cell_matches_eager(splits, tmp_path):
    """ParT, compiled with static bucket shapes (each bucket once), trains the model eager training gives."""
    sizes = {
        bucket_length(int(m.sum(axis=1).max()), BUCKETS, 32)
        for m in np.array_split(np.asarray(load_split(splits, "train", n=44)["mask"]), 6)
    }
    assert len(sizes) > 1  # batches of several shapes
    cfg = load_config(raw_config(length_buckets=BUCKETS))
    eager = loop.train_cell(cfg, PART, splits, tmp_path / "eager", progress=False)
    cfg = load_config(raw_config(length_buckets=BUCKETS, compile=True))
    compiled = loop.train_cell(cfg, PART, splits, tmp_path / "compiled", progress=False)
    assert compiled["hardware"]["compiled"] and not eager["hardware"]["compiled"]
    assert compiled["settings_hash"] == eager["settings_hash"]  # compile is a run knob
    assert compiled["test_loss"] == pytest.approx(eager["test_loss"], abs=1e-5)
    # the held-out score after every evaluation, not only the end (weights are a poor measure here: AdamW turns
    # rounding in near-zero gradients into full-size steps, so even ParT's two eager layouts differ by 6e-3)
    val = [pd.read_csv(tmp_path / run / "train_log.csv")["val_loss"].dropna() for run in ("eager", "compiled")]
    assert len(val[0]) > 2 and np.allclose(val[0], val[1], rtol=0, atol=1e-5)

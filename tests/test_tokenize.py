"""BBT byte tokenization and the padded particle tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jetscale.tokenize.bytes import BOS, EOS, PAD, SEP, VOCAB_SIZE, ByteTokenizer
from jetscale.tokenize.particles import pair_features, particle_arrays
from jetscale.train.synthetic import synthetic_jets


@pytest.fixture(scope="module")
def jets():
    return synthetic_jets(12, 11, n_particles=32, seed=3, mean_particles=10)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_native_round_trip_is_exact(jets, dtype):
    tok = ByteTokenizer(mode="native", dtype=dtype, patch_size=16, max_bytes=4096)
    tokens, truncated = tok.encode(jets["features"], jets["mask"])
    assert tokens.shape == (12, tok.seq_len) and not truncated.any()
    assert tokens.min() >= 0 and tokens.max() < VOCAB_SIZE
    for j in range(12):
        idx, values = tok.decode(tokens[j], 19)
        n = jets["mask"][j].sum()
        expected = jets["features"][j, :n].astype(np.dtype(dtype))
        np.testing.assert_array_equal(idx, np.arange(n))
        assert values.tobytes() == expected.tobytes()  # bit-exact
        assert tokens[j, 0] == BOS and tokens[j, 2] == SEP and tokens[j, 1 + n * tok.record_bytes(19)] == EOS


def test_text_mode_round_trips_to_its_precision(jets):
    tok = ByteTokenizer(mode="text", precision=3, patch_size=1, max_bytes=8192)
    tokens, truncated = tok.encode(jets["features"][:3], jets["mask"][:3])
    assert not truncated.any()
    idx, values = tok.decode(tokens[0], 19)
    n = jets["mask"][0].sum()
    np.testing.assert_array_equal(idx, np.arange(n))
    np.testing.assert_allclose(values, jets["features"][0, :n], atol=6e-4)
    assert bytes(tokens[0, 1:3].astype(np.uint8)) == b"0" + bytes([SEP])


def test_truncation_keeps_leading_particles_and_counts_jets(jets):
    tok = ByteTokenizer(mode="native", dtype="float16", patch_size=16, max_bytes=256)  # room for 6 particles
    tokens, truncated = tok.encode(jets["features"], jets["mask"])
    fit = (tok.seq_len - 2) // tok.record_bytes(19)
    np.testing.assert_array_equal(truncated, jets["mask"].sum(1) > fit)
    idx, values = tok.decode(tokens[np.argmax(truncated)], 19)
    assert len(idx) == fit
    np.testing.assert_array_equal(values, jets["features"][np.argmax(truncated), :fit].astype(np.float16))


@pytest.mark.parametrize("patch_size", [1, 16])
def test_patches_and_mask(jets, patch_size):
    tok = ByteTokenizer(mode="native", dtype="float16", patch_size=patch_size, max_bytes=1000)
    tokens, _ = tok.encode(jets["features"], jets["mask"])
    patches, pmask = tok.patches(tokens)
    assert tok.seq_len % patch_size == 0 and tok.seq_len >= 1000
    assert patches.shape == (12, tok.seq_len // patch_size, patch_size) and pmask.shape == patches.shape[:2]
    length = (tokens != PAD).sum(1)  # real bytes: a prefix of each row
    np.testing.assert_array_equal(pmask.sum(1), -(-length // patch_size))
    assert (pmask[:, :-1] >= pmask[:, 1:]).all()  # valid patches form a prefix; padding-only patches masked
    assert (patches[~pmask] == PAD).all()


def test_particle_arrays_and_pair_features(jets):
    arr = particle_arrays(jets["features"], jets["mask"], jets["vectors"])
    assert arr["x"].shape == (12, 19, 32) and arr["points"].shape == (12, 2, 32)
    assert arr["vectors"].shape == (12, 4, 32) and arr["mask"].shape == (12, 1, 32)
    np.testing.assert_array_equal(arr["points"], arr["x"][:, :2])
    u = pair_features(torch.from_numpy(arr["vectors"]))
    assert u.shape == (12, 4, 32, 32) and torch.isfinite(u).all()
    torch.testing.assert_close(u, u.transpose(2, 3))  # symmetric in (i, j)

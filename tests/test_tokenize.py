"""BBT byte tokenization and the padded particle tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jetscale.data.testing import synthetic_jets
from jetscale.tokenize.bytes import BOS, EOS, PAD, SEP, VOCAB_SIZE, ByteTokenizer
from jetscale.tokenize.particles import pair_features, particle_arrays


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


@pytest.mark.parametrize("max_bytes", [4096, 600])
def test_native_tokens_are_the_valid_particles_in_order_wherever_the_mask_puts_them(jets, max_bytes):
    """The splits store each jet's particles first (a prefix mask); a mask with gaps gives the tokens of its
    valid particles moved to the front in order, truncated alike."""
    tok = ByteTokenizer(mode="native", dtype="float32", patch_size=16, max_bytes=max_bytes)
    features, mask = jets["features"], jets["mask"]
    rng = np.random.default_rng(5)
    gappy_features, gappy_mask = np.zeros_like(features), np.zeros_like(mask)
    for j in range(len(mask)):
        n = int(mask[j].sum())
        slots = np.sort(rng.choice(mask.shape[1], n, replace=False))  # the same particles, in order, with gaps
        gappy_features[j, slots], gappy_mask[j, slots] = features[j, :n], True
    assert not (gappy_mask[:, 1:] <= gappy_mask[:, :-1]).all()
    tokens, truncated = tok.encode(features, mask)
    gappy_tokens, gappy_truncated = tok.encode(gappy_features, gappy_mask)
    np.testing.assert_array_equal(gappy_tokens, tokens)
    np.testing.assert_array_equal(gappy_truncated, truncated)
    assert truncated.any() == (max_bytes == 600)


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


# Text mode: the vectorised encoder must give byte for byte the reference loop's output
# (ByteTokenizer._encode_text_reference, kept in bytes.py as the fast path's fallback).


def _assert_same_text_encoding(tok, features, mask):
    tokens, truncated = tok.encode(features, mask)
    ref_tokens, ref_truncated = tok._encode_text_reference(np.asarray(features), np.asarray(mask, dtype=bool))
    assert tokens.dtype == ref_tokens.dtype and tokens.shape == ref_tokens.shape
    np.testing.assert_array_equal(truncated, ref_truncated)
    for j in np.flatnonzero((tokens != ref_tokens).any(axis=1))[:1]:  # readable failure: the first differing jet
        assert bytes(tokens[j].clip(0, 255).astype(np.uint8)) == bytes(ref_tokens[j].clip(0, 255).astype(np.uint8))
    np.testing.assert_array_equal(tokens, ref_tokens)
    return tokens, truncated


def _awkward_values(rng, k):
    """Values across magnitudes, exact ties (m / 32, x.5), near-ties, zeros of both signs, NaN and inf."""
    magnitude = 10.0 ** rng.uniform(-7, 12, k) * rng.choice([-1.0, 1.0], k)
    ties = (rng.integers(-(10**6), 10**6, k) + 0.5) / 10.0 ** rng.integers(0, 7, k)
    dyadic = rng.integers(-(2**20), 2**20, k) / 2.0 ** rng.integers(0, 24, k)
    special = [
        0.0,
        -0.0,
        9.99995,
        -9.99995,
        0.00005,
        -0.00005,
        0.00015,
        0.03125,
        -0.03125,
        2.5,
        0.5,
        1e6,
        -1e6,
        1e20,
        -3e38,
        1e-45,
        2**49 / 1e4,
        np.nan,
        -np.nan,
        np.inf,
        -np.inf,
        99999.99995,
        -1e-5,
    ]
    return np.concatenate([magnitude, ties, dyadic, special])


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_text_vectorised_matches_reference_on_awkward_values(dtype):
    rng = np.random.default_rng(7)
    with np.errstate(over="ignore"):
        values = _awkward_values(rng, 6700 if dtype == "float32" else 700).astype(dtype)
    values = np.resize(values, (-(-len(values) // (4 * 19)), 4, 19))  # ~20k (float32) / ~2k values
    mask = rng.random(values.shape[:2]) < 0.8  # holes: the index written is the particle's position
    for precision in (0, 1, 4, 7):
        tok = ByteTokenizer(mode="text", precision=precision, patch_size=1, max_bytes=8192)
        _, truncated = _assert_same_text_encoding(tok, values, mask)
        assert not truncated.any()


def test_text_vectorised_matches_reference_on_jets_with_masks(jets):
    rng = np.random.default_rng(0)
    many = synthetic_jets(60, 11, n_particles=64, seed=5)
    features = many["features"] * 10.0 ** rng.integers(-3, 4, size=(1, 1, 19)).astype(np.float32)
    masks = [many["mask"], many["mask"] & (rng.random(many["mask"].shape) < 0.7), np.zeros_like(many["mask"])]
    for mask in masks:
        full, _ = ByteTokenizer(mode="text", precision=4, patch_size=1, max_bytes=1 << 16).encode(features, mask)
        length = (full != PAD).sum(1)  # whole jet: BOS + records + EOS
        for max_bytes in (40, max(18, int(np.median(length))), 1024, max(18, int(length.max()))):
            tok = ByteTokenizer(mode="text", precision=4, patch_size=16, max_bytes=max_bytes)
            _, truncated = _assert_same_text_encoding(tok, features, mask)
            np.testing.assert_array_equal(truncated, length > tok.seq_len)
    for dtype in (np.float64, np.int32, bool):  # other real dtypes go through the fast path as well
        _assert_same_text_encoding(
            ByteTokenizer(mode="text", precision=3, max_bytes=2048),
            (features[:10] * 100).astype(dtype),
            many["mask"][:10],
        )
    tok = ByteTokenizer(mode="text", precision=2, max_bytes=512)  # no features, complex: the reference itself
    _assert_same_text_encoding(tok, np.zeros((3, 5, 0), np.float32), many["mask"][:3, :5])
    _assert_same_text_encoding(tok, jets["features"][:3].astype(np.complex64), jets["mask"][:3])


def test_text_truncation_boundary_and_layout():
    features = np.array([[[1.5, -0.25], [-0.0, 10.0], [3.0, 2.0]]], dtype=np.float32)
    mask = np.array([[True, False, True]])
    wide = ByteTokenizer(mode="text", precision=2, patch_size=1, max_bytes=4096)
    tokens, truncated = wide.encode(features, mask)
    body = b"0\x1f1.50,-0.25;2\x1f3.00,2.00;"
    assert bytes(tokens[0, : len(body) + 2].astype(np.uint8)) == bytes([BOS]) + body + bytes([EOS])
    assert (tokens[0, len(body) + 2 :] == PAD).all() and not truncated.any()
    exact = len(body) + 2  # BOS + both records + EOS fills the sequence exactly: nothing is cut

    def text(max_bytes):
        return ByteTokenizer(mode="text", precision=2, patch_size=1, max_bytes=max_bytes)

    tokens, truncated = _assert_same_text_encoding(text(exact), features, mask)
    assert not truncated[0] and tokens[0, -1] == EOS
    tokens, truncated = _assert_same_text_encoding(text(exact - 1), features, mask)
    first = body[: body.index(b";") + 1]  # only the first record fits
    assert truncated[0] and bytes(tokens[0, : len(first) + 2].astype(np.uint8)) == bytes([BOS]) + first + bytes([EOS])
    assert (tokens[0, len(first) + 2 :] == PAD).all()
    tokens, truncated = _assert_same_text_encoding(text(12), features, mask)  # not even the first record fits
    assert truncated[0] and list(tokens[0, :3]) == [BOS, EOS, PAD]

"""vq_gpt (OmniJet-alpha): VQ-VAE tokenizer, token quality, pT-ordered sequences, GPT loss, sampling, W1,
and the fine-tuning classifier. Tiny synthetic jets; each test takes a few seconds at most."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jetscale.data.schema import FEATURE_NAMES
from jetscale.data.splits import pad
from jetscale.data.testing import synthetic_table
from jetscale.models.registry import batch_tensors
from jetscale.pretrain import METHODS, vq_gpt
from jetscale.pretrain.base import load_backbone
from jetscale.pretrain.vq_gpt.gpt import IGNORE, pt_order, sequences, stable_descending_order
from jetscale.pretrain.vq_gpt.quality import (
    codebook_usage,
    feature_w1,
    jet_observables,
    observable_w1,
    resolution,
)

TINY = {
    "codebook_size": 16,
    "latent_dim": 4,
    "vq_hidden": 32,
    "vq_steps": 60,
    "vq_batch_jets": 32,
    "vq_lr": 5e-3,
    "n_layers": 1,
}
WIDTH = 16
LOG_PT = FEATURE_NAMES.index("log_pt")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def jets(n=120, seed=0, n_particles=16):
    dense = pad(synthetic_table(n, 11, seed=seed, mean_particles=8.0), n_particles)
    return vq_gpt.prepare_inputs(dense["features"], dense["mask"])


@pytest.fixture(scope="module")
def fitted():
    """One fitted objective shared by the read-only tests (its tokenizer is never changed by them)."""
    torch.set_num_threads(1)
    arrays = jets()
    obj = vq_gpt.build("vq_gpt", WIDTH, len(FEATURE_NAMES), 11, TINY, seed=0)
    stats = vq_gpt.prepare(obj, arrays, seed=0)
    return obj, arrays, stats


def test_registered_method_points_here():
    spec = METHODS["vq_gpt"]
    assert spec.available() and spec.load() is vq_gpt


# --- tokenizer ----------------------------------------------------------------------
def test_tokenizer_fit_lowers_reconstruction_loss_and_uses_many_codes(fitted):
    _, _, stats = fitted
    tok = stats["tokenizer"]
    assert tok["final_reco_loss"] < 0.7 * tok["first_reco_loss"]
    usage = stats["quality"]["usage"]
    assert usage["codes_used"] > 1 and usage["perplexity"] > 2.0
    assert stats["quality_jets"].startswith("held out") and stats["quality"]["n_jets"] == 12
    assert set(stats["quality"]["resolution"]) == set(FEATURE_NAMES)


def test_tokenizer_round_trip_and_padding(fitted):
    obj, arrays, _ = fitted
    x, mask = vq_gpt.particles_of(arrays, obj.columns)
    xb, mb = torch.from_numpy(x[:8]), torch.from_numpy(mask[:8])
    reco, codes = obj.tokenizer.reconstruct(xb, mb)
    assert codes.shape == mb.shape and bool((codes[~mb] == -1).all())
    assert bool(((codes[mb] >= 0) & (codes[mb] < 16)).all())
    assert reco.shape == xb.shape and bool((reco[~mb] == 0).all())
    # decoding the same codes is deterministic and decode(encode(decode(c))) maps back onto codebook cells
    assert torch.equal(obj.tokenizer.decode(codes, mb), reco)
    # a fitted tokenizer reconstructs better than an unfitted one (same architecture, random codebook)
    fresh = vq_gpt.build("vq_gpt", WIDTH, len(FEATURE_NAMES), 11, TINY, seed=0).tokenizer
    fresh.mean.copy_(obj.tokenizer.mean)
    fresh.std.copy_(obj.tokenizer.std)
    err = lambda r: float(((obj.tokenizer.standardise(r) - obj.tokenizer.standardise(xb))[mb]).square().mean())  # noqa: E731
    assert err(reco) < err(fresh.reconstruct(xb, mb)[0])


def test_prepare_is_deterministic_in_seed():
    arrays = jets(60, seed=3)
    opts = {**TINY, "vq_steps": 15}
    a = vq_gpt.build("vq_gpt", WIDTH, len(FEATURE_NAMES), 11, opts, seed=0)
    b = vq_gpt.build("vq_gpt", WIDTH, len(FEATURE_NAMES), 11, opts, seed=0)
    vq_gpt.prepare(a, arrays, seed=5)
    vq_gpt.prepare(b, arrays, seed=5)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert bool(a.tokenizer.fitted)


def test_transformer_tokenizer_fits_and_is_permutation_equivariant():
    arrays = jets(60, seed=1)
    opts = {**TINY, "tokenizer": "transformer", "vq_layers": 1, "vq_heads": 2, "vq_steps": 30}
    obj = vq_gpt.build("vq_gpt", WIDTH, len(FEATURE_NAMES), 11, opts, seed=0)
    stats = vq_gpt.prepare(obj, arrays, seed=0)
    assert stats["tokenizer"]["final_reco_loss"] < stats["tokenizer"]["first_reco_loss"]
    x, mask = vq_gpt.particles_of(arrays, obj.columns)
    xb, mb = torch.from_numpy(x[:4]), torch.from_numpy(mask[:4])
    perm = torch.randperm(xb.shape[1], generator=torch.Generator().manual_seed(0))
    codes = obj.tokenizer.encode(xb, mb)
    assert torch.equal(obj.tokenizer.encode(xb[:, perm], mb[:, perm]), codes[:, perm])


# --- quality metrics on known cases ---------------------------------------------------------------------------------
def test_resolution_known_cases():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(5, 4, 2))
    mask = np.ones((5, 4), bool)
    mask[:, 3] = False
    perfect = resolution(true, true.copy(), mask, ["a", "b"])
    assert perfect == {n: {"bias": 0.0, "std": 0.0, "iqr": 0.0} for n in "ab"}
    reco = true.copy()
    reco[..., 0] += 0.5
    reco[..., 1] = np.where(mask, true[..., 1] + np.arange(4)[None, :], 99.0)  # padded slots are ignored
    res = resolution(true, reco, mask, ["a", "b"])
    assert res["a"]["bias"] == pytest.approx(0.5) and res["a"]["std"] == pytest.approx(0.0, abs=1e-12)
    # differences 0, 1, 2 equally often: mean 1, std sqrt(2/3); numpy's linear percentiles q25 = 0, q75 = 2
    assert res["b"]["bias"] == pytest.approx(1.0) and res["b"]["std"] == pytest.approx(np.sqrt(2 / 3))
    assert res["b"]["iqr"] == pytest.approx(2.0)


def test_codebook_usage_known_cases():
    one = codebook_usage(np.array([[3, 3, 3, -1]]), 8)
    assert one == {"codes_used": 1, "fraction_used": 1 / 8, "perplexity": 1.0, "n_particles": 3}
    uniform = codebook_usage(np.arange(8).repeat(5), 8)
    assert uniform["fraction_used"] == 1.0 and uniform["perplexity"] == pytest.approx(8.0)
    half = codebook_usage(np.array([0, 1, 0, 1]), 4)
    assert half["fraction_used"] == 0.5 and half["perplexity"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="out of range"):
        codebook_usage(np.array([8]), 8)


def test_w1_zero_for_identical_and_the_shift_for_shifted():
    rng = np.random.default_rng(1)
    names = ["log_pt", "deta", "dphi"]
    a = rng.normal(size=(50, 6, 3)) * [1.0, 0.2, 0.2]
    mask = rng.random((50, 6)) < 0.8
    mask[:, 0] = True
    assert feature_w1(a, mask, a.copy(), mask, names) == {n: 0.0 for n in names}
    assert all(v == 0.0 for v in observable_w1(a, mask, a.copy(), mask, names).values())
    shifted = feature_w1(a + [0.3, 0.0, 0.0], mask, a, mask, names)
    assert shifted["log_pt"] == pytest.approx(0.3) and shifted["deta"] == 0.0
    fewer = mask.copy()
    fewer[:, 1:] = False
    assert observable_w1(a, fewer, a, mask, names)["multiplicity"] == pytest.approx(mask.sum(1).mean() - 1)


def test_jet_mass_is_frame_independent():
    """A common Δη shift (longitudinal boost of massless particles) or Δφ rotation leaves the mass unchanged."""
    rng = np.random.default_rng(2)
    f = np.stack([rng.normal(0, 1, (10, 5)), rng.normal(0, 0.3, (10, 5)), rng.normal(0, 0.3, (10, 5))], -1)
    mask = np.ones((10, 5), bool)
    names = ["log_pt", "deta", "dphi"]
    base = jet_observables(f, mask, names)
    moved = jet_observables(f + [0.0, 0.7, -1.1], mask, names)
    np.testing.assert_allclose(moved["mass"], base["mass"], rtol=1e-9)
    assert (base["mass"] > 0).all() and (base["multiplicity"] == 5).all()


# --- sequences ----------------------------------------------------------------------
def test_sequences_are_pt_ordered_with_start_and_stop():
    codes = torch.tensor([[5, 7, 2, -1], [1, -1, -1, -1]])
    mask = codes >= 0
    key = torch.tensor([[0.1, 3.0, 1.0, 9.0], [2.0, 5.0, 0.0, 0.0]])  # padded slots' keys must not count
    ordered, n = pt_order(codes, mask, key, max_particles=8)
    assert ordered.tolist() == [[7, 2, 5, -1], [1, -1, -1, -1]] and n.tolist() == [3, 1]
    start, stop = 0, 17
    inputs, targets = sequences(ordered, n, start, stop)
    assert inputs.tolist() == [[0, 8, 3, 6, 17], [0, 2, 17, 17, 17]]
    assert targets.tolist() == [[8, 3, 6, 17, IGNORE], [2, 17, IGNORE, IGNORE, IGNORE]]
    cut, n_cut = pt_order(codes, mask, key, max_particles=2)  # the hardest two, no STOP lost
    assert cut.tolist() == [[7, 2], [1, -1]] and n_cut.tolist() == [2, 1]
    assert sequences(cut, n_cut, start, stop)[1].tolist() == [[8, 3, 17], [2, 17, IGNORE]]


def test_the_sort_free_order_is_the_stable_sort():
    """ONNX export orders particles without a sort (ONNX has no stable one): the same order, ties included."""
    g = torch.Generator().manual_seed(0)
    key = torch.randint(0, 4, (6, 9), generator=g).float()  # many ties
    key[0, 5:] = float("-inf")
    ref = torch.sort(key, dim=1, descending=True, stable=True).indices
    assert torch.equal(stable_descending_order(key), ref)
    codes = torch.randint(0, 50, key.shape, generator=g)
    mask = torch.rand(key.shape, generator=g) > 0.3
    (sorted_codes, n), (compared, n_compared) = (pt_order(codes, mask, key, 4, sort=s) for s in (True, False))
    assert torch.equal(compared, sorted_codes) and torch.equal(n_compared, n)


def test_objective_tokens_follow_log_pt(fitted):
    obj, arrays, _ = fitted
    batch = batch_tensors(arrays, slice(0, 6))
    codes, n = obj.tokens(batch["x"], batch["mask"])
    x = batch["x"].transpose(1, 2)
    m = batch["mask"][:, 0].bool()
    direct = obj.tokenizer.encode(x, m)
    for j in range(6):
        order = torch.argsort(x[j, : int(n[j]), LOG_PT], descending=True, stable=True)
        assert codes[j, : int(n[j])].tolist() == direct[j, order].tolist()
        assert bool((codes[j, int(n[j]) :] == -1).all())
    # shuffling the particles inside each jet gives the same sequences
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(1))
    shuffled, _ = obj.tokens(batch["x"][:, :, perm], batch["mask"][:, :, perm])
    assert torch.equal(shuffled, codes)


# --- GPT ----------------------------------------------------------------------
def test_gpt_next_token_loss_decreases(fitted):
    obj, arrays, _ = fitted
    obj = _copy(fitted[0])
    before = {k: v.clone() for k, v in obj.tokenizer.state_dict().items()}
    opt = torch.optim.AdamW([p for p in obj.parameters() if p.requires_grad], lr=3e-3)
    batch = batch_tensors(arrays, slice(0, 64))
    first, _ = obj.loss(batch)
    for _ in range(40):
        loss, extra = obj.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    last, extra = obj.loss(batch)
    assert float(last.detach()) < float(first.detach()) - 0.5
    assert 0.0 <= extra["token_accuracy"] <= 1.0
    after = obj.tokenizer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # pretraining never moves the tokenizer


def _copy(obj):
    clone = vq_gpt.build("vq_gpt", WIDTH, len(FEATURE_NAMES), 11, TINY, seed=0)
    clone.load_state_dict(obj.state_dict())
    return clone


def test_loss_refuses_labels_and_an_unfitted_tokenizer(fitted):
    obj, arrays, _ = fitted
    batch = batch_tensors(arrays, slice(0, 4))
    with pytest.raises(ValueError, match="label"):
        obj.loss({**batch, "labels": torch.zeros(4, dtype=torch.long)})
    fresh = vq_gpt.build("vq_gpt", WIDTH, len(FEATURE_NAMES), 11, TINY, seed=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        fresh.loss(batch)
    with pytest.raises(ValueError, match="label"):  # the tokenizer fit refuses labelled arrays too
        vq_gpt.prepare(fresh, {**arrays, "label": np.zeros(len(arrays["x"]))}, seed=0)


def test_pretraining_does_not_depend_on_classes():
    """n_classes (the only label fact build sees) changes nothing in the objective."""
    a = vq_gpt.build("vq_gpt", WIDTH, len(FEATURE_NAMES), 2, TINY, seed=0).state_dict()
    b = vq_gpt.build("vq_gpt", WIDTH, len(FEATURE_NAMES), 11, TINY, seed=0).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sampling_shapes_and_valid_tokens(fitted):
    obj = fitted[0]
    out = obj.sample(10, seed=0)
    L = out["codes"].shape[1]
    assert out["codes"].shape == (10, L) and out["features"].shape == (10, L, len(FEATURE_NAMES))
    assert 1 <= L <= TINY.get("max_particles", 128)
    m = out["mask"]
    assert ((out["codes"] >= 0) == m).all() and (out["codes"][m] < 16).all()
    assert (m.sum(1) == out["n_particles"]).all() and (out["n_particles"] >= 1).all()
    assert all(row[:k].all() and not row[k:].any() for row, k in zip(m, out["n_particles"], strict=True))
    assert (out["features"][~m] == 0).all()
    again = obj.sample(10, seed=0)
    assert (again["codes"] == out["codes"]).all()  # seeded


def test_sampling_stops_at_the_stop_token():
    obj = vq_gpt.build("vq_gpt", WIDTH, len(FEATURE_NAMES), 11, {**TINY, "max_particles": 6}, seed=0)
    with torch.no_grad():
        obj.lm_head.weight.zero_()
        obj.lm_head.bias.zero_()
        obj.lm_head.bias[obj.opts.stop] = 50.0  # STOP as soon as it is allowed: one particle per jet
    one = obj.sample(5, seed=0)
    assert one["codes"].shape == (5, 1) and (one["n_particles"] == 1).all()
    with torch.no_grad():
        obj.lm_head.bias[obj.opts.stop] = -50.0
        obj.lm_head.bias[obj.opts.start] = 50.0  # START is never sampled even when it is the likeliest
    never = obj.sample(3, seed=0)
    assert (never["n_particles"] == 6).all() and (never["codes"] >= 0).all()


def test_evaluate_reports_w1_and_quality(fitted):
    obj, arrays, _ = fitted
    held = {k: v[100:] for k, v in arrays.items()}
    ev = vq_gpt.evaluate(obj, held, seed=0, n_samples=20)
    assert set(ev["w1_generated"]["features"]) == set(FEATURE_NAMES)
    assert {"multiplicity", "mass", "log_sum_pt"} == set(ev["w1_generated"]["observables"])
    assert ev["w1_reconstructed"]["observables"]["multiplicity"] == 0.0  # tokens keep every particle
    assert all(v >= 0 for v in ev["w1_generated"]["features"].values())
    assert ev["quality"]["usage"]["n_particles"] == int(held["mask"].sum())


# --- classifier ----------------------------------------------------------------------
def test_classifier_loads_the_backbone_with_every_key_consumed(fitted):
    obj, arrays, _ = fitted
    clf = vq_gpt.classifier(WIDTH, len(FEATURE_NAMES), 11, TINY)
    backbone = obj.backbone_state_dict()
    assert not any(k.startswith("lm_head.") for k in backbone)
    head = load_backbone(clf, backbone)
    assert head and all(k.startswith("head.") for k in head)
    own = clf.state_dict()
    assert all(torch.equal(own[k], v) for k, v in backbone.items())
    batch = batch_tensors(arrays, slice(0, 8))
    clf.train()
    assert not clf.tokenizer.training and not any(p.requires_grad for p in clf.tokenizer.parameters())
    logits = clf(**batch)  # extra input keys are ignored
    assert logits.shape == (8, 11) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert clf.head.out.weight.grad is not None and clf.gpt.embed.weight.grad is not None
    # the classifier tokenizes exactly as the pretraining objective did
    assert torch.equal(clf.tokens(batch["x"], batch["mask"])[0], obj.tokens(batch["x"], batch["mask"])[0])


@pytest.mark.parametrize("head", ["mean", "last"])
def test_classifier_heads(fitted, head):
    obj, arrays, _ = fitted
    clf = vq_gpt.classifier(WIDTH, len(FEATURE_NAMES), 3, {**TINY, "head": head})
    load_backbone(clf, obj.backbone_state_dict())
    assert clf(**batch_tensors(arrays, slice(0, 4))).shape == (4, 3)


def test_bad_options_name_the_key():
    with pytest.raises(ValueError, match=r"vq_gpt.codebok_size: unknown option; allowed: \['codebook_size'"):
        vq_gpt.build("vq_gpt", WIDTH, 19, 11, {"codebok_size": 8}, seed=0)
    with pytest.raises(ValueError, match=r"vq_gpt.tokenizer: 'cnn' is not allowed; allowed values: \['mlp'"):
        vq_gpt.build("vq_gpt", WIDTH, 19, 11, {"tokenizer": "cnn"}, seed=0)
    with pytest.raises(ValueError, match="vq_gpt.vq_steps: bad value '10': must be an integer"):
        vq_gpt.build("vq_gpt", WIDTH, 19, 11, {"vq_steps": "10"}, seed=0)
    with pytest.raises(ValueError, match=r"features: unknown feature\(s\) \['pt'\]"):
        vq_gpt.build("vq_gpt", WIDTH, 19, 11, {"features": ["pt"]}, seed=0)
    with pytest.raises(ValueError, match="not 'part'"):
        vq_gpt.build("part", WIDTH, 19, 11, {}, seed=0)
    with pytest.raises(ValueError, match="n_heads"):
        vq_gpt.build("vq_gpt", 18, 19, 11, {"n_heads": 4}, seed=0)


def test_feature_subset_tokenizes_only_those_features():
    arrays = jets(40, seed=2)
    opts = {**TINY, "features": ["log_pt", "deta", "dphi"], "vq_steps": 10}
    obj = vq_gpt.build("vq_gpt", WIDTH, len(FEATURE_NAMES), 11, opts, seed=0)
    stats = vq_gpt.prepare(obj, arrays, seed=0)
    assert stats["features"] == ["log_pt", "deta", "dphi"] and obj.tokenizer.n_features == 3
    assert obj.sample(2, seed=0)["features"].shape[-1] == 3

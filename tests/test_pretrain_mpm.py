"""Masked particle modelling (jetscale.pretrain.mpm): masking, dropped particles, targets, backbone hand-over."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jetscale.data.testing import synthetic_jets
from jetscale.errors import ConfigError
from jetscale.models.registry import batch_tensors, build_model, prepare_inputs
from jetscale.pretrain import mpm
from jetscale.pretrain.base import load_backbone

WIDTH = 16


@pytest.fixture(scope="module")
def arrays():
    jets = synthetic_jets(48, 11, n_particles=24, seed=3, mean_particles=14)
    out, _ = prepare_inputs("part", None, jets["features"], jets["mask"], jets["vectors"])
    return out  # model inputs only: no labels anywhere


@pytest.fixture(scope="module")
def batch(arrays):
    return batch_tensors(arrays, np.arange(len(arrays["mask"])))


def objective(arrays, target="l1", **options):
    obj = mpm.build("part", WIDTH, 19, 11, {"target": target, "kmeans_k": 16, **options}, seed=0)
    mpm.prepare(obj, arrays, seed=0)
    return obj


def train(obj, batch, steps=40, lr=3e-3):
    torch.manual_seed(1)
    opt = torch.optim.AdamW(obj.parameters(), lr=lr)
    losses, target_losses = [], []
    for _ in range(steps):
        loss, stats = obj.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        target_losses.append(stats["target_loss"])
    return losses, target_losses


@pytest.mark.parametrize("target", mpm.TARGETS)
def test_each_target_lowers_its_loss(target, arrays, batch):
    torch.set_num_threads(1)
    losses, target_losses = train(objective(arrays, target), batch)
    assert np.isfinite(losses).all()
    for curve in (losses, target_losses):  # the total and the target's own term (not just the particle ID)
        first, last = np.mean(curve[:5]), np.mean(curve[-5:])
        assert last < 0.85 * first, (target, first, last)


def test_mask_is_forty_percent_of_real_particles_and_never_padding():
    counts = torch.tensor([0, 1, 2, 3, 5, 10, 17, 24])
    valid = torch.arange(24)[None, :] < counts[:, None]
    torch.manual_seed(0)
    masked = mpm.sample_masked(valid, 0.4)
    assert not (masked & ~valid).any()
    assert masked.sum(dim=1).tolist() == [int(np.floor(0.4 * n + 1e-9)) for n in counts.tolist()]
    # different draws pick different particles, each real particle about equally often
    hits = sum(mpm.sample_masked(valid[-1:], 0.4).float() for _ in range(2000))[0]
    assert hits.sum() == 2000 * 9 and hits.min() > 0.6 * hits.mean()


def test_loss_reports_the_masked_fraction(arrays, batch):
    _, stats = objective(arrays).loss(batch)
    n_real = batch["mask"][:, 0].sum(dim=1)
    assert stats["n_masked"] == float(torch.floor(0.4 * n_real + 1e-9).sum())
    assert 0.33 < stats["mask_fraction"] <= 0.4


def _perturb_masked(batch, masked):
    out = dict(batch)
    g = torch.Generator().manual_seed(7)
    for key in ("x", "vectors"):
        noise = 100 * torch.randn(batch[key].shape, generator=g)
        out[key] = torch.where(masked[:, None, :], batch[key] + noise, batch[key])
    return out


def test_masked_particles_are_never_visible_to_the_encoder(arrays, batch):
    """Perturbing the masked particles' features and four-vectors (pair bias) leaves the encoder outputs of the
    visible ones unchanged bit for bit, through the whole loss (train mode: batch-statistics BatchNorm)."""
    obj = objective(arrays, "kmeans")
    valid = batch["mask"][:, 0] > 0
    seen = []
    obj.backbone.blocks[-1].register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))

    def run(b):
        torch.manual_seed(11)  # the same mask draw and dropout both times
        return float(obj.loss(b)[0].detach())

    torch.manual_seed(11)
    masked = mpm.sample_masked(valid, 0.4)
    assert masked.any()
    loss_a = run(batch)
    loss_b = run(_perturb_masked(batch, masked))
    assert loss_a != loss_b  # the targets did change
    assert torch.equal(seen[0], seen[1])

    # ... while perturbing a visible particle does reach the encoder (the check can fail)
    visible = valid & ~masked
    one = torch.zeros_like(visible)
    one[0, visible[0].nonzero()[0, 0]] = True
    run(_perturb_masked(batch, one))
    assert not torch.equal(seen[0], seen[2])


def test_encoder_sees_only_visible_particles_packed_in_order(arrays, batch):
    obj = objective(arrays)
    valid = batch["mask"][:, 0] > 0
    torch.manual_seed(2)
    masked = mpm.sample_masked(valid, 0.4)
    packed, idx, keep = mpm.pack_visible(batch, valid & ~masked)
    assert keep.sum() == (valid & ~masked).sum()
    assert packed["x"].shape[-1] == int((valid & ~masked).sum(dim=1).max())
    b, s = keep.nonzero(as_tuple=True)
    assert not masked[b, idx[b, s]].any() and valid[b, idx[b, s]].all()
    assert (idx[b, s].view(-1)[1:] > idx[b, s].view(-1)[:-1]).logical_or(b[1:] != b[:-1]).all()  # order kept
    assert (packed["x"][~keep[:, None, :].expand_as(packed["x"])] == 0).all()
    h, _, _ = obj.encode_visible(batch, masked)
    assert h.shape[:2] == keep.shape


def test_backbone_loads_into_a_part_classifier_with_every_key_consumed(arrays, batch):
    obj = objective(arrays, "flow_matching")
    train(obj, batch, steps=2)
    sd = obj.backbone_state_dict()
    clf = build_model("part", WIDTH, 11, 19)
    result = clf.load_state_dict(sd, strict=False)
    assert result.unexpected_keys == []
    assert {k.split(".")[0] for k in result.missing_keys} == {"cls_blocks", "norm", "fc", "cls_token"}
    head = load_backbone(build_model("part", WIDTH, 11, 19), sd)  # what a fine-tuning cell calls
    assert sorted(head) == sorted(result.missing_keys)
    assert any(k.startswith("blocks.") for k in sd) and "input_bn.running_mean" in sd
    clf.eval(), obj.eval()
    with torch.no_grad():
        ours, _ = obj.backbone.encode(batch["x"], batch["vectors"], batch["mask"])
        theirs, _ = clf.encode(batch["x"], batch["vectors"], batch["mask"])
        assert torch.equal(ours, theirs)
        assert clf(**batch).shape == (len(batch["x"]), 11)


def test_backbone_follows_the_part_options(arrays):
    obj = mpm.build("part", WIDTH, 19, 11, {"target": "l1", "n_layers": 3}, seed=0)
    assert len(obj.backbone.blocks) == 3
    clf = build_model("part", WIDTH, 11, 19, {"n_layers": 3})
    assert clf.load_state_dict(obj.backbone_state_dict(), strict=False).unexpected_keys == []


def test_labels_are_never_needed(arrays, batch):
    assert not {"labels", "label", "y"} & set(arrays)  # prepare and loss ran on inputs only (above too)
    obj = objective(arrays)
    with pytest.raises(ValueError, match="label"):
        obj.loss({**batch, "labels": torch.zeros(len(batch["x"]), dtype=torch.long)})


def test_prepare_fits_a_deterministic_codebook_that_checkpoints(arrays, batch):
    a, b = objective(arrays, "kmeans"), objective(arrays, "kmeans")
    assert torch.equal(a.codebook, b.codebook) and a.codebook.abs().sum() > 0
    stats = mpm.prepare(b, arrays, seed=0)
    assert stats["kmeans_k"] == 16 and stats["kmeans_used_clusters"] == 16
    assert stats["fit_particles"] == int(arrays["mask"].sum())
    fresh = mpm.build("part", WIDTH, 19, 11, {"target": "kmeans", "kmeans_k": 16}, seed=0)
    with pytest.raises(RuntimeError, match="prepare"):
        fresh.loss(batch)
    fresh.load_state_dict(a.state_dict())  # codebook, standardisation and the "prepared" flag travel with it
    torch.manual_seed(0)
    la = a.loss(batch)[0]
    torch.manual_seed(0)
    assert torch.equal(fresh.loss(batch)[0], la)


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    pts = torch.cat([c + 0.1 * torch.randn(200, 2, generator=g) for c in centres])
    found, stats = mpm.kmeans(pts, 3, iters=10, seed=1)
    assert torch.cdist(found, centres).min(dim=0).values.max() < 0.05
    assert stats["kmeans_inertia"] < 0.05


def test_particle_id_classes():
    x = torch.zeros(1, 19, 3)
    names = mpm.FEATURE_NAMES
    x[0, names.index("is_photon"), 0] = 1
    x[0, names.index("is_muon"), 1], x[0, names.index("charge"), 1] = 1, -1
    x[0, names.index("charge"), 2] = 1  # charged, no flag
    photon, muon, other = mpm.PID_FLAGS.index("is_photon"), mpm.PID_FLAGS.index("is_muon"), len(mpm.PID_FLAGS)
    assert mpm.particle_id(x, mpm.TargetColumns.of(None))[0].tolist() == [3 * photon + 1, 3 * muon, 3 * other + 2]
    # by name: the same particles under an input spec that reorders the columns and adds one
    order = [*reversed(names), "d0_sig"]
    y = torch.cat([x[:, [names.index(n) for n in reversed(names)]], torch.zeros(1, 1, 3)], dim=1)
    assert mpm.particle_id(y, mpm.TargetColumns.of(order))[0].tolist() == [3 * photon + 1, 3 * muon, 3 * other + 2]
    with pytest.raises(ValueError, match="mpm needs the model inputs \\['d0'\\]"):
        mpm.TargetColumns.of([n for n in names if n != "d0"])


def test_flow_head_samples_standardised_features(arrays, batch):
    obj = objective(arrays, "flow_matching")
    draw = obj.head.sample(torch.randn(5, WIDTH), steps=4)
    assert draw.shape == (5, len(mpm.CONTINUOUS)) and torch.isfinite(draw).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"target": "bytes"}, "pretraining.methods.mpm.target: 'bytes' is not one of"),
        ({"mask_fraction": 1.0}, "pretraining.methods.mpm.mask_fraction: 1.0 is not in"),
        ({"kmeans_k": 0}, "pretraining.methods.mpm.kmeans_k: 0 is not a positive integer"),
        ({"decoder_layers": True}, "pretraining.methods.mpm.decoder_layers"),
    ],
)
def test_bad_options_name_the_key(options, message):
    with pytest.raises(ConfigError, match=message):
        mpm.build("part", WIDTH, 19, 11, options, seed=0)


def test_loss_takes_any_batch_size_and_jets_too_small_to_mask(arrays, batch):
    obj = objective(arrays, "kmeans")
    one = {k: v[:1] for k, v in batch.items()}
    loss, stats = obj.loss(one)
    loss.backward()
    assert torch.isfinite(loss) and stats["n_masked"] > 0
    tiny = {k: v[:2, ..., :2].clone() for k, v in batch.items()}  # two particles: floor(0.8) = 0 masked
    loss, stats = obj.loss(tiny)
    loss.backward()
    assert float(loss.detach()) == 0.0 and stats["n_masked"] == 0.0
    with pytest.raises(ValueError, match="pretrains part"):
        mpm.build("particlenet", WIDTH, 19, 11, {}, seed=0)

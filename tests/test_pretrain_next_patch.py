"""next_patch: BBT-Neutron's pretraining objective predicts the *following* patch, on non-pad bytes only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jetscale.data.testing import synthetic_jets
from jetscale.models.registry import batch_tensors, build_model, prepare_inputs
from jetscale.pretrain import METHODS, method
from jetscale.pretrain.base import check_unlabelled, load_backbone
from jetscale.pretrain.next_patch import build, next_patch_loss, next_patch_targets
from jetscale.tokenize.bytes import PAD, VOCAB_SIZE

OPTIONS = {"tokenizer": {"mode": "native", "dtype": "float16", "patch_size": 8, "max_bytes": 256}}


@pytest.fixture(scope="module")
def batch():
    jets = synthetic_jets(16, 11, n_particles=8, seed=3, mean_particles=4)
    arrays, _ = prepare_inputs("bbt_neutron", OPTIONS, jets["features"], jets["mask"], jets["vectors"])
    return batch_tensors(arrays, slice(None))


def objective(seed=0):
    torch.set_num_threads(1)
    return build("bbt_neutron", 16, 19, 11, OPTIONS, seed)


def test_registry_names_every_method_and_its_backbone():
    assert set(METHODS) == {"next_patch", "mpm", "vq_gpt"}
    assert method("next_patch").backbone == "bbt_neutron" and method("mpm").backbone == "part"
    assert method("next_patch").available() and method("next_patch").load().build is build
    with pytest.raises(ValueError, match="unknown pretraining method 'bert'"):
        method("bert")


def test_target_is_the_following_patch_not_the_following_byte(batch):
    patches = batch["patches"]
    target = next_patch_targets(patches)
    assert torch.equal(target, patches[:, 1:].long())
    # A byte shift would ask position t for the last S-1 bytes of its own patch; the patch shift never does.
    assert not torch.equal(target[:, 0, :-1], patches[:, 0, 1:].long())


def test_position_t_cannot_see_the_patch_it_predicts(batch):
    """Causality: changing patch t + 1 (the target of position t) leaves positions 0..t unchanged."""
    obj = objective().eval()
    patches = batch["patches"].clone()
    t = 2
    before = obj.lm_logits(patches)
    changed = patches.clone()
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 7) % 256
    after = obj.lm_logits(changed)
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(before[:, t + 1], after[:, t + 1])


def test_loss_counts_non_pad_target_bytes_only(batch):
    patches = batch["patches"]
    assert bool((patches == PAD).any())  # the batch has padding to ignore
    torch.manual_seed(0)
    logits = torch.randn(*patches.shape, VOCAB_SIZE)
    target = patches[:, 1:].long()
    keep = target != PAD
    manual = F.cross_entropy(logits[:, :-1][keep], target[keep])
    torch.testing.assert_close(next_patch_loss(logits, patches), manual)
    # changing the logits where the target is padding changes nothing
    noisy = logits.clone()
    noisy[:, :-1][~keep] = torch.randn_like(noisy[:, :-1][~keep]) * 10
    torch.testing.assert_close(next_patch_loss(noisy, patches), manual)


def test_objective_lowers_its_loss_on_a_tiny_set(batch):
    obj = objective()
    opt = torch.optim.AdamW(obj.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, extra = obj.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert extra["target_bytes"] > 0
    assert losses[0] == pytest.approx(torch.log(torch.tensor(257.0)).item(), abs=0.5)  # untrained: ~uniform
    assert losses[-1] < losses[0] - 1.0


def test_labels_never_reach_the_objective(batch):
    with pytest.raises(ValueError, match="label"):
        objective().loss({**batch, "labels": torch.zeros(16, dtype=torch.long)})
    check_unlabelled(batch)


def test_backbone_loads_into_the_classifier_without_its_heads():
    obj = objective()
    backbone = obj.backbone_state_dict()
    assert not any(k.startswith(("head.", "lm_head.")) for k in backbone)
    classifier = build_model("bbt_neutron", 16, 11, 19, OPTIONS)  # no LM head at fine-tuning
    left = load_backbone(classifier, backbone)
    assert left == ["head.bias", "head.weight"]
    for k, v in backbone.items():
        assert torch.equal(classifier.state_dict()[k], v)
    wider = build_model("bbt_neutron", 32, 11, 19, OPTIONS)
    with pytest.raises(ValueError, match="differ in shape"):
        load_backbone(wider, backbone)

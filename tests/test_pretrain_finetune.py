"""Fine-tuning cells: ids and hashes of from-scratch cells unchanged, the named backbone loaded (and only it),
frozen backbones stay put, catch-up holds the backbone then ramps it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from jetscale.config import load_config
from jetscale.data.testing import write_synthetic_splits
from jetscale.errors import ConfigError, TrainingError
from jetscale.grid import cell_id, cells, parse_cell_id
from jetscale.models.registry import build_model
from jetscale.pretrain.finetune import FineTune, attach
from jetscale.pretrain.loop import pretrain_backbone
from jetscale.pretrain.plan import backbone_id, backbone_key
from jetscale.settings import resolve_settings, settings_hash
from jetscale.train import loop
from jetscale.workflow import StudyPlan
from tiny_config import TINY_PRETRAINING, TINY_TRAINING, tiny_raw_config

SCRATCH = "model~bbt_neutron/width~16/n_train~22/compute~64/seed~0"


def raw_config() -> dict:
    return tiny_raw_config(
        ("particlenet", "bbt_neutron"),
        width=16,
        n_train=22,
        compute=64,
        n_particles=8,
        per_model={"particlenet": {"width": [8]}},
        tokenizer={"max_bytes": 128, "patch_size": 8},
        training={**TINY_TRAINING, "eval_every_samples": 32, "checkpoint_every_steps": 50},
        pretraining={**TINY_PRETRAINING, "lr": 3e-3, "finetune": {"catchup_steps": 100, "catchup_ramp_steps": 10}},
    )


def with_pretraining(raw: dict) -> dict:
    raw = copy.deepcopy(raw)
    raw["grid"]["axes"].update(
        pretrain=["none", "next_patch"], n_pretrain=[30, 40], finetune=["full", "frozen", "catchup"]
    )
    return raw


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    torch.set_num_threads(1)
    out = load_config(with_pretraining(raw_config()))
    out["results"] = str(tmp_path_factory.mktemp("results"))
    return out


@pytest.fixture(scope="module")
def splits(tmp_path_factory, cfg):
    return write_synthetic_splits(
        tmp_path_factory.mktemp("splits"), cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=8
    )


@pytest.fixture(scope="module")
def backbones(cfg, splits):
    plan = StudyPlan(cfg)
    assert sorted(plan.backbones) == [
        "method~next_patch/model~bbt_neutron/width~16/n_pretrain~30",
        "method~next_patch/model~bbt_neutron/width~16/n_pretrain~40",
    ]
    out = {}
    for bid in plan.backbones:
        pretrain_backbone(cfg, bid, splits, Path(cfg["results"]) / "pretrain" / bid)
        out[bid] = torch.load(plan.backbone_file(f"{SCRATCH}/pretrain~next_patch/n_pretrain~{bid[-2:]}/finetune~full"))
    return out


def cell(n_pretrain: int, mode: str) -> str:
    return f"{SCRATCH}/pretrain~next_patch/n_pretrain~{n_pretrain}/finetune~{mode}"


def test_from_scratch_cells_keep_their_ids_and_hashes(cfg):
    plain = load_config(raw_config())
    before = {cell_id(plain, c): settings_hash(resolve_settings(plain, c)) for c in cells(plain)}
    after = {cell_id(cfg, c): settings_hash(resolve_settings(cfg, c)) for c in cells(cfg) if c["pretrain"] == "none"}
    assert after == before and len(before) == 2
    tuned = [c for c in cells(cfg) if c["pretrain"] != "none"]
    assert len(tuned) == 6 and all(c["model"] == "bbt_neutron" for c in tuned)  # next_patch pairs with BBT only
    for c in tuned:
        cid = cell_id(cfg, c)
        assert parse_cell_id(cfg, cid) == c and "/pretrain~next_patch/n_pretrain~" in cid


def test_fine_tuning_settings_name_the_backbone_and_mode(cfg):
    a, b = (resolve_settings(cfg, parse_cell_id(cfg, cell(n, "full"))) for n in (30, 40))
    assert a["pretrain"]["backbone_hash"] != b["pretrain"]["backbone_hash"]
    frozen = resolve_settings(cfg, parse_cell_id(cfg, cell(30, "frozen")))
    catchup = resolve_settings(cfg, parse_cell_id(cfg, cell(30, "catchup")))
    assert frozen["pretrain"]["mode"] == "frozen" and catchup["pretrain"]["catchup_steps"] == 100
    changed = copy.deepcopy(cfg)
    changed["pretraining"]["lr"] = 1e-3  # re-pretraining changes every fine-tuning cell's hash, not scratch's
    assert resolve_settings(changed, parse_cell_id(cfg, cell(30, "full"))) != a
    assert resolve_settings(changed, parse_cell_id(cfg, SCRATCH)) == resolve_settings(cfg, parse_cell_id(cfg, SCRATCH))


def test_bad_pretraining_grids_fail_with_the_key():
    raw = with_pretraining(raw_config())
    raw["grid"]["axes"]["n_pretrain"] = []
    with pytest.raises(ConfigError, match="grid.axes.n_pretrain: list the unlabelled pool sizes"):
        load_config(raw)
    raw["grid"]["axes"].update(n_pretrain=[100000])
    with pytest.raises(ConfigError, match="n_pretrain: 100000 is larger than the training pool"):
        load_config(raw)
    raw["grid"]["axes"].update(n_pretrain=[30], model=["particlenet"])
    with pytest.raises(ConfigError, match="'next_patch' pretrains 'bbt_neutron', which is not in grid.axes.model"):
        load_config(raw)


def test_a_cell_loads_exactly_the_backbone_its_id_names(cfg, backbones):
    plan = StudyPlan(cfg)
    for n in (30, 40):
        cid = cell(n, "full")
        bid = plan.backbone_of(cid)
        assert bid == backbone_id(backbone_key(parse_cell_id(cfg, cid))) and bid.endswith(f"n_pretrain~{n}")
        model = build_model("bbt_neutron", 16, 11, 19, cfg["models"]["bbt_neutron"])
        ft = attach(model, resolve_settings(cfg, parse_cell_id(cfg, cid))["pretrain"], plan.backbone_file(cid))
        assert ft.backbone_id == bid and ft.head_keys == ["head.bias", "head.weight"]
        mine, other = backbones[bid]["backbone"], backbones[plan.backbone_of(cell(70 - n, "full"))]["backbone"]
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in mine.items())
        assert not all(torch.equal(state[k], v) for k, v in other.items())


def test_a_backbone_from_other_settings_is_refused(cfg, splits, backbones, tmp_path):
    plan = StudyPlan(cfg)
    wrong = plan.backbone_file(cell(30, "full"))
    with pytest.raises(TrainingError, match="has settings hash .* but this cell names"):
        loop.train_cell(cfg, cell(40, "full"), splits, tmp_path / "x", progress=False, backbone=wrong)
    with pytest.raises(TrainingError, match="backbone not found"):
        loop.train_cell(cfg, cell(40, "full"), splits, tmp_path / "y", progress=False, backbone=tmp_path / "no.pt")


def final_weights(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=False)["model"]


@pytest.mark.parametrize("mode", ["frozen", "catchup"])
def test_frozen_and_held_backbones_do_not_change_but_the_head_trains(cfg, splits, backbones, tmp_path, mode):
    """frozen: never trained; catchup with K = 100 > the 4 steps of this cell: held at learning rate 0."""
    cid = cell(40, mode)
    record = loop.train_cell(cfg, cid, splits, tmp_path, progress=False)
    assert record["backbone_id"] == StudyPlan(cfg).backbone_of(cid) and record["steps"] == 4
    weights, backbone = final_weights(tmp_path), backbones[record["backbone_id"]]["backbone"]
    for k, v in backbone.items():
        torch.testing.assert_close(weights[k], v, rtol=0, atol=0)
    head0 = build_model("bbt_neutron", 16, 11, 19, cfg["models"]["bbt_neutron"]).state_dict()  # untrained head
    assert not torch.equal(weights["head.weight"], head0["head.weight"])
    if mode == "frozen":
        assert record["trainable_params"] == 16 * 11 + 11


def test_full_fine_tuning_trains_the_backbone(cfg, splits, backbones, tmp_path):
    record = loop.train_cell(cfg, cell(40, "full"), splits, tmp_path, progress=False)
    weights, backbone = final_weights(tmp_path), backbones[record["backbone_id"]]["backbone"]
    assert not torch.equal(weights["layers.0.q_proj.weight"], backbone["layers.0.q_proj.weight"])
    assert record["trainable_params"] == record["n_params"]


def test_catchup_schedule_holds_then_ramps_to_the_heads_rate():
    ft = FineTune("catchup", "b", frozenset(), [], catchup_steps=10, catchup_ramp_steps=5)
    head, backbone = ft.lr_lambdas(lambda step: 1.0)
    assert [backbone(s) for s in (0, 9, 10, 12, 14, 30)] == [0.0, 0.0, 0.2, 0.6, 1.0, 1.0]
    assert head(0) == 1.0

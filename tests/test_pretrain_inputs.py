"""A backbone is pretrained on the inputs its classifier sees: the model's input spec, standardised with the
unlabelled pool's statistics, which its fine-tuning cells then reuse (ParT + mpm under the ``physics`` preset)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from jetscale.config import load_config
from jetscale.data.testing import write_synthetic_splits
from jetscale.grid import parse_cell_id
from jetscale.inputs.spec import is_raw, model_inputs
from jetscale.inputs.stats import compute_stats
from jetscale.pretrain.loop import load_unlabelled, pretrain_backbone
from jetscale.pretrain.plan import backbone_settings
from jetscale.settings import resolve_settings
from jetscale.train.loop import train_cell
from jetscale.workflow import StudyPlan
from tiny_config import TINY_PRETRAINING, TINY_TRAINING, tiny_raw_config

SCRATCH = "model~part/width~16/n_train~22/compute~32/seed~0"
TUNED = f"{SCRATCH}/pretrain~mpm/n_pretrain~30/finetune~full"


def raw_config() -> dict:
    return tiny_raw_config(
        ("part",),
        width=16,
        n_train=22,
        compute=32,
        n_particles=8,
        pretrain=["none", "mpm"],
        n_pretrain=[30],
        finetune=["full"],
        training={**TINY_TRAINING, "eval_every_samples": 32, "checkpoint_every_steps": 50},
        pretraining={**TINY_PRETRAINING, "methods": {"mpm": {"target": "l1"}}},
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = load_config(raw_config())
    cfg["results"] = str(tmp_path_factory.mktemp("results"))
    splits = write_synthetic_splits(
        tmp_path_factory.mktemp("splits"), cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=8
    )
    plan = StudyPlan(cfg)
    (bid,) = plan.backbones
    record = pretrain_backbone(cfg, bid, splits, Path(cfg["results"]) / "pretrain" / bid)
    return cfg, splits, plan, record


def test_the_backbone_settings_carry_the_models_input_spec():
    cfg = load_config(raw_config())
    features = model_inputs(cfg, "part")
    assert not is_raw(features)  # ParT's default: the physics preset (22 columns)
    settings = backbone_settings(cfg, ("mpm", "part", 16, 30))
    assert settings["inputs"] == features
    raw_cfg = copy.deepcopy(raw_config())
    raw_cfg["inputs"] = {"part": "raw"}
    assert "inputs" not in backbone_settings(load_config(raw_cfg), ("mpm", "part", 16, 30))


def test_pretraining_standardises_with_the_pool_and_fine_tuning_reuses_it(study, tmp_path):
    cfg, splits, plan, record = study
    pool = load_unlabelled(splits, "train", 30, tail=True)
    expected = compute_stats(pool, 30)["features"]
    saved = torch.load(plan.backbone_file(TUNED), weights_only=True)
    assert saved["input_stats"]["features"] == expected
    assert record["inputs"] is not None and len(record["inputs"]) == 22  # 19 Table-1 + d0/σ, z0/σ, charge weight

    metrics = train_cell(cfg, TUNED, splits, tmp_path / "tuned", progress=False)
    assert metrics["inputs"]["statistics"] == str(plan.backbone_file(TUNED))
    assert metrics["inputs"]["features"] == record["inputs"]  # the very centres and scales it was pretrained on
    scratch = train_cell(cfg, SCRATCH, splits, tmp_path / "scratch", progress=False)
    assert scratch["inputs"]["features"] != record["inputs"]  # from scratch: its own 22 jets' statistics


def test_fine_tuning_settings_change_when_the_input_spec_does(study):
    cfg = study[0]
    changed = copy.deepcopy(cfg)
    changed["inputs"]["part"] = {"preset": "physics", "features": {"z0_sig": None}}
    tuned = parse_cell_id(cfg, TUNED)
    assert (
        resolve_settings(changed, tuned)["pretrain"]["backbone_hash"]
        != resolve_settings(cfg, tuned)["pretrain"]["backbone_hash"]
    )


def test_the_loss_scan_adds_backbones_for_the_methods_it_names():
    from jetscale.errors import ConfigError
    from jetscale.pretrain.plan import study_backbones

    raw = raw_config()
    raw["pretraining"]["loss_scan"] = {"n_pretrain": [10, 20]}
    every = sorted(study_backbones(load_config(raw)))
    assert every == [f"method~mpm/model~part/width~16/n_pretrain~{n}" for n in (10, 20, 30)]
    raw["pretraining"]["loss_scan"]["methods"] = []
    assert sorted(study_backbones(load_config(raw))) == ["method~mpm/model~part/width~16/n_pretrain~30"]
    raw["pretraining"]["loss_scan"]["methods"] = ["next_patch"]
    with pytest.raises(ConfigError, match=r"loss_scan.methods: \['next_patch'\] not in grid.axes.pretrain \['mpm'\]"):
        load_config(raw)

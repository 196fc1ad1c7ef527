"""One pretraining job: unlabelled pool (labels never read), outputs, measured FLOPs, bit-identical resume."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from jetscale.data.testing import write_synthetic_splits
from jetscale.errors import DataError
from jetscale.models.registry import build_model
from jetscale.pretrain import plan
from jetscale.pretrain.base import load_backbone
from jetscale.pretrain.loop import load_unlabelled, pretrain_backbone
from jetscale.train.checkpoint import TrainingInterrupted
from tiny_config import default_raw_config, tiny_config

BID = "method~next_patch/model~bbt_neutron/width~16/n_pretrain~40"


def small_config() -> dict:
    return tiny_config(
        ("bbt_neutron",),
        width=16,
        n_train=22,
        compute=64,
        n_particles=8,
        tokenizer={"max_bytes": 128, "patch_size": 8},
        training={},
        pretraining={
            "batch_size": 8,
            "lr": 3e-3,
            "compute": {"epochs": 2, "min_samples": 8, "max_samples": 1000},
            "eval_every_samples": 40,
            "eval_jets": 20,
            "checkpoint_every_steps": 3,
        },
    )


@pytest.fixture(scope="module")
def cfg():
    torch.set_num_threads(1)
    return small_config()


@pytest.fixture(scope="module")
def unlabelled_splits(tmp_path_factory, cfg):
    """Synthetic splits whose label files are deleted: pretraining must not need them."""
    root = write_synthetic_splits(
        tmp_path_factory.mktemp("splits"), cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=8
    )
    for split in ("train", "val", "test"):
        (root / split / "labels.npy").unlink()
    return root


def test_pool_is_the_tail_of_the_training_split_and_never_labels(unlabelled_splits):
    pool = load_unlabelled(unlabelled_splits, "train", 40, tail=True)
    assert set(pool) == {"features", "mask", "vectors"}
    features = np.load(unlabelled_splits / "train" / "features.npy")
    np.testing.assert_array_equal(pool["features"], features[26:])  # disjoint from the first 26 (n_train) jets
    with pytest.raises(DataError, match="n_pretrain 70 exceeds the 66 jets"):
        load_unlabelled(unlabelled_splits, "train", 70, tail=True)


def test_backbone_id_regex_matches_exactly_the_ids_the_format_writes():
    import re

    regex = re.compile(plan.BACKBONE_ID_REGEX)
    for key in [("next_patch", "bbt_neutron", 16, 40), ("vq_gpt", "part", 128, 1000000)]:
        assert regex.fullmatch(plan.backbone_id(key))
    wrong = ("method~mpm/model~part/width~x/n_pretrain~1", "model~part/method~mpm/width~1/n_pretrain~1", BID + "/x")
    for text in wrong:
        assert not regex.fullmatch(text)
        with pytest.raises(ValueError, match="expected method~M/model~MODEL/width~W/n_pretrain~N"):
            plan.parse_backbone_id(text)
    with pytest.raises(ValueError, match="not in canonical form"):
        plan.parse_backbone_id(BID.replace("width~16", "width~016"))


def test_backbone_ids_round_trip_and_settings_name_what_changes_weights(cfg):
    key = ("next_patch", "bbt_neutron", 16, 40)
    assert plan.parse_backbone_id(plan.backbone_id(key)) == key == plan.parse_backbone_id(BID)
    settings = plan.backbone_settings(cfg, key)
    assert settings["pretraining"]["lr"] == 3e-3 and "checkpoint_every_steps" not in settings["pretraining"]
    other = copy.deepcopy(cfg)
    other["pretraining"]["checkpoint_every_steps"] = 99  # a run knob: same backbone
    assert plan.backbone_settings(other, key) == settings
    with pytest.raises(ValueError, match="pretrains 'part', not 'bbt_neutron'"):
        plan.backbone_settings(cfg, ("mpm", "bbt_neutron", 16, 40))


def test_pretraining_job_writes_backbone_curve_flops_and_jets_seen(cfg, unlabelled_splits, tmp_path):
    record = pretrain_backbone(cfg, BID, unlabelled_splits, tmp_path)
    on_disk = json.loads((tmp_path / "pretrain.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert record["samples_seen"] == 80 == record["samples_budget"] and record["steps"] == 10
    assert record["flops_per_jet"] > 1e4 and record["train_flops"] == pytest.approx(3 * record["flops_per_jet"] * 80)
    assert record["n_params"] > record["n_backbone_params"] > 0
    log = pd.read_csv(tmp_path / "pretrain_log.csv")
    assert list(log.columns) == ["step", "samples", "loss", "lr", "throughput", "val_loss", "flops"]
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]  # the objective learns
    assert log["val_loss"].notna().sum() == 2 and record["final_val_loss"] == log["val_loss"].iloc[-1]
    if importlib.util.find_spec("tensorboard") is not None:  # the same curve as TensorBoard event files
        from test_tensorboard import scalars

        board = scalars(tmp_path / "tensorboard")
        assert [s for s, _ in board["train/loss"]] == log["samples"].tolist()
        assert [v for _, v in board["train/loss"]] == pytest.approx(log["loss"].tolist(), rel=1e-6)
        held = log[log["val_loss"].notna()]
        assert board["val/loss"] == [(s, pytest.approx(v, rel=1e-6)) for s, v in zip(held["samples"], held["val_loss"])]
        assert {"lr", "jets_per_s"} <= set(board)
    saved = torch.load(tmp_path / "backbone.pt", weights_only=True)
    assert saved["backbone_id"] == BID and saved["settings_hash"] == record["settings_hash"]
    classifier = build_model("bbt_neutron", 16, 11, 19, cfg["models"]["bbt_neutron"])
    assert load_backbone(classifier, saved["backbone"]) == ["head.bias", "head.weight"]


def test_a_tiny_backbone_gives_the_losses_pinned_before_the_runner_existed(cfg, unlabelled_splits, tmp_path):
    """Moving pretraining onto the classifier's runner changed no result (CPU, fp32; measured with the code of
    before; a tolerance for other CPUs' float rounding only)."""
    record = pretrain_backbone(cfg, BID, unlabelled_splits, tmp_path)
    assert (record["final_loss"], record["final_val_loss"]) == pytest.approx((5.49579, 5.49623), abs=2e-5)
    assert record["flops_per_jet"] == 2678784.0


def test_interrupted_pretraining_resumes_bit_identically(cfg, unlabelled_splits, tmp_path):
    straight = pretrain_backbone(cfg, BID, unlabelled_splits, tmp_path / "straight")
    with pytest.raises(TrainingInterrupted):
        pretrain_backbone(cfg, BID, unlabelled_splits, tmp_path / "resumed", stop_after_steps=4)
    assert not (tmp_path / "resumed" / "backbone.pt").exists()
    resumed = pretrain_backbone(cfg, BID, unlabelled_splits, tmp_path / "resumed")
    a = torch.load(tmp_path / "straight" / "backbone.pt", weights_only=True)["backbone"]
    b = torch.load(tmp_path / "resumed" / "backbone.pt", weights_only=True)["backbone"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert resumed["final_loss"] == straight["final_loss"] and resumed["samples_seen"] == straight["samples_seen"]


def test_labels_present_are_still_not_read(cfg, tmp_path, monkeypatch):
    """With label files on disk, the job never opens them (np.load is watched)."""
    root = write_synthetic_splits(tmp_path / "s", cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=8)
    opened = []
    real = np.load

    def watched(path, *a, **k):
        opened.append(Path(path).name)
        return real(path, *a, **k)

    monkeypatch.setattr(np, "load", watched)
    small = copy.deepcopy(cfg)
    small["pretraining"]["compute"] = {"epochs": 0.1, "min_samples": 8, "max_samples": 8}
    pretrain_backbone(small, BID, root, tmp_path / "out")
    assert opened and "labels.npy" not in opened
    shutil.rmtree(root)


def pretrain_cli(config: Path, splits: Path, out: Path, *extra: str):
    cmd = [sys.executable, "-m", "jetscale.cli", "pretrain", "--config", str(config), "--backbone", BID]
    cmd += ["--splits", str(splits), "--out", str(out), *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_two_ranks_pretrain_the_same_backbone_as_one(cfg, unlabelled_splits, tmp_path):
    """Pretraining runs on the classifier's engine: data parallel over ranks (gloo on CPU), same stream of jets."""
    config = tmp_path / "c.yaml"
    raw = default_raw_config()
    raw.update({k: cfg[k] for k in ("data", "grid", "models", "pretraining")})
    raw["pretraining"] = {k: v for k, v in cfg["pretraining"].items() if k != "methods"}
    config.write_text(yaml.safe_dump(raw))
    one = pretrain_cli(config, unlabelled_splits, tmp_path / "one")
    two = pretrain_cli(config, unlabelled_splits, tmp_path / "two", "--processes", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert len([line for line in two.stdout.splitlines() if line.startswith("{")]) == 1  # rank 0 reports
    a = torch.load(tmp_path / "one" / "backbone.pt", weights_only=True)["backbone"]
    b = torch.load(tmp_path / "two" / "backbone.pt", weights_only=True)["backbone"]
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 5e-5
    r1 = json.loads((tmp_path / "one" / "pretrain.json").read_text())
    r2 = json.loads((tmp_path / "two" / "pretrain.json").read_text())
    assert (r1["hardware"]["processes"], r2["hardware"]["processes"]) == (1, 2)
    assert r1["settings_hash"] == r2["settings_hash"] and r1["samples_seen"] == r2["samples_seen"] == 80
    assert r2["final_val_loss"] == pytest.approx(r1["final_val_loss"], abs=1e-5)


def test_pretraining_on_deepspeed_zero3_gives_the_torch_backbone(cfg, unlabelled_splits, tmp_path):
    """The classifier's engines serve pretraining too: DeepSpeed ZeRO-3 (weights partitioned, gathered to write
    backbone.pt) trains the same backbone as plain torch, up to float32 reduction order (measured 5e-7)."""
    ref = pretrain_backbone(cfg, BID, unlabelled_splits, tmp_path / "torch")
    ds_cfg = copy.deepcopy(cfg)
    ds_cfg["training"]["deepspeed"] = {"enabled": True, "zero_stage": 3}
    got = pretrain_backbone(ds_cfg, BID, unlabelled_splits, tmp_path / "ds")
    assert (ref["hardware"]["engine"], got["hardware"]["engine"]) == ("torch", "deepspeed")
    a = torch.load(tmp_path / "torch" / "backbone.pt", weights_only=True)["backbone"]
    b = torch.load(tmp_path / "ds" / "backbone.pt", weights_only=True)["backbone"]
    assert a.keys() == b.keys() and max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 5e-5
    assert got["settings_hash"] == ref["settings_hash"]  # the engine is a run knob of pretraining
    for key in ("n_params", "n_backbone_params", "flops_per_jet", "samples_seen"):
        assert got[key] == ref[key]
    assert got["final_val_loss"] == pytest.approx(ref["final_val_loss"], abs=1e-5)

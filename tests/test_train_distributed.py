"""Data-parallel training and the DeepSpeed engine, run for real on CPU (gloo; DeepSpeed's CPU accelerator).

The GPU specifics (NCCL, flash attention, bf16 tensor cores) need a GPU; everything else — sharding the batch
over ranks, gradient averaging, rank-0-only writes, ZeRO partitioned checkpoints, resume, DeepSpeed against
plain torch — runs here exactly as it would there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from jetscale import signals as preempt
from jetscale.config import load_config
from jetscale.data.testing import write_synthetic_splits
from jetscale.grid import parse_cell_id
from jetscale.resources import train_processes, train_resources
from jetscale.settings import resolve_settings, settings_hash
from jetscale.train import loop
from jetscale.train.distributed import EngineOptions
from tiny_config import TINY_TRAINING, tiny_raw_config

BBT = "model~bbt_neutron/width~16/n_train~44/compute~160/seed~0"
PART = "model~part/width~8/n_train~44/compute~160/seed~0"


def raw_config(**training) -> dict:
    return tiny_raw_config(
        ("part", "bbt_neutron"),
        compute=[160, 40000],
        per_model={"bbt_neutron": {"width": [16]}},
        tokenizer={"max_bytes": 256},
        # a large learning rate so that 10 steps move the weights well beyond float32 rounding
        training={**TINY_TRAINING, "lr": 3e-3, **training},
    )


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    cfg = load_config(raw_config())
    return write_synthetic_splits(
        tmp_path_factory.mktemp("splits"), cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=16
    )


def checkpoint(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)


def max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = checkpoint(a)["model"], checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    return max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)


def initial_weights(cfg: dict, cell: str) -> dict:
    """The seed's initial weights (what train_cell builds before its first step)."""
    from jetscale.models.registry import build_model

    settings = resolve_settings(cfg, parse_cell_id(cfg, cell))
    torch.manual_seed(settings["seed"])
    return build_model(
        settings["model"], settings["width"], len(cfg["classes"]), 19, settings["model_options"]
    ).state_dict()


def train_cli(config: Path, cell: str, splits: Path, out: Path, *extra: str, wait: bool = True):
    cmd = [
        sys.executable,
        "-m",
        "jetscale.cli",
        "train",
        "--config",
        str(config),
        "--cell",
        cell,
        "--splits",
        str(splits),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def write_config(tmp_path: Path, name: str, **training) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw_config(**training)))
    return path


# ------------------------------------------------------------------------------ DeepSpeed == plain torch
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_gives_the_same_run_as_torch(splits, tmp_path, stage):
    torch_cfg = load_config(raw_config(deepspeed={"enabled": False, "zero_stage": 1}))
    ds_cfg = load_config(raw_config(deepspeed={"enabled": True, "zero_stage": stage}))
    ref = loop.train_cell(torch_cfg, BBT, splits, tmp_path / "torch", progress=False)
    got = loop.train_cell(ds_cfg, BBT, splits, tmp_path / "ds", progress=False)
    assert (ref["hardware"]["engine"], got["hardware"]["engine"]) == ("torch", "deepspeed")
    assert got["versions"]["deepspeed"] == "0.19.8" and "deepspeed" not in ref["versions"]
    moved = max(
        (v.float() - initial_weights(torch_cfg, BBT)[k].float()).abs().max().item()
        for k, v in checkpoint(tmp_path / "torch")["model"].items()
    )
    assert moved > 1e-2  # the comparison below is meaningful: training changed the weights
    # measured 8e-6 at most (float32 reduction order); training moved the weights by more than 1e-2
    assert max_weight_difference(tmp_path / "torch", tmp_path / "ds") < 5e-5
    assert got["samples_seen"] == ref["samples_seen"] == 160 and got["n_params"] == ref["n_params"]
    assert got["test_loss"] == pytest.approx(ref["test_loss"], abs=1e-5)
    p_ref = pd.read_parquet(tmp_path / "torch" / "predictions.parquet")
    p_ds = pd.read_parquet(tmp_path / "ds" / "predictions.parquet")
    np.testing.assert_allclose(p_ds.filter(like="score_"), p_ref.filter(like="score_"), atol=1e-5)
    assert "WORLD_SIZE" not in os.environ  # the private one-process group for DeepSpeed was cleaned up


def test_bf16_deepspeed_matches_bf16_torch(splits, tmp_path):
    """The GPU recipe (bf16 autocast, fp32 master weights, ZeRO) on CPU: same numerics as torch + autocast."""
    torch_cfg = load_config(raw_config(precision="bf16", deepspeed={"enabled": False, "zero_stage": 1}))
    ds_cfg = load_config(raw_config(precision="bf16", deepspeed={"enabled": True, "zero_stage": 2}))
    ref = loop.train_cell(torch_cfg, BBT, splits, tmp_path / "torch", progress=False)
    got = loop.train_cell(ds_cfg, BBT, splits, tmp_path / "ds", progress=False)
    assert ref["hardware"]["precision"] == got["hardware"]["precision"] == "bf16"
    fp32 = loop.train_cell(load_config(raw_config()), BBT, splits, tmp_path / "fp32", progress=False)
    # bf16 rounding changes the run (so autocast really was on: measured 0.015), both engines round alike (6e-6)
    bf16_effect = max_weight_difference(tmp_path / "torch", tmp_path / "fp32")
    assert bf16_effect > 1e-3
    assert max_weight_difference(tmp_path / "torch", tmp_path / "ds") < 0.01 * bf16_effect
    assert got["test_loss"] == pytest.approx(ref["test_loss"], abs=1e-4)
    assert ref["settings_hash"] != fp32["settings_hash"]  # precision is part of what a result depends on


def test_compiled_training_matches_eager(splits, tmp_path):
    """training.compile (torch.compile of the training forward, for GPU utilisation) trains the same model."""
    eager = loop.train_cell(load_config(raw_config()), BBT, splits, tmp_path / "eager", progress=False)
    compiled = loop.train_cell(
        load_config(raw_config(compile=True)), BBT, splits, tmp_path / "compiled", progress=False
    )
    assert compiled["settings_hash"] == eager["settings_hash"]
    assert (compiled["hardware"]["compiled"], eager["hardware"]["compiled"]) == (True, False)
    # measured 3.4e-6: fused kernels round differently, the training is the same
    assert max_weight_difference(tmp_path / "eager", tmp_path / "compiled") < 5e-5
    assert compiled["test_loss"] == pytest.approx(eager["test_loss"], abs=1e-5)


# ------------------------------------------------------------------------------------- several ranks
def test_two_ranks_train_the_same_model_as_one(splits, tmp_path):
    config = write_config(tmp_path, "c.yaml")
    one = train_cli(config, BBT, splits, tmp_path / "one")
    two = train_cli(config, BBT, splits, tmp_path / "two", "--processes", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert len([line for line in two.stdout.splitlines() if line.startswith("{")]) == 1  # rank 0 reports
    assert max_weight_difference(tmp_path / "one", tmp_path / "two") < 5e-5
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (m1["hardware"]["processes"], m2["hardware"]["processes"]) == (1, 2)
    assert m1["settings_hash"] == m2["settings_hash"]  # a rerun on more processes reuses the same result
    assert m2["samples_seen"] == 160 and m2["test_loss"] == pytest.approx(m1["test_loss"], abs=1e-5)
    assert len(pd.read_parquet(tmp_path / "two" / "predictions.parquet")) == 33  # gathered from both ranks
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_zero3_on_two_ranks_resumes_bit_identically(splits, tmp_path):
    config = write_config(tmp_path, "z3.yaml", deepspeed={"enabled": True, "zero_stage": 3})
    full = train_cli(config, BBT, splits, tmp_path / "full", "--processes", "2")
    assert full.returncode == 0, full.stderr
    cut = train_cli(config, BBT, splits, tmp_path / "cut", "--processes", "2", "--stop-after-steps", "4")
    assert cut.returncode == preempt.EXIT_REQUEUE, cut.stderr
    # each rank wrote its own partition of weights and optimizer state; checkpoint.pt points at them
    tag = checkpoint(tmp_path / "cut")["engine"]["deepspeed_tag"]
    assert tag == "step4" and sorted(p.name for p in (tmp_path / "cut" / "checkpoint_ds").iterdir()) == ["step4"]
    parts = sorted(p.name for p in (tmp_path / "cut" / "checkpoint_ds" / tag).iterdir())
    assert sum("optim_states" in p for p in parts) == 2, parts
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = train_cli(config, BBT, splits, tmp_path / "cut", "--processes", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert max_weight_difference(tmp_path / "full", tmp_path / "cut") == 0.0
    log = pd.read_csv(tmp_path / "cut" / "train_log.csv")
    assert log["step"].tolist() == pd.read_csv(tmp_path / "full" / "train_log.csv")["step"].tolist()


def test_launcher_forwards_the_preemption_signal(splits, tmp_path):
    config = write_config(tmp_path, "c.yaml")
    cell = BBT.replace("compute~160", "compute~40000")  # 2,500 steps: still running when the signal comes
    proc = train_cli(config, cell, splits, tmp_path / "run", "--processes", "2", wait=False)
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == preempt.EXIT_REQUEUE, err
    assert "stopped by SIGUSR1" in err
    state = checkpoint(tmp_path / "run")
    assert 0 < state["step"] < 2500 and len(state["rng_ranks"]) == 2
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_batch_smaller_than_the_number_of_ranks_is_refused(splits, tmp_path):
    config = write_config(tmp_path, "c.yaml", batch_size=1)
    res = train_cli(config, BBT, splits, tmp_path / "run", "--processes", "2")
    assert res.returncode == 2
    assert "training.batch_size" in res.stderr and "2 processes" in res.stderr


# ------------------------------------------------------------------------------------------ settings
def test_engine_options_are_read_once_from_the_training_section():
    cfg = load_config(raw_config(precision="bf16", deepspeed={"enabled": False, "zero_stage": 2}))
    training = resolve_settings(cfg, parse_cell_id(cfg, PART))["training"]
    options = EngineOptions.from_training(training, compile=True)
    assert options == EngineOptions(precision="bf16", deepspeed=False, zero_stage=2, compile=True)
    assert EngineOptions.from_training({"deepspeed": None}) == EngineOptions()  # nothing set: the defaults
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.compile = False  # type: ignore[misc]
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (EngineOptions().bf16(cpu), EngineOptions().bf16(cuda)) == (False, True)  # auto: bf16 on GPU only
    assert EngineOptions(precision="bf16").bf16(cpu) and not EngineOptions(precision="fp32").bf16(cuda)
    assert not EngineOptions().uses_deepspeed(cpu)  # auto: DeepSpeed on GPU only
    assert not EngineOptions(deepspeed=False).uses_deepspeed(cuda)


def test_processes_default_to_one_per_requested_gpu():
    raw = raw_config()
    raw["resources"] = {"train": {"bbt_neutron": {"gpus": 4}}}
    cfg = load_config(raw)
    assert train_processes(cfg, parse_cell_id(cfg, BBT)) == 4
    assert train_processes(cfg, parse_cell_id(cfg, PART)) == 1
    cfg = load_config({**raw, "training": {**raw["training"], "processes": 2, "threads": 3}})
    assert train_processes(cfg, parse_cell_id(cfg, PART)) == 2
    # the Snakemake job reserves the cores of all ranks
    assert train_resources(cfg, parse_cell_id(cfg, PART))["threads"] == 6


def test_hardware_knobs_leave_the_settings_hash_alone():
    base = load_config(raw_config())
    cell = parse_cell_id(base, BBT)
    for knob in ({"processes": 3}, {"precision": "auto"}, {"device": "cpu"}, {"threads": 2}, {"compile": True}):
        cfg = load_config(raw_config(**knob))
        assert settings_hash(resolve_settings(cfg, cell)) == settings_hash(resolve_settings(base, cell)), knob
    for knob in ({"precision": "bf16"}, {"precision": "fp32"}):
        cfg = load_config(raw_config(**knob))
        assert settings_hash(resolve_settings(cfg, cell)) != settings_hash(resolve_settings(base, cell)), knob

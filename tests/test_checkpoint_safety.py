"""A checkpoint is data, never code: crafted, corrupt or foreign checkpoint files are refused, said on stderr,
and the cell trains afresh (issue 10, item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jetscale.data.testing import write_synthetic_splits
from jetscale.train import loop
from jetscale.train.checkpoint import TrainingInterrupted
from tiny_config import TINY_TRAINING, tiny_config

CELL = "model~bbt_neutron/width~16/n_train~44/compute~160/seed~0"


class Payload:
    """Unpickling this creates ``marker``: what an attacker's ``__reduce__`` would do (here harmlessly)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def small_config(**training) -> dict:
    return tiny_config(("bbt_neutron",), width=16, tokenizer={"max_bytes": 256}, training={**TINY_TRAINING, **training})


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    cfg = small_config()
    return write_synthetic_splits(
        tmp_path_factory.mktemp("splits"), cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=16
    )


def interrupted_run(cfg, splits, out: Path) -> dict:
    with pytest.raises(TrainingInterrupted):
        loop.train_cell(cfg, CELL, splits, out, progress=False, stop_after_steps=4)
    return torch.load(out / "checkpoint.pt", weights_only=False)  # our own file, trusted here


def test_crafted_checkpoint_never_runs_code(splits, tmp_path, capfd):
    cfg = small_config()
    out = tmp_path / "run"
    real = interrupted_run(cfg, splits, out)
    marker = tmp_path / "code-ran"
    torch.save({**real, "extra": Payload(marker)}, out / "checkpoint.pt")  # right settings hash, plus code
    capfd.readouterr()
    record = loop.train_cell(cfg, CELL, splits, out, progress=False)
    assert not marker.exists(), "loading the checkpoint executed code"
    err = capfd.readouterr().err
    assert (
        f"jetscale: checkpoint {out / 'checkpoint.pt'} is unusable (it holds a Python object that is not plain data"
        in err
    )
    assert "training starts afresh" in err
    assert record["steps"] == 10  # trained from step 0, not resumed at step 4
    straight = loop.train_cell(cfg, CELL, splits, tmp_path / "straight", progress=False)
    assert record["test_loss"] == straight["test_loss"]
    torch.load(out / "checkpoint.pt", weights_only=True)  # what training writes is plain data


def test_checkpoint_of_other_settings_or_corrupt_is_said_on_stderr(splits, tmp_path, capfd):
    cfg = small_config()
    out = tmp_path / "run"
    real = interrupted_run(cfg, splits, out)
    other = small_config(lr=3e-3)
    capfd.readouterr()
    loop.train_cell(other, CELL, splits, out, progress=False)
    err = capfd.readouterr().err
    assert f"written for settings hash {real['settings_hash']!r}" in err and "training starts afresh" in err

    out2 = tmp_path / "corrupt"
    interrupted_run(cfg, splits, out2)
    data = (out2 / "checkpoint.pt").read_bytes()
    (out2 / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # a disk-full / half-copied file
    capfd.readouterr()
    record = loop.train_cell(cfg, CELL, splits, out2, progress=False)
    err = capfd.readouterr().err
    assert f"checkpoint {out2 / 'checkpoint.pt'} is unusable (unreadable: " in err and record["steps"] == 10


def test_crafted_deepspeed_partition_never_runs_code(splits, tmp_path, capfd):
    """DeepSpeed's per-rank files (ZeRO-1 optimizer partition) are loaded as data too, and checked first."""
    cfg = small_config(deepspeed={"enabled": True, "zero_stage": 1}, precision="fp32")
    out = tmp_path / "run"
    interrupted_run(cfg, splits, out)
    (optim,) = (out / "checkpoint_ds" / "step4").glob("*optim_states.pt")
    marker = tmp_path / "code-ran"
    state = torch.load(optim, weights_only=False)  # our own file: trusted here
    torch.save({**state, "extra": Payload(marker)}, optim)
    capfd.readouterr()
    record = loop.train_cell(cfg, CELL, splits, out, progress=False)
    assert not marker.exists(), "loading the DeepSpeed partition executed code"
    err = capfd.readouterr().err
    assert f"{optim} holds objects that are not plain data" in err and "training starts afresh" in err
    assert record["steps"] == 10
    assert json.loads((out / "metrics.json").read_text())["steps"] == 10


def test_deepspeed_checkpoint_resumes_through_the_safe_loader(splits, tmp_path):
    cfg = small_config(deepspeed={"enabled": True, "zero_stage": 1}, precision="fp32")
    straight = loop.train_cell(cfg, CELL, splits, tmp_path / "straight", progress=False)
    interrupted_run(cfg, splits, tmp_path / "resumed")
    resumed = loop.train_cell(cfg, CELL, splits, tmp_path / "resumed", progress=False)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert resumed["test_loss"] == straight["test_loss"]


def test_a_checkpoint_of_other_splits_is_not_resumed(splits, tmp_path, capfd):
    import shutil

    cfg = small_config()
    other = tmp_path / "other-splits"
    shutil.copytree(splits, other)
    meta = json.loads((other / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**meta, "data_fingerprint": "changed"}))
    out = tmp_path / "run"
    interrupted_run(cfg, splits, out)
    capfd.readouterr()
    record = loop.train_cell(cfg, CELL, other, out, progress=False)
    assert "is unusable (trained on other splits (data_fingerprint differs))" in capfd.readouterr().err
    assert record["steps"] == 10

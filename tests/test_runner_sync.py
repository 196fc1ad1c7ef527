"""The training step leaves the loss on the device: the host reads it at log rows and checkpoints only (on a GPU
a read at every step would stall the host on every forward), with the same window sums and the same failure on
a non-finite loss, and never a checkpoint of weights from a non-finite step."""

from __future__ import annotations

import json
import math
import traceback

import pytest
import torch

from jetscale.config import load_config
from jetscale.data.testing import write_synthetic_splits
from jetscale.errors import TrainingError
from jetscale.train import classifier, loop
from jetscale.train.checkpoint import TrainingInterrupted
from jetscale.train.runner import Runner
from tiny_config import tiny_config, tiny_raw_config

# 16 jets a step, 10 steps; log rows (an evaluation every 3 steps) at steps 3, 6, 9, 10; checkpoints every 3 steps
CELL = "model~particlenet/width~8/n_train~44/compute~160/seed~0"
HOST_READS = ("__float__", "__int__", "__index__", "__bool__", "item", "tolist", "numpy")


@pytest.fixture(scope="module")
def cfg():
    return tiny_config(("particlenet",))


@pytest.fixture(scope="module")
def splits(tmp_path_factory, cfg):
    return write_synthetic_splits(
        tmp_path_factory.mktemp("splits"), cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=16
    )


def poison_step(monkeypatch, bad_step: int) -> list[float]:
    """Make step ``bad_step``'s loss NaN; returns every step's loss as the host sees it."""
    real, seen = classifier.compute_loss, []

    def poisoned(*args, **kwargs):
        loss = real(*args, **kwargs)
        if len(seen) + 1 == bad_step:
            loss = loss * float("nan")
        seen.append(float(loss.detach()))
        return loss

    monkeypatch.setattr(classifier, "compute_loss", poisoned)
    return seen


def count_host_reads(monkeypatch, cfg, splits, out) -> dict[str, list[tuple[str, bool]]]:
    """Trains CELL and returns every host read of a tensor (float(), .item(), .tolist(), bool(), ...) made by the
    runner's step outside the task's own loss (batch assembly is the task's business), and at the log rows for
    contrast: (the read, whether DeepSpeed's code made it)."""
    where = {"now": None}
    reads = {"step": [], "log_row": []}

    def counting(name):
        real = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if where["now"] is not None:
                in_deepspeed = any("/deepspeed/" in frame.filename for frame in traceback.extract_stack())
                reads[where["now"]].append((name, in_deepspeed))
            return real(self, *args, **kwargs)

        return read

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))

    def tracked(method, label):
        def run(*args, **kwargs):
            before, where["now"] = where["now"], label
            try:
                return method(*args, **kwargs)
            finally:
                where["now"] = before

        return run

    monkeypatch.setattr(Runner, "step", tracked(Runner.step, "step"))
    monkeypatch.setattr(Runner, "log_row", tracked(Runner.log_row, "log_row"))
    monkeypatch.setattr(classifier.ClassifierTask, "loss", tracked(classifier.ClassifierTask.loss, None))
    loop.train_cell(cfg, CELL, splits, out, progress=False)
    return reads


def test_steps_read_no_tensor_on_the_host(cfg, splits, tmp_path, monkeypatch):
    reads = count_host_reads(monkeypatch, cfg, splits, tmp_path)
    assert reads["step"] == []
    assert reads["log_row"], "the instrumentation sees the reads the log rows make"


@pytest.mark.parametrize("zero_stage", [0, 1])
def test_deepspeed_steps_read_the_host_only_inside_deepspeed(splits, tmp_path, monkeypatch, zero_stage):
    """The DeepSpeed engine's step adds no host read of ours. ZeRO 0 makes none; ZeRO 1-3 check the gradient
    norm's validity on the host in DeepSpeed's own optimizer step (``is_invalid_grad_norm``: measured 2 reads a
    step at stages 1 and 2, 1 at stage 3), which this project cannot remove."""
    raw = tiny_raw_config(("particlenet",))
    raw["training"]["deepspeed"] = {"enabled": True, "zero_stage": zero_stage}
    reads = count_host_reads(monkeypatch, load_config(raw), splits, tmp_path)
    assert [read for read in reads["step"] if not read[1]] == []
    if zero_stage == 0:
        assert reads["step"] == []
    assert reads["log_row"]


def test_window_sum_is_the_sum_of_each_steps_loss_as_a_python_float(cfg, splits, tmp_path, monkeypatch):
    """A checkpoint between log rows holds the window's loss: exactly float(loss 4) + float(loss 5), the sum the
    runner made when it read the loss at every step."""
    seen = poison_step(monkeypatch, bad_step=0)  # step 0 never comes: every loss is the real one
    with pytest.raises(TrainingInterrupted):
        loop.train_cell(cfg, CELL, splits, tmp_path, progress=False, stop_after_steps=5)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 5 and saved["window_steps"] == 2
    assert saved["window_loss"] == seen[3] + seen[4]


@pytest.mark.parametrize(
    "stop_after,window",
    [(None, "4-6"), (5, "4-5")],  # found at the log row of step 6; found before the checkpoint of step 5
)
def test_a_non_finite_loss_between_log_rows_fails_before_any_checkpoint_of_its_weights(
    cfg, splits, tmp_path, monkeypatch, stop_after, window
):
    poison_step(monkeypatch, bad_step=5)
    with pytest.raises(TrainingError, match=f"non-finite training loss \\(nan\\) at step 5 .*steps {window}"):
        loop.train_cell(cfg, CELL, splits, tmp_path, progress=False, stop_after_steps=stop_after)
    failure = json.loads((tmp_path / "failure.json").read_text())
    assert failure["status"] == "failed" and failure["step"] == 5 and failure["samples"] == 4 * 16
    assert f"steps {window}" in failure["reason"]
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 3  # the last checkpoint before the bad step; its weights are finite
    assert all(torch.isfinite(w).all() for w in saved["model"].values() if w.is_floating_point())
    assert all(math.isfinite(row["loss"]) for row in saved["log_rows"])
    assert not (tmp_path / "metrics.json").exists()


def test_an_error_after_a_non_finite_step_reports_the_non_finite_loss(cfg, splits, tmp_path, monkeypatch):
    """A step that raises (say, on the NaN weights an unread non-finite loss left) reports that loss first."""
    seen = poison_step(monkeypatch, bad_step=4)
    real = classifier.compute_loss

    def breaks(*args, **kwargs):
        if len(seen) == 4:
            raise RuntimeError("a model choking on NaN weights")
        return real(*args, **kwargs)

    monkeypatch.setattr(classifier, "compute_loss", breaks)
    with pytest.raises(TrainingError, match="at step 4 ") as raised:
        loop.train_cell(cfg, CELL, splits, tmp_path, progress=False)
    assert isinstance(raised.value.__context__, RuntimeError)
    assert json.loads((tmp_path / "failure.json").read_text())["step"] == 4

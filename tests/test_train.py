"""train_cell on tiny synthetic splits: outputs, resume after a kill, NaN failure, stop requests."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from jetscale.data.testing import write_synthetic_splits
from jetscale.errors import TrainingError
from jetscale.train import classifier, loop
from jetscale.train.checkpoint import TrainingInterrupted
from tiny_config import tiny_config

CELL = "model~particlenet/width~8/n_train~44/compute~160/seed~0"


def small_config() -> dict:
    return tiny_config(
        ("particlenet", "part", "bbt_neutron"), per_model={"bbt_neutron": {"width": [16]}}, tokenizer={"max_bytes": 256}
    )


@pytest.fixture(scope="module")
def cfg():
    return small_config()


@pytest.fixture(scope="module")
def splits(tmp_path_factory, cfg):
    return write_synthetic_splits(
        tmp_path_factory.mktemp("splits"), cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=16
    )


def final_weights(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)["model"]


def test_a_tiny_cell_gives_the_result_pinned_before_the_runner_existed(cfg, splits, tmp_path):
    """A refactor of the training loop changes no result: the same cell, settings and splits give the test loss
    measured with the code of before (CPU, fp32; a tolerance for other CPUs' float rounding only). Re-pinned
    on purpose: the physics preset's charge weight is a new input column (2.395711898803711 before it); these
    16-slot jets now get k = 16 neighbour slots in every batch, as jets of a batch with 17 or more slots always
    had (2.3912692070007324 before)."""
    record = loop.train_cell(cfg, CELL, splits, tmp_path, progress=False)
    assert record["test_loss"] == pytest.approx(2.3910579681396484, rel=1e-6, abs=0)


@pytest.mark.parametrize("model,width", [("particlenet", 8), ("part", 8), ("bbt_neutron", 16)])
def test_train_cell_writes_every_output(cfg, splits, tmp_path, model, width):
    cell = f"model~{model}/width~{width}/n_train~44/compute~160/seed~0"
    record = loop.train_cell(cfg, cell, splits, tmp_path, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(record))
    assert metrics["samples_seen"] == 160 and metrics["steps"] == 10 and metrics["cell_id"] == cell
    assert metrics["train_flops"] == pytest.approx(3 * metrics["flops_per_jet"] * 160)
    assert metrics["n_params"] > 0 and metrics["settings"]["model"] == model and len(metrics["settings_hash"]) == 16
    for key in (
        "val_loss",
        "val_accuracy",
        "test_loss",
        "test_accuracy",
        "wall_time_s",
        "hardware",
        "versions",
        "git_revision",
        "cell",
    ):
        assert key in metrics
    preds = pd.read_parquet(tmp_path / "predictions.parquet")
    assert list(preds.columns) == ["jet_id", "label"] + [f"score_{c}" for c in cfg["classes"]]
    assert len(preds) == 33
    np.testing.assert_allclose(preds.filter(like="score_").sum(axis=1), 1.0, rtol=1e-5)
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert list(log.columns) == ["step", "samples", "loss", "lr", "throughput", "val_loss"]
    assert log["step"].iloc[-1] == 10 and log["val_loss"].notna().sum() >= 3
    hist = tmp_path / "history" / metrics["settings_hash"]
    assert (hist / "metrics.json").stat().st_ino == (tmp_path / "metrics.json").stat().st_ino
    assert not (tmp_path / "failure.json").exists()


def test_each_step_asks_for_the_next_steps_rows_before_its_own_batch(cfg, splits, tmp_path, monkeypatch):
    """Before each step's batch is read and trained on, the training loop hands the task the batch two steps on
    (at the first step, the next one too), each once: a streamed split reads and prepares them meanwhile. Never
    beyond the budget's last step."""
    import threading

    from jetscale.train import inputs
    from jetscale.train.runner import AHEAD_STEPS

    monkeypatch.setattr(inputs, "EAGER_LIMIT_BYTES", 0)
    events = []
    real_prefetch, real_tensors = inputs.SplitInputs.prefetch, inputs.SplitInputs.tensors

    def prefetch(self, rows, *args):
        events.append(("next", np.array(rows)))
        return real_prefetch(self, rows, *args)

    def tensors(self, idx, *args, **kwargs):
        if self.random_rows:  # the training split's batches, not the scoring
            events.append(("batch", np.array(idx)))
        return real_tensors(self, idx, *args, **kwargs)

    prepared_in, real_prepare = [], inputs.SplitInputs._prepare

    def prepare(self, *args, **kwargs):
        if self.random_rows:
            prepared_in.append(threading.current_thread().name)
        return real_prepare(self, *args, **kwargs)

    monkeypatch.setattr(inputs.SplitInputs, "prefetch", prefetch)
    monkeypatch.setattr(inputs.SplitInputs, "tensors", tensors)
    monkeypatch.setattr(inputs.SplitInputs, "_prepare", prepare)
    loop.train_cell(cfg, CELL, splits, tmp_path, progress=False)
    kinds = [kind for kind, _ in events]
    steps = kinds.count("batch")
    assert AHEAD_STEPS == 2 and steps > 3
    # the first batch is prepared where it is drawn, every later one ahead, by the read-ahead's thread
    assert len(prepared_in) == steps and prepared_in.count("MainThread") == 1
    assert sum(name.startswith("split-read-ahead") for name in prepared_in) == steps - 1
    assert kinds == ["next", "next", "batch"] + ["next", "batch"] * (steps - 3) + ["batch"] * 2
    batches = [rows for kind, rows in events if kind == "batch"]
    asked = [rows for kind, rows in events if kind == "next"]
    assert len(asked) == steps - 1
    for step, rows in enumerate(asked):
        np.testing.assert_array_equal(rows, batches[step + 1])  # each batch but the first, asked for once


def test_the_sampler_draws_the_same_batches_when_asked_ahead():
    """Asking for the next batches first (possibly of the next epoch) changes no batch drawn, and keeps no more
    than three epochs' permutations."""
    from jetscale.train.runner import Sampler

    ahead, alone = Sampler(10, 3), None
    for position in range(0, 60, 4):
        alone = Sampler(10, 3)  # a fresh sampler per batch: what a resume at that position draws
        np.testing.assert_array_equal(ahead.batch(position, 4), alone.batch(position, 4))
        ahead.batch(position + 8, 4)  # two steps on, as the runner asks for it
        assert len(ahead._perms) <= 3


def test_killed_run_resumes_to_identical_weights(cfg, splits, tmp_path):
    loop.train_cell(cfg, CELL, splits, tmp_path / "straight", progress=False)
    with pytest.raises(TrainingInterrupted):
        loop.train_cell(cfg, CELL, splits, tmp_path / "resumed", progress=False, stop_after_steps=4)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    loop.train_cell(cfg, CELL, splits, tmp_path / "resumed", progress=False)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    ma = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert ma["test_loss"] == mb["test_loss"] and ma["samples_seen"] == mb["samples_seen"]


def test_train_log_after_a_resume_equals_an_uninterrupted_runs(cfg, splits, tmp_path):
    """The running-loss window is checkpointed: the row after the resume averages the same steps."""
    loop.train_cell(cfg, CELL, splits, tmp_path / "straight", progress=False)
    with pytest.raises(TrainingInterrupted):  # step 4 is between log rows (steps 3, 6, 9, 10)
        loop.train_cell(cfg, CELL, splits, tmp_path / "resumed", progress=False, stop_after_steps=4)
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert saved["window_steps"] == 1 and saved["window_loss"] > 0
    loop.train_cell(cfg, CELL, splits, tmp_path / "resumed", progress=False)
    a, b = (pd.read_csv(tmp_path / run / "train_log.csv") for run in ("straight", "resumed"))
    pd.testing.assert_frame_equal(a.drop(columns="throughput"), b.drop(columns="throughput"))
    assert (b["throughput"] > 0).all()


def test_nan_loss_stops_with_reason(cfg, splits, tmp_path, monkeypatch):
    real = classifier.compute_loss
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(classifier, "compute_loss", poisoned)
    with pytest.raises(TrainingError, match="non-finite"):
        loop.train_cell(cfg, CELL, splits, tmp_path, progress=False)
    failure = json.loads((tmp_path / "failure.json").read_text())
    assert failure["status"] == "failed" and "non-finite" in failure["reason"] and failure["step"] == 3
    assert not (tmp_path / "metrics.json").exists()


def test_signal_checkpoints_and_stops(cfg, splits, tmp_path, monkeypatch):
    real = classifier.compute_loss
    calls = []

    def signalled(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGUSR1)  # Slurm's pre-timeout warning
        return real(*args, **kwargs)

    monkeypatch.setattr(classifier, "compute_loss", signalled)
    with pytest.raises(TrainingInterrupted, match="SIGUSR1"):
        loop.train_cell(cfg, CELL, splits, tmp_path, progress=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 2
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # handler restored


def test_pretrain_adds_the_next_patch_byte_loss(cfg, splits, tmp_path):
    """training.pretrain: BBT-Neutron trains its LM head (next patch's bytes) beside the classifier."""
    import copy

    cell = "model~bbt_neutron/width~16/n_train~44/compute~160/seed~0"
    plain = loop.train_cell(cfg, cell, splits, tmp_path / "plain", progress=False)
    pre_cfg = copy.deepcopy(cfg)
    pre_cfg["training"]["pretrain"] = True
    pre = loop.train_cell(pre_cfg, cell, splits, tmp_path / "pre", progress=False)
    assert pre["settings_hash"] != plain["settings_hash"]
    assert pre["n_params"] > plain["n_params"]  # the LM head: width -> patch_size x 257 byte logits
    first = {name: pd.read_csv(tmp_path / name / "train_log.csv")["loss"].iloc[0] for name in ("plain", "pre")}
    # an untrained byte LM costs about ln(257) = 5.55 nats per byte on top of the class cross-entropy
    assert first["pre"] - first["plain"] == pytest.approx(np.log(257), abs=1.0)
    preds = pd.read_parquet(tmp_path / "pre" / "predictions.parquet")
    assert len(preds) == 33 and preds.filter(like="score_").shape[1] == len(cfg["classes"])


@pytest.mark.parametrize("model,width", [("particlenet", 8), ("bbt_neutron", 16)])
def test_batches_prepared_on_the_fly_train_the_same_model(cfg, splits, tmp_path, monkeypatch, model, width):
    """Large splits stay memory-mapped and are prepared batch by batch: same batches, same run, as up front.
    Only the training split, whose batches are drawn at random, is read without read-ahead."""
    from jetscale.data import pages
    from jetscale.train import inputs

    cell = f"model~{model}/width~{width}/n_train~44/compute~160/seed~0"
    eager = loop.train_cell(cfg, cell, splits, tmp_path / "eager", progress=False)
    monkeypatch.setattr(inputs, "EAGER_LIMIT_BYTES", 0)
    advised, real_advise = [], pages.advise_random_rows
    monkeypatch.setattr(
        pages,
        "advise_random_rows",
        lambda raw: advised.append(Path(raw["labels"].filename).parent.name) or real_advise(raw),
    )
    assert not inputs.load_split_inputs(splits, "val", model, cfg["models"].get(model, {})).eager
    lazy = loop.train_cell(cfg, cell, splits, tmp_path / "lazy", progress=False)
    a, b = final_weights(tmp_path / "eager"), final_weights(tmp_path / "lazy")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert lazy["test_loss"] == eager["test_loss"] and lazy["truncated_jets"] == eager["truncated_jets"]
    assert advised == ["train"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "lazy" / "predictions.parquet"),
        pd.read_parquet(tmp_path / "eager" / "predictions.parquet"),
    )

"""TensorBoard event files of classifier runs and pretraining jobs, read back: the same curve as the CSV logs, with
the classifier's validation accuracy; a missing package is said once; a linked log directory is never written
through."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from jetscale import paths
from jetscale.config import load_config

REPO = Path(__file__).resolve().parents[1]


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the event files under ``directory``: tag -> [(step, value)] in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(directory))
    board.Reload()
    return {tag: [(e.step, e.value) for e in board.Scalars(tag)] for tag in board.Tags()["scalars"]}


def tiny_cell(tmp_path: Path) -> tuple[dict, str]:
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["results"] = str(tmp_path / "results")
    raw["data"].update({"n_particles": 16, "val_per_class": 3, "test_per_class": 3})
    raw["grid"]["axes"].update({"model": ["particlenet"], "width": [8], "n_train": [44], "compute": [160]})
    raw["grid"]["axes"]["seed"] = [0]
    raw["grid"]["per_model"] = {}
    raw["training"].update({"batch_size": 16, "eval_every_samples": 48, "early_stopping_patience": None})
    cfg = load_config(raw)
    from jetscale.grid import cell_ids

    (cid,) = cell_ids(cfg)
    return cfg, cid


def test_a_classifier_run_logs_its_curve_and_validation_accuracy(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is in envs/requirements.txt (the test env installs it)")
    from jetscale.data.testing import write_synthetic_splits
    from jetscale.train import loop

    cfg, cid = tiny_cell(tmp_path)
    splits = write_synthetic_splits(tmp_path / "splits", cfg["classes"], {"train": 66, "val": 33, "test": 33}, 16)
    run = paths.run_dir(paths.results_root(cfg), cid)
    loop.train_cell(cfg, cid, splits, run, progress=False)
    board = scalars(run / "tensorboard")
    assert {"train/loss", "val/loss", "val/accuracy", "lr", "jets_per_s"} <= set(board), set(board)
    log = pd.read_csv(run / paths.TRAIN_LOG)
    assert [s for s, _ in board["train/loss"]] == log["samples"].tolist()
    assert [v for _, v in board["train/loss"]] == pytest.approx(log["loss"].tolist(), rel=1e-6)
    evaluated = log[log["val_loss"].notna()]
    assert len(evaluated) >= 3
    assert [s for s, _ in board["val/loss"]] == [s for s, _ in board["val/accuracy"]] == evaluated["samples"].tolist()
    assert [v for _, v in board["val/loss"]] == pytest.approx(evaluated["val_loss"].tolist(), rel=1e-6)
    accuracy = [v for _, v in board["val/accuracy"]]
    assert all(0.0 <= a <= 1.0 for a in accuracy)
    # the run keeps its best validation weights: metrics.json's val scores are those of the best logged row
    metrics = json.loads((run / paths.METRICS).read_text())
    best = min(range(len(evaluated)), key=lambda i: (evaluated["val_loss"].iloc[i], i))
    assert metrics["val_loss"] == pytest.approx(evaluated["val_loss"].iloc[best], abs=1e-6)
    assert metrics["val_accuracy"] == pytest.approx(accuracy[best], abs=1e-6)
    assert list(log.columns) == ["step", "samples", "loss", "lr", "throughput", "val_loss"]  # the CSV is unchanged


def test_without_the_package_nothing_is_written_and_it_is_said_once(tmp_path, monkeypatch, capsys):
    import builtins

    from jetscale.train import tensorboard

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard", name="tensorboard")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.setattr(tensorboard, "_SAID", False)
    assert tensorboard.tensorboard_sink(tmp_path / "a") is None
    assert tensorboard.tensorboard_sink(tmp_path / "b") is None
    err = capsys.readouterr().err
    assert err.count("tensorboard is not installed") == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_linked_log_directory_is_replaced_not_written_through(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is in envs/requirements.txt (the test env installs it)")
    from jetscale.train.tensorboard import tensorboard_sink

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "tensorboard").symlink_to(elsewhere)
    sink = tensorboard_sink(run)
    sink.add({"step": 1, "samples": 16, "loss": 1.5, "lr": 1e-3, "throughput": 100.0, "val_loss": 1.4})
    sink.close([])
    assert not (run / "tensorboard").is_symlink() and list(elsewhere.iterdir()) == []
    board = scalars(run / "tensorboard")
    assert board["train/loss"] == [(16, 1.5)] and board["val/loss"] == [(16, pytest.approx(1.4))]

"""history/ keeps every finished run whole and never overwrites an entry (issue 10, item 3)."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from jetscale.data.testing import write_synthetic_splits
from jetscale.train import loop
from jetscale.train.history import RUN_FILES
from test_train import CELL, small_config


def test_a_retrain_with_the_same_settings_never_overwrites_the_archived_run(tmp_path):
    cfg = {**small_config(), "results": str(tmp_path / "results")}  # not the checkout's results/ (another study's)
    sizes = {"train": 66, "val": 33, "test": 33}
    old = write_synthetic_splits(tmp_path / "old", cfg["classes"], sizes, n_particles=16, seed=1)
    new = write_synthetic_splits(tmp_path / "new", cfg["classes"], sizes, n_particles=16, seed=2)
    run = tmp_path / "run"
    first = loop.train_cell(cfg, CELL, old, run, progress=False)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    evaluate = [sys.executable, "-m", "jetscale.cli", "evaluate", "--config", str(config), "--run", str(run)]
    subprocess.run(evaluate, check=True, capture_output=True)
    entry = run / "history" / first["settings_hash"]
    kept = [name for name in (*RUN_FILES, "eval.json") if (run / name).is_file()]  # a network has no model.txt
    assert "checkpoint.pt" in kept and "model.txt" not in kept
    archived = {name: (entry / name).read_bytes() for name in kept}

    (run / "metrics.json").unlink()  # what Snakemake does before a rerun; same settings, other data
    (run / "eval.json").unlink()
    (run / "checkpoint.pt").unlink()
    second = loop.train_cell(cfg, CELL, new, run, progress=False)
    subprocess.run(evaluate, check=True, capture_output=True)

    assert second["settings_hash"] == first["settings_hash"] and second["test_loss"] != first["test_loss"]
    assert {name: (entry / name).read_bytes() for name in archived} == archived  # the first run, intact
    assert json.loads((entry / "metrics.json").read_text())["test_loss"] == first["test_loss"]
    again = run / "history" / f"{first['settings_hash']}.2"
    for name in kept:
        assert (again / name).read_bytes() == (run / name).read_bytes()

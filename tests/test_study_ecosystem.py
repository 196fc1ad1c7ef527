"""A tiny real study run the way an IDE or a cron job runs it: `.venv/bin/snakemake` with the environment's bin
directory NOT on PATH. Every rule must still find its `jetscale` (the one of the interpreter running Snakemake)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from study_helpers import REPO, tiny_study

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

BIN = Path(sys.executable).parent
GRID = {
    "axes": {"model": ["particlenet"], "width": [16], "n_train": [200, 400, 800], "compute": [300], "seed": [0]},
    "per_model": {},
    "extra_axes": {},
}


def path_without_jetscale() -> str:
    """PATH minus every directory that holds a `jetscale` or `snakemake` (the venv's bin among them)."""
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    keep = [d for d in dirs if d and not (Path(d) / "jetscale").exists() and not (Path(d) / "snakemake").exists()]
    return os.pathsep.join(keep or ["/usr/bin", "/bin"])


@pytest.fixture(scope="module")
def bare_path_study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bare-path")
    config = tiny_study(workdir, grid=GRID)
    env = {**os.environ, "PATH": path_without_jetscale()}
    assert shutil.which("jetscale", path=env["PATH"]) is None
    out = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
        + ["--configfile", str(config), "--cores", "2"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir / yaml.safe_load(config.read_text())["results"], out


def test_every_stage_ran_without_jetscale_on_path(bare_path_study):
    root, out = bare_path_study
    assert "command not found" not in out.stderr
    runs = sorted(p for p in root.glob("runs/**/metrics.json") if "history" not in p.parts)
    assert len(runs) == 3
    assert all((m.parent / "eval.json").exists() for m in runs)
    assert (root / "tables" / "runs.csv").exists()
    assert (root / "report.html").exists()


def test_every_cell_writes_tensorboard_event_files(bare_path_study):
    pytest.importorskip("tensorboard", reason="tensorboard is in envs/requirements.txt (the test env installs it)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _ = bare_path_study
    runs = sorted(p.parent for p in root.glob("runs/**/metrics.json") if "history" not in p.parts)
    assert len(runs) == 3
    for run in runs:
        events = list((run / "tensorboard").glob("events.out.tfevents.*"))
        assert events and not (run / "tensorboard").is_symlink()
        board = EventAccumulator(str(run / "tensorboard"))
        board.Reload()
        tags = set(board.Tags()["scalars"])
        assert {"train/loss", "val/loss", "val/accuracy", "lr", "jets_per_s"} <= tags, tags
        # the same rows as the CSV log (its source of truth)
        rows = (run / "train_log.csv").read_text().strip().splitlines()[1:]
        assert len(board.Scalars("train/loss")) == len(rows)

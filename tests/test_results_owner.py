"""Every command that writes into a results dir checks its study.json, and a results dir / a cell has one writer
at a time (issue 10, item 5)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from jetscale.config import load_config
from jetscale.io import write_json
from jetscale.results_dir import hold_lock, stamp
from jetscale.workflow import StudyPlan


def configs(default_config_dict, tmp_path):
    ours = copy.deepcopy(default_config_dict)
    ours["results"] = str(tmp_path / "results")
    other = copy.deepcopy(ours)
    other["study"] = "someone-else"
    paths = []
    for name, raw in (("ours.yaml", ours), ("other.yaml", other)):
        (tmp_path / name).write_text(yaml.safe_dump(raw))
        paths.append(tmp_path / name)
    write_json(tmp_path / "results" / "study.json", stamp(load_config(ours)))
    return paths


def jetscale(*args):
    return subprocess.run([sys.executable, "-m", "jetscale.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", ["collect", "fit", "report", "split", "train", "evaluate"])
def test_commands_refuse_another_studys_results_dir(default_config_dict, tmp_path, command):
    _, other = configs(default_config_dict, tmp_path)
    table = tmp_path / "results" / "tables" / "runs.csv"
    table.parent.mkdir(parents=True)
    table.write_text("ours\n")
    extra = {
        "split": ["--shards", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "results" / "data" / "splits")],
        "train": ["--cell", "model~part/width~16/n_train~100/compute~auto/seed~0", "--out", str(tmp_path / "r")],
        "evaluate": ["--run", str(tmp_path / "results" / "runs" / "x")],
    }.get(command, [])
    run = jetscale(command, "--config", str(other), *extra)
    assert run.returncode == 2, run.stderr
    assert "results: " in run.stderr and "was written by a different configuration (study" in run.stderr, run.stderr
    assert table.read_text() == "ours\n" and not (tmp_path / "results" / "report.html").exists()


def test_one_snakemake_run_per_results_dir(default_config_dict, tmp_path):
    ours, _ = configs(default_config_dict, tmp_path)
    from snakemake.exceptions import WorkflowError

    first = StudyPlan(load_config(ours))
    first.on_start()
    with pytest.raises(WorkflowError, match=r"\.jetscale/lock: locked by a Snakemake run \(pid \d+\)"):
        StudyPlan(load_config(ours)).on_start()
    first._lock.close()
    StudyPlan(load_config(ours)).on_start()  # free again


def test_one_trainer_per_cell(default_config_dict, tmp_path):
    ours, _ = configs(default_config_dict, tmp_path)
    out = tmp_path / "results" / "runs" / "cell"
    with hold_lock(out / ".train.lock", "jetscale train --cell X"):
        cell = "model~part/width~16/n_train~100/compute~auto/seed~0"
        run = jetscale("train", "--config", str(ours), "--cell", cell, "--out", str(out), "--no-progress")
    assert run.returncode == 2
    assert f"{out / '.train.lock'}: locked by jetscale train --cell X (pid" in run.stderr
    assert not (out / "checkpoint.pt").exists()

"""The Snakemake DAG: plans the whole default study, passes lint/format checks, refuses foreign results dirs."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jetscale.config import load_config
from jetscale.errors import ConfigError
from jetscale.workflow import StudyPlan

BIN = Path(sys.executable).parent


def _snakemake(repo_root, *args, cwd=None):
    return subprocess.run(
        [str(BIN / "snakemake"), "-s", str(repo_root / "Snakefile"), *args],
        cwd=cwd or repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_plan_regex_and_resources(default_config_dict, tmp_path):
    raw = copy.deepcopy(default_config_dict)
    raw["results"] = str(tmp_path)
    raw["resources"]["train"]["bbt_neutron"]["widths"] = {"32": {"mem_mb": 9000, "gpus": 1}}
    plan = StudyPlan(load_config(raw))
    regex = re.compile(plan.cell_regex)
    assert all(regex.fullmatch(cid) for cid in plan.cells)
    assert not regex.fullmatch("data/splits")
    bbt = next(c for c in plan.cells if c.startswith("model~bbt"))
    pn = next(c for c in plan.cells if c.startswith("model~particlenet"))
    assert plan.train_resources(bbt)["mem_mb"] == 9000 and plan.train_resources(bbt)["gpus"] == 1
    assert plan.train_resources(pn)["gpus"] == 0 and plan.train_resources(pn)["mem_mb"] == 3000
    assert len(plan.shard_inputs) == raw["data"]["generate"]["n_shards"]


def test_results_dir_of_another_study_is_refused(default_config_dict, tmp_path):
    raw = copy.deepcopy(default_config_dict)
    raw["results"] = str(tmp_path)
    plan = StudyPlan(load_config(raw))
    plan.on_start()
    stamp = json.loads((tmp_path / "study.json").read_text())
    assert stamp["study"] == raw["study"]
    StudyPlan(load_config(raw))  # same config: fine
    other = copy.deepcopy(raw)
    other["study"] = "someone-else"
    with pytest.raises(ConfigError, match="written by a different configuration"):
        StudyPlan(load_config(other))
    other = copy.deepcopy(raw)
    other["data"]["n_particles"] = 32
    with pytest.raises(ConfigError, match="data_fingerprint"):
        StudyPlan(load_config(other))


def test_effective_config_rewritten_only_on_change(default_config_dict, tmp_path):
    raw = copy.deepcopy(default_config_dict)
    raw["results"] = str(tmp_path)
    path = Path(StudyPlan(load_config(raw)).write_effective_config())
    mtime = path.stat().st_mtime_ns
    StudyPlan(load_config(raw)).write_effective_config()
    assert path.stat().st_mtime_ns == mtime
    assert load_config(path)["study"] == raw["study"]


def test_dry_run_lists_whole_default_study(repo_root, tmp_path):
    out = _snakemake(repo_root, "-n", "--config", f"results={tmp_path}")
    assert out.returncode == 0, out.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, re.M))
    assert counts["train"] == "36" and counts["evaluate"] == "36"
    assert counts["generate_shard"] == "4" and counts["report"] == "1"


def test_bad_config_fails_before_any_job(repo_root, tmp_path):
    out = _snakemake(repo_root, "-n", "--config", f"results={tmp_path}", "grid={'axes': {'model': ['resnet']}}")
    assert out.returncode != 0
    assert "grid.axes.model[0]: unknown model 'resnet'" in out.stdout + out.stderr


def test_lint_and_format(repo_root, tmp_path):
    lint = _snakemake(repo_root, "--lint", "--config", f"results={tmp_path}")
    assert lint.returncode == 0 and "good condition" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/"], cwd=repo_root, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stderr

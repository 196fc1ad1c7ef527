"""The Snakemake DAG: plans the whole default study, passes lint/format checks, refuses foreign results dirs."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from jetscale import paths
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


def test_fine_tuning_cells_get_their_backbone_as_a_train_input(default_config_dict, tmp_path):
    raw = copy.deepcopy(default_config_dict)
    raw["results"] = str(tmp_path)
    raw["grid"]["axes"].update(pretrain=["none", "next_patch"], n_pretrain=[40], finetune=["full"])
    plan = StudyPlan(load_config(raw))
    scratch = [c for c in plan.cells if "/pretrain~next_patch/" not in c]
    tuned = [c for c in plan.cells if "/pretrain~next_patch/" in c]
    assert scratch and tuned and all(plan.backbone_input(c) == [] for c in scratch)
    for cid in tuned:
        (path,) = plan.backbone_input(cid)
        assert path == str(paths.backbone_path(tmp_path, plan.backbone_of(cid))) and path.endswith(paths.BACKBONE)
    assert plan.backbones and all(re.fullmatch(plan.backbone_regex, bid) for bid in plan.backbones)


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
    assert counts["train"] == "42" and counts["evaluate"] == "42"  # 30 network cells + 12 of the bdt baseline
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


def test_config_errors_under_snakemake_are_one_line_with_the_key(repo_root, tmp_path):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("grid:\n  per_model:\n    part: {n_train: [-100]}\n")
    out = _snakemake(repo_root, "-n", "--configfile", str(overlay), "--config", f"results={tmp_path}")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    line = next(x for x in text.splitlines() if "invalid study configuration" in x)
    assert line.endswith("grid.per_model.part.n_train[0]: bad value -100: -100 is less than the minimum of 1")
    assert "Failed validating" not in text and "jsonschema" not in text


def test_an_overlay_resets_a_mapping_with_null(repo_root, tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("models: null\n")  # config.yaml sets BBT-Neutron's tokenizer; null drops it
    out = _snakemake(repo_root, "-n", "--configfile", str(overlay), "--config", f"results={tmp_path / 'r'}")
    assert out.returncode == 0, out.stderr
    written = load_config(tmp_path / "r" / ".jetscale" / "config.yaml")
    assert written["models"] == {}


def test_a_yaml_alias_bomb_is_refused_quickly(repo_root, tmp_path):
    import time

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("flavor_pairs:\n" + "\n".join("  " + line for line in lines) + "\n")
    t0 = time.perf_counter()
    out = _snakemake(repo_root, "-n", "--configfile", str(bomb), "--config", f"results={tmp_path}")
    assert out.returncode != 0
    assert "flavor_pairs.a5: expands to more than 200000 values" in out.stdout + out.stderr
    assert time.perf_counter() - t0 < 60  # Snakemake's own start-up included; the check itself is linear
    with pytest.raises(ConfigError, match="expands to more than"):
        load_config(bomb)


def test_rules_run_the_jetscale_of_snakemakes_interpreter(tmp_path):
    from jetscale.workflow import jetscale_command, shell_prefix

    command = jetscale_command()
    assert command == f"{shlex.quote(sys.executable)} -m jetscale"
    # the prefix as Snakemake uses it (formatted like a rule's command) defines `jetscale`; it runs with nothing on
    # PATH (the interpreter is named by its full path) and keeps Snakemake's strict bash mode
    prefix = shell_prefix(command, strict_bash=True).format()
    assert prefix.startswith("set -euo pipefail; ")
    out = subprocess.run(
        ["bash", "-c", prefix + "jetscale models"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert "particlenet" in out.stdout
    assert not shell_prefix(command, strict_bash=False).startswith("set ")
    # a per-job environment (conda, apptainer) brings its own jetscale: the host interpreter is not the job's
    assert jetscale_command(["CONDA"]) is jetscale_command(["APPTAINER", "ENV_MODULES"]) is None
    assert shell_prefix(None, strict_bash=True) is None
    assert jetscale_command(["ENV_MODULES"]) == command


def test_largest_training_sets_are_scheduled_first(repo_root):
    cfg = load_config(repo_root / "config.yaml")
    plan = StudyPlan(cfg)
    networks = [cid for cid in plan.cells if plan.cell(cid)["model"] != "bdt"]
    by_size = {plan.cell(cid)["n_train"]: plan.train_priority(cid) for cid in networks}
    sizes = sorted(by_size)
    assert [by_size[n] for n in sizes] == sorted(by_size.values()) and len(set(by_size.values())) == len(sizes)
    assert 0 < by_size[sizes[0]] and by_size[sizes[-1]] < StudyPlan.PRETRAIN_PRIORITY
    # the input statistics that gate the trainings come before any of them; fitted cells (seconds) after all
    assert StudyPlan.INPUT_STATS_PRIORITY > max(by_size.values())
    fitted = {plan.train_priority(cid) for cid in plan.cells if plan.cell(cid)["model"] == "bdt"}
    assert fitted == {1} and min(by_size.values()) > 1

"""Config values never reach a shell unquoted, and a results directory is never / .. the repo or the cwd
(issue 10, item 2)."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jetscale.config import load_config
from jetscale.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def shell_commands() -> list[tuple[str, str]]:
    """(file, shell command text) of every rule."""
    out = []
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        for match in re.finditer(r"shell:\n((?:\s+['\"].*\n)+)", path.read_text()):
            out.append((path.name, match.group(1)))
    return out


def test_every_shell_placeholder_is_quoted():
    commands = shell_commands()
    assert len(commands) >= 9
    for name, text in commands:
        placeholders = re.findall(r"\{([^{}]+)\}", text)
        assert placeholders, (name, text)
        unquoted = [p for p in placeholders if not p.endswith(":q")]
        assert not unquoted, f"{name}: unquoted placeholders {unquoted} in {text!r}"
        for sub in re.findall(r".\$\([^)]*\).", text):  # a command substitution is itself quoted
            assert sub[0] == sub[-1] == '"', f"{name}: unquoted {sub!r}"


@pytest.mark.parametrize(
    "results,problem",
    [
        ("r$(touch X)", "does not match the safe pattern"),
        ("my res", "does not match the safe pattern"),
        ("r`id`", "does not match the safe pattern"),
        ("-rf", "does not match the safe pattern"),
        ("/", "is the file-system root"),
        ("..", "contains '..'"),
        ("out/../../x", "contains '..'"),
        (".", "which is the working directory or a parent of it"),
        (str(REPO), "which is the repository or a parent of it"),
        (str(REPO.parent), "which is the repository or a parent of it"),
    ],
)
def test_unsafe_results_dirs_are_refused(default_config_dict, results, problem, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = copy.deepcopy(default_config_dict)
    raw["results"] = results
    with pytest.raises(ConfigError, match=re.escape(problem)) as err:
        load_config(raw)
    assert str(err.value).startswith("config: results: ")


def test_safe_results_dirs_are_accepted(default_config_dict, tmp_path):
    for results in ("results", "out/study-1.v2", str(tmp_path / "r+s_1")):
        raw = copy.deepcopy(default_config_dict)
        raw["results"] = results
        assert load_config(raw)["results"] == results


@pytest.mark.parametrize("value", ["$(touch X)x", "a b", "x;y", "a/b"])
def test_unsafe_axis_values_are_refused(default_config_dict, tmp_path, value):
    raw = copy.deepcopy(default_config_dict)
    raw["results"] = str(tmp_path)
    raw["grid"]["extra_axes"] = {"opt": {"values": ["adamw", value], "default": "adamw", "sets": "training.optimizer"}}
    with pytest.raises(ConfigError, match=r"grid\.extra_axes\.opt\.values\[1\]: .* does not match the safe pattern"):
        load_config(raw)


def test_snakemake_refuses_a_shell_injection_before_running_anything(tmp_path):
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    run = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-n", "--config", "results=r$(touch INJECTED)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0
    assert "does not match" in run.stdout + run.stderr
    assert not (tmp_path / "INJECTED").exists() and not list(tmp_path.glob("r*"))

"""Models from the user's own files (config models.<name>.source): declared, registered without importing the
file, hashed by content, refused where unsafe, and the README's example trained in a tiny study as written."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jetscale.config import load_config
from jetscale.errors import ConfigError, JetscaleError
from jetscale.grid import cells, cells_by_id
from jetscale.models import catalog
from jetscale.settings import resolve_settings, settings_hash
from study_helpers import REPO, planned_cells
from tiny_config import tiny_study_raw

BIN = Path(sys.executable).parent


def readme_block(first_line: str) -> str:
    """The README code block that starts with ``first_line`` (the example's file name comment)."""
    text = (REPO / "README.md").read_text()
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"README has no code block starting with {first_line!r}")


MODEL_FILE = readme_block("# my_tagger.py")
STUDY_FILE = readme_block("# my_study.yaml")


def tiny_base() -> dict:
    """The tiny study (small data, short runs) with ParticleNet only: the README study is merged over it."""
    cfg = tiny_study_raw()
    cfg["grid"]["axes"].update({"model": ["particlenet"], "width": [16], "n_train": [200, 400, 800]})
    cfg["grid"]["axes"]["compute"] = [300]
    cfg["grid"]["per_model"] = {}
    return cfg


def write_example(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "my_tagger.py").write_text(MODEL_FILE)
    (directory / "my_study.yaml").write_text(STUDY_FILE)
    return directory / "my_study.yaml"


def merged(tmp_path: Path, **entry) -> dict:
    """tiny_base with the README's models.my_tagger (keys in ``entry`` replaced) and both models in the grid."""
    write_example(tmp_path / "taggers")
    study = yaml.safe_load(STUDY_FILE)
    cfg = tiny_base()
    cfg["results"] = str(tmp_path / "results")
    cfg["models"] = {"my_tagger": {**study["models"]["my_tagger"], **entry}}
    cfg["grid"]["axes"]["model"] = ["particlenet", "my_tagger"]
    cfg["grid"]["per_model"] = {"my_tagger": {"width": [16]}}
    return cfg


def load_from(tmp_path: Path, cfg: dict, name: str = "study.yaml") -> dict:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_config(path)


def hashes(cfg: dict) -> dict[str, str]:
    return {cid: settings_hash(resolve_settings(cfg, c)) for cid, c in cells_by_id(cfg).items()}


# ------------------------------------------------------------------------------------------- declaration
def test_a_relative_source_resolves_against_its_config_and_is_recorded_absolute(tmp_path):
    cfg = load_from(tmp_path / "taggers", merged(tmp_path))  # the config beside the model file
    source = cfg["models"]["my_tagger"]["source"]
    assert source == str((tmp_path / "taggers" / "my_tagger.py").resolve())
    spec = catalog.get("my_tagger")
    assert spec.source.path == source and spec.default_lr == 1e-3 and spec.default_preset == "physics"
    cell = next(c for c in cells(cfg) if c["model"] == "my_tagger")
    settings = resolve_settings(cfg, cell)
    assert settings["model_source"]["sha256"] == spec.source.sha256
    assert "source" not in settings["model_options"] and settings["model_options"]["options"] == {"depth": 2}
    assert settings["training"]["lr"] == 1e-3
    # the physics preset, as ParticleNet's: the input spec is not raw
    assert "inputs" in settings


def test_an_edit_changes_the_hashes_of_that_models_cells_only_and_a_move_none(tmp_path):
    raw = merged(tmp_path)
    raw["models"]["my_tagger"]["source"] = str(tmp_path / "taggers" / "my_tagger.py")
    before = hashes(load_config(copy.deepcopy(raw)))
    with open(tmp_path / "taggers" / "my_tagger.py", "a") as f:
        f.write("# tuned\n")
    after = hashes(load_config(copy.deepcopy(raw)))
    changed = {cid for cid in before if before[cid] != after[cid]}
    assert changed and changed == {cid for cid in before if "model~my_tagger" in cid}
    (tmp_path / "elsewhere").mkdir()
    moved = tmp_path / "elsewhere" / "pfn.py"
    (tmp_path / "taggers" / "my_tagger.py").rename(moved)
    raw["models"]["my_tagger"]["source"] = str(moved)
    assert hashes(load_config(copy.deepcopy(raw))) == after


def test_planning_never_imports_the_file(tmp_path):
    cfg = merged(tmp_path)
    marker = tmp_path / "imported"
    (tmp_path / "taggers" / "my_tagger.py").write_text(f"open({str(marker)!r}, 'w').close()\nimport torch\n")
    path = tmp_path / "taggers" / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = (
        "import sys; from jetscale.workflow import StudyPlan; from jetscale.config import load_config;"
        f"plan = StudyPlan(load_config({str(path)!r})); [plan.settings_hash(c) for c in plan.cells];"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False" and not marker.exists()


@pytest.mark.parametrize(
    "entry,problem",
    [
        ({"source": "missing.py"}, r"models\.my_tagger\.source: .*missing\.py: no such file"),
        ({"input_kind": "images"}, r"models\.my_tagger\.input_kind: 'images' is not one of \['particles', 'bytes'\]"),
        ({"preset": "fancy"}, r"models\.my_tagger\.preset: 'fancy' is not one of"),
        ({"default_lr": -1}, r"models\.my_tagger\.default_lr: -1.0 must be positive"),
        ({"builder": "not a name"}, r"models\.my_tagger\.builder: 'not a name' is not a function name"),
        ({"colour": "red"}, r"models\.my_tagger\.colour: unknown option"),
        ({"options": [1, 2]}, r"models\.my_tagger\.options: bad value \[1, 2\]: must be a mapping"),
    ],
)
def test_bad_declarations_are_one_line_naming_the_key(tmp_path, entry, problem):
    with pytest.raises(ConfigError, match=problem) as err:
        load_from(tmp_path / "taggers", merged(tmp_path, **entry))
    assert "\n" not in str(err.value)


def test_missing_keys_a_builtin_name_and_a_bad_width_are_refused(tmp_path):
    raw = merged(tmp_path)
    del raw["models"]["my_tagger"]["default_lr"]
    with pytest.raises(ConfigError, match=r"models\.my_tagger: a model from a file needs default_lr"):
        load_from(tmp_path / "taggers", raw)
    raw = merged(tmp_path)
    raw["models"] = {"part": {**raw["models"]["my_tagger"]}}
    with pytest.raises(ConfigError, match=r"models\.part\.source: 'part' is a built-in model"):
        load_from(tmp_path / "taggers", raw)
    raw = merged(tmp_path)
    raw["grid"]["per_model"]["my_tagger"]["width"] = [12]
    with pytest.raises(ConfigError, match=r"grid width 12 for model 'my_tagger': width 12 must be a multiple of 8"):
        load_from(tmp_path / "taggers", raw)


def test_a_model_file_under_a_results_directory_is_never_imported(tmp_path):
    raw = merged(tmp_path)
    inside = tmp_path / "results" / "runs" / "my_tagger.py"
    inside.parent.mkdir(parents=True)
    inside.write_text(MODEL_FILE)
    raw["models"]["my_tagger"]["source"] = str(inside)
    with pytest.raises(ConfigError, match=r"lies under the results directory .*; model files there are never"):
        load_config(raw)
    # another study's results directory (it has a study stamp) too
    other = tmp_path / "other-results"
    (other / "runs").mkdir(parents=True)
    (other / "study.json").write_text("{}")
    (other / "runs" / "m.py").write_text(MODEL_FILE)
    raw["models"]["my_tagger"]["source"] = str(other / "runs" / "m.py")
    with pytest.raises(ConfigError, match="lies under the results directory"):
        load_config(raw)


def test_the_job_builds_the_model_and_refuses_a_changed_or_broken_file(tmp_path):
    from jetscale.models.registry import build_model

    cfg = load_from(tmp_path / "taggers", merged(tmp_path))
    model = build_model("my_tagger", 16, 11, 19, cfg["models"]["my_tagger"])
    assert type(model).__name__ == "ParticleFlowNetwork" and len(model.phi) == 4  # depth 2 from the options
    source = tmp_path / "taggers" / "my_tagger.py"
    source.write_text(MODEL_FILE + "# edited after planning\n")
    with pytest.raises(JetscaleError, match=r"my_tagger\.py changed since the study was planned"):
        build_model("my_tagger", 16, 11, 19, cfg["models"]["my_tagger"])
    source.write_text("import torch\n\n\ndef build(width, n_classes, n_features, **options):\n    return 1 / 0\n")
    cfg = load_config(tmp_path / "taggers" / "study.yaml")  # planned again: the new file's hash
    with pytest.raises(JetscaleError) as err:
        build_model("my_tagger", 16, 11, 19, cfg["models"]["my_tagger"])
    message = str(err.value)
    assert f"{source}:5: ZeroDivisionError" in message and "\n" not in message
    assert "build(width=16, n_classes=11, n_features=19, depth=2) failed" in message  # the options reach build()


# -------------------------------------------------------------------------------------- the README, as written
@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_the_readme_example_trains_in_a_tiny_study_and_an_edit_retrains_only_its_cells(tmp_path):
    taggers = tmp_path / "taggers"
    study = write_example(taggers)
    base = tmp_path / "tiny.yaml"
    base.write_text(yaml.safe_dump(tiny_base(), sort_keys=False))

    def snakemake(*args: str) -> subprocess.CompletedProcess:
        command = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
        command += ["--configfile", str(base), str(study), *args]  # the README's study merged over the tiny one
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=dict(os.environ))

    out = snakemake("--cores", "2")
    assert out.returncode == 0, out.stderr[-4000:]
    root = tmp_path / "results-my-tagger"
    runs = sorted(p.parent for p in root.glob("runs/**/metrics.json") if "history" not in p.parts)
    mine = [r for r in runs if "model~my_tagger" in str(r)]
    assert len(runs) == 9 and len(mine) == 6  # ParticleNet x 3 n_train; my_tagger x 2 widths x 3 n_train
    merged_config = yaml.safe_load((root / ".jetscale" / "config.yaml").read_text())
    assert merged_config["models"]["my_tagger"]["source"] == str((taggers / "my_tagger.py").resolve())
    table = (root / "tables" / "runs.csv").read_text()
    assert "my_tagger" in table
    with open(taggers / "my_tagger.py", "a") as f:
        f.write("# an edit\n")
    planned = planned_cells(snakemake("-n").stdout)
    assert planned == {r.relative_to(root / "runs").as_posix() for r in mine}

"""Config validation: defaults are filled, and every bad input names its key and what is allowed."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import yaml

from jetscale.config import load_config
from jetscale.errors import ConfigError
from jetscale.settings import data_fingerprint, resolve_settings, settings_hash


def test_default_config_is_valid(repo_root):
    cfg = load_config(repo_root / "config.yaml")
    assert cfg["grid"]["extra_axes"] == {}
    assert cfg["data"]["split_seed"] == 0  # schema default filled in a nested section


def test_schema_defaults_fill_missing_sections(default_config_dict):
    raw = copy.deepcopy(default_config_dict)
    del raw["fits"], raw["report"], raw["training"]["batch_size"]
    cfg = load_config(raw)
    assert cfg["training"]["batch_size"] == 128
    assert cfg["fits"]["forms"] == ["powerlaw", "scurve", "bnsl"]
    assert cfg["report"]["color_by"] == "model"


def _err(raw) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    return str(info.value)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda c: c["grid"]["axes"].update(model=["particlenet", "resnet"]),
            "grid.axes.model[1]: unknown model 'resnet'",
        ),
        (lambda c: c["grid"]["axes"].update(n_train=[]), "grid.axes.n_train"),
        (lambda c: c["grid"]["axes"].update(colour=[1]), "unknown key(s) ['colour']"),
        (lambda c: c["grid"]["per_model"].update(part={"depth": [2]}), "grid.per_model.part.depth: unknown axis"),
        (lambda c: c["grid"]["per_model"].update(part={"width": [12]}), "width 12 for model 'part'"),
        (lambda c: c["grid"]["axes"].update(n_train=[100, 10**7]), "larger than the training pool"),
        (lambda c: c["data"].update(source="download"), "data.source: 'download' is not allowed"),
        (lambda c: c["training"].update(batch_size=0), "training.batch_size: bad value 0"),
        (lambda c: c["report"].update(color_by="lr"), "report.color_by: 'lr' is not a grid axis"),
        (
            lambda c: c["grid"]["extra_axes"].update(lr={"values": [1e-3], "default": 1e-3, "sets": "optimizer.lr"}),
            "must start with",
        ),
        (
            lambda c: c["grid"]["extra_axes"].update(lr={"values": [1e-3], "default": 1e-3, "sets": "training.lrate"}),
            "unknown training setting",
        ),
        (
            lambda c: c["grid"]["extra_axes"].update(seed={"values": [1], "default": 0, "sets": "training.lr"}),
            "built-in axis",
        ),
        (lambda c: c["flavor_pairs"].update(t=["t", "tbar"]), "flavor_pairs.t: class 't'"),
        (lambda c: c["training"].update(lr=float("nan")), "training.lr: nan is not allowed; numbers must be finite"),
        (lambda c: c["data"].update(val_per_class=float("inf")), "data.val_per_class: inf is not allowed"),
        (
            lambda c: c["grid"]["per_model"]["part"].update(n_train=[-100]),
            "grid.per_model.part.n_train[0]: bad value -100: -100 is less than the minimum of 1",
        ),
        (
            lambda c: c["grid"]["per_model"]["part"].update(n_train=["abc"]),
            "grid.per_model.part.n_train[0]: bad value 'abc': 'abc' is not of type 'integer'",
        ),
        (
            lambda c: c["grid"]["extra_axes"].update(
                lr={"values": [1e-3, "fast"], "default": 1e-3, "sets": "training.lr"}
            ),
            "grid.extra_axes.lr.values[1]: 'fast' for sets 'training.lr': training.lr: bad value 'fast'",
        ),
        (
            lambda c: c["grid"]["extra_axes"].update(
                wd={"values": [0.01, -1], "default": 0.01, "sets": "training.weight_decay"}
            ),
            "training.weight_decay: bad value -1: -1 is less than the minimum of 0",
        ),
        (lambda c: c["fits"].update(metrics=["tag_efficiency", "ppv"]), "fits.metrics[1]: unknown metric 'ppv'"),
        (lambda c: c["fits"].update(forms=["powerlaw", "cubic"]), "fits.forms[1]: unknown form 'cubic'"),
        (lambda c: c["fits"].update(forms=["chinchilla"]), "fits.forms[0]: unknown form 'chinchilla'"),
    ],
)
def test_bad_config_names_the_key(default_config_dict, mutate, expected):
    raw = copy.deepcopy(default_config_dict)
    mutate(raw)
    assert expected in _err(raw)


def test_fit_metrics_are_the_collected_ones():
    """collect writes exactly the catalog's metrics (with their scope) from an evaluate record."""
    from jetscale import metric_catalog
    from jetscale.evaluate.collect import metric_rows

    flavor = {"tag_efficiency": 0.8, "charge_flip": 0.2, "tag_log_loss": 0.3, "charge_log_loss": 0.5}
    flavor.update(tag_auc=0.9, charge_auc=0.8)
    evaluation = {"accuracy": 0.5, "log_loss": 1.2, "n_jets": 100, "flavors": {"b": flavor}, "auc": {"b": 0.9}}
    rows = metric_rows({"val_loss": 1.3, "val_accuracy": 0.45}, evaluation)
    assert [r["metric"] for r in rows if not r["flavor"]] == [
        "accuracy",
        "log_loss",
        "val_loss",
        "val_accuracy",
        "mean_auc",
    ]
    assert {r["metric"] for r in rows} == set(metric_catalog.names())
    for row in rows:
        scope = metric_catalog.get(row["metric"]).scope
        assert (row["flavor"] == "") == (scope == metric_catalog.GLOBAL)
        assert math.isfinite(row["value"]), row


def test_null_resets_a_mapping_to_its_default(default_config_dict):
    raw = copy.deepcopy(default_config_dict)
    raw["models"], raw["grid"]["extra_axes"] = None, None
    cfg = load_config(raw)
    assert cfg["models"] == {} and cfg["grid"]["extra_axes"] == {}


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)


def test_extra_axis_default_leaves_existing_settings_unchanged(default_config_dict):
    base = load_config(default_config_dict)
    cell = {"model": "part", "width": 16, "n_train": 100, "compute": "auto", "seed": 0}
    before = settings_hash(resolve_settings(base, cell))
    raw = copy.deepcopy(default_config_dict)
    raw["grid"]["extra_axes"] = {"lr": {"values": [1e-3, 3e-3], "default": 1e-3, "sets": "training.lr"}}
    cfg = load_config(raw)
    assert settings_hash(resolve_settings(cfg, {**cell, "lr": 1e-3})) == before
    changed = resolve_settings(cfg, {**cell, "lr": 3e-3})
    assert changed["training"]["lr"] == 3e-3
    assert settings_hash(changed) != before


def test_model_default_lr_and_model_axis_settings(default_config_dict):
    raw = copy.deepcopy(default_config_dict)
    raw["grid"]["extra_axes"] = {"patch": {"values": [1, 16], "default": 16, "sets": "model.tokenizer.patch_size"}}
    for model in ("particlenet", "part", "bdt"):  # no tokenizer: those models keep the default only
        raw["grid"]["per_model"].setdefault(model, {})["patch"] = [16]
    cfg = load_config(raw)
    s = resolve_settings(
        cfg, {"model": "bbt_neutron", "width": 32, "n_train": 100, "compute": "auto", "seed": 0, "patch": 1}
    )
    assert s["model_options"]["tokenizer"]["patch_size"] == 1
    assert s["training"]["lr"] == 1e-4  # the paper's BBT-Neutron learning rate


def test_training_default_change_changes_every_hash(default_config_dict):
    a = load_config(default_config_dict)
    raw = copy.deepcopy(default_config_dict)
    raw["training"]["weight_decay"] = 0.05
    b = load_config(raw)
    cell = {"model": "particlenet", "width": 16, "n_train": 300, "compute": "auto", "seed": 1}
    assert settings_hash(resolve_settings(a, cell)) != settings_hash(resolve_settings(b, cell))
    # Threads/device change speed, not results: same hash.
    raw["training"]["weight_decay"] = default_config_dict["training"]["weight_decay"]
    raw["training"]["threads"] = 2
    assert settings_hash(resolve_settings(load_config(raw), cell)) == settings_hash(resolve_settings(a, cell))


def test_data_fingerprint_tracks_data_only(default_config_dict):
    a = data_fingerprint(load_config(default_config_dict))
    raw = copy.deepcopy(default_config_dict)
    raw["training"]["batch_size"] = 64
    assert data_fingerprint(load_config(raw)) == a
    raw["data"]["generate"]["seed"] = 7
    assert data_fingerprint(load_config(raw)) != a


def test_schema_file_is_shared_with_workflow(repo_root):
    wf = yaml.safe_load((repo_root / "workflow" / "schemas" / "config.schema.yaml").read_text())
    pkg = yaml.safe_load((repo_root / "src" / "jetscale" / "schemas" / "config.schema.yaml").read_text())
    assert wf == pkg


def test_shipped_study_configs_are_valid(repo_root):
    from jetscale.grid import cell_ids

    for path in sorted((repo_root / "config").glob("*.yaml")):
        assert cell_ids(load_config(path)), path


def test_a_model_revision_retrains_only_that_models_cells(default_config_dict, monkeypatch):
    from jetscale.config import load_config
    from jetscale.grid import cells
    from jetscale.models import catalog
    from jetscale.settings import resolve_settings, settings_hash

    cfg = load_config(default_config_dict)
    before = {json.dumps(c, sort_keys=True): settings_hash(resolve_settings(cfg, c)) for c in cells(cfg)}
    bumped = dataclasses.replace(catalog.get("bbt_neutron"), revision=2)
    monkeypatch.setitem(catalog.MODELS, "bbt_neutron", bumped)
    after = {json.dumps(c, sort_keys=True): settings_hash(resolve_settings(cfg, c)) for c in cells(cfg)}
    changed = {json.loads(k)["model"] for k in before if before[k] != after[k]}
    assert changed == {"bbt_neutron"}
    part = next(c for c in cells(cfg) if c["model"] == "part")
    assert resolve_settings(cfg, part)["model_revision"] == 2  # ParT aligned with weaver-core
    particlenet = next(c for c in cells(cfg) if c["model"] == "particlenet")
    assert "model_revision" not in resolve_settings(cfg, particlenet)  # revision 1 leaves old hashes alone


def test_per_model_learning_rate_changes_only_that_models_settings(default_config_dict):
    import copy

    from jetscale.settings import resolve_settings, settings_hash

    cells = {m: {"model": m, "width": 16 if m != "bbt_neutron" else 32, "n_train": 100, "compute": "auto", "seed": 0}
             for m in ("particlenet", "part", "bbt_neutron")}  # fmt: skip
    base = copy.deepcopy(default_config_dict)
    base["training"]["lr"] = None
    before = {m: resolve_settings(load_config(base), c) for m, c in cells.items()}
    per_model = copy.deepcopy(base)
    per_model["training"]["lr"] = {"particlenet": 3.0e-3, "part": None}
    after = {m: resolve_settings(load_config(per_model), c) for m, c in cells.items()}
    assert after["particlenet"]["training"]["lr"] == 3.0e-3
    assert settings_hash(after["part"]) == settings_hash(before["part"])
    assert settings_hash(after["bbt_neutron"]) == settings_hash(before["bbt_neutron"])
    bad = copy.deepcopy(base)
    bad["training"]["lr"] = {"resnet": 1.0e-3}
    with pytest.raises(ConfigError, match="training.lr"):
        load_config(bad)

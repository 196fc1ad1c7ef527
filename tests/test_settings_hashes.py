"""The settings hashes of the shipped studies are pinned: a refactor must not retrain finished cells.

``tests/data/settings_hashes.json`` was computed with main's own code before the ModelSpec catalog and the
schema's run-knob markers landed (first at 44c4549, then again at 40411be after issue 11's input presets and the
re-tuned default study changed the default cells on purpose; the refactor reproduced both sets; then again when
the stopping rule made compute 'auto' train to convergence and each kind of budget hash only its own keys; then
when the physics preset gained the charge weight and the stopping rule a longer patience window). A
change that is *meant* to retrain cells (a model revision, a new results-determining default) updates that file in
the same commit and says which cells it retrains.
"""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from jetscale.config import load_config, run_knobs
from jetscale.grid import cell_id, cells
from jetscale.settings import resolve_settings, settings_hash


def variant(repo_root) -> dict:
    """The default study with extra axes on a training and a model option, and non-default settings."""
    raw = yaml.safe_load((repo_root / "config.yaml").read_text())
    raw["grid"]["extra_axes"] = {
        "lr": {"values": [1.0e-3, 3.0e-3], "default": 1.0e-3, "sets": "training.lr"},
        "patch": {"values": [8, 16], "default": 16, "sets": "model.tokenizer.patch_size"},
    }
    raw["grid"]["per_model"]["part"]["patch"] = [16]
    raw["grid"]["per_model"]["particlenet"]["patch"] = [16]
    raw["grid"]["per_model"]["bdt"] = {"patch": [16]}
    raw["training"].update(precision="bf16", pretrain=True, deepspeed={"enabled": False, "zero_stage": 2})
    raw["models"]["part"] = {"n_layers": 3, "n_cls_layers": 1}
    raw["models"]["particlenet"] = {"k": 8}
    return raw


def study(repo_root, name: str) -> dict:
    if name == "variant":
        return load_config(variant(repo_root))
    return load_config(repo_root / name)


PINNED = ("config.yaml", "config/paper.yaml", "tests/data/tiny_study.yaml", "variant")


@pytest.mark.parametrize("name", PINNED)
def test_settings_hashes_are_pinned(repo_root, name):
    pinned = json.loads((repo_root / "tests" / "data" / "settings_hashes.json").read_text())[name]
    cfg = study(repo_root, name)
    now = {cell_id(cfg, c): settings_hash(resolve_settings(cfg, c)) for c in cells(cfg)}
    assert set(now) == set(pinned)
    changed = sorted(cid for cid in now if now[cid] != pinned[cid])
    assert not changed, f"{len(changed)} cells would retrain, e.g. {changed[:3]}"


def test_run_knobs_are_declared_in_the_schema_and_never_hashed(repo_root, monkeypatch):
    knobs = run_knobs()
    assert set(knobs) == {"threads", "device", "checkpoint_every_steps", "processes", "compile"}
    raw = yaml.safe_load((repo_root / "config.yaml").read_text())
    cfg = load_config(raw)
    cell = cells(cfg)[0]
    before = settings_hash(resolve_settings(cfg, cell))
    changed = copy.deepcopy(raw)
    changed["training"].update(threads=4, device="cpu", checkpoint_every_steps=7, processes=2, compile=True)
    assert settings_hash(resolve_settings(load_config(changed), cell)) == before


def test_an_undeclared_training_key_is_hashed(repo_root, monkeypatch):
    """A new training key that nobody marks as a run knob changes the hash (safe default: retrain)."""
    from jetscale import config_schema as config

    schema = copy.deepcopy(config._parsed_schema())
    schema["properties"]["training"]["properties"]["new_speed_knob"] = {"type": "integer", "default": 1}
    monkeypatch.setattr(config, "_parsed_schema", lambda: schema)
    raw = yaml.safe_load((repo_root / "config.yaml").read_text())
    cfg = load_config(raw)
    assert resolve_settings(cfg, cells(cfg)[0])["training"]["new_speed_knob"] == 1
    schema["properties"]["training"]["properties"]["new_speed_knob"]["x-run-knob"] = True
    assert "new_speed_knob" not in resolve_settings(load_config(raw), cells(cfg)[0])["training"]

"""The typed config views (:mod:`jetscale.config_view`): frozen, one field per schema key, defaults only from the
schema, and the modules that read a section through them restate no default."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

from jetscale.config import load_config, study_view
from jetscale.config_schema import _parsed_schema
from jetscale.config_view import (
    SECTIONS,
    FitsConfig,
    StoppingRule,
    TrainingConfig,
    fits_view,
    schema_defaults,
    schema_node,
    training_view,
)
from jetscale.errors import ConfigError
from jetscale.train.distributed import EngineOptions
from jetscale.train.stopping import plan_for
from tiny_config import default_raw_config

SRC = Path(__file__).resolve().parents[1] / "src" / "jetscale"


def views(cls: type, where: str):
    """(view class, schema key path) of ``cls`` and of every view nested in it."""
    yield cls, where
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from views(hints[f.name], f"{where}.{f.name}")


@pytest.mark.parametrize("cls, where", [pair for name, cls in SECTIONS.items() for pair in views(cls, name)])
def test_each_view_has_one_field_per_schema_key(cls, where):
    keys = set(schema_node(where).get("properties", {}))
    fields = {f.name for f in dataclasses.fields(cls)}
    assert not keys - fields, f"schema keys of {where} without a field in config_view.{cls.__name__}: {keys - fields}"
    assert not fields - keys, f"config_view.{cls.__name__} fields that are no schema key of {where}: {fields - keys}"


def test_the_default_config_reads_as_typed_and_frozen():
    cfg = load_config(default_raw_config())
    view = study_view(cfg)
    assert isinstance(view.training.stopping, StoppingRule) and isinstance(view.fits, FitsConfig)
    assert view.training.stopping.patience == cfg["training"]["stopping"]["patience"]
    assert view.fits.forms == tuple(cfg["fits"]["forms"])  # lists become tuples
    assert [t.metric for t in view.fits.targets] == [t["metric"] for t in cfg["fits"]["targets"]]
    assert view.data.generate.jets_per_class == cfg["data"]["generate"]["jets_per_class"]
    assert view.data.ingest.paths == () and view.pretraining.pool is None  # absent without a default
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.training.batch_size = 1
    cfg["training"]["batch_size"] = 7  # the view is read from the dict as it is (never a stale copy)
    assert study_view(cfg).training.batch_size == 7


def test_absent_keys_take_the_schema_defaults():
    training = _parsed_schema()["properties"]["training"]
    view = training_view({})
    for key, sub in training["properties"].items():
        if "default" in sub and not dataclasses.is_dataclass(getattr(view, key)):
            assert getattr(view, key) == sub["default"], key
    stopping = schema_defaults(schema_node("training.stopping"))
    assert dataclasses.asdict(view.stopping) == stopping
    assert view.deepspeed.zero_stage == 1 and training_view({"deepspeed": {"enabled": True}}).deepspeed.zero_stage == 1
    assert (
        fits_view({"bootstrap": 0}).min_points
        == _parsed_schema()["properties"]["fits"]["properties"]["min_points"]["default"]
    )
    assert training_view(view) is view


def test_a_key_with_no_default_is_named_when_missing():
    from jetscale.config_view import DataConfig, section_view

    with pytest.raises(ConfigError, match=r"data\.source: missing"):
        section_view(DataConfig, {}, "data")


def test_the_stopping_rule_default_is_the_schemas():
    """A cell's settings without cap_decay_fraction (hand-built, or from before the key) plan the schema's
    decay tail, not a second default."""
    cfg = load_config(default_raw_config())
    from jetscale.grid import cells
    from jetscale.settings import resolve_settings

    cell = next(c for c in cells(cfg) if c["compute"] == "auto")
    settings = resolve_settings(cfg, cell)
    full = plan_for(settings, 32)
    del settings["training"]["stopping"]["cap_decay_fraction"]
    trimmed = plan_for(settings, 32)
    assert trimmed == full and full.schedule.decay_steps > 0


def test_engine_options_defaults_are_the_schemas():
    assert EngineOptions() == EngineOptions.from_training({})
    assert EngineOptions.from_training({"deepspeed": None, "compile": True}).compile is True


# modules that read these sections through the views: no `.get("<key>", <default>)` of a key of them
MIGRATED = (
    "train/stopping.py",
    "train/distributed.py",
    "resources.py",
    "fit/study.py",
    "fit/outlook.py",
    "fit/transfer_study.py",
    "report/tables.py",
    "report/figures.py",
    "data/cli.py",
    "data/generate.py",
    "pretrain/loop.py",
    "train/classifier.py",
    "train/runner.py",
)


def section_keys() -> set[str]:
    keys = set()
    for name, cls in SECTIONS.items():
        for view, _where in views(cls, name):
            keys |= {f.name for f in dataclasses.fields(view)}
    return keys - {"source", "paths", "mapping", "metric", "value"}  # words too common to tell apart


@pytest.mark.parametrize("module", MIGRATED)
def test_migrated_modules_restate_no_default(module):
    keys = section_keys()
    for node in ast.walk(ast.parse((SRC / module).read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
        ):
            assert node.args[0].value not in keys, f"{module}:{node.lineno}: .get({node.args[0].value!r}, default)"


def test_views_are_dataclasses_of_the_training_section():
    assert dataclasses.is_dataclass(TrainingConfig) and TrainingConfig.__dataclass_params__.frozen


def test_the_schema_names_every_pretraining_method_and_no_other():
    from jetscale.pretrain import METHODS

    props = _parsed_schema()["properties"]
    axis = [m for m in props["grid"]["properties"]["axes"]["properties"]["pretrain"]["items"]["enum"] if m != "none"]
    pretraining = props["pretraining"]["properties"]
    scan = pretraining["loss_scan"]["properties"]["methods"]["items"]["enum"]
    assert set(axis) == set(pretraining["methods"]["properties"]) == set(scan) == set(METHODS)

"""The config schema, and what is read off a config through it: the axes, an axis's values for a model, the
hashed part of a section, a cell's training settings. The bottom of the config layer: it imports no other config
module (``config_checks`` and ``config`` build on it)."""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml

from .errors import ConfigError
from .models import catalog

BUILTIN_AXES: tuple[str, ...] = ("model", "width", "n_train", "compute", "seed")


# Pretraining axes: in cell ids only for fine-tuning cells; from-scratch cells (pretrain 'none')
# keep the ids and settings they had before these axes existed.
PRETRAIN_AXES: tuple[str, ...] = ("pretrain", "n_pretrain", "finetune")


# Where an extra axis may write: per-run training settings or the cell's model options.
SETTABLE_PREFIXES: tuple[str, ...] = ("training.", "model.")


# Built-in axes a fitted model (catalog kind "fitted", the bdt baseline) does not have: its cells take None
# there, which the grid leaves out of their ids (model~bdt/n_train~1000/seed~0).
FITTED_ABSENT_AXES: tuple[str, ...] = ("width", "compute")


@functools.lru_cache(maxsize=1)
def _parsed_schema() -> dict:
    return yaml.safe_load(resources.files("jetscale").joinpath("schemas/config.schema.yaml").read_text())


def schema() -> dict:
    """The config JSON schema, parsed once per process (a copy, so callers cannot alter the cached one)."""
    return copy.deepcopy(_parsed_schema())


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_schema_error(err) -> str:
    key = _key_path(err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        return f"{key}: unknown key(s) {extra}; allowed: {allowed}"
    if err.validator == "enum":
        return f"{key}: {err.instance!r} is not allowed; allowed values: {err.validator_value}"
    if err.validator == "required":
        return f"{key}: {err.message}"
    if err.validator == "pattern":  # names that reach paths and shell commands keep to a safe alphabet
        return f"{key}: {err.instance!r} does not match the safe pattern {err.validator_value!r}"
    return f"{key}: bad value {err.instance!r}: {err.message}"


def _check_against(value: Any, sub: dict, where: str, path: list) -> None:
    """Validate ``value`` against a sub-schema of the config schema; an error names ``path`` + the inner key."""
    import jsonschema

    validator = jsonschema.Draft202012Validator({**sub, "definitions": _parsed_schema()["definitions"]})
    errors = list(validator.iter_errors(value))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        err.path.extendleft(reversed(path))  # absolute_path reads path
        raise ConfigError(f"{where}: {describe_schema_error(err)}")


def run_knobs(section: str = "training") -> tuple[str, ...]:
    """Keys of a config section marked ``x-run-knob`` in the schema: speed/placement, never in a settings hash."""
    props = _parsed_schema()["properties"][section]["properties"]
    return tuple(key for key, sub in props.items() if sub.get("x-run-knob"))


def hashed_section(section: str, values: dict, budget: str | None = None) -> dict:
    """``values`` of a config section without its run knobs, without x-hash-omit-default keys at default, and
    without keys that only another kind of ``budget`` reads (schema ``x-budget``: auto | fixed)."""
    props = _parsed_schema()["properties"][section]["properties"]
    out = {}
    for key, value in values.items():
        sub = props.get(key, {})
        if sub.get("x-run-knob") or (sub.get("x-hash-omit-default") and value == sub.get("default")):
            continue
        if budget is not None and sub.get("x-budget", budget) != budget:
            continue
        out[key] = copy.deepcopy(value)
    return out


def uses_pretraining(cfg: dict) -> bool:
    """Whether any model's cells include fine-tuning cells (a pretrain value other than 'none')."""
    grid = cfg["grid"]
    values = list(grid["axes"].get("pretrain", ["none"]))
    for override in grid.get("per_model", {}).values():
        values += list(override.get("pretrain", []))
    return any(v != "none" for v in values)


# Validation metrics a tuning axis may select on (collect's columns of metrics.json) -> the better direction.
TUNE_METRICS: dict[str, str] = {"val_loss": "min", "val_accuracy": "max"}


def tune_axes(cfg: dict) -> list[str]:
    """The grid's tuning axes (``grid.tune``), in config order."""
    return list(cfg["grid"].get("tune") or {})


def train_pool_per_class(cfg: dict) -> int:
    data = cfg["data"]
    return data["generate"]["jets_per_class"] - data["val_per_class"] - data["test_per_class"]


def axis_values(cfg: dict, axis: str, model: str) -> list:
    """Values of ``axis`` for cells of ``model`` (per-model overrides win). A fitted model has no width or
    compute ([None]) and no training recipe (an extra axis that sets ``training.``: its default only)."""
    if catalog.is_fitted(model):
        if axis in FITTED_ABSENT_AXES:
            return [None]
        extra = cfg["grid"].get("extra_axes", {}).get(axis)
        if extra is not None and extra["sets"].startswith("training."):
            return [extra["default"]]
    override = cfg["grid"].get("per_model", {}).get(model, {})
    if axis in override:
        return list(override[axis])
    if axis in BUILTIN_AXES or axis in PRETRAIN_AXES:
        return list(cfg["grid"]["axes"].get(axis, {"pretrain": ["none"], "finetune": ["full"]}.get(axis, [])))
    return list(cfg["grid"]["extra_axes"][axis]["values"])


def extra_axis_settings(cfg: dict, cell: dict, root: str):
    """(keys, value) of each extra axis that sets ``<root>.<keys>`` and is not at its default for ``cell``.

    By declaration an axis's default is what runs without the axis: it leaves the settings untouched, so adding
    an axis never changes (and so never retrains) an existing cell.
    """
    for axis, spec in cfg["grid"].get("extra_axes", {}).items():
        value = cell.get(axis, spec["default"])
        head, *keys = spec["sets"].split(".")
        if value != spec["default"] and head == root:
            yield keys, value


def training_settings(cfg: dict, cell: dict) -> dict:
    """The ``training`` part of a cell's settings (see :func:`jetscale.settings.resolve_settings`): the section
    less its run knobs and the other kind of budget's keys, the cell's ``training.`` axes, its model's rate."""
    # compute 'auto' trains to convergence (training.stopping), a number is a fixed budget: each cell's
    # settings hold only the keys its kind of budget reads
    training = hashed_section("training", cfg["training"], "auto" if cell["compute"] == "auto" else "fixed")
    for keys, value in extra_axis_settings(cfg, cell, "training"):
        set_nested(training, keys, value)
    if isinstance(training.get("lr"), dict):  # per-model learning rates: the cell's model's (or its default)
        training["lr"] = training["lr"].get(cell["model"])
    if training.get("lr") is None:
        training["lr"] = catalog.get(cell["model"]).default_lr
    return training


def set_nested(target: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value

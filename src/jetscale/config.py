"""Load and validate a study configuration; the one place defaults live (the schema's), read through typed views.

``load_config`` reads YAML, validates it against ``schemas/config.schema.yaml`` (filling schema defaults), then
runs the semantic checks a schema cannot express (:mod:`jetscale.config_checks`: known models, widths per model,
axes that exist, ...). Every problem raises :class:`ConfigError` naming the key, the bad value and what is
allowed. The schema and what is read off a config through it (axis values, a cell's training settings) live in
:mod:`jetscale.config_schema`; their names are importable from here too. :func:`study_view` gives the validated
config's sections as frozen dataclasses (:mod:`jetscale.config_view`), with the schema's defaults for absent keys.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from .config_checks import check_semantics
from .config_schema import (
    BUILTIN_AXES,
    FITTED_ABSENT_AXES,
    PRETRAIN_AXES,
    SETTABLE_PREFIXES,
    TUNE_METRICS,
    _key_path,
    _parsed_schema,
    axis_values,
    describe_schema_error,
    extra_axis_settings,
    hashed_section,
    run_knobs,
    schema,
    set_nested,
    train_pool_per_class,
    training_settings,
    tune_axes,
    uses_pretraining,
)
from .config_view import SECTIONS, StudyView, section_view
from .errors import ConfigError
from .io import not_a_file
from .models.external import register_config_models

__all__ = [
    "BUILTIN_AXES",
    "FITTED_ABSENT_AXES",
    "MAX_CONFIG_VALUES",
    "PRETRAIN_AXES",
    "SETTABLE_PREFIXES",
    "TUNE_METRICS",
    "axis_values",
    "check_semantics",
    "check_values",
    "describe_schema_error",
    "extra_axis_settings",
    "hashed_section",
    "load_config",
    "reset_nulled_mappings",
    "run_knobs",
    "schema",
    "set_nested",
    "study_view",
    "train_pool_per_class",
    "training_settings",
    "tune_axes",
    "uses_pretraining",
    "validate_schema",
]


# Values a config may expand to (YAML aliases included): far above any real study, far below an alias bomb.
MAX_CONFIG_VALUES = 200_000


def load_config(source: str | Path | dict, *, where: str | None = None, config_files: list | None = None) -> dict:
    """Return the validated config (a new dict, defaults filled in) from a YAML path or a dict.

    Refused before anything runs, with the key named: YAML that expands to more than MAX_CONFIG_VALUES values
    (an alias bomb), NaN/inf numbers, schema violations, and what :func:`check_semantics` checks. A ``null``
    where the schema wants a mapping resets that mapping to its default (how an overlay config empties one,
    since overlays merge mappings key by key).

    Models from the user's files (``models.<name>.source``) are registered in the catalog on the way (see
    :mod:`jetscale.models.external`); a relative source resolves against the config file naming it: ``source``
    when it is a path, else the one of ``config_files`` (merged in that order) that names it."""
    if isinstance(source, dict):
        check_values(source, where or "config")
        raw, where = copy.deepcopy(source), where or "config"
    else:
        path = Path(source)
        where = where or str(path)
        if not path.is_file():
            raise ConfigError(not_a_file(path, "config file"))
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys, got {type(raw).__name__}")
    if not isinstance(source, dict):
        check_values(raw, where)
    reset_nulled_mappings(raw, _parsed_schema())
    validate_schema(raw, where)
    files = [Path(f) for f in (config_files or [])] if isinstance(source, dict) else [Path(source)]
    register_config_models(raw, where, files)
    check_semantics(raw, where)
    study_view(raw)  # every section the views type reads as typed
    return raw


def study_view(cfg: dict) -> StudyView:
    """Typed, frozen views of a validated config's ``training``, ``fits``, ``data``, ``pretraining`` and ``report``
    sections
    (:mod:`jetscale.config_view`; absent keys: the schema's defaults). The dict stays what settings are hashed
    from; a view is built from it when read, so it always shows the dict as it is."""
    return StudyView(**{name: section_view(cls, cfg.get(name), name) for name, cls in SECTIONS.items()})


def check_values(raw: Any, where: str) -> None:
    """Refuse NaN/inf numbers (naming the key) and configs that expand to more than MAX_CONFIG_VALUES values.

    Shared sub-trees (YAML aliases) are counted once per use but walked once, so an alias bomb is refused in
    linear time instead of being expanded."""
    sizes: dict[int, int] = {}

    def walk(node: Any, path: list) -> int:
        if isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{where}: {_key_path(path)}: {node!r} is not allowed; numbers must be finite")
        if not isinstance(node, dict | list):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        items = node.items() if isinstance(node, dict) else enumerate(node)
        total = 1
        for key, value in items:
            total += walk(value, [*path, key])
            if total > MAX_CONFIG_VALUES:
                raise ConfigError(
                    f"{where}: {_key_path(path) or '(top level)'}: expands to more than {MAX_CONFIG_VALUES} "
                    "values (YAML aliases?); a study config is far smaller"
                )
        sizes[id(node)] = total
        return total

    walk(raw, [])


def reset_nulled_mappings(raw: dict, schema_node: dict) -> None:
    """Drop keys whose value is null where the schema wants a mapping (so the default applies)."""
    for key, sub in schema_node.get("properties", {}).items():
        if key not in raw or not isinstance(sub, dict):
            continue
        if raw[key] is None and sub.get("type") == "object":
            del raw[key]
        elif isinstance(raw[key], dict):
            reset_nulled_mappings(raw[key], sub)


def validate_schema(cfg: dict, where: str = "config") -> None:
    """jsonschema validation that also fills in defaults; the first error names its key path."""
    import jsonschema

    validator_cls = _defaults_filling(jsonschema.Draft202012Validator)
    validator = validator_cls(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        raise ConfigError(f"{where}: {describe_schema_error(err)}")


def _defaults_filling(base):
    import jsonschema

    validate_props = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})

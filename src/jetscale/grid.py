"""Grid axes -> cells with stable, readable ids.

A cell is an ordered dict of axis values. Its id is ``axis~value`` path segments in a fixed order: the built-in
axes (model, width, n_train, compute, seed) then the extra axes in config order. A fitted model (catalog kind
"fitted", the ``bdt`` baseline) has no width or compute: its cells hold None there and its ids leave both out
(``model~bdt/n_train~1000/seed~0``), whatever grid.axes lists for the networks. An extra axis whose value equals
its declared default is *omitted* from the id, so adding an axis never renames (and so never invalidates) the
runs that already exist: they are exactly the cells at the default value.

Pretraining axes (``pretrain``, ``n_pretrain``, ``finetune``) follow the built-ins when the config has any
fine-tuning cell. They appear in an id only when ``pretrain`` is not ``none``, and a from-scratch cell has
``n_pretrain: None, finetune: None`` (one cell, not one per pool size). A method only pairs with the model it
pretrains (``jetscale.pretrain.METHODS[m].backbone``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .config import BUILTIN_AXES, FITTED_ABSENT_AXES, PRETRAIN_AXES, axis_values, tune_axes, uses_pretraining
from .errors import ConfigError
from .models.catalog import is_fitted

SEP = "~"


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse_value(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def absent(value: Any) -> bool:
    """None or NaN: an axis value a series does not have (a fitted model's width, a from-scratch n_pretrain)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def axis_text(value: Any) -> str:
    """An axis value as labels and file names show it: a whole number as an integer (16, not the 16.0 a table
    column with gaps holds), any other number as Python writes it (0.003), anything else as ``str``."""
    value = value.item() if hasattr(value, "item") and not isinstance(value, str) else value  # numpy scalars
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def series_label(series: Mapping[str, Any], axes: Iterable[str], empty: str = "all") -> str:
    """A series' label, the one written everywhere (fit records and their file names, figure legends and
    titles, report tables): the model by name, each other of ``axes`` as ``axis=value`` (:func:`axis_text`),
    an axis the series lacks or has no value for (:func:`absent`: the bdt baseline's width) left out;
    ``empty`` when nothing is left."""
    parts = [
        axis_text(series[a]) if a == "model" else f"{a}={axis_text(series[a])}"
        for a in axes
        if a in series and not absent(series[a])
    ]
    return ", ".join(parts) or empty


def axis_names(cfg: dict) -> list[str]:
    pretrain = list(PRETRAIN_AXES) if uses_pretraining(cfg) else []
    return list(BUILTIN_AXES) + pretrain + list(cfg["grid"].get("extra_axes", {}))


def series_axes(cfg: dict, table) -> list[str]:
    """The axes that tell one scaling series from another (all but n_train, seed and the tuning axes) present
    in ``table``'s columns: a series is one curve of a metric against n_train, averaged over seeds, at the
    chosen value of each tuning axis (``jetscale.evaluate.tuning``)."""
    skip = {"n_train", "seed", *tune_axes(cfg)}
    return [a for a in axis_names(cfg) if a not in skip and a in table.columns]


def cell_id(cfg: dict, cell: dict[str, Any]) -> str:
    extra = cfg["grid"].get("extra_axes", {})
    pretraining = uses_pretraining(cfg)
    parts = []
    for axis in axis_names(cfg):
        value = cell[axis]
        if axis in extra and value == extra[axis]["default"]:
            continue
        if pretraining and axis in PRETRAIN_AXES and cell["pretrain"] == "none":
            continue
        if axis in FITTED_ABSENT_AXES and value is None:  # a fitted model has no width or compute
            continue
        parts.append(f"{axis}{SEP}{format_value(value)}")
    return "/".join(parts)


def cell_regex(cfg: dict) -> str:
    """The regex of this study's cell ids (the rules' ``cell`` wildcard), built from the format ``cell_id`` writes."""
    names = "|".join(re.escape(a) for a in axis_names(cfg))
    return rf"(?:{names}){SEP}[^/]+(?:/(?:{names}){SEP}[^/]+)*"


def parse_cell_id(cfg: dict, text: str) -> dict[str, Any]:
    """Inverse of :func:`cell_id`; raises ConfigError for an id this config cannot produce."""
    names = axis_names(cfg)
    extra = cfg["grid"].get("extra_axes", {})
    cell = {axis: spec["default"] for axis, spec in extra.items()}
    pretraining = uses_pretraining(cfg)
    if pretraining:
        cell.update(pretrain="none", n_pretrain=None, finetune=None)
    seen = []
    for segment in text.strip("/").split("/"):
        axis, sep, raw = segment.partition(SEP)
        if not sep or axis not in names:
            raise ConfigError(f"cell id {text!r}: segment {segment!r} is not axis{SEP}value with an axis of {names}")
        cell[axis] = parse_value(raw)
        seen.append(axis)
    if is_fitted(cell.get("model")):
        if given := [a for a in FITTED_ABSENT_AXES if a in cell]:
            raise ConfigError(f"cell id {text!r}: {cell['model']} is a fitted model: it has no {' or '.join(given)}")
        cell.update(dict.fromkeys(FITTED_ABSENT_AXES))
    missing = [a for a in BUILTIN_AXES if a not in cell]
    if pretraining and cell["pretrain"] != "none":
        missing += [a for a in ("n_pretrain", "finetune") if cell.get(a) is None]
    if missing:
        raise ConfigError(f"cell id {text!r}: missing axes {missing}")
    if cell_id(cfg, cell) != text.strip("/"):
        raise ConfigError(f"cell id {text!r}: not in canonical form (expected {cell_id(cfg, cell)!r})")
    return {axis: cell[axis] for axis in names}


def cells(cfg: dict) -> list[dict[str, Any]]:
    """All cells of the study, in a deterministic order (models in config order, then the product)."""
    names = axis_names(cfg)
    joint = [a for a in names if a not in PRETRAIN_AXES]  # the pretraining axes enter as one joint value
    out = []
    for model in cfg["grid"]["axes"]["model"]:
        value_lists = [[model]] + [axis_values(cfg, axis, model) for axis in joint[1:]]
        variants = pretrain_variants(cfg, model) if len(joint) < len(names) else [{}]
        for combo in itertools.product(*value_lists):
            base = dict(zip(joint, combo))
            for variant in variants:
                merged = {**base, **variant}
                out.append({axis: merged[axis] for axis in names})
    return out


def pretrain_variants(cfg: dict, model: str) -> list[dict[str, Any]]:
    """(pretrain, n_pretrain, finetune) values of ``model``'s cells: from scratch once, then every method that
    pretrains this model x pool sizes x fine-tuning modes."""
    from .pretrain import METHODS

    out = []
    for name in axis_values(cfg, "pretrain", model):
        if name == "none":
            out.append({"pretrain": "none", "n_pretrain": None, "finetune": None})
        elif METHODS[name].backbone == model:
            for n in axis_values(cfg, "n_pretrain", model):
                for mode in axis_values(cfg, "finetune", model):
                    out.append({"pretrain": name, "n_pretrain": n, "finetune": mode})
    return out


def cells_by_id(cfg: dict) -> dict[str, dict[str, Any]]:
    """id -> cell for every cell of the study, in :func:`cells` order; two cells with one id are refused."""
    every = cells(cfg)
    out = {cell_id(cfg, c): c for c in every}
    if len(out) != len(every):
        raise ConfigError("grid: two cells map to the same id (an axis lists a value twice?)")
    return out


def cell_ids(cfg: dict) -> list[str]:
    return list(cells_by_id(cfg))

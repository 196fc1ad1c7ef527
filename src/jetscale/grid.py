"""Grid axes -> cells with stable, readable ids.

A cell is an ordered dict of axis values. Its id is ``axis~value`` path segments in a fixed order: the built-in
axes (model, width, n_train, compute, seed) then the extra axes in config order. An extra axis whose value equals
its declared default is *omitted* from the id, so adding an axis never renames (and so never invalidates) the
runs that already exist: they are exactly the cells at the default value.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from .config import BUILTIN_AXES, axis_values
from .errors import ConfigError

SEP = "~"


@dataclass(frozen=True)
class Cell:
    values: tuple[tuple[str, Any], ...]  # (axis, value) pairs in id order, defaults of extra axes included

    @property
    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def __getitem__(self, axis: str) -> Any:
        return self.as_dict[axis]


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


def axis_names(cfg: dict) -> list[str]:
    return list(BUILTIN_AXES) + list(cfg["grid"].get("extra_axes", {}))


def cell_id(cfg: dict, cell: dict[str, Any]) -> str:
    extra = cfg["grid"].get("extra_axes", {})
    parts = []
    for axis in axis_names(cfg):
        value = cell[axis]
        if axis in extra and value == extra[axis]["default"]:
            continue
        parts.append(f"{axis}{SEP}{format_value(value)}")
    return "/".join(parts)


def parse_cell_id(cfg: dict, text: str) -> dict[str, Any]:
    """Inverse of :func:`cell_id`; raises ConfigError for an id this config cannot produce."""
    names = axis_names(cfg)
    extra = cfg["grid"].get("extra_axes", {})
    cell = {axis: spec["default"] for axis, spec in extra.items()}
    seen = []
    for segment in text.strip("/").split("/"):
        axis, sep, raw = segment.partition(SEP)
        if not sep or axis not in names:
            raise ConfigError(f"cell id {text!r}: segment {segment!r} is not axis{SEP}value with an axis of {names}")
        cell[axis] = parse_value(raw)
        seen.append(axis)
    missing = [a for a in BUILTIN_AXES if a not in cell]
    if missing:
        raise ConfigError(f"cell id {text!r}: missing axes {missing}")
    if cell_id(cfg, cell) != text.strip("/"):
        raise ConfigError(f"cell id {text!r}: not in canonical form (expected {cell_id(cfg, cell)!r})")
    return {axis: cell[axis] for axis in names}


def cells(cfg: dict) -> list[dict[str, Any]]:
    """All cells of the study, in a deterministic order (models in config order, then the product)."""
    names = axis_names(cfg)
    out = []
    for model in cfg["grid"]["axes"]["model"]:
        value_lists = [[model]] + [axis_values(cfg, axis, model) for axis in names[1:]]
        for combo in itertools.product(*value_lists):
            out.append(dict(zip(names, combo)))
    return out


def cell_ids(cfg: dict) -> list[str]:
    ids = [cell_id(cfg, c) for c in cells(cfg)]
    if len(set(ids)) != len(ids):
        raise ConfigError("grid: two cells map to the same id (an axis lists a value twice?)")
    return ids

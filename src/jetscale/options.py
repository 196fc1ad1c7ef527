"""Typed option dataclasses, parsed strictly from config mappings (torch- and numpy-free).

A model's options (config ``models.<name>``) and the BBT tokenizer's are frozen dataclasses: the defaults live
in the class, and :func:`parse` refuses unknown keys and values of the wrong type, naming the key path, e.g.
``models.part.n_layer: unknown option; allowed: ['n_cls_layers', 'n_layers']``. Supported field types: ``bool``,
``int``, ``float`` (an int is accepted), ``str``, ``Literal[...]``, ``tuple[X, ...]`` (from a list),
``X | None``, nested option dataclasses and ``dict`` (a free mapping with string keys: what it holds is checked by
whoever reads it, e.g. a user model's builder).
A class may check value ranges in ``__post_init__`` by raising ``ValueError("<field>: <problem>")``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import types
import typing
from typing import Any, Literal


class OptionError(ValueError):
    """A bad option; the message starts with the key path (``where.key``)."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def fields(cls: type) -> dict[str, Any]:
    """Field name -> type of an option dataclass."""
    return {f.name: _hints(cls)[f.name] for f in dataclasses.fields(cls)}


def parse(cls: type, mapping: Any, where: str):
    """``mapping`` (a dict, None, or already a ``cls``) -> a ``cls`` instance; OptionError names the key."""
    if isinstance(mapping, cls):
        return mapping
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise OptionError(f"{where}: must be a mapping of options, got {type(mapping).__name__} {mapping!r}")
    known = fields(cls)
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        key = unknown[0]
        raise OptionError(f"{where}.{key}: unknown option; allowed: {sorted(known)}")
    values = {key: _value(known[key], value, f"{where}.{key}") for key, value in mapping.items()}
    try:
        return cls(**values)
    except ValueError as exc:  # a range check in __post_init__: "<field>: <problem>"
        raise OptionError(f"{where}.{exc}") from None


def check_path(cls: type, keys: list[str], value: Any, where: str) -> None:
    """Refuse ``value`` at option path ``keys`` of ``cls`` (an extra axis' ``sets: model.<keys>``) unless the
    path names an option and ``cls`` accepts the value there (types and range checks, as :func:`parse`)."""
    target: Any = cls
    for i, key in enumerate(keys):
        if target is dict or typing.get_origin(target) is dict:
            break  # a free mapping: any key below it
        target = _dataclass_of(target)
        if target is None or key not in fields(target):
            allowed = sorted(fields(target)) if target is not None else []
            raise OptionError(f"{where}: {'.'.join(keys[: i + 1])!r} names no option; allowed there: {allowed}")
        target = fields(target)[key]
    nested: Any = value
    for key in reversed(keys):
        nested = {key: nested}
    parse(cls, nested, where)


def as_dict(options) -> dict[str, Any]:
    return dataclasses.asdict(options)


def _dataclass_of(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _value(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        problems = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _value(arg, value, where)
            except OptionError as exc:
                problems.append(str(exc))
        raise OptionError(problems[0] if len(problems) == 1 else f"{where}: bad value {value!r}")
    if origin is Literal:
        allowed = list(typing.get_args(hint))
        if value not in allowed or isinstance(value, bool) != any(isinstance(a, bool) for a in allowed):
            raise OptionError(f"{where}: {value!r} is not allowed; allowed values: {allowed}")
        return value
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, where)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{where}: option type {hint!r}: only tuple[X, ...] is supported by jetscale.options")
        if not isinstance(value, list | tuple):
            raise OptionError(f"{where}: bad value {value!r}: must be a list")
        return tuple(_value(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if hint is dict or origin is dict:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise OptionError(f"{where}: bad value {value!r}: must be a mapping with string keys")
        return copy.deepcopy(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise OptionError(f"{where}: bad value {value!r}: must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionError(f"{where}: bad value {value!r}: must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise OptionError(f"{where}: bad value {value!r}: must be a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise OptionError(f"{where}: bad value {value!r}: must be a string")
        return value
    raise TypeError(f"{where}: option type {hint!r} is not supported by jetscale.options")

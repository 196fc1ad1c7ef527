"""Elementwise transforms of one input feature (numpy, float64 in and out).

A transform is a chain of steps, each monotone non-decreasing in its input. That is what lets a split record
quantiles of the *raw* features once (:mod:`jetscale.inputs.stats`) and serve every declared chain: for a
monotone non-decreasing f, a quantile that is a data point (``inverted_cdf``) commutes with f, so the median and
16/84% points of f(x) are f of the raw ones (tested).

Steps (config form → function):

``identity``                           x
``log`` / ``{log: {floor: f}}``        ln(max(x, f)); f = 1e-3 by default (neutral particles have σ(d0) = 0)
``log10`` / ``{log10: {floor: f}}``    log10(max(x, f))
``signed_log``                         sign(x)·ln(1 + |x|)
``{signed_power: p}``                  sign(x)·|x|^p  (0 < p)
``{tanh_power: {scale: a, power: p}}`` tanh(a·sign(x)·|x|^p): the CEPC JoI reference's d0/z0 compression
                                       (a = 0.2, p = 0.25 for mm)
``{clip: [lo, hi]}``                   min(max(x, lo), hi)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

DEFAULT_LOG_FLOOR = 1e-3


def _log(x, floor=DEFAULT_LOG_FLOOR):
    return np.log(np.maximum(x, floor))


def _log10(x, floor=DEFAULT_LOG_FLOOR):
    return np.log10(np.maximum(x, floor))


def _signed_power(x, power):
    return np.sign(x) * np.abs(x) ** power


def _tanh_power(x, scale, power):
    return np.tanh(scale * np.sign(x) * np.abs(x) ** power)


# name -> (function, parameter names, defaults); parameters come from the config step's value
STEPS: dict[str, tuple[Callable, tuple[str, ...], dict[str, float]]] = {
    "identity": (lambda x: x, (), {}),
    "log": (_log, ("floor",), {"floor": DEFAULT_LOG_FLOOR}),
    "log10": (_log10, ("floor",), {"floor": DEFAULT_LOG_FLOOR}),
    "signed_log": (lambda x: np.sign(x) * np.log1p(np.abs(x)), (), {}),
    "signed_power": (_signed_power, ("power",), {}),
    "tanh_power": (_tanh_power, ("scale", "power"), {}),
    "clip": (lambda x, lo, hi: np.clip(x, lo, hi), ("lo", "hi"), {}),
}


def parse_step(raw: Any, where: str) -> dict[str, Any]:
    """One config step → its canonical form ``{"step": name, **params}`` (all params filled, floats)."""
    from ..errors import ConfigError

    if isinstance(raw, str):
        name, value = raw, None
    elif isinstance(raw, dict) and len(raw) == 1:
        name, value = next(iter(raw.items()))
    else:
        raise ConfigError(f"{where}: a transform step is a name or a one-key mapping, got {raw!r}")
    if name not in STEPS:
        raise ConfigError(f"{where}: unknown transform {name!r}; known transforms: {sorted(STEPS)}")
    _, names, defaults = STEPS[name]
    params = dict(defaults)
    if value is None:
        pass
    elif isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ConfigError(f"{where}.{name}: unknown parameter(s) {unknown}; allowed: {list(names)}")
        params.update(value)
    elif isinstance(value, list | tuple) and len(value) == len(names):
        params.update(zip(names, value))
    elif len(names) == 1 and not isinstance(value, list | tuple):
        params[names[0]] = value
    else:
        raise ConfigError(f"{where}.{name}: expected parameters {list(names)}, got {value!r}")
    missing = [p for p in names if p not in params]
    if missing:
        raise ConfigError(f"{where}.{name}: missing parameter(s) {missing}")
    for key, v in params.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
            raise ConfigError(f"{where}.{name}.{key}: must be a finite number, got {v!r}")
    problem = _domain_problem(name, params)
    if problem:
        raise ConfigError(f"{where}.{name}: {problem}")
    return {"step": name, **{k: float(params[k]) for k in names}}


def _domain_problem(name: str, p: dict) -> str | None:
    # each condition keeps the step monotone non-decreasing (see the module docstring)
    if name in ("log", "log10") and p["floor"] <= 0:
        return f"floor must be positive, got {p['floor']}"
    if name in ("signed_power", "tanh_power") and p["power"] <= 0:
        return f"power must be positive, got {p['power']}"
    if name == "tanh_power" and p["scale"] <= 0:
        return f"scale must be positive, got {p['scale']}"
    if name == "clip" and not p["lo"] < p["hi"]:
        return f"lo must be below hi, got [{p['lo']}, {p['hi']}]"
    return None


def apply_steps(steps: list[dict] | tuple[dict, ...], x: np.ndarray) -> np.ndarray:
    """Apply canonical steps (see :func:`parse_step`) to ``x`` in float64."""
    out = np.asarray(x, dtype=np.float64)
    for step in steps:
        fn, names, _ = STEPS[step["step"]]
        out = fn(out, *(step[n] for n in names))
    return out

"""Forecast: the x (training jets, parameters, FLOP) at which a fitted scaling curve reaches a target value.

The point estimate inverts the full-data fit; the interval inverts every bootstrap replicate of it (resampling
seeds within each x, see :mod:`jetscale.fit.intervals`) and takes the 2.5 % / 97.5 % quantiles. A replicate that
never reaches the target counts as x = ∞ (it does not bound the interval from above), so a target beyond the
reach of a noticeable share of replicates gets ``x_hi = null`` rather than a false upper limit.

Only a fit with status ``ok`` is forecast from (an unconstrained one says so in ``reason``).

Inversion per form (y falls with x for error-type quantities, but rising curves work the same way): the form's
``inverse`` (:mod:`jetscale.fit.forms`) where it has one, between its ``limits``:
- powerlaw  y = y_inf + A·x^(−α): x = (A / (t − y_inf))^(1/α); unreachable when t lies beyond the asymptote y_inf.
- scurve    x = n_c · 10^(−logit(s) / (ln10 · k)), s = (t − floor)/(ceiling − floor); unreachable unless t lies
            strictly between the ceiling (x → 0) and the floor (x → ∞).
Otherwise (bnsl, not monotone in general): the first crossing on a log grid from 10⁻⁶·x_min to 10¹²·x_max,
refined with brentq.
"""

from __future__ import annotations

import math

import numpy as np

from . import forms
from .fitting import Fit, fit
from .intervals import bootstrap_replicates
from .status import OK, usable

LEVEL = 0.95
X_GRID_BELOW, X_GRID_ABOVE = 1e-6, 1e12  # bnsl search range relative to the measured x range


def limits(form: str, params: dict, x_range=(1.0, 1.0)) -> tuple[float, float]:
    """(y as x → 0, y as x → ∞) of the fitted curve (forms without closed-form limits: at the search-grid ends)."""
    spec = forms.get(form)
    if spec.limits is not None:
        return spec.limits(params)
    lo, hi = _grid_ends(x_range)
    return float(spec.evaluate(params, lo)), float(spec.evaluate(params, hi))


def _grid_ends(x_range) -> tuple[float, float]:
    return float(min(x_range)) * X_GRID_BELOW, float(max(x_range)) * X_GRID_ABOVE


def crossing(form: str, params: dict, target: float, x_range=(1.0, 1.0)) -> tuple[float, str]:
    """x at which the curve equals ``target``; (∞, why) if it never does for large x, (0, why) if already at x → 0."""
    spec = forms.get(form)
    if spec.n_x != 1:
        raise ValueError(f"forecasts need a one-variable form ({', '.join(forms.names(1))}), not {form!r}")
    y0, y_end = limits(form, params, x_range)
    if spec.inverse is None:
        return _numeric_crossing(spec, params, target, x_range, y0, y_end)
    if not _strictly_between(target, y0, y_end):
        return _never(spec, target, y0, y_end)
    return float(spec.inverse(params, target)), ""


def _strictly_between(t, a, b) -> bool:
    return min(a, b) < t < max(a, b)


def _never(spec, target: float, y0: float, y_end: float) -> tuple[float, str]:
    falling = y_end < y0
    if (target <= y_end) if falling else (target >= y_end):
        side = "below" if falling else "above"
        return (
            math.inf,
            f"the fitted {spec.asymptote} = {y_end:.4g}: the curve never gets {side} it, so never reaches {target:g}",
        )
    return 0.0, f"the target {target:g} is met everywhere: the curve starts at {y0:.4g} and only improves"


def _numeric_crossing(spec, params, target, x_range, y0, y_end) -> tuple[float, str]:
    from scipy.optimize import brentq

    lo, hi = _grid_ends(x_range)
    grid = np.geomspace(lo, hi, 4000)
    with np.errstate(all="ignore"):
        diff = np.asarray(spec.evaluate(params, grid), dtype=float) - target
    ok = np.isfinite(diff)
    change = np.flatnonzero(ok[:-1] & ok[1:] & (np.sign(diff[:-1]) != np.sign(diff[1:])))
    if change.size == 0:
        return _never(spec, target, y0, y_end)
    i = int(change[0])

    def g(log_x):
        return float(spec.evaluate(params, math.exp(log_x))) - target

    return float(math.exp(brentq(g, math.log(grid[i]), math.log(grid[i + 1]), xtol=1e-12))), ""


def forecast(
    form: str,
    x,
    y,
    target: float,
    *,
    bootstrap: int = 200,
    seed: int = 0,
    min_points: int = 4,
    level: float = LEVEL,
    **fit_options,
) -> dict:
    """Fit ``form`` to (x, y) and forecast where it reaches ``target`` (see :func:`forecast_fit`).

    ``fit_options``: ``domain`` and ``objective`` of :func:`jetscale.fit.fitting.fit`."""
    result = fit(form, x, y, min_points=min_points, **fit_options)
    replicates = bootstrap_replicates(result, x, y, bootstrap, seed) if result.status == OK else None
    return forecast_fit(result, replicates, target, x, level=level)


def forecast_fit(result: Fit, replicates, target: float, x, *, level: float = LEVEL) -> dict:
    """Where the fitted curve ``result`` (fitted to points at abscissae ``x``) reaches ``target``.

    ``replicates``: (n, n_params) bootstrap parameter rows (:func:`jetscale.fit.intervals.bootstrap_replicates`)
    or None (no interval).

    Keys: target, x, x_lo, x_hi (None = unbounded or undetermined), reachable, reason, replicates,
    replicates_reaching (share of bootstrap replicates that reach it), level, x_measured [min, max],
    extrapolated (the answer lies outside the measured range), fit (the fit record).
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    x_range = (float(x.min()), float(x.max())) if x.size else (1.0, 1.0)
    out = {
        "target": float(target),
        "x": None,
        "x_lo": None,
        "x_hi": None,
        "reachable": False,
        "reason": "",
        "replicates": 0,
        "replicates_reaching": None,
        "level": level,
        "x_measured": list(x_range) if x.size else None,
        "extrapolated": None,
        "fit": result.record(),
    }
    if not result.converged:
        out["reason"] = f"no fit: {result.message}"
        return out
    if not usable({"status": result.status}):
        out["reason"] = f"fit {result.status}, not used for forecasts: {result.message}"
        return out
    x_hat, why = crossing(result.form, result.params, target, x_range)
    out["reachable"] = math.isfinite(x_hat) and x_hat > 0
    out["reason"] = why
    if out["reachable"]:
        out["x"] = x_hat
        out["extrapolated"] = not (x_range[0] <= x_hat <= x_range[1])
    reps = _replicate_crossings(result.form, replicates, target, x_range)
    if reps is None:
        out["reason"] = "; ".join(r for r in (why, "no bootstrap replicates: no interval") if r)
        return out
    out["replicates"] = int(reps.size)
    reaching = np.isfinite(reps) & (reps > 0)
    out["replicates_reaching"] = float(reaching.mean())
    tail = (1 - level) / 2
    lo, hi = (float(np.quantile(reps, q, method="inverted_cdf")) for q in (tail, 1 - tail))
    out["x_lo"] = lo if lo > 0 and math.isfinite(lo) else None
    out["x_hi"] = hi if math.isfinite(hi) and hi > 0 else None
    if out["reachable"] and out["x_hi"] is None and hi > 0:
        never = 1 - out["replicates_reaching"]
        out["reason"] = f"{never:.0%} of bootstrap replicates never reach the target: no upper bound"
    return out


def _replicate_crossings(form: str, replicates, target: float, x_range) -> np.ndarray | None:
    if replicates is None or len(replicates) == 0:
        return None
    names = forms.get(form).params
    return np.array([crossing(form, dict(zip(names, row)), target, x_range)[0] for row in replicates])

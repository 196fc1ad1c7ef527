"""The trend of each tuned value with the data (and model) size: η*(n, w) = C · n^a · w^b.

Read from ``tables/tuning.csv`` (the chosen rows; :mod:`jetscale.evaluate.tuning`), written to
``fits/tuning_trends.csv``. One fit per tuning axis with positive numeric values and per *family* (the series
axes other than width: model, compute, ...): over all its chosen values, log η* is fitted linearly in log n,
and in log w as well where the family has two or more widths. A family with one width and fewer than two
n_train values, or fewer points than parameters, gets a row with ``status`` saying so. ``n_edge`` counts the
choices at the edge of the values tried: there the best value may lie outside, and the trend is a bound.

The chosen values sit on the grid of values tried, so an exponent is as coarse as that grid: with values a
factor 3 apart, a trend over one decade of n resolves exponents of about ±0.5 at best.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..grid import axis_text

TREND_COLUMNS = [
    "axis",
    "family",
    "form",
    "status",
    "n_points",
    "n_edge",
    "prefactor",
    "exponent_n",
    "exponent_n_err",
    "exponent_width",
    "exponent_width_err",
]


def tuning_trends(tuning: pd.DataFrame, tune_axes: list[str], family_axes: list[str]) -> pd.DataFrame:
    """One row per tuning axis × family (``family_axes``: the series axes but width, present in ``tuning``)."""
    rows = []
    if tuning.empty:
        return pd.DataFrame(columns=TREND_COLUMNS)
    chosen = tuning[tuning["chosen"].astype(str).str.lower() == "true"]
    families = [a for a in family_axes if a in chosen.columns]
    for axis in tune_axes:
        groups = chosen.groupby(families, sort=False, dropna=False) if families else [((), chosen)]
        for key, sub in groups:
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{a}={axis_text(v)}" for a, v in zip(families, key)) or "all"
            rows.append({"axis": axis, "family": label, **fit_trend(sub, axis)})
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


def fit_trend(sub: pd.DataFrame, axis: str) -> dict:
    """log η* = log C + a log n (+ b log w): least squares; errors from the residual scatter (none when exact)."""
    y = pd.to_numeric(sub[axis], errors="coerce").to_numpy(float)
    n = pd.to_numeric(sub["n_train"], errors="coerce").to_numpy(float)
    w = pd.to_numeric(sub["width"], errors="coerce").to_numpy(float) if "width" in sub else np.full(len(sub), 1.0)
    ok = np.isfinite(y) & (y > 0) & np.isfinite(n) & (n > 0) & np.isfinite(w) & (w > 0)
    out = {"n_points": int(ok.sum()), "n_edge": int((sub["edge"].fillna("").astype(str) != "")[ok].sum())}
    y, n, w = y[ok], n[ok], w[ok]
    widths = len(np.unique(w))
    out["form"] = "C n^a w^b" if widths > 1 else "C n^a"
    columns = [np.ones_like(n), np.log(n)] + ([np.log(w)] if widths > 1 else [])
    if len(np.unique(n)) < 2 or len(y) < len(columns):
        return {**out, "status": "too few points (needs two n_train values and a point per parameter)"}
    design = np.column_stack(columns)
    coef, *_ = np.linalg.lstsq(design, np.log(y), rcond=None)
    dof = len(y) - len(columns)
    errors = [math.nan] * len(columns)
    if dof > 0:
        resid = np.log(y) - design @ coef
        cov = np.linalg.pinv(design.T @ design) * float(resid @ resid) / dof
        errors = np.sqrt(np.clip(np.diag(cov), 0, None)).tolist()
    out.update(
        status="ok",
        prefactor=float(math.exp(coef[0])),
        exponent_n=float(coef[1]),
        exponent_n_err=float(errors[1]),
    )
    if widths > 1:
        out.update(exponent_width=float(coef[2]), exponent_width_err=float(errors[2]))
    return out


def trend_value(row: dict, n, width=None):
    """η* of a trend row at ``n`` (and ``width``)."""
    value = row["prefactor"] * np.asarray(n, float) ** row["exponent_n"]
    b = row.get("exponent_width")
    if width is not None and b is not None and math.isfinite(float(b)):
        value = value * float(width) ** float(b)
    return value

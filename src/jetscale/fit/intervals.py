"""Bootstrap replicates of a fitted curve for forecast and prediction intervals (bootstrap over seeds).

Same resampling as :func:`jetscale.fit.fitting.resample_indices` (seeds within each x when x repeats, else all
points) and the same refit from the full-data optimum, with one correction: resampling n seeds out of n
shrinks the variance of their mean by (n − 1)/n (a factor 1/2 with the default study's 2 seeds), which made
95 % intervals cover far less than 95 % of the time. Each resampled seed therefore enters as
mean + sqrt(n/(n − 1)) · (value − mean) (the variance-corrected bootstrap; Davison & Hinkley 1997, §3.3).
Measured by ``benchmarks/forecast_coverage.py`` (7 sizes, 100 replications): 95 % forecast intervals contain the
true crossing in 85-90 % of replications with 2-3 seeds per size (72 % before the correction, 3 seeds, 40 reps).
"""

from __future__ import annotations

import warnings

import numpy as np

from .fitting import Fit, refit


def corrected_resample(x, y, rng) -> np.ndarray:
    """One bootstrap resample of ``y`` (same x design), variance-corrected within each repeated x."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    _, group = np.unique(x, return_inverse=True)
    group = np.asarray(group).ravel()
    if len(np.unique(group)) == len(group):  # no repeats: case bootstrap over all points
        return None
    out = y.copy()
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        n = members.size
        if n < 2:
            continue
        values = y[members]
        mean = values.mean()
        drawn = rng.choice(values, size=n, replace=True)
        out[members] = mean + np.sqrt(n / (n - 1)) * (drawn - mean)
    return out


def bootstrap_replicates(result: Fit, x, y, n_boot: int, seed: int = 0) -> np.ndarray | None:
    """(n_ok, n_params) public parameters of ``n_boot`` refits on resamples; None if too few converge."""
    if not result.converged or n_boot <= 0:
        return None
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[ok], y[ok]
    rng = np.random.default_rng(seed)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_boot):
            y_star = corrected_resample(x, y, rng)
            if y_star is None:
                idx = rng.integers(0, len(y), len(y))
                xs, ys = x[idx], y[idx]
            else:
                xs, ys = x, y_star
            rep = refit(result, xs, ys, None)
            values = list(rep.params.values())
            if rep.converged and np.all(np.isfinite(values)):
                rows.append(values)
    if len(rows) < max(2, n_boot // 2):
        return None
    return np.array(rows)

"""Extrapolation backtest: fit without the K largest x values and check the prediction at the held-out ones.

Only a training fit with status ``ok`` predicts (an unconstrained one gives no prediction and says why).

The prediction interval is a bootstrap one (the question is "would the mean over seeds I measure there fall
inside?", so it holds both sources of error):
- the curve: every bootstrap replicate of the fit on the training points (seeds resampled within each x,
  variance-corrected: :mod:`jetscale.fit.intervals`), and
- the seed noise of the observed mean: for each replicate the mean of n_seeds residuals of the training fit,
  drawn with replacement (rescaled by sqrt(n / (n − p)) for the parameters the fit used up).
Pooled residuals assume one noise level for all x; where seed scatter shrinks with x the interval is wider
than needed at the held-out end (conservative), never narrower.
"""

from __future__ import annotations

import math

import numpy as np

from . import forms
from .fitting import fit
from .forms import evaluate
from .intervals import bootstrap_replicates
from .status import usable

LEVEL = 0.95
INTERVAL_METHOD = (
    "bootstrap prediction interval: curve replicates (seeds resampled within each x) + seed noise of the mean "
    "(training residuals resampled)"
)


def split_holdout(x, holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, held) with the ``holdout`` largest distinct x values held out."""
    x = np.asarray(x, dtype=float)
    distinct = np.unique(x[np.isfinite(x)])
    if holdout < 1:
        raise ValueError("holdout must be at least 1")
    held_values = distinct[-holdout:] if holdout <= distinct.size else distinct
    held = np.isin(x, held_values)
    return np.isfinite(x) & ~held, held


def backtest(
    form: str,
    x,
    y,
    holdout: int,
    *,
    bootstrap: int = 200,
    seed: int = 0,
    level: float = LEVEL,
    min_points: int = 4,
    **fit_options,
) -> dict:
    """Fit ``form`` to all but the ``holdout`` largest x values; predict the held-out means with intervals.

    Returns {"form", "holdout", "x_train_max", "n_train_points", "level", "interval", "points": [{"x",
    "observed", "n_seeds", "predicted", "lo", "hi", "covered"}], "n_covered", "coverage", "fit", "message"}.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[ok], y[ok]
    train, held = split_holdout(x, holdout)
    result = fit(form, x[train], y[train], min_points=min_points, **fit_options)
    usable_fit = result.converged and usable({"status": result.status})
    replicates = bootstrap_replicates(result, x[train], y[train], bootstrap, seed) if usable_fit else None
    out = {
        "form": form,
        "holdout": int(holdout),
        "x_train_max": float(x[train].max()) if train.any() else None,
        "n_train_points": int(train.sum()),
        "level": level,
        "interval": INTERVAL_METHOD,
        "points": [],
        "n_covered": 0,
        "coverage": None,
        "fit": result.record(),
        "message": result.message,
    }
    noise = _noise_sampler(result, x[train], y[train], seed) if usable_fit else None
    for xv in np.unique(x[held]):
        obs = y[x == xv]
        point = {"x": float(xv), "observed": float(obs.mean()), "n_seeds": int(obs.size)}
        point.update(predicted=None, lo=None, hi=None, covered=None)
        if usable_fit:
            point["predicted"] = float(evaluate(form, result.params, xv))
            if replicates is not None and noise is not None:
                draws = _replicate_predictions(form, replicates, xv) + noise(len(replicates), obs.size)
                draws = draws[np.isfinite(draws)]
                if draws.size:
                    tail = (1 - level) / 2
                    point["lo"], point["hi"] = (float(v) for v in np.quantile(draws, [tail, 1 - tail]))
                    point["covered"] = bool(point["lo"] <= point["observed"] <= point["hi"])
        out["points"].append(point)
    judged = [p for p in out["points"] if p["covered"] is not None]
    out["n_covered"] = sum(p["covered"] for p in judged)
    out["coverage"] = out["n_covered"] / len(judged) if judged else None
    if result.converged and not usable_fit:
        out["message"] = f"fit {result.status}, not used for a backtest: {result.message}"
    elif usable_fit and not judged:
        out["message"] += "; no bootstrap replicates: no prediction interval"
    return out


def _replicate_predictions(form: str, replicates: np.ndarray, xv: float) -> np.ndarray:
    names = forms.get(form).params
    with np.errstate(all="ignore"):
        return np.array([float(evaluate(form, dict(zip(names, row)), xv)) for row in replicates])


def _noise_sampler(result, x, y, seed: int):
    """f(n_draws, n_seeds) -> n_draws means of n_seeds resampled training residuals."""
    with np.errstate(all="ignore"):
        resid = y - np.asarray(evaluate(result.form, result.params, x), dtype=float)
    resid = resid[np.isfinite(resid)]
    dof = resid.size - len(forms.get(result.form).params)
    if dof <= 0:
        return None
    resid = (resid - resid.mean()) * math.sqrt(resid.size / dof)
    rng = np.random.default_rng([seed, 1])

    def draw(n_draws: int, n_seeds: int) -> np.ndarray:
        return rng.choice(resid, size=(n_draws, n_seeds), replace=True).mean(axis=1)

    return draw

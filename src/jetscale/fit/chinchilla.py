"""The Chinchilla L(N, D) fitter (the Epoch AI recipe; see :mod:`jetscale.fit.fitting` for the conventions).

log L = logsumexp(a − alpha ln N, b − beta ln D, e), objective = SUM of Huber(delta = 1e-3) on log-loss
residuals, BFGS with analytic gradients from the best of a grid of starts. E = e^e, A = e^a and B = e^b are
positive by construction; a negative exponent is reported as ``unconstrained`` (a law that worsens with size).
"""

from __future__ import annotations

import itertools

import numpy as np

from . import forms
from .fitting import Fit, information_criteria
from .solver import SQUARES

HUBER_DELTA = 1e-3


def _huber(r, delta=HUBER_DELTA):
    small = np.abs(r) <= delta
    value = np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    grad = np.where(small, r, delta * np.sign(r))
    return value, grad


def chinchilla_objective(theta, log_n, log_d, log_loss):
    """SUM of Huber residuals of log L and its analytic gradient; theta = (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    pred = top + np.log(total)
    weights /= total
    value, dh = _huber(pred - log_loss)
    grad = np.array(
        [
            np.sum(dh * weights[0]),
            np.sum(dh * weights[1]),
            np.sum(dh * weights[2]),
            -np.sum(dh * weights[0] * log_n),
            -np.sum(dh * weights[1] * log_d),
        ]
    )
    return float(value.sum()), grad


CHINCHILLA_STARTS = 100  # optimise from the best 100 of the 4500 grid starts (None: every start)
CHINCHILLA_GRID = {
    "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
    "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
}


def _chinchilla_minimise(theta0, args, method="BFGS"):
    from scipy.optimize import minimize

    return minimize(chinchilla_objective, theta0, args=args, jac=True, method=method)


def _chinchilla_public(theta):
    a, b, e, alpha, beta = theta
    with np.errstate(over="ignore"):
        return np.array([np.exp(np.float64(a)), np.exp(np.float64(b)), np.exp(np.float64(e)), alpha, beta])


def chinchilla_starts(args, n_starts: int | None = CHINCHILLA_STARTS) -> np.ndarray:
    """Grid starts (rows a, b, e, alpha, beta); the ``n_starts`` with the lowest objective (None: all 4500)."""
    g = CHINCHILLA_GRID
    grid = np.array(list(itertools.product(g["a"], g["b"], g["e"], g["alpha"], g["beta"])), dtype=float)
    if n_starts is None or n_starts >= len(grid):
        return grid
    values = np.array([chinchilla_objective(s, *args)[0] for s in grid])
    return grid[np.argsort(values, kind="stable")[:n_starts]]


def fit_chinchilla(n, y, d, theta0=None, n_starts: int | None = CHINCHILLA_STARTS) -> Fit:
    args = (np.log(n), np.log(d), np.log(y))
    if theta0 is not None:
        res = _chinchilla_minimise(theta0, args)
        best = res if np.all(np.isfinite(res.x)) else None
    else:
        best = None
        for start in chinchilla_starts(args, n_starts):
            res = _chinchilla_minimise(start, args)
            if np.isfinite(res.fun) and np.all(np.isfinite(res.x)) and (best is None or res.fun < best.fun):
                best = res
    if best is None:
        return Fit(forms.JOINT_LAW, message="did not converge: no start reached a minimum")
    theta = best.x
    pred_log = np.log(_chinchilla_predict(theta, n, d))
    aic, bic = information_criteria(float(np.sum((pred_log - args[2]) ** 2)), len(y), 5)
    public = _chinchilla_public(theta) if np.all(np.abs(theta[:3]) < 700) else np.full(5, np.nan)
    out = Fit(
        forms.JOINT_LAW,
        params=dict(zip(forms.get(forms.JOINT_LAW).params, public)),
        aic=aic,
        bic=bic,
        converged=bool(np.all(np.isfinite(public))),
        message=f"ok: sum-Huber objective {best.fun:.6g}",
        theta=theta,
    )
    if not out.converged:
        out.message = "non-finite parameters at the optimum"
    return out


def _chinchilla_predict(theta, n, d):
    a, b, e, alpha, beta = theta
    return np.exp(e) + np.exp(a - alpha * np.log(n)) + np.exp(b - beta * np.log(d))


def fit_chinchilla_form(n, y, d, theta0=None, *, bounds=None, objective=SQUARES) -> Fit:
    """The catalog's fitter: its own Huber recipe whatever ``objective`` says; exponents must be positive."""
    out = fit_chinchilla(n, y, d, theta0)
    if out.converged:
        out.pinned = tuple(p for p in ("alpha", "beta") if out.params[p] <= 0)
    return out

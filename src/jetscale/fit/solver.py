"""Least squares for the fit forms: unconstrained Levenberg–Marquardt where the optimum is physical, bounded
trust-region refinement where it is not, and the robust alternative (Huber loss on log residuals).

- ``loss="squares"`` (default): Levenberg–Marquardt (scipy.optimize.leastsq, the engine of curve_fit's
  method='lm') from the start; if its optimum leaves the bounds, scipy.optimize.least_squares(method="trf")
  refits within them from the clipped optimum and from the clipped start. A parameter left on a bound is
  reported in ``pinned`` (the fit then says ``unconstrained``). Within the bounds the LM optimum is kept as
  it is, so physical fits are unchanged by the bounds.
- ``loss="huber_log"``: least_squares(method="trf", loss="huber", f_scale=delta) on ln(model) − ln(y) within the
  bounds: relative residuals, so every decade of an error rate weighs the same, and a residual beyond
  ``delta`` (a diverged or budget-limited seed) counts linearly rather than quadratically.

Covariances are the Gauss–Newton ones scaled by the residual variance (as curve_fit does); RSS is always the
sum of squared residuals in y, so AIC/BIC compare forms on the same footing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LOSSES = ("squares", "huber_log")
HUBER_LOG_DELTA = 0.1  # default f_scale of the Huber loss on ln residuals: a 10 % relative deviation


@dataclass(frozen=True)
class Objective:
    loss: str = "squares"
    delta: float = HUBER_LOG_DELTA

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown fit loss {self.loss!r}; losses: {list(LOSSES)}")
        if not self.delta > 0:
            raise ValueError(f"the Huber delta must be positive, not {self.delta}")


SQUARES = Objective()


@dataclass
class Solution:
    theta: np.ndarray | None
    cov: np.ndarray | None
    rss: float
    message: str = ""
    pinned: tuple[int, ...] = ()


FAILED = Solution(None, None, math.inf, "no start converged")


def solve(model, x, y, theta0, *, jac=None, lo=None, hi=None, objective=SQUARES, maxfev=20000) -> Solution:
    """Best-fitting internal parameters from ``theta0`` within [lo, hi] (None: unbounded)."""
    n_par = len(theta0)
    lo = np.full(n_par, -np.inf) if lo is None else np.asarray(lo, dtype=float)
    hi = np.full(n_par, np.inf) if hi is None else np.asarray(hi, dtype=float)
    if objective.loss == "huber_log":
        return _trf(model, x, y, theta0, jac, lo, hi, objective, maxfev)
    cand = _levenberg_marquardt(model, x, y, theta0, jac, maxfev)
    if cand.theta is not None and np.all(cand.theta >= lo) and np.all(cand.theta <= hi):
        return cand
    starts = [np.asarray(theta0, dtype=float)] + ([cand.theta] if cand.theta is not None else [])
    best = Solution(None, None, math.inf, cand.message or "optimum outside the bounds")
    for start in starts:
        trial = _trf(model, x, y, start, jac, lo, hi, objective, maxfev)
        if trial.theta is not None and trial.rss < best.rss:
            best = trial
    return best


def multistart(model, x, y, starts, n_refine: int, *, jac=None, lo=None, hi=None, objective=SQUARES) -> Solution:
    """Refine the ``n_refine`` best of the (rss, theta0) grid starts; return the best solution."""
    ranked = sorted(starts, key=lambda s: s[0])[:n_refine]
    best = FAILED
    for _, theta0 in ranked:
        cand = solve(model, x, y, theta0, jac=jac, lo=lo, hi=hi, objective=objective)
        if cand.theta is not None and _better(cand, best):
            best = cand
        elif best.theta is None and cand.message:
            best = Solution(None, None, math.inf, cand.message)
    return best


def _better(a: Solution, b: Solution) -> bool:
    """Lower RSS wins; between near-equal optima, the one with fewer parameters on a bound."""
    if b.theta is None:
        return True
    if a.rss < b.rss * (1 - 1e-9):
        return True
    return a.rss <= b.rss * (1 + 1e-9) and len(a.pinned) < len(b.pinned)


def _levenberg_marquardt(model, x, y, theta0, jac, maxfev) -> Solution:
    from scipy.optimize import leastsq

    def residuals(theta):
        return model(x, *theta) - y

    dfun = None if jac is None else (lambda theta: jac(x, *theta))
    try:
        theta, cov, _, mesg, ier = leastsq(
            residuals, np.asarray(theta0, dtype=float), Dfun=dfun, full_output=True, maxfev=maxfev
        )
    except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        return Solution(None, None, math.inf, str(exc))
    if ier not in (1, 2, 3, 4):
        return Solution(None, None, math.inf, f"optimal parameters not found: {mesg}")
    pred = model(x, *theta)
    if not np.all(np.isfinite(pred)):
        return Solution(None, None, math.inf, "non-finite prediction at the optimum")
    rss = float(np.sum((pred - y) ** 2))
    return Solution(theta, _scale_cov(cov, rss, len(y), len(theta)), rss)


def _scale_cov(cov, rss, n, k):
    dof = n - k
    if cov is None or dof <= 0:
        return np.full((k, k), np.inf)
    return cov * (rss / dof)


def _trf(model, x, y, theta0, jac, lo, hi, objective, maxfev) -> Solution:
    from scipy.optimize import least_squares

    log_space = objective.loss == "huber_log"
    start = np.clip(np.asarray(theta0, dtype=float), lo, hi)
    start = np.where(np.isfinite(start), start, np.where(np.isfinite(lo), lo, np.where(np.isfinite(hi), hi, 0.0)))
    log_y = np.log(np.clip(y, 1e-300, None)) if log_space else None

    def residuals(theta):
        pred = model(x, *theta)
        if log_space:
            return np.log(np.clip(pred, 1e-300, None)) - log_y
        return pred - y

    def jacobian(theta):
        j = np.asarray(jac(x, *theta), dtype=float)
        if log_space:
            j = j / np.clip(model(x, *theta), 1e-300, None)[:, None]
        return j

    try:
        with np.errstate(all="ignore"):
            res = least_squares(
                residuals,
                start,
                jac=jacobian if jac is not None else "2-point",
                bounds=(lo, hi),
                method="trf",
                loss="huber" if log_space else "linear",
                f_scale=objective.delta if log_space else 1.0,
                max_nfev=maxfev,
            )
    except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        return Solution(None, None, math.inf, str(exc))
    if res.status <= 0:
        return Solution(None, None, math.inf, f"bounded fit did not converge: {res.message}")
    pred = model(x, *res.x)
    if not np.all(np.isfinite(pred)) or not np.all(np.isfinite(res.fun)):
        return Solution(None, None, math.inf, "non-finite prediction at the optimum")
    rss = float(np.sum((pred - y) ** 2))
    objective_rss = float(np.sum(res.fun**2))
    try:
        cov = np.linalg.pinv(res.jac.T @ res.jac)
    except np.linalg.LinAlgError:
        cov = None
    pinned = tuple(int(i) for i in np.flatnonzero(_on_bound(res.x, lo, hi) | (res.active_mask != 0)))
    return Solution(res.x, _scale_cov(cov, objective_rss, len(y), len(res.x)), rss, "", pinned)


BOUND_RTOL = 1e-7  # a parameter this close to a bound of its range (relative, at least absolute) sits on it


def bound_tolerance(value):
    """How close to a bound ``value`` counts as on it: ``BOUND_RTOL`` relative, absolute below 1 (a bounded
    optimiser stops within rounding of its bound, e.g. a floor at 3e-18 for a bound of 0)."""
    return BOUND_RTOL * np.maximum(1.0, np.abs(value))


def _on_bound(theta, lo, hi) -> np.ndarray:
    tol = bound_tolerance(theta)
    return (np.isfinite(lo) & (theta - lo <= tol)) | (np.isfinite(hi) & (hi - theta <= tol))


def linear_pair(basis0, basis1, y):
    """Least-squares (c0, c1) for y ≈ c0·basis0 + c1·basis1, and the RSS."""
    design = np.column_stack([basis0, basis1])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coef, float(np.sum((design @ coef - y) ** 2))


def numeric_jacobian(fun, theta, eps=1e-6):
    theta = np.asarray(theta, dtype=float)
    base = np.asarray(fun(theta), dtype=float)
    jac = np.empty((base.size, theta.size))
    for i in range(theta.size):
        step = eps * max(1.0, abs(theta[i]))
        shifted = theta.copy()
        shifted[i] += step
        jac[:, i] = (np.asarray(fun(shifted)) - base) / step
    return jac

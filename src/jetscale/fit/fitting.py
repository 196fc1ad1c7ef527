"""Fitters for the forms in :mod:`jetscale.fit.forms` (scipy.optimize only: curve_fit / minimize).

Every fitter returns a :class:`Fit`; ``Fit.record()`` is the JSON fit record
    {"form", "params", "stderr", "ci95", "aic", "bic", "n_points", "converged", "message"}.
A fitter never raises on bad data: too few points, flat data, NaN-only input or an optimiser failure give a
record with ``converged=False`` and the reason in ``message`` (params empty, aic/bic NaN).

Conventions
- Least-squares forms (powerlaw, scurve, bnsl) minimise unweighted squared residuals in y (BNSL: in log(y+1),
  the published recipe). AIC = n ln(RSS/n) + 2k, BIC = n ln(RSS/n) + k ln n with RSS in y and k = number of
  parameters (Gaussian errors of unknown common variance), so the three forms compare on the same footing.
- Multi-start: a grid of starting points (linear parameters solved exactly at each grid point), the best few
  refined with Levenberg–Marquardt (scipy.optimize.leastsq, analytic Jacobians)
  in an unconstrained internal parametrisation (alpha = e^u, k = e^u, log10 n_c).
- Chinchilla: the Epoch AI recipe, log L = logsumexp(a − alpha ln N, b − beta ln D, e), objective = SUM of
  Huber(delta = 1e-3) on log-loss residuals, BFGS with analytic gradients from the starts of the grid
  alpha, beta ∈ {0, .5, 1, 1.5, 2}, e ∈ {−1, −.5, 0, .5, 1}, a, b ∈ {0, 5, …, 25} (4500 starts), best converged
  minimum (lowest objective; BFGS may stop with "precision loss" at a Huber kink, which still counts). For speed
  the objective is first evaluated at all 4500 starts and BFGS runs from the best 100 (on the Epoch data this
  reaches the optimum of the reference's 4500 L-BFGS-B starts, objective 0.0010182740, in ~1 s instead of ~25 s).
  AIC/BIC use the RSS of the log residuals.
- stderr: bootstrap standard deviation when ``bootstrap > 0``, else from the least-squares covariance (null for
  chinchilla). ci95: bootstrap percentile interval (2.5 %, 97.5 %), null without bootstrap.
- Bootstrap: when some x value repeats (seeds), resample the points *within* each x (bootstrap over seeds);
  otherwise resample all points with replacement (case bootstrap, as Epoch AI did). Each replicate is refitted
  from the full-data optimum.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .forms import LN10, PARAM_NAMES, bnsl, scurve_log

HUBER_DELTA = 1e-3
REFIT_MAXFEV = 400  # evaluation cap for a bootstrap replicate refitted from the full-data optimum
MIN_AIC_GAIN_OVER_CONSTANT = 2.0  # a form must beat y = const by this much AIC, else "flat data"


@dataclass
class Fit:
    form: str
    params: dict = field(default_factory=dict)
    stderr: dict | None = None
    ci95: dict | None = None
    aic: float = math.nan
    bic: float = math.nan
    n_points: int = 0
    converged: bool = False
    message: str = ""
    theta: np.ndarray | None = None  # internal parameter vector of the optimum (bootstrap starts here)
    replicates: np.ndarray | None = None  # (n_ok, n_params) bootstrap parameter values, public parametrisation

    def record(self) -> dict:
        return {
            "form": self.form,
            "params": {k: float(v) for k, v in self.params.items()},
            "stderr": None if self.stderr is None else {k: _finite_or_none(v) for k, v in self.stderr.items()},
            "ci95": None if self.ci95 is None else {k: [float(lo), float(hi)] for k, (lo, hi) in self.ci95.items()},
            "aic": _finite_or_none(self.aic),
            "bic": _finite_or_none(self.bic),
            "n_points": int(self.n_points),
            "converged": bool(self.converged),
            "message": self.message,
        }


def _finite_or_none(v):
    return float(v) if v is not None and math.isfinite(v) else None


def information_criteria(rss: float, n: int, k: int) -> tuple[float, float]:
    rss = max(float(rss), 1e-300)
    base = n * math.log(rss / n)
    return base + 2 * k, base + k * math.log(n)


# --------------------------------------------------------------------------------------------- entry point
def fit(form: str, x, y, x2=None, *, bootstrap: int = 0, seed: int = 0, min_points: int = 4) -> Fit:
    """Fit ``form`` to points (x, y) [and x2 = D for chinchilla]; never raises on bad data."""
    if form not in PARAM_NAMES:
        raise ValueError(f"unknown form {form!r}; forms: {list(PARAM_NAMES)}")
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x2 = None if x2 is None else np.asarray(x2, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if x2 is not None:
        ok &= np.isfinite(x2) & (x2 > 0)
    dropped = int((~ok).sum())
    x, y = x[ok], y[ok]
    x2 = None if x2 is None else x2[ok]
    problem = _data_problem(form, x, y, x2, min_points)
    if problem:
        return Fit(form, n_points=len(y), message=problem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = FITTERS[form](x, y, x2)
        if result.converged and bootstrap > 0:
            _bootstrap(result, x, y, x2, bootstrap, seed)
    result.n_points = len(y)
    if dropped:
        result.message = f"{dropped} non-finite or non-positive-x point(s) dropped; " + result.message
    return result


def _data_problem(form: str, x, y, x2, min_points: int) -> str | None:
    k = len(PARAM_NAMES[form])
    if form == "chinchilla":
        if x2 is None:
            return "chinchilla needs two x columns (N and D: --x and --x2)"
        need = max(min_points, k + 1)
        if len(y) < need:
            return f"too few points: {len(y)} < {need} needed for {k} parameters"
        if len(np.unique(x)) < 2 or len(np.unique(x2)) < 2:
            return "N and D must each take at least 2 distinct values"
    else:
        need = max(min_points, k + 1)
        distinct = len(np.unique(x))
        if distinct < need:
            return f"too few points: {distinct} distinct x value(s) < {need} needed for {k} parameters"
    if form == "chinchilla" and np.any(y <= 0):
        return "chinchilla fits log L: every y must be positive"
    if form == "bnsl" and np.any(y <= -1):
        return "bnsl fits log(y + 1): every y must exceed -1"
    if np.ptp(y) <= 1e-12 * max(1.0, float(np.max(np.abs(y)))):
        return "flat data: y does not vary, so no scaling parameters can be determined"
    return None


# ------------------------------------------------------------------------------------ least-squares forms
def _curve_fit(model, x, y, theta0, jac=None, maxfev=20000):
    """Levenberg–Marquardt (scipy.optimize.leastsq, the engine of curve_fit's method='lm') from ``theta0``.

    Returns (theta, covariance scaled by the residual variance as curve_fit does, RSS, message).
    """
    from scipy.optimize import leastsq

    def residuals(theta):
        return model(x, *theta) - y

    dfun = None if jac is None else (lambda theta: jac(x, *theta))
    try:
        theta, cov, _, mesg, ier = leastsq(
            residuals, np.asarray(theta0, dtype=float), Dfun=dfun, full_output=True, maxfev=maxfev
        )
    except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        return None, None, math.inf, str(exc)
    if ier not in (1, 2, 3, 4):
        return None, None, math.inf, f"optimal parameters not found: {mesg}"
    pred = model(x, *theta)
    if not np.all(np.isfinite(pred)):
        return None, None, math.inf, "non-finite prediction at the optimum"
    rss = float(np.sum((pred - y) ** 2))
    dof = len(y) - len(theta)
    if cov is None or dof <= 0:
        cov = np.full((len(theta), len(theta)), np.inf)
    else:
        cov = cov * (rss / dof)
    return theta, cov, rss, ""


def _multistart(model, x, y, starts, n_refine: int, jac=None):
    """Refine the ``n_refine`` best grid starts; return the best (theta, cov, rss, message)."""
    ranked = sorted(starts, key=lambda s: s[0])[:n_refine]
    best = (None, None, math.inf, "no start converged")
    for _, theta0 in ranked:
        cand = _curve_fit(model, x, y, theta0, jac=jac)
        if cand[0] is not None and cand[2] < best[2]:
            best = cand
        elif best[0] is None and cand[3]:
            best = (None, None, math.inf, cand[3])
    return best


def _linear_pair(basis0, basis1, y):
    """Least-squares (c0, c1) for y ≈ c0·basis0 + c1·basis1, and the RSS."""
    design = np.column_stack([basis0, basis1])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coef, float(np.sum((design @ coef - y) ** 2))


def _finish_ls(form, theta, cov, rss, msg, x, y, to_public, n_par) -> Fit:
    if theta is None:
        return Fit(form, message=f"did not converge: {msg}")
    public = to_public(theta)
    aic, bic = information_criteria(rss, len(y), n_par)
    stderr, note = None, ""
    if cov is not None and np.all(np.isfinite(cov)) and np.all(np.isfinite(public)):
        jac = _numeric_jacobian(to_public, theta)
        var = np.diag(jac @ cov @ jac.T)
        stderr = dict(zip(PARAM_NAMES[form], np.sqrt(np.clip(var, 0, None))))
    else:
        note = "covariance not finite: some parameters are not constrained by the data"
    out = Fit(
        form,
        params=dict(zip(PARAM_NAMES[form], public)),
        stderr=stderr,
        aic=aic,
        bic=bic,
        converged=True,
        message=note or "ok",
        theta=np.asarray(theta),
    )
    if not np.all(np.isfinite(public)):
        out.converged, out.message = False, "non-finite parameters at the optimum"
    elif (gain := constant_aic(y) - aic) < MIN_AIC_GAIN_OVER_CONSTANT:
        out.converged = False
        out.message = (
            f"flat data: {form} is not better than a constant (AIC gain {gain:.2f} < "
            f"{MIN_AIC_GAIN_OVER_CONSTANT}); parameters not determined"
        )
    return out


def constant_aic(y) -> float:
    """AIC of the one-parameter model y = mean(y) (the 'no trend' reference)."""
    y = np.asarray(y, dtype=float)
    return information_criteria(float(np.sum((y - y.mean()) ** 2)), len(y), 1)[0]


def _numeric_jacobian(fun, theta, eps=1e-6):
    theta = np.asarray(theta, dtype=float)
    base = np.asarray(fun(theta), dtype=float)
    jac = np.empty((base.size, theta.size))
    for i in range(theta.size):
        step = eps * max(1.0, abs(theta[i]))
        shifted = theta.copy()
        shifted[i] += step
        jac[:, i] = (np.asarray(fun(shifted)) - base) / step
    return jac


# power law ---------------------------------------------------------------------------------------------
def _powerlaw_model(x_ref):
    def model(x, y_inf, a_scaled, log_alpha):
        return y_inf + a_scaled * np.power(x / x_ref, -np.exp(log_alpha))

    def jac(x, y_inf, a_scaled, log_alpha):
        alpha = np.exp(log_alpha)
        log_ratio = np.log(x / x_ref)
        t = np.exp(-alpha * log_ratio)
        return np.column_stack([np.ones_like(x), t, -a_scaled * t * log_ratio * alpha])

    def to_public(theta):
        y_inf, a_scaled, log_alpha = theta
        # numpy (not math) so a runaway exponent gives inf -> a "non-finite parameters" record, not an exception
        with np.errstate(over="ignore", invalid="ignore"):
            alpha = np.exp(np.float64(log_alpha))
            return np.array([y_inf, a_scaled * np.power(np.float64(x_ref), alpha), alpha])

    return model, jac, to_public


def fit_powerlaw(x, y, x2=None, theta0=None) -> Fit:
    x_ref = float(np.exp(np.mean(np.log(x))))
    model, jac, to_public = _powerlaw_model(x_ref)
    if theta0 is not None:
        best = _curve_fit(model, x, y, theta0, jac=jac, maxfev=REFIT_MAXFEV)
    else:
        starts = []
        for alpha in (0.03, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0):
            (y_inf, a_scaled), rss = _linear_pair(np.ones_like(x), (x / x_ref) ** -alpha, y)
            starts.append((rss, [y_inf, a_scaled, math.log(alpha)]))
        best = _multistart(model, x, y, starts, n_refine=3, jac=jac)
    return _finish_ls("powerlaw", *best, x, y, to_public, 3)


# S-curve ------------------------------------------------------------------------------------------------
def _scurve_model(x, floor, ceiling, log10_n_c, log_k):
    return scurve_log(x, floor, ceiling, log10_n_c, np.exp(log_k))


def _scurve_jac(x, floor, ceiling, log10_n_c, log_k):
    from scipy.special import expit

    k = np.exp(log_k)
    dlx = np.log10(x) - log10_n_c
    s = expit(-LN10 * k * dlx)
    common = (ceiling - floor) * LN10 * s * (1 - s)
    return np.column_stack([1 - s, s, common * k, -common * k * dlx])


def _scurve_public(theta):
    floor, ceiling, log10_n_c, log_k = theta
    with np.errstate(over="ignore"):
        return np.array([floor, ceiling, np.power(10.0, np.float64(log10_n_c)), np.exp(np.float64(log_k))])


def fit_scurve(x, y, x2=None, theta0=None) -> Fit:
    if theta0 is not None:
        best = _curve_fit(_scurve_model, x, y, theta0, jac=_scurve_jac, maxfev=REFIT_MAXFEV)
    else:
        lx = np.log10(x)
        starts = []
        for log_nc in np.linspace(lx.min(), lx.max(), 9):
            for k in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
                s = 1.0 / (1.0 + 10.0 ** np.clip(k * (lx - log_nc), -300, 300))
                (floor, ceil_minus_floor), rss = _linear_pair(np.ones_like(x), s, y)
                starts.append((rss, [floor, floor + ceil_minus_floor, log_nc, math.log(k)]))
        best = _multistart(_scurve_model, x, y, starts, n_refine=4, jac=_scurve_jac)
    out = _finish_ls("scurve", *best, x, y, _scurve_public, 4)
    if out.converged:
        log_nc = math.log10(out.params["n_c"])
        lo, hi = math.log10(x.min()), math.log10(x.max())
        if not lo <= log_nc <= hi:
            out.message = f"n_c = {out.params['n_c']:.4g} lies outside the data range [{x.min():.4g}, {x.max():.4g}]"
    return out


# BNSL ---------------------------------------------------------------------------------------------------
def _bnsl_log(x, a, b, c0, c1, d1, f1):
    return np.log(bnsl(x, a, b, c0, c1, d1, f1) + 1)


def bnsl_grid_search(x, y, extra_d1=()) -> np.ndarray:
    """The published BNSL brute-force start: grid minimum of the MSLE on log(y+1).

    Grid (scipy.optimize.brute slices, end excluded): a 0:1:.1, b' 0:40:2.5, c0 0:1:.25, c1 0:1:.25,
    d1' 0:40:2.5, f1 0:1:.25 with b = 1.25**b' − 1 + 1e-8 and d1 = 1.25**d1' − 1 + 1e-8; ``extra_d1`` adds
    break positions (so data far from the published x range get a break candidate inside their range).
    """
    a = np.arange(0.0, 1.0, 0.1)
    b = 1.25 ** np.arange(0.0, 40.0, 2.5) - 1 + 1e-8
    quarter = np.arange(0.0, 1.0, 0.25)
    d1 = np.concatenate([1.25 ** np.arange(0.0, 40.0, 2.5) - 1 + 1e-8, np.asarray(extra_d1, dtype=float)])
    target = np.log(y + 1)
    best_val, best = math.inf, None
    with np.errstate(all="ignore"):
        # broadcast over (c0, c1, d1, f1) for each (a, b): arrays of shape (4, 4, n_d1, 4, n_x)
        c0g, c1g, d1g, f1g = np.meshgrid(quarter, quarter, d1, quarter, indexing="ij")
        shape_term = x ** (-c0g[..., None]) * (1 + (x / d1g[..., None]) ** (1 / f1g[..., None])) ** (
            -c1g[..., None] * f1g[..., None]
        )
        for ai, bi in itertools.product(a, b):
            msle = np.mean((np.log(ai + bi * shape_term + 1) - target) ** 2, axis=-1)
            msle = np.where(np.isnan(msle), np.inf, msle)
            idx = np.unravel_index(np.argmin(msle), msle.shape)
            if msle[idx] < best_val:
                best_val = msle[idx]
                best = np.array([ai, bi, c0g[idx], c1g[idx], d1g[idx], f1g[idx]])
    return best


def fit_bnsl(x, y, x2=None, theta0=None) -> Fit:
    if theta0 is None:
        extra = () if x.max() < 1000 else np.geomspace(x.min(), x.max(), 8)
        theta0 = bnsl_grid_search(x, y, extra_d1=extra)
    theta, cov, _, msg = _curve_fit(_bnsl_log, x, np.log(y + 1), theta0)
    rss = math.inf if theta is None else float(np.sum((bnsl(x, *theta) - y) ** 2))
    return _finish_ls("bnsl", theta, cov, rss, msg, x, y, np.asarray, 6)


# Chinchilla ---------------------------------------------------------------------------------------------
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
        return Fit("chinchilla", message="did not converge: no start reached a minimum")
    theta = best.x
    pred_log = np.log(_chinchilla_predict(theta, n, d))
    aic, bic = information_criteria(float(np.sum((pred_log - args[2]) ** 2)), len(y), 5)
    public = _chinchilla_public(theta) if np.all(np.abs(theta[:3]) < 700) else np.full(5, np.nan)
    out = Fit(
        "chinchilla",
        params=dict(zip(PARAM_NAMES["chinchilla"], public)),
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


FITTERS = {
    "powerlaw": fit_powerlaw,
    "scurve": fit_scurve,
    "bnsl": fit_bnsl,
    "chinchilla": lambda x, y, x2, theta0=None: fit_chinchilla(x, y, x2, theta0),
}


def refit(form: str, x, y, x2, theta0) -> Fit:
    """One fit from a given internal start (bootstrap replicates)."""
    return FITTERS[form](x, y, x2, theta0=theta0)


# --------------------------------------------------------------------------------------------- bootstrap
def resample_indices(x, x2, rng) -> np.ndarray:
    """Bootstrap indices: within each distinct x (or (N, D)) when some repeat, else over all points."""
    keys = x if x2 is None else np.stack([x, x2], axis=1)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    group = np.asarray(group).ravel()
    if len(np.unique(group)) == len(group):
        return rng.integers(0, len(group), len(group))
    out = []
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        out.append(rng.choice(members, size=len(members), replace=True))
    return np.concatenate(out)


def _bootstrap(result: Fit, x, y, x2, n_boot: int, seed: int) -> None:
    paired_bootstrap([result], x, y, x2, n_boot, seed)


def paired_bootstrap(fits: list[Fit], x, y, x2, n_boot: int, seed: int) -> np.ndarray:
    """Refit every converged fit on the same ``n_boot`` resamples; fill stderr/ci95/replicates in place.

    Returns the (n_boot, len(fits)) array of replicate AICs (NaN where a replicate did not converge).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _paired_bootstrap(fits, x, y, x2, n_boot, seed)


def _paired_bootstrap(fits: list[Fit], x, y, x2, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = [[] for _ in fits]
    aics = np.full((n_boot, len(fits)), np.nan)
    for b in range(n_boot):
        idx = resample_indices(x, x2, rng)
        for i, result in enumerate(fits):
            if not result.converged:
                continue
            rep = refit(result.form, x[idx], y[idx], None if x2 is None else x2[idx], result.theta)
            if rep.converged and all(math.isfinite(v) for v in rep.params.values()):
                values[i].append(list(rep.params.values()))
                aics[b, i] = rep.aic
    for result, vals in zip(fits, values):
        if result.converged:
            _summarise_replicates(result, vals, n_boot)
    return aics


def _summarise_replicates(result: Fit, values: list, n_boot: int) -> None:
    names = PARAM_NAMES[result.form]
    if len(values) < max(2, n_boot // 2):
        result.message += f"; bootstrap: only {len(values)}/{n_boot} replicates converged, no CIs"
        return
    arr = np.array(values)
    result.replicates = arr
    result.stderr = dict(zip(names, arr.std(axis=0, ddof=1)))
    lo, hi = np.percentile(arr, [2.5, 97.5], axis=0)
    result.ci95 = {k: (low, high) for k, low, high in zip(names, lo, hi)}
    result.message += f"; bootstrap: {len(values)}/{n_boot} replicates"

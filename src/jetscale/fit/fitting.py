"""Fitters for the forms in :mod:`jetscale.fit.forms` (scipy.optimize only: curve_fit / minimize).

Every fitter returns a :class:`Fit`; ``Fit.record()`` is the JSON fit record
    {"form", "params", "stderr", "ci95", "aic", "bic", "n_points", "converged", "status", "message"}.
``status`` (:mod:`jetscale.fit.status`): ok, unconstrained, failed or not applicable. Every parameter is held to
its physical range (:class:`jetscale.fit.forms.Domain`: floors, ceilings and asymptotes inside the fitted
quantity's range, positive exponents; :mod:`jetscale.fit.solver` refits within the bounds where the free
optimum leaves them).
A fitter never raises on bad data: too few points, flat data, NaN-only input or an optimiser failure give a
record with ``converged=False`` and the reason in ``message`` (params empty, aic/bic NaN).

Conventions
- Least-squares forms (powerlaw, scurve, bnsl) minimise unweighted squared residuals in y (BNSL: in log(y+1),
  the published recipe, whatever the objective). BNSL is ``not applicable`` where its six parameters meet
  fewer than seven sizes or where it does not beat the power law by ΔAIC ≥ 2 (no break in the data).
  AIC = n ln(RSS/n) + 2k, BIC = n ln(RSS/n) + k ln n with RSS in y and k = number of
  parameters (Gaussian errors of unknown common variance), so the three forms compare on the same footing.
- Multi-start: a grid of starting points (linear parameters solved exactly at each grid point), the best few
  refined with Levenberg–Marquardt (scipy.optimize.leastsq, analytic Jacobians) in an internal
  parametrisation (alpha = e^u, k = e^u, log10 n_c), bounded trust-region where the optimum is unphysical
  (:mod:`jetscale.fit.solver`; ``objective=Objective("huber_log")``: Huber loss on log residuals instead).
- A form without a specialised fitter (``FormSpec.fitter`` None) gets the generic one: its ``starts``
  ranked by RSS, the best three refined within its bounds (numeric Jacobian).
- Chinchilla (:mod:`jetscale.fit.chinchilla`): the Epoch AI recipe, log L = logsumexp(a − alpha ln N,
  b − beta ln D, e), objective = SUM of Huber(delta = 1e-3) on log-loss residuals, BFGS with analytic
  gradients from the starts of the grid alpha, beta ∈ {0, .5, 1, 1.5, 2}, e ∈ {−1, −.5, 0, .5, 1},
  a, b ∈ {0, 5, …, 25} (4500 starts), best converged minimum (lowest objective; BFGS may stop with "precision
  loss" at a Huber kink, which still counts). For speed the objective is first evaluated at all 4500 starts and
  BFGS runs from the best 100 (on the Epoch data this reaches the optimum of the reference's 4500 L-BFGS-B
  starts, objective 0.0010182740, in ~1 s instead of ~25 s). AIC/BIC use the RSS of the log residuals.
- stderr: bootstrap standard deviation when ``bootstrap > 0``, else from the least-squares covariance (null for
  chinchilla). ci95: bootstrap percentile interval (2.5 %, 97.5 %), null without bootstrap.
- Bootstrap: when some x value repeats (seeds), resample the points *within* each x (bootstrap over seeds);
  otherwise resample all points with replacement (case bootstrap, as Epoch AI did). Each replicate is refitted
  from the full-data optimum.
"""

from __future__ import annotations

import importlib
import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import forms
from .forms import FREE, LN10, Domain, bnsl, scurve_log, transition_resolved
from .solver import SQUARES, Objective, linear_pair, multistart, numeric_jacobian, solve
from .status import FLAT_PREFIX, NOT_APPLICABLE, judge

REFIT_MAXFEV = 400  # evaluation cap for a bootstrap replicate refitted from the full-data optimum
MIN_AIC_GAIN_OVER_CONSTANT = 2.0  # a form must beat y = const by this much AIC, else "flat data"
BNSL_MIN_AIC_GAIN = 2.0  # BNSL must beat the power law by this much AIC, else "not applicable" (no break)


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
    status: str = "failed"
    pinned: tuple[str, ...] = ()  # parameters left on a bound of their range
    bounds: tuple | None = None  # public (lo, hi) arrays the fit was held to (bootstrap refits reuse them)
    objective: Objective = SQUARES
    unobserved: str = ""  # a scale the data place outside their own range (an S-curve's n_c): not measured

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
            "status": self.status,
            "message": self.message,
        }


def _finite_or_none(v):
    return float(v) if v is not None and math.isfinite(v) else None


def information_criteria(rss: float, n: int, k: int) -> tuple[float, float]:
    rss = max(float(rss), 1e-300)
    base = n * math.log(rss / n)
    return base + 2 * k, base + k * math.log(n)


# --------------------------------------------------------------------------------------------- entry point
def fit(
    form: str,
    x,
    y,
    x2=None,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    min_points: int = 4,
    domain: Domain = FREE,
    objective: Objective = SQUARES,
) -> Fit:
    """Fit ``form`` to points (x, y) [and x2 = D for chinchilla] within ``domain``; never raises on bad data."""
    spec = forms.get(form)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x2 = None if x2 is None else np.asarray(x2, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if x2 is not None:
        ok &= np.isfinite(x2) & (x2 > 0)
    if objective.loss == "huber_log":
        ok &= y > 0
    dropped = int((~ok).sum())
    x, y = x[ok], y[ok]
    x2 = None if x2 is None else x2[ok]
    problem = _data_problem(spec, x, y, x2, min_points)
    if problem:
        result = Fit(form, n_points=len(y), message=problem)
        if spec.premise and problem.startswith("too few points"):
            result.status, result.message = (
                NOT_APPLICABLE,
                f"not applicable ({spec.premise} needs more sizes): {problem}",
            )
    else:
        bounds = spec.public_bounds(domain, x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fitter_of(spec)(x, y, x2, bounds=bounds, objective=objective)
            result.bounds, result.objective = bounds, objective
            if result.converged and bootstrap > 0:
                _bootstrap(result, x, y, x2, bootstrap, seed)
        result.n_points = len(y)
    result.status, why = judge(result, spec, domain)
    if why:
        result.message = f"{result.message}; unconstrained: {why}"
    if dropped:
        what = (
            "non-finite, non-positive-x or (huber_log) non-positive-y"
            if objective.loss == "huber_log"
            else ("non-finite or non-positive-x")
        )
        result.message = f"{dropped} {what} point(s) dropped; " + result.message
    return result


def rejudge(result: Fit, domain: Domain | None) -> None:
    """Judge ``result`` again after intervals were added to it (a shared bootstrap)."""
    spec = forms.get(result.form)
    base = result.message.split("; unconstrained: ")[0]
    result.message = base
    if result.status != NOT_APPLICABLE:
        result.status = "failed"
    result.status, why = judge(result, spec, domain or FREE)
    if why:
        result.message = f"{base}; unconstrained: {why}"


def fitter_of(spec):
    """The form's fitter: (x, y, x2, theta0=None, *, bounds, objective) -> Fit."""
    if spec.fitter is None:
        return lambda x, y, x2, theta0=None, **kw: fit_generic(spec, x, y, x2, theta0, **kw)
    module, _, name = spec.fitter.partition(":")
    return getattr(importlib.import_module(module), name)


def _data_problem(spec, x, y, x2, min_points: int) -> str | None:
    k = len(spec.params)
    need = max(min_points, k + 1)
    if spec.n_x == 2:
        if x2 is None:
            return f"{spec.name} needs two x columns (N and D: --x and --x2)"
        if len(y) < need:
            return f"too few points: {len(y)} < {need} needed for {k} parameters"
        if len(np.unique(x)) < 2 or len(np.unique(x2)) < 2:
            return "N and D must each take at least 2 distinct values"
    else:
        distinct = len(np.unique(x))
        if distinct < need:
            return f"too few points: {distinct} distinct x value(s) < {need} needed for {k} parameters"
    if spec.name == "chinchilla" and np.any(y <= 0):
        return "chinchilla fits log L: every y must be positive"
    if spec.name == "bnsl" and np.any(y <= -1):
        return "bnsl fits log(y + 1): every y must exceed -1"
    if np.ptp(y) <= 1e-12 * max(1.0, float(np.max(np.abs(y)))):
        return f"{FLAT_PREFIX}: y does not vary, so no scaling parameters can be determined"
    return None


# ------------------------------------------------------------------------------------ least-squares forms
def _finish_ls(form, sol, x, y, to_public) -> Fit:
    names = forms.get(form).params
    if sol.theta is None:
        return Fit(form, message=f"did not converge: {sol.message}")
    theta, cov = sol.theta, sol.cov
    public = to_public(theta)
    aic, bic = information_criteria(sol.rss, len(y), len(names))
    stderr, note = None, ""
    if cov is not None and np.all(np.isfinite(cov)) and np.all(np.isfinite(public)):
        jac = numeric_jacobian(to_public, theta)
        var = np.diag(jac @ cov @ jac.T)
        stderr = dict(zip(names, np.sqrt(np.clip(var, 0, None))))
    else:
        note = "covariance not finite: some parameters are not constrained by the data"
    out = Fit(
        form,
        params=dict(zip(names, public)),
        stderr=stderr,
        aic=aic,
        bic=bic,
        converged=True,
        message=note or "ok",
        theta=np.asarray(theta),
        pinned=tuple(names[i] for i in sol.pinned),
    )
    if not np.all(np.isfinite(public)):
        out.converged, out.message = False, "non-finite parameters at the optimum"
    elif (gain := constant_aic(y) - aic) < MIN_AIC_GAIN_OVER_CONSTANT:
        out.converged = False
        out.message = (
            f"{FLAT_PREFIX}: {form} is not better than a constant (AIC gain {gain:.2f} < "
            f"{MIN_AIC_GAIN_OVER_CONSTANT}); parameters not determined"
        )
    return out


def constant_aic(y) -> float:
    """AIC of the one-parameter model y = mean(y) (the 'no trend' reference)."""
    y = np.asarray(y, dtype=float)
    return information_criteria(float(np.sum((y - y.mean()) ** 2)), len(y), 1)[0]


def _finite_log(values, base=math.e):
    """Elementwise log for bounds (−inf for 0 or below, inf stays inf)."""
    values = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(values) / math.log(base)
    return np.where(values > 0, out, -np.inf)


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


def _internal_powerlaw_bounds(bounds):
    lo, hi = bounds
    # A and a_scaled = A / x_ref^alpha share their sign, so the sign bound carries over; alpha -> ln alpha
    return np.array([lo[0], lo[1], _finite_log(lo[2])]), np.array([hi[0], hi[1], _finite_log(hi[2])])


def fit_powerlaw(x, y, x2=None, theta0=None, *, bounds=None, objective=SQUARES) -> Fit:
    x_ref = float(np.exp(np.mean(np.log(x))))
    model, jac, to_public = _powerlaw_model(x_ref)
    lo, hi = _internal_powerlaw_bounds(bounds) if bounds is not None else (None, None)
    if theta0 is not None:
        sol = solve(model, x, y, theta0, jac=jac, lo=lo, hi=hi, objective=objective, maxfev=REFIT_MAXFEV)
    else:
        starts = []
        for alpha in (0.03, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0):
            (y_inf, a_scaled), rss = linear_pair(np.ones_like(x), (x / x_ref) ** -alpha, y)
            starts.append((rss, [y_inf, a_scaled, math.log(alpha)]))
        sol = multistart(model, x, y, starts, n_refine=3, jac=jac, lo=lo, hi=hi, objective=objective)
    return _finish_ls("powerlaw", sol, x, y, to_public)


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


def _internal_scurve_bounds(bounds):
    lo, hi = bounds
    return (
        np.array([lo[0], lo[1], _finite_log(lo[2], 10), _finite_log(lo[3])]),
        np.array([hi[0], hi[1], _finite_log(hi[2], 10), _finite_log(hi[3])]),
    )


def fit_scurve(x, y, x2=None, theta0=None, *, bounds=None, objective=SQUARES) -> Fit:
    lo, hi = _internal_scurve_bounds(bounds) if bounds is not None else (None, None)
    kw = {"jac": _scurve_jac, "lo": lo, "hi": hi, "objective": objective}
    if theta0 is not None:
        sol = solve(_scurve_model, x, y, theta0, maxfev=REFIT_MAXFEV, **kw)
    else:
        lx = np.log10(x)
        starts = []
        for log_nc in np.linspace(lx.min(), lx.max(), 9):
            for k in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
                s = 1.0 / (1.0 + 10.0 ** np.clip(k * (lx - log_nc), -300, 300))
                (floor, ceil_minus_floor), rss = linear_pair(np.ones_like(x), s, y)
                starts.append((rss, [floor, floor + ceil_minus_floor, log_nc, math.log(k)]))
        sol = multistart(_scurve_model, x, y, starts, n_refine=4, **kw)
    out = _finish_ls("scurve", sol, x, y, _scurve_public)
    if out.converged:
        log_nc = math.log10(out.params["n_c"])
        lo_x, hi_x = math.log10(x.min()), math.log10(x.max())
        if not lo_x <= log_nc <= hi_x:
            out.message = f"n_c = {out.params['n_c']:.4g} lies outside the data range [{x.min():.4g}, {x.max():.4g}]"
            out.unobserved = "n_c outside the measured sizes (the transition itself is not observed)"
        elif not transition_resolved(x, out.params["n_c"], out.params["k"]):
            out.message = out.unobserved = (
                "a step the measured sizes do not resolve (its 10-90 % transition spans less than half the gap "
                "between the sizes around it)"
            )
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


def fit_bnsl(x, y, x2=None, theta0=None, *, bounds=None, objective=SQUARES) -> Fit:
    """BNSL on log(y + 1) (the published objective, whatever ``objective`` says), from the published grid start
    plus break positions inside the data range; ``not applicable`` where the power law does as well."""
    lo, hi = bounds if bounds is not None else (None, None)
    target = np.log(y + 1)
    if theta0 is not None:
        sol = solve(_bnsl_log, x, target, theta0, lo=lo, hi=hi, maxfev=REFIT_MAXFEV)
    else:
        extra = () if x.max() < 1000 else np.geomspace(x.min(), x.max(), 8)
        start = bnsl_grid_search(x, y, extra_d1=extra)
        sol = solve(_bnsl_log, x, target, start, lo=lo, hi=hi)
    if sol.theta is not None:
        sol.rss = float(np.sum((bnsl(x, *sol.theta) - y) ** 2))
    out = _finish_ls("bnsl", sol, x, y, np.asarray)
    if theta0 is None and out.converged:
        pl = fit_powerlaw(x, y, bounds=None if bounds is None else _bnsl_to_powerlaw_bounds(bounds))
        if pl.converged and pl.aic - out.aic < BNSL_MIN_AIC_GAIN:
            out.status = NOT_APPLICABLE
            out.message = (
                f"not applicable: no break in the data (AIC of the power law − BNSL = {pl.aic - out.aic:.2f} "
                f"< {BNSL_MIN_AIC_GAIN:g})"
            )
    return out


def _bnsl_to_powerlaw_bounds(bounds):
    lo, hi = bounds
    return (np.array([lo[0], 0.0, forms.ALPHA_BOUNDS[0]]), np.array([hi[0], np.inf, forms.ALPHA_BOUNDS[1]]))


# generic (forms without a specialised fitter) --------------------------------------------------------------
def fit_generic(spec, x, y, x2=None, theta0=None, *, bounds=None, objective=SQUARES) -> Fit:
    lo, hi = bounds if bounds is not None else (None, None)

    def model(xx, *theta):
        return np.asarray(spec.function(xx, *theta), dtype=float)

    if theta0 is not None:
        sol = solve(model, x, y, theta0, lo=lo, hi=hi, objective=objective, maxfev=REFIT_MAXFEV)
    else:
        starts = []
        for start in spec.starts(x, y):
            start = np.asarray(start, dtype=float)
            if lo is not None:
                start = np.clip(start, lo, hi)
            with np.errstate(all="ignore"):
                rss = float(np.sum((model(x, *start) - y) ** 2))
            starts.append((rss if math.isfinite(rss) else math.inf, start))
        sol = multistart(model, x, y, starts, n_refine=3, lo=lo, hi=hi, objective=objective)
    return _finish_ls(spec.name, sol, x, y, np.asarray)


def refit(result: Fit, x, y, x2) -> Fit:
    """One fit from the internal optimum of ``result``, within its bounds (bootstrap replicates)."""
    spec = forms.get(result.form)
    return fitter_of(spec)(x, y, x2, result.theta, bounds=result.bounds, objective=result.objective)


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
            rep = refit(result, x[idx], y[idx], None if x2 is None else x2[idx])
            if rep.converged and all(math.isfinite(v) for v in rep.params.values()):
                values[i].append(list(rep.params.values()))
                aics[b, i] = rep.aic
    for result, vals in zip(fits, values):
        if result.converged:
            _summarise_replicates(result, vals, n_boot)
    return aics


def _summarise_replicates(result: Fit, values: list, n_boot: int) -> None:
    names = forms.get(result.form).params
    if len(values) < max(2, n_boot // 2):
        result.message += f"; bootstrap: only {len(values)}/{n_boot} replicates converged, no CIs"
        return
    arr = np.array(values)
    result.replicates = arr
    result.stderr = dict(zip(names, arr.std(axis=0, ddof=1)))
    lo, hi = np.percentile(arr, [2.5, 97.5], axis=0)
    result.ci95 = {k: (low, high) for k, low, high in zip(names, lo, hi)}
    result.message += f"; bootstrap: {len(values)}/{n_boot} replicates"

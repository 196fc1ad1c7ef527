"""Is there a threshold? Power law vs S-curve on the same points, by AIC/BIC and a bootstrap over seeds.

Verdict rules (constants below):
- "threshold": the S-curve beats the power law by ΔAIC ≥ 6 *and* ΔBIC ≥ 6 on the full data (Δ = power law −
  S-curve; 6 ≈ a likelihood ratio of 20), it has the lower AIC in ≥ 90 % of the bootstrap replicates
  (resampling seeds within each n_train), and its midpoint n_c lies inside the measured n_train range. Only then
  is n_c reported, with the bootstrap 95 % percentile interval.
- "power law": the power law has the lower (or equal) AIC.
- "inconclusive": the S-curve has the lower AIC but not clearly (any of the conditions above fails).
- "unconstrained": the power law wins (or is the only optimum) but its status is not ok, or neither form has
  an optimum and one is unconstrained (a flat series: :mod:`jetscale.fit.status`).
- "no fit": neither form converged (too few points, ...); the reasons are in the fit records.
AIC compares every optimum, but only an S-curve with status ok makes a threshold (else "inconclusive"), and
only a power law with status ok a "power law" verdict.
"""

from __future__ import annotations

import numpy as np

from .fitting import Fit, fit, paired_bootstrap
from .forms import SMOOTH, THRESHOLD
from .status import OK, UNCONSTRAINED

DELTA_AIC_MIN = 6.0
DELTA_BIC_MIN = 6.0
BOOT_FRACTION_MIN = 0.9
RULE = (
    f"threshold iff dAIC >= {DELTA_AIC_MIN:g} and dBIC >= {DELTA_BIC_MIN:g} (power law - S-curve), S-curve AIC lower "
    f"in >= {BOOT_FRACTION_MIN:.0%} of bootstrap-over-seeds replicates, and n_c inside the n_train range"
)


def fit_and_compare(
    x, y, forms=(SMOOTH, THRESHOLD), *, bootstrap: int = 200, seed: int = 0, min_points: int = 4, **fit_options
) -> tuple[dict[str, Fit], dict]:
    """Fit each form, bootstrap them on shared resamples, and decide power law vs S-curve.

    ``fit_options``: ``domain`` and ``objective`` of :func:`jetscale.fit.fitting.fit`. Each fit's status is
    judged after the shared bootstrap (its intervals enter it)."""
    from .fitting import rejudge

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    fits = {form: fit(form, x, y, min_points=min_points, **fit_options) for form in forms}
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if fit_options.get("objective") is not None and fit_options["objective"].loss == "huber_log":
        ok &= y > 0
    aics = None
    if bootstrap > 0 and any(f.converged for f in fits.values()):
        aics = paired_bootstrap(list(fits.values()), x[ok], y[ok], None, bootstrap, seed)
        for result in fits.values():
            rejudge(result, fit_options.get("domain"))
    return fits, decide(fits, aics, list(fits), x[ok])


def decide(fits: dict[str, Fit], aics, order: list[str], x) -> dict:
    pl, sc = fits.get(SMOOTH), fits.get(THRESHOLD)
    out = {
        "verdict": "no fit",
        "delta_aic": None,
        "delta_bic": None,
        "bootstrap_fraction_scurve": None,
        "n_c": None,
        "n_c_ci95": None,
        "n_c_note": None,
        "rule": RULE,
    }
    pl_fit, sc_fit = bool(pl and pl.converged), bool(sc and sc.converged)  # an optimum with an AIC
    smooth = "power law" if pl_fit and pl.status == OK else UNCONSTRAINED  # the verdict when the power law wins
    if not (pl_fit or sc_fit):
        if any(f is not None and f.status == UNCONSTRAINED for f in (pl, sc)):
            out["verdict"] = UNCONSTRAINED
        return out
    if pl_fit and not sc_fit:
        out["verdict"] = smooth
        return out
    if sc_fit and not pl_fit:
        out["verdict"] = "inconclusive"
        return out
    d_aic, d_bic = pl.aic - sc.aic, pl.bic - sc.bic
    out.update(delta_aic=d_aic, delta_bic=d_bic)
    frac = None
    if aics is not None:
        i_pl, i_sc = order.index(SMOOTH), order.index(THRESHOLD)
        both = np.isfinite(aics[:, i_pl]) & np.isfinite(aics[:, i_sc])
        if both.any():
            frac = float(np.mean(aics[both, i_sc] < aics[both, i_pl]))
    out["bootstrap_fraction_scurve"] = frac
    n_c = sc.params["n_c"]
    inside = float(np.min(x)) <= n_c <= float(np.max(x))
    clear = d_aic >= DELTA_AIC_MIN and d_bic >= DELTA_BIC_MIN and frac is not None and frac >= BOOT_FRACTION_MIN
    if d_aic <= 0:
        out["verdict"] = smooth
    elif clear and inside and sc.status == OK:
        out["verdict"] = "threshold"
        out["n_c"] = n_c
        if sc.ci95 is not None:
            out["n_c_ci95"] = list(sc.ci95["n_c"])
        out["n_c_ci95"], out["n_c_note"] = widen_unresolved_ci(n_c, sc.params["k"], x, out["n_c_ci95"])
    else:
        out["verdict"] = "inconclusive"
    return out


def widen_unresolved_ci(n_c: float, k: float, x, ci):
    """A transition sharper than the n_train spacing only locates n_c between the two measured sizes around it.

    Then every n_c in that gap fits (almost) equally well, and the bootstrap can collapse onto the optimiser's
    start value; the honest interval contains the whole gap. The logistic's 10-90 % rise spans log10(81)/k
    decades (k per decade). Returns (ci, note).
    """
    xs = np.unique(np.asarray(x, dtype=float))
    below, above = xs[xs <= n_c], xs[xs >= n_c]
    if not (below.size and above.size) or not k > 0:
        return ci, None
    lo, hi = float(below.max()), float(above.min())
    if np.log10(81.0) / k >= np.log10(hi) - np.log10(lo):
        return ci, None
    lo_ci, hi_ci = (lo, hi) if ci is None else (min(ci[0], lo), max(ci[1], hi))
    return [lo_ci, hi_ci], f"transition sharper than the n_train spacing: n_c is only bracketed by {lo:g} and {hi:g}"

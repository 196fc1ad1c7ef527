"""Is there a threshold? Power law vs S-curve on the same points, by AIC/BIC and a bootstrap over seeds.

Verdict rules (constants below):
- "threshold": the S-curve beats the power law by ΔAIC ≥ 6 *and* ΔBIC ≥ 6 on the full data (Δ = power law −
  S-curve; 6 ≈ a likelihood ratio of 20), it has the lower AIC in ≥ 90 % of the bootstrap replicates
  (resampling seeds within each n_train), and its midpoint n_c lies inside the measured n_train range. Only then
  is n_c reported, with the bootstrap 95 % percentile interval.
- "power law": the power law has the lower (or equal) AIC.
- "inconclusive": the S-curve has the lower AIC but not clearly (any of the conditions above fails).
- "no fit": neither form converged (too few points, flat data, ...); the reasons are in the fit records.
"""

from __future__ import annotations

import numpy as np

from .fitting import Fit, fit, paired_bootstrap

DELTA_AIC_MIN = 6.0
DELTA_BIC_MIN = 6.0
BOOT_FRACTION_MIN = 0.9
RULE = (
    f"threshold iff dAIC >= {DELTA_AIC_MIN:g} and dBIC >= {DELTA_BIC_MIN:g} (power law - S-curve), S-curve AIC lower "
    f"in >= {BOOT_FRACTION_MIN:.0%} of bootstrap-over-seeds replicates, and n_c inside the n_train range"
)


def fit_and_compare(
    x, y, forms=("powerlaw", "scurve"), *, bootstrap: int = 200, seed: int = 0, min_points: int = 4
) -> tuple[dict[str, Fit], dict]:
    """Fit each form, bootstrap them on shared resamples, and decide power law vs S-curve."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    fits = {form: fit(form, x, y, min_points=min_points) for form in forms}
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    aics = None
    if bootstrap > 0 and any(f.converged for f in fits.values()):
        aics = paired_bootstrap(list(fits.values()), x[ok], y[ok], None, bootstrap, seed)
    return fits, decide(fits, aics, list(fits), x[ok])


def decide(fits: dict[str, Fit], aics, order: list[str], x) -> dict:
    pl, sc = fits.get("powerlaw"), fits.get("scurve")
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
    pl_ok, sc_ok = bool(pl and pl.converged), bool(sc and sc.converged)
    if not (pl_ok or sc_ok):
        return out
    if pl_ok and not sc_ok:
        out["verdict"] = "power law"
        return out
    if sc_ok and not pl_ok:
        out["verdict"] = "inconclusive"
        return out
    d_aic, d_bic = pl.aic - sc.aic, pl.bic - sc.bic
    out.update(delta_aic=d_aic, delta_bic=d_bic)
    frac = None
    if aics is not None:
        i_pl, i_sc = order.index("powerlaw"), order.index("scurve")
        both = np.isfinite(aics[:, i_pl]) & np.isfinite(aics[:, i_sc])
        if both.any():
            frac = float(np.mean(aics[both, i_sc] < aics[both, i_pl]))
    out["bootstrap_fraction_scurve"] = frac
    n_c = sc.params["n_c"]
    inside = float(np.min(x)) <= n_c <= float(np.max(x))
    if d_aic <= 0:
        out["verdict"] = "power law"
    elif (
        d_aic >= DELTA_AIC_MIN and d_bic >= DELTA_BIC_MIN and frac is not None and frac >= BOOT_FRACTION_MIN and inside
    ):
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

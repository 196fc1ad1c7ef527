"""Is a fit usable? ``ok``, ``unconstrained``, ``failed`` or ``not applicable`` (the ``status`` of a fit record).

- failed: no optimum (too few points, an optimiser failure, non-finite parameters).
- not applicable: the form's premise does not hold for these data (BNSL where the data show no break or have
  too few sizes for its six parameters); the reason is in the message.
- unconstrained: an optimum exists but the data do not determine it: a flat series (the form is no better
  than a constant), a parameter pinned at a bound of its physical range, a 95 % interval of a scale parameter
  (n_c, A) spanning more than two decades (or reaching zero), a floor whose interval reaches an end of the range
  or beyond (the bootstrap replicates are bounded too, so an interval that needs the bound ends on it),
  an S-curve midpoint n_c outside the measured sizes (a transition at or beyond the last point is located by
  that point alone), an S-curve whose 10-90 % transition spans less than half the gap (log axis) between
  the sizes around it (a step the sizes do not resolve, with or without a size on it), or a
  covariance at the optimum that is not finite (even where bootstrap replicates, all landing on the same step,
  agree). An unconstrained fit is drawn dotted (or not at all)
  and never used for forecasts or backtests.
- ok: everything else.

Intervals are the bootstrap 95 % percentile intervals where the fit was bootstrapped, else ±1.96 standard errors
from the covariance.
"""

from __future__ import annotations

import math

from .solver import bound_tolerance

OK, UNCONSTRAINED, FAILED, NOT_APPLICABLE = "ok", "unconstrained", "failed", "not applicable"
STATUSES = (OK, UNCONSTRAINED, FAILED, NOT_APPLICABLE)
MAX_DECADES = 2.0
FLAT_PREFIX = "flat data"
Z95 = 1.96


def interval(fit, name: str) -> tuple[float, float] | None:
    """95 % interval of a parameter: bootstrap percentiles, else ±1.96 σ; None when neither exists."""
    if fit.ci95 and name in fit.ci95:
        lo, hi = fit.ci95[name]
        return float(lo), float(hi)
    if fit.stderr and name in fit.stderr and fit.stderr[name] is not None:
        value, err = fit.params[name], fit.stderr[name]
        if math.isfinite(err):
            return value - Z95 * err, value + Z95 * err
    return None


def decades(lo: float, hi: float) -> float:
    if not (lo > 0 and hi > 0) or not (math.isfinite(lo) and math.isfinite(hi)):
        return math.inf
    return math.log10(hi / lo)


def judge(fit, spec, domain) -> tuple[str, str]:
    """(status, reason) of a fit of form ``spec`` to a quantity with physical range ``domain``."""
    if fit.status == NOT_APPLICABLE:
        return NOT_APPLICABLE, ""
    if not fit.converged:
        return (UNCONSTRAINED, "") if fit.message.startswith(FLAT_PREFIX) else (FAILED, "")
    reasons = []
    if fit.unobserved:
        reasons.append(fit.unobserved)
    if fit.pinned:
        reasons.append("pinned at a bound: " + ", ".join(f"{p} = {fit.params[p]:.4g}" for p in fit.pinned))
    if "covariance not finite" in fit.message:  # at the optimum; bootstrap replicates of a step all land on it
        reasons.append("covariance not finite")
    for name in spec.scales:
        ci = interval(fit, name)
        if ci is not None and decades(*ci) > MAX_DECADES:
            reasons.append(f"95% interval of {name} [{ci[0]:.3g}, {ci[1]:.3g}] spans more than {MAX_DECADES:g} decades")
    if spec.floor is not None:
        ci = interval(fit, spec.floor)
        # within rounding of a bound counts as on it: bootstrap replicates stop at 1e-18, not at an exact 0
        if ci is not None and (
            ci[0] <= domain.lo + bound_tolerance(ci[0]) or ci[1] >= domain.hi - bound_tolerance(ci[1])
        ):
            reasons.append(
                f"95% interval of the floor {spec.floor} [{ci[0]:.3g}, {ci[1]:.3g}] reaches an end of the range "
                f"{domain.describe()}"
            )
    if reasons:
        return UNCONSTRAINED, "; ".join(reasons)
    return OK, ""


def usable(record: dict | None) -> bool:
    """A fit record that may be drawn bold, compared, forecast from and backtested."""
    if not record:
        return False
    return record.get("status", OK if record.get("converged") else FAILED) == OK

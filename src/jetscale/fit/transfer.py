"""Effective data transferred (Hernandez et al. 2021, "Scaling laws for transfer").

A fine-tuned model trained on n labelled jets reaches some test metric y_FT(n). The from-scratch curve y_S(m)
(same model family, same metric) says how many labelled jets m a model trained from scratch needs for the
same y: n_eq = y_S⁻¹(y_FT(n)). The effective data transferred is D_T = n_eq − n (the labelled jets pretraining
was worth) and the data multiplier (n + D_T)/n = n_eq / n.

Reading off the curve (no extrapolation)
- The from-scratch curve is the seed mean at each measured size, made monotone (better with more data) by
  isotonic regression, and interpolated linearly in log10 m between measured sizes.
- A fine-tuned result better than the curve's best point lies beyond its reach: D_T is only known to exceed
  D_max = m_max − n, reported as the lower bound "> D_max" (``bound: "lower"``), never as infinity or as an
  extrapolated number. (Beyond m_max the from-scratch curve is not measured; a fitted ceiling is not a size.)
- A fine-tuned result worse than the curve's smallest point gives the upper bound "D_T < m_min − n"
  (``bound: "upper"``; pretraining cost more than n − m_min labelled jets).
- D_T < 0 inside the range is reported as measured: pretraining that hurts.

Domain: D_T is read off the from-scratch curve, so it is defined only where that curve rises beyond its seed
scatter (its isotonic seed means improve from the smallest to the largest size by more than RISE_SIGMAS pooled
seed standard deviations). Against a flat curve (a model that stays at chance from scratch) every fine-tuned
point would look "beyond" it and give meaningless multipliers: there every row has ``status: "undefined"``,
no D_T, no bound and the reason in ``reason``.

Intervals: bootstrap over seeds (within each size, the scratch and the fine-tuned seeds are resampled with
replacement), percentile interval at ``level``; an end that falls on a beyond-reach replicate is itself a bound
(``ci_high: null, ci_high_beyond: true``).

The law D_T = k · n^α · N^β is fitted by least squares in log space on the points with a finite, positive
D_T (bounds and negative transfer excluded, so with many lower bounds it says little: ``n_points`` and
``n_excluded`` are recorded); β only when at least two model sizes N are present.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MIN_LAW_POINTS = 3
RISE_SIGMAS = 2.0  # the from-scratch curve must improve by more than this many seed standard deviations
UNDEFINED = "undefined"


def isotonic_decreasing(y: np.ndarray) -> np.ndarray:
    """Least-squares non-increasing fit to ``y`` (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight]
    for v in np.asarray(y, dtype=float):
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            (m2, w2), (m1, w1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2])
    return np.concatenate([np.full(int(w), m) for m, w in blocks])


def scratch_curve(n, y) -> tuple[np.ndarray, np.ndarray]:
    """Seed means per size, sorted by size, monotone non-increasing (y is error-like: lower is better)."""
    n, y = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
    sizes = np.unique(n)
    means = np.array([y[n == s].mean() for s in sizes])
    return sizes, isotonic_decreasing(means)


def equivalent_size(sizes: np.ndarray, curve: np.ndarray, y: float) -> tuple[float, str]:
    """The from-scratch size reaching ``y``: (m, "ok") inside the measured range, else (m_max, "beyond") when y is
    better than the curve's best, (m_min, "below") when worse than its first point."""
    if y < curve[-1]:
        return float(sizes[-1]), "beyond"
    if y > curve[0]:
        return float(sizes[0]), "below"
    # first segment [i, i+1] with curve[i] >= y >= curve[i+1]; flat stretches resolve to their smallest size
    i = int(np.nonzero(curve <= y)[0][0])
    if i == 0 or curve[i] == y:
        return float(sizes[i]), "ok"
    lo, hi = np.log10(sizes[i - 1]), np.log10(sizes[i])
    frac = (curve[i - 1] - y) / (curve[i - 1] - curve[i])
    return float(10 ** (lo + frac * (hi - lo))), "ok"


def scratch_rise(n, y) -> tuple[bool, str]:
    """Does the from-scratch curve (error-like y: lower is better) improve beyond its seed scatter?

    Rise = first minus last point of the isotonic seed-mean curve; scatter = the pooled within-size seed
    standard deviation (sizes with one seed only: the spread of the means around the isotonic curve)."""
    n, y = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
    sizes, curve = scratch_curve(n, y)
    rise = float(curve[0] - curve[-1])
    groups = [y[n == s] for s in sizes]
    dof = sum(len(g) - 1 for g in groups)
    if dof > 0:
        scatter = math.sqrt(sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / dof)
    else:
        means = np.array([g.mean() for g in groups])
        scatter = float(np.sqrt(np.mean((means - curve) ** 2))) if len(means) > 1 else math.inf
    if rise > RISE_SIGMAS * scatter:
        return True, ""
    return False, (
        f"the from-scratch curve does not rise beyond its seed scatter (improvement {rise:.3g} <= "
        f"{RISE_SIGMAS:g} x seed std {scatter:.3g}): D_T undefined"
    )


def _point(n: float, m: float, status: str) -> dict:
    if status == "ok":
        return {"d_t": m - n, "multiplier": m / n, "bound": None, "bound_value": None}
    d = m - n
    return {"d_t": None, "multiplier": None, "bound": "lower" if status == "beyond" else "upper", "bound_value": d}


def effective_data_transferred(
    scratch_n: Sequence[float],
    scratch_y: Sequence[float],
    tuned_n: Sequence[float],
    tuned_y: Sequence[float],
    *,
    higher_is_better: bool = False,
    bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict]:
    """D_T at each fine-tuned size (seeds averaged), with bootstrap intervals; one dict per size (keys below).

    ``n, y_tuned, n_eq, d_t, multiplier, bound, bound_value, ci_low, ci_high, ci_high_beyond, ci_low_below,
    frac_beyond, status`` (ok, beyond, below, or undefined with ``reason`` against a flat from-scratch curve).
    ``d_t``/``multiplier`` are None when the point is a bound (then ``bound_value``
    holds D_max or D_min and ``bound`` is "lower" or "upper").
    """
    sign = -1.0 if higher_is_better else 1.0
    sn, sy = np.asarray(scratch_n, dtype=float), sign * np.asarray(scratch_y, dtype=float)
    tn, ty = np.asarray(tuned_n, dtype=float), sign * np.asarray(tuned_y, dtype=float)
    if len(np.unique(sn)) < 2:
        raise ValueError("the from-scratch curve needs at least two training-set sizes")
    sizes, curve = scratch_curve(sn, sy)
    rises, why = scratch_rise(sn, sy)
    if not rises:
        return [_undefined(float(n), float(sign * ty[tn == n].mean()), why) for n in np.unique(tn)]
    rng = np.random.default_rng(seed)
    out = []
    for n in np.unique(tn):
        y = ty[tn == n].mean()
        m, status = equivalent_size(sizes, curve, y)
        row = {"n": float(n), "y_tuned": float(sign * y), "n_eq": m if status == "ok" else None, "status": status}
        row.update(_point(float(n), m, status))
        row.update(_interval(rng, sn, sy, ty[tn == n], float(n), bootstrap, level))
        out.append(row)
    return out


def _undefined(n: float, y: float, why: str) -> dict:
    return {
        "n": n,
        "y_tuned": y,
        "n_eq": None,
        "status": UNDEFINED,
        "reason": why,
        "d_t": None,
        "multiplier": None,
        "bound": None,
        "bound_value": None,
        "ci_low": None,
        "ci_high": None,
        "ci_high_beyond": False,
        "ci_low_below": False,
        "frac_beyond": None,
    }


def _interval(rng, sn, sy, tuned, n, n_boot, level) -> dict:
    empty = {"ci_low": None, "ci_high": None, "ci_high_beyond": False, "ci_low_below": False, "frac_beyond": None}
    if n_boot <= 0:
        return empty
    groups = [np.nonzero(sn == s)[0] for s in np.unique(sn)]
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g)) for g in groups])
        sizes, curve = scratch_curve(sn[idx], sy[idx])
        m, status = equivalent_size(sizes, curve, rng.choice(tuned, size=len(tuned)).mean())
        reps[b] = {"ok": m - n, "beyond": math.inf, "below": -math.inf}[status]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha], method="inverted_cdf")
    return {
        "ci_low": float(lo) if math.isfinite(lo) else None,
        "ci_high": float(hi) if math.isfinite(hi) else None,
        "ci_high_beyond": bool(hi == math.inf),
        "ci_low_below": bool(lo == -math.inf),
        "frac_beyond": float(np.mean(reps == math.inf)),
    }


def fit_transfer_law(n, d_t, N=None) -> dict:
    """D_T = k · n^α [· N^β]: least squares in log10 on points with finite D_T > 0.

    Returns ``{"form", "params": {k, alpha[, beta]}, "n_points", "n_excluded", "converged", "message"}``.
    """
    n = np.asarray(n, dtype=float)
    d = np.array([np.nan if v is None else v for v in d_t], dtype=float)
    N = None if N is None else np.asarray(N, dtype=float)
    keep = np.isfinite(d) & (d > 0) & (n > 0)
    use_beta = N is not None and len(np.unique(N[keep])) >= 2
    record = {
        "form": "k*n^alpha*N^beta" if use_beta else "k*n^alpha",
        "params": {},
        "n_points": int(keep.sum()),
        "n_excluded": int((~keep).sum()),
        "converged": False,
    }
    need = MIN_LAW_POINTS + (1 if use_beta else 0)
    if keep.sum() < need or len(np.unique(n[keep])) < 2:
        record["message"] = f"{int(keep.sum())} points with finite D_T > 0; need {need} at two or more sizes"
        return record
    cols = [np.ones(keep.sum()), np.log10(n[keep])] + ([np.log10(N[keep])] if use_beta else [])
    coef, *_ = np.linalg.lstsq(np.column_stack(cols), np.log10(d[keep]), rcond=None)
    record["params"] = {"k": float(10 ** coef[0]), "alpha": float(coef[1])}
    if use_beta:
        record["params"]["beta"] = float(coef[2])
    record.update(converged=True, message="ok")
    return record


def format_transfer(row: dict) -> str:
    """'D_T = 2.0e+03 [1.1e+03, 3.0e+03]', '> 2.9e+04', '< -50' or 'undefined' for tables."""
    if row.get("status") == UNDEFINED:
        return "undefined (flat from-scratch curve)"
    if row["bound"] == "lower":
        return f"> {row['bound_value']:.3g}"
    if row["bound"] == "upper":
        return f"< {row['bound_value']:.3g}"
    text = f"{row['d_t']:.3g}"
    if row.get("ci_low") is not None or row.get("ci_high") is not None or row.get("ci_high_beyond"):
        lo = "below reach" if row.get("ci_low_below") else f"{row['ci_low']:.3g}"
        hi = "beyond reach" if row.get("ci_high_beyond") else f"{row['ci_high']:.3g}"
        text += f" [{lo}, {hi}]"
    return text

"""Functional forms of the scaling fits. Each is a plain numpy function of (x, *params).

``x`` is a training-set size n (jets), a parameter count N or a compute in FLOP; ``y`` is the fitted quantity.
Error-type quantities (1 − ε, charge-flip rate f, loss) fall with x.

powerlaw   y = y_inf + A · x^(−alpha)
scurve     y = floor + (ceiling − floor) / (1 + 10^(k · (log10 x − log10 n_c)))
           a logistic in log10 x: y goes from ``ceiling`` (x ≪ n_c) to ``floor`` (x ≫ n_c) for k > 0, the
           midpoint n_c is the critical data size and k the steepness per decade of x (k < 0: a rising curve).
bnsl       y = a + b · x^(−c0) · (1 + (x/d1)^(1/f1))^(−c1·f1)        (Caballero et al. 2022, one break)
chinchilla L(N, D) = E + A/N^alpha + B/D^beta                           (Hoffmann et al. 2022)
"""

from __future__ import annotations

import numpy as np

LN10 = float(np.log(10.0))

PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "powerlaw": ("y_inf", "A", "alpha"),
    "scurve": ("floor", "ceiling", "n_c", "k"),
    "bnsl": ("a", "b", "c0", "c1", "d1", "f1"),
    "chinchilla": ("A", "B", "E", "alpha", "beta"),
}


def powerlaw(x, y_inf, A, alpha):
    return y_inf + A * np.power(np.asarray(x, dtype=float), -alpha)


def scurve(x, floor, ceiling, n_c, k):
    return scurve_log(x, floor, ceiling, np.log10(n_c), k)


def scurve_log(x, floor, ceiling, log10_n_c, k):
    """S-curve with the midpoint given as log10 n_c (the parametrisation the fitter uses)."""
    from scipy.special import expit

    z = k * (np.log10(np.asarray(x, dtype=float)) - log10_n_c)
    return floor + (ceiling - floor) * expit(-LN10 * z)


def bnsl(x, a, b, c0, c1, d1, f1):
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return a + b * x ** (-c0) * (1 + (x / d1) ** (1 / f1)) ** (-c1 * f1)


def chinchilla(N, D, A, B, E, alpha, beta):
    return E + A / np.power(np.asarray(N, dtype=float), alpha) + B / np.power(np.asarray(D, dtype=float), beta)


def evaluate(form: str, params: dict, x, x2=None):
    """Evaluate a fitted form from its params dict (names as in PARAM_NAMES)."""
    values = [params[name] for name in PARAM_NAMES[form]]
    if form == "chinchilla":
        return chinchilla(x, x2, *values)
    return {"powerlaw": powerlaw, "scurve": scurve, "bnsl": bnsl}[form](x, *values)

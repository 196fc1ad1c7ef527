"""The fit-form catalog: one :class:`FormSpec` per functional form of the scaling fits.

``x`` is a training-set size n (jets), a parameter count N or a compute in FLOP; ``y`` is the fitted quantity.
Error-type quantities (1 − ε, charge-flip rate f, loss) fall with x.

powerlaw   y = y_inf + A · x^(−alpha)
scurve     y = floor + (ceiling − floor) / (1 + 10^(k · (log10 x − log10 n_c)))
           a logistic in log10 x: y goes from ``ceiling`` (x ≪ n_c) to ``floor`` (x ≫ n_c) for k > 0, the
           midpoint n_c is the critical data size and k the steepness per decade of x.
bnsl       y = a + b · x^(−c0) · (1 + (x/d1)^(1/f1))^(−c1·f1)        (Caballero et al. 2022, one break)
chinchilla L(N, D) = E + A/N^alpha + B/D^beta                           (Hoffmann et al. 2022)

A spec holds everything the fitters, the threshold comparison, forecasts, backtests, the fit summary and the
figures need: parameter names, the function, bounds (from the fitted quantity's physical range, see
:class:`Domain`), start values, which parameter is the exponent, the floor and the scale (n_c, A) whose
interval decides ``unconstrained``, label and line style, and the inverse used by forecasts.

Adding a form = one ``register(FormSpec(...))`` in this file. Without a ``fitter`` the generic bounded
least-squares fitter of :mod:`jetscale.fit.fitting` fits it from ``starts`` within ``bounds`` (the four forms
below carry faster specialised fitters); ``tests/test_fit_registry.py`` registers a toy form and runs it through
fit and report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

LN10 = float(np.log(10.0))
INF = math.inf
ALPHA_BOUNDS = (1e-3, 10.0)  # power-law exponents: positive, and a pinned value means "not determined"
K_MIN = 1e-2  # S-curve steepness per decade (no upper bound: a step is a legitimate limit, judged unresolved)
N_C_REACH = 10.0  # n_c is held within a decade beyond the measured x range


@dataclass(frozen=True)
class Domain:
    """Physical range of the fitted quantity (``lo``/``hi``: ±inf for an open end) and its expected direction.

    ``falling``: True for an error-type quantity (it falls with x, so amplitudes are non-negative), False for a
    rising one, None when unknown (no sign constraint)."""

    lo: float = -INF
    hi: float = INF
    falling: bool | None = None

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    def describe(self) -> str:
        return f"[{self.lo:g}, {self.hi:g}]"

    def describe_pair(self) -> tuple[float | None, float | None]:
        """(lo, hi) with None for an open end (JSON)."""
        return (self.lo if math.isfinite(self.lo) else None, self.hi if math.isfinite(self.hi) else None)


FREE = Domain()


def amplitude_bounds(domain: Domain) -> tuple[float, float]:
    if domain.falling is None:
        return (-INF, INF)
    return (0.0, INF) if domain.falling else (-INF, 0.0)


@dataclass(frozen=True)
class FormSpec:
    name: str
    params: tuple[str, ...]
    function: Callable  # f(x, *params), or f(x, x2, *params) for n_x = 2
    label: str
    style: object = "-"  # matplotlib line style on the scaling figures
    n_x: int = 1
    exponent: str | None = None  # the parameter reported as the exponent in fit_summary.csv
    floor: str | None = None  # value as x -> inf, held to the domain (its interval must stay inside it)
    scales: tuple[str, ...] = ()  # scale parameters (n_c, A): a 95% interval over > 2 decades = unconstrained
    # (domain, x) -> {param: (lo, hi)} in the public parametrisation; absent params are free
    bounds: Callable[[Domain, np.ndarray], dict] = field(default=lambda domain, x: {})
    # (x, y) -> list of public start vectors (fitter hints for the generic fitter)
    starts: Callable[[np.ndarray, np.ndarray], list] | None = None
    fitter: str | None = None  # "module:function" specialised fitter; None: the generic bounded fitter
    limits: Callable[[dict], tuple[float, float]] | None = None  # (y as x -> 0, y as x -> inf); None: numeric
    inverse: Callable[[dict, float], float] | None = None  # x where y = target (target within limits); None: numeric
    asymptote: str = "value at the end of the search"  # how forecasts name the large-x limit
    in_threshold_test: bool = False  # takes part in the power law vs S-curve decision (jetscale.fit.compare)
    # what the data must show for the form to apply (too few sizes then gives "not applicable", not "failed")
    premise: str | None = None
    summary: str = ""

    def evaluate(self, params: dict, x, x2=None):
        values = [params[name] for name in self.params]
        if self.n_x == 2:
            return self.function(x, x2, *values)
        return self.function(x, *values)

    def public_bounds(self, domain: Domain, x) -> tuple[np.ndarray, np.ndarray]:
        given = self.bounds(domain, np.asarray(x, dtype=float))
        lo = np.array([given.get(p, (-INF, INF))[0] for p in self.params], dtype=float)
        hi = np.array([given.get(p, (-INF, INF))[1] for p in self.params], dtype=float)
        return lo, hi


FORMS: dict[str, FormSpec] = {}
# the two roles of the threshold question (jetscale.fit.compare): smooth improvement vs a critical size n_c
SMOOTH, THRESHOLD = "powerlaw", "scurve"
LOSS_LAW = "powerlaw"  # the form of the loss-vs-data/params/compute fits
JOINT_LAW = "chinchilla"  # the L(N, D) form


def register(spec: FormSpec) -> FormSpec:
    if spec.n_x not in (1, 2):
        raise ValueError(f"form {spec.name!r}: n_x must be 1 or 2")
    for name in (spec.exponent, spec.floor, *spec.scales):
        if name is not None and name not in spec.params:
            raise ValueError(f"form {spec.name!r}: {name!r} is not one of its parameters {spec.params}")
    if spec.fitter is None and spec.starts is None:
        raise ValueError(f"form {spec.name!r}: the generic fitter needs start values (starts=...)")
    FORMS[spec.name] = spec
    return spec


def names(n_x: int | None = None) -> list[str]:
    return [name for name, spec in FORMS.items() if n_x is None or spec.n_x == n_x]


def get(name: str) -> FormSpec:
    if name not in FORMS:
        raise ValueError(f"unknown form {name!r}; forms: {names()}")
    return FORMS[name]


def evaluate(form: str, params: dict, x, x2=None):
    """Evaluate a fitted form from its params dict."""
    return get(form).evaluate(params, x, x2)


# ------------------------------------------------------------------------------------------------ functions
def powerlaw(x, y_inf, A, alpha):
    return y_inf + A * np.power(np.asarray(x, dtype=float), -alpha)


def scurve(x, floor, ceiling, n_c, k):
    return scurve_log(x, floor, ceiling, np.log10(n_c), k)


def scurve_log(x, floor, ceiling, log10_n_c, k):
    """S-curve with the midpoint given as log10 n_c (the parametrisation the fitter uses)."""
    from scipy.special import expit

    z = k * (np.log10(np.asarray(x, dtype=float)) - log10_n_c)
    return floor + (ceiling - floor) * expit(-LN10 * z)


def transition_width(n_c: float, k: float) -> float:
    """The factor in n over which the S-curve goes from 10 % to 90 % of the way between its plateaus."""
    edges = n_c * np.array([9.0 ** (-1.0 / k), 9.0 ** (1.0 / k)])  # scurve shares 0.9 and 0.1 there
    return float(edges[1] / edges[0])


def transition_resolved(x, n_c: float, k: float) -> bool:
    """Is the S-curve's 10-90 % transition at least half as wide, on a log axis, as the gap between the measured
    sizes around n_c?

    A narrower one is a step the sizes do not resolve: with no size on it any n_c between the two neighbours
    fits, and with one size on it (its neighbours on the plateaus) that size's value is reproduced by any steeper
    k with n_c moved to match, so neither n_c's interval nor k is measured (k ± 1e17 seen). In the default study
    the steps span factors 1.1-1.3 in n and the resolved transitions 2.4 or more, against half-decade gaps
    (factor 3.2; half of it on a log axis: 1.8)."""
    sizes = np.unique(np.asarray(x, dtype=float))
    below, above = sizes[sizes < n_c], sizes[sizes > n_c]
    if not len(below) or not len(above):
        return False  # n_c at or beyond an end: the transition is not observed on one side
    gaps = [above[0] / below[-1]]
    if np.isclose(sizes, n_c).any():  # n_c on a size: the narrower of the gaps beside it
        at = sizes[np.isclose(sizes, n_c)][0]
        gaps = [at / below[-1], above[0] / at]
    return transition_width(n_c, k) >= math.sqrt(min(gaps))


def bnsl(x, a, b, c0, c1, d1, f1):
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return a + b * x ** (-c0) * (1 + (x / d1) ** (1 / f1)) ** (-c1 * f1)


def chinchilla(N, D, A, B, E, alpha, beta):
    return E + A / np.power(np.asarray(N, dtype=float), alpha) + B / np.power(np.asarray(D, dtype=float), beta)


# ------------------------------------------------------------------------------------ limits and inverses
def _powerlaw_limits(p: dict) -> tuple[float, float]:
    a = p["A"]
    return (math.copysign(math.inf, a) if a else p["y_inf"]), p["y_inf"]


def _powerlaw_inverse(p: dict, target: float) -> float:
    return float((p["A"] / (target - p["y_inf"])) ** (1.0 / p["alpha"]))


def _scurve_limits(p: dict) -> tuple[float, float]:
    return (p["ceiling"], p["floor"]) if p["k"] > 0 else (p["floor"], p["ceiling"])


def _scurve_inverse(p: dict, target: float) -> float:
    s = (target - p["floor"]) / (p["ceiling"] - p["floor"])
    log10_x = math.log10(p["n_c"]) - math.log(s / (1 - s)) / (LN10 * p["k"])
    return math.inf if log10_x > 300 else 10.0**log10_x


# ---------------------------------------------------------------------------------------------- the forms
def _range_of(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    return (float(x.min()), float(x.max())) if x.size else (1.0, 1.0)


register(
    FormSpec(
        "powerlaw",
        ("y_inf", "A", "alpha"),
        powerlaw,
        "power law",
        style="--",
        exponent="alpha",
        floor="y_inf",
        scales=("A",),
        bounds=lambda d, x: {"y_inf": (d.lo, d.hi), "A": amplitude_bounds(d), "alpha": ALPHA_BOUNDS},
        fitter="jetscale.fit.fitting:fit_powerlaw",
        limits=_powerlaw_limits,
        inverse=_powerlaw_inverse,
        asymptote="asymptote y_inf",
        in_threshold_test=True,
        summary="power law with floor",
    )
)
register(
    FormSpec(
        "scurve",
        ("floor", "ceiling", "n_c", "k"),
        scurve,
        "S-curve",
        style="-",
        floor="floor",
        scales=("n_c",),
        bounds=lambda d, x: {
            "floor": (d.lo, d.hi),
            "ceiling": (d.lo, d.hi),
            "n_c": (_range_of(x)[0] / N_C_REACH, _range_of(x)[1] * N_C_REACH),
            "k": (K_MIN, INF),
        },
        fitter="jetscale.fit.fitting:fit_scurve",
        limits=_scurve_limits,
        inverse=_scurve_inverse,
        asymptote="floor (x → ∞)",
        in_threshold_test=True,
        summary="logistic in log10 x (critical data size n_c)",
    )
)
register(
    FormSpec(
        "bnsl",
        ("a", "b", "c0", "c1", "d1", "f1"),
        bnsl,
        "BNSL",
        style=(0, (6, 2, 1, 2)),  # dash-dot: dotted lines are the unconstrained fits
        exponent="c0",
        floor="a",
        bounds=lambda d, x: {
            "a": (d.lo, d.hi),
            "b": (0.0, INF),
            "c0": (0.0, INF),
            "d1": (1e-8, INF),
            "f1": (1e-3, INF),
        },
        fitter="jetscale.fit.fitting:fit_bnsl",
        premise="a break in the scaling curve",
        summary="broken neural scaling law, one break",
    )
)
register(
    FormSpec(
        "chinchilla",
        ("A", "B", "E", "alpha", "beta"),
        chinchilla,
        "Chinchilla",
        style=None,
        n_x=2,
        scales=("A", "B"),
        fitter="jetscale.fit.chinchilla:fit_chinchilla_form",
        summary="L(N, D) = E + A/N^alpha + B/D^beta",
    )
)

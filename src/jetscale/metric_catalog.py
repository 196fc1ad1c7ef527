"""The metric catalog: one :class:`MetricSpec` per metric of ``tables/runs.csv``, torch- and numpy-free.

What the fits, the forecasts, the mirage check, the transfer estimates, the figures and config validation need
to know about a metric lives in its spec: whether it is per quark flavour (or per class) or global, its
direction (higher better?), its physical range, its chance level, its axis label and its threshold-free
counterpart (what the mirage check fits next to a thresholded metric).

Fits work on the *error-type* quantity: 1 − value for a higher-is-better metric, the value itself otherwise
(:meth:`MetricSpec.error_range` is the range that quantity must stay in: every fitted floor, ceiling and
asymptote is held to it).

Adding a metric = compute it (``jetscale.evaluate``: it must reach ``tables/runs.csv``) plus one
``register(MetricSpec(...))`` below. Config validation (``fits.metrics``, ``fits.targets``), the fits and the
report read the spec; ``tests/test_fit_registry.py`` registers a toy metric and runs it through fit and report.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

GLOBAL, PER_FLAVOR, PER_CLASS = "global", "flavor", "class"
QUARK = re.compile(r"(_|\\bar )q\b")  # where a per-flavour label names its quark q: $f_q$, $p_{\bar q}$
UNIT_SUFFIX = re.compile(r"^(.*?)((?: \[[^\]]*\])?)$")  # a label and its trailing ' [unit]', if any


@dataclass(frozen=True)
class MetricSpec:
    name: str
    scope: str  # GLOBAL, PER_FLAVOR (one value per quark flavour) or PER_CLASS (one per class)
    higher_is_better: bool
    range: tuple[float, float]  # physical range of the metric's value (math.inf for an open end)
    label: str  # axis label (matplotlib mathtext allowed; a per-flavour metric's quark written q: $f_q$)
    chance: float | None = None  # the value of a classifier without information (drawn as a reference line)
    counterpart: tuple[str, str] | None = None  # (log-loss, AUC) threshold-free counterparts (mirage check)
    summary: str = ""

    @property
    def per_flavor(self) -> bool:
        return self.scope == PER_FLAVOR

    def error_quantity(self) -> str:
        """Name of the fitted (error-type, lower-is-better) quantity."""
        return f"1 - {self.name}" if self.higher_is_better else self.name

    def axis_label(self, flavor: str = "", error: bool = False) -> str:
        """The axis label; ``error``: of the fitted error-type quantity (1 − value for a higher-is-better metric);
        ``flavor``: of that flavour's curve, the label's quark q becoming it (f_q -> f_b), or, for a label that
        names no q, '(b)' before its unit ('Charge log-loss (b) [nats]')."""
        text = self.label
        if flavor:
            text, named = QUARK.subn(lambda m: f"{m.group(1).strip()}{{{flavor}}}", text)
            if not named:
                text = UNIT_SUFFIX.sub(lambda m: f"{m.group(1)} ({flavor}){m.group(2)}", text, count=1)
        if error and self.higher_is_better:
            text = "1 − " + (text[0].lower() + text[1:] if text[1:2].islower() else text)
        return text

    def error_range(self) -> tuple[float, float]:
        """Physical range of the error-type quantity."""
        lo, hi = self.range
        return (1.0 - hi, 1.0 - lo) if self.higher_is_better else (lo, hi)

    def error_chance(self) -> float | None:
        if self.chance is None:
            return None
        return 1.0 - self.chance if self.higher_is_better else self.chance


METRICS: dict[str, MetricSpec] = {}


def register(spec: MetricSpec) -> MetricSpec:
    if spec.scope not in (GLOBAL, PER_FLAVOR, PER_CLASS):
        raise ValueError(f"metric {spec.name!r}: scope must be one of global, flavor, class, not {spec.scope!r}")
    lo, hi = spec.range
    if not lo < hi:
        raise ValueError(f"metric {spec.name!r}: range {spec.range} is empty")
    if spec.higher_is_better and not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"metric {spec.name!r}: a higher-is-better metric needs a finite range (1 − value is fitted)")
    METRICS[spec.name] = spec
    return spec


def names() -> list[str]:
    return list(METRICS)


def get(name: str) -> MetricSpec:
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; metrics: {names()}")
    return METRICS[name]


def find(name: str) -> MetricSpec | None:
    return METRICS.get(name)


UNIT = (0.0, 1.0)
NATS = (0.0, math.inf)

register(
    MetricSpec(
        "tag_efficiency",
        PER_FLAVOR,
        True,
        UNIT,
        r"Flavor-tag efficiency $\varepsilon_q$",
        counterpart=("tag_log_loss", "tag_auc"),
        summary="half the row-normalised 2x2 {q, qbar} block sum of the confusion matrix",
    )
)
register(
    MetricSpec(
        "charge_flip",
        PER_FLAVOR,
        False,
        UNIT,
        r"Charge-flip rate $f_q$",
        chance=0.5,  # no charge information; above it is noise (or a sign error)
        counterpart=("charge_log_loss", "charge_auc"),
        summary="off-diagonal share of the 2x2 {q, qbar} block",
    )
)
register(MetricSpec("tag_log_loss", PER_FLAVOR, False, NATS, r"Tag log-loss $-\ln(p_q + p_{\bar q})$ [nats]"))
register(MetricSpec("charge_log_loss", PER_FLAVOR, False, NATS, r"Charge log-loss [nats]", chance=math.log(2.0)))
register(MetricSpec("tag_auc", PER_FLAVOR, True, UNIT, "Tag AUC", chance=0.5))
register(MetricSpec("charge_auc", PER_FLAVOR, True, UNIT, "Charge AUC", chance=0.5))
register(MetricSpec("accuracy", GLOBAL, True, UNIT, "Accuracy", counterpart=("log_loss", "mean_auc")))
register(MetricSpec("log_loss", GLOBAL, False, NATS, "Test log-loss [nats]"))
register(MetricSpec("val_loss", GLOBAL, False, NATS, "Validation log-loss [nats]"))
register(MetricSpec("val_accuracy", GLOBAL, True, UNIT, "Validation accuracy"))
register(MetricSpec("mean_auc", GLOBAL, True, UNIT, "Mean one-vs-rest AUC", chance=0.5))
register(MetricSpec("auc", PER_CLASS, True, UNIT, "One-vs-rest AUC", chance=0.5))

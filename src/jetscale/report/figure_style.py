"""What every figure family shares: markers and line styles, labels, log-axis ticks, selecting a series' rows."""

from __future__ import annotations

import numpy as np

from .. import metric_catalog
from ..grid import absent

UNCONSTRAINED_STYLE = {"ls": ":", "lw": 0.9, "alpha": 0.45}  # a fit the data do not determine: not used


MARKERS = ("o", "^", "D", "v", "P", "X", "<", ">", "s")  # series of a figure that names no model (tuning trends)


# how series of one model drawn in one colour (its widths) tell themselves apart where the marker names the model;
# no hollow marker: the scaling figures keep hollow for a seed stopped at its sample cap
SERIES_FILLS = ("full", "left", "bottom", "right", "top")


# the physics baseline (a fitted model, e.g. bdt): grey squares joined by a dashed line on every scaling figure,
# grey dashed levels on the per-flavor bars; a network below it is undertrained
BASELINE_STYLE = {"color": "0.45", "marker": "s", "ls": "--"}


REFERENCE_STYLE = {  # published CEPC numbers: black/grey, apart from the study's palette
    "particlenet": {"marker": {"marker": "D", "s": 55, "color": "black"}, "line": {"color": "black", "ls": "-."}},
    "part": {"marker": {"marker": "*", "s": 120, "color": "dimgray"}, "line": {"color": "dimgray", "ls": (0, (1, 1))}},
}


# the marker of n_c (the critical data size) on the scaling figures, in the colour of its series
N_C_MARKER = "*"

# the shape that names a network on every figure of a report (loss and scaling figures alike), in the study's
# order of models: none is the baseline's square, a published reference's diamond or star, or n_c's star
MODEL_MARKERS = ("o", "^", "X", "v", "P", "<", ">", "h", "p")
RESERVED_MARKERS = frozenset(
    {BASELINE_STYLE["marker"], N_C_MARKER, *(style["marker"]["marker"] for style in REFERENCE_STYLE.values())}
)


def model_markers(models) -> dict:
    """One shape per model, in the order given (duplicates and missing names skipped): built once per report from
    the study's list of models, so a model keeps its shape on every figure whichever models a figure draws."""
    names = [m for m in dict.fromkeys(models) if m is not None]
    return {m: MODEL_MARKERS[i % len(MODEL_MARKERS)] for i, m in enumerate(names)}


def class_label(name: str) -> str:
    if name.endswith("bar"):
        return rf"$\bar{{{name[:-3]}}}$"
    return f"${name}$"


def metric_label(metric: str, flavor: str = "", error: bool = False) -> str:
    """The catalog's axis label (:meth:`~jetscale.metric_catalog.MetricSpec.axis_label`): of ``flavor``'s
    curve, with ``error`` of the fitted error-type quantity; an unknown metric by its name."""
    spec = metric_catalog.find(metric)
    if spec is not None:
        return spec.axis_label(flavor, error)
    return f"{metric} ({flavor})" if flavor else metric


def _plain_log_labels(axis) -> None:
    """Label a log axis spanning < 2 decades with plain numbers (0.4, 0.6, 1, 2) instead of 4×10⁻¹; an axis
    spanning less than a factor 4 (a loss from 1.3 to 2.6) gets ticks at 1.2, 1.4, ... so it carries more than
    one or two labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    class PlainLogLocator(LogLocator):
        def tick_values(self, vmin, vmax):
            narrow = 0 < vmin < vmax < 4 * vmin
            self.set_params(
                subs=(1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0) if narrow else (1.0, 2.0, 3.0, 5.0)
            )
            return super().tick_values(vmin, vmax)

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_locator(PlainLogLocator(base=10))
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _same(a, b) -> bool:
    if absent(a) or absent(b):  # an axis a cell does not have
        return absent(a) and absent(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return str(a) == str(b) if a is not None and b is not None else a is b


def _select(df, series: dict):
    mask = np.ones(len(df), dtype=bool)
    for axis, value in series.items():
        if axis in df.columns:
            mask &= np.array([_same(_plain(v), value) for v in df[axis]], dtype=bool)
    return df[mask]

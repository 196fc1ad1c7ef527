"""Scaling figures: a metric vs n_train per quark flavour with fitted curves, n_c markers and the published
reference values (``scaling_<metric>``); the mirage figure. A part of :class:`jetscale.report.figures.Figures`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import metric_catalog
from ..fit import forms
from ..fit.forms import SMOOTH, THRESHOLD
from ..fit.forms import evaluate as evaluate_form
from ..fit.status import OK, UNCONSTRAINED
from ..reference import OVERLAY_MODELS, overlay_label
from .figure_style import (
    BASELINE_STYLE,
    N_C_MARKER,
    REFERENCE_STYLE,
    UNCONSTRAINED_STYLE,
    _select,
    metric_label,
)
from .tables import seed_means


class ScalingFigures:
    """The scaling figure family (drawn with the style and helpers of :class:`~jetscale.report.figures.Figures`)."""

    def scaling(self) -> list[Path]:
        out = []
        for metric in self.cfg["fits"]["metrics"]:
            flavors = [
                f
                for f in self.cfg["flavor_pairs"]
                if not self.runs[(self.runs["metric"] == metric) & (self.runs["flavor"] == f)].empty
            ]
            if not flavors:
                flavors = [""] if not self.runs[self.runs["metric"] == metric].empty else []
            if not flavors:
                continue
            for facet, series_list in self._facets():
                name = f"scaling_{metric}" + (f"_{self.facet_by}-{facet}" if facet is not None else "")
                out += self._scaling_figure(metric, flavors, series_list, name, facet)
        return out

    def _scaling_figure(self, metric, flavors, series_list, name, facet) -> list[Path]:
        import matplotlib.pyplot as plt
        from matplotlib.legend_handler import HandlerTuple

        ncols = min(3, len(flavors))
        nrows = math.ceil(len(flavors) / ncols)
        spec = metric_catalog.find(metric)
        higher = bool(spec and spec.higher_is_better)
        with self.style():
            fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 4.9 * nrows), squeeze=False, sharex=True)
            handles, capped = {}, {}  # capped: the hollow shape of each model with a point stopped at the cap
            for ax, flavor in zip(axes.flat, flavors):
                means = seed_means(self.runs, self.axes, metric, flavor)
                top = 0.0  # the highest point with its error bar: the axis must not hide it
                for series in series_list:
                    m = _select(means, series)
                    if m.empty:
                        continue
                    color = self.color(series)
                    h = ax.errorbar(
                        m["n_train"],
                        m["mean"],
                        yerr=m["err"],
                        fmt=self.marker(series),
                        fillstyle=self.fill(series),
                        color=color,
                        ms=7,
                        capsize=2.5,
                        lw=1.2,
                        label=self.label(series),
                        **({"ls": BASELINE_STYLE["ls"], "zorder": 1.5} if self.is_baseline(series) else {}),
                    )
                    handles.setdefault(self.label(series), h)
                    top = max(top, float((m["mean"] + m["err"].fillna(0)).max()))
                    if m["budget_limited"].any():  # ended at the sample cap while still improving: hollow
                        limited = m[m["budget_limited"]]
                        capped[self.marker(series), color] = ax.plot(
                            limited["n_train"],
                            limited["mean"],
                            ls="none",
                            marker=self.marker(series),
                            fillstyle="full",
                            ms=7,
                            mfc="white",
                            mec=color,
                            zorder=3,
                        )[0]
                    doc = self.fit_doc("scaling", metric=metric, flavor=flavor, series=series)
                    if doc:
                        self._draw_fits(ax, doc, color, higher, handles)
                self._reference_lines(ax, metric, flavor, handles)
                ax.set_xscale("log")
                ax.set_title(f"${flavor}$ jets" if flavor else metric, fontsize=15)
                if spec is not None and spec.chance is not None:
                    ax.axhline(spec.chance, color="grey", ls=":", lw=1)
                if metric == "charge_flip":
                    ax.set_ylim(*charge_flip_ylim(top))
                if higher:
                    ax.set_ylim(top=min(1.02, ax.get_ylim()[1]))
            for ax in axes.flat[len(flavors) :]:
                ax.axis("off")
            for ax in axes[-1]:
                ax.set_xlabel("Training jets $n_{train}$")
            for row in axes:
                row[0].set_ylabel(metric_label(metric))
            spare = axes.flat[len(flavors)] if len(flavors) < axes.size else None
            legend_target = spare if spare is not None else fig
            kwargs = (
                {"loc": "center"}
                if spare is not None
                else {"loc": "lower center", "ncol": 4, "bbox_to_anchor": (0.5, -0.04)}
            )
            if capped:  # one entry showing the hollow shape of each model concerned
                handles["stopped at the sample cap"] = tuple(capped.values())
            series_keys = [k for k in handles if k in {self.label(s) for s in series_list}]
            ordered = series_keys + [k for k in handles if k not in series_keys]
            legend_target.legend(
                [handles[k] for k in ordered],
                ordered,
                frameon=False,
                fontsize=13,
                handler_map={tuple: HandlerTuple(ndivide=None, pad=0.6)},
                **kwargs,
            )
            title = f"{metric_label(metric)} vs training-set size"
            fig.suptitle(title + (f" ({self.facet_by} = {facet})" if facet is not None else ""), fontsize=17)
            fig.tight_layout()
            return self.save(fig, name)

    def _reference_values(self, metric: str, flavor: str):
        """(model entry, value) of each overlaid published model for this metric and flavor."""
        if self.reference is None or metric not in ("tag_efficiency", "charge_flip"):
            return []
        out = []
        for name in OVERLAY_MODELS:
            entry = self.reference["models"][name]
            if flavor in entry["flavors"]:
                out.append((name, entry, entry["flavors"][flavor][metric]))
        return out

    def _reference_markers(self, ax, metric: str, flavors: list[str]) -> None:
        for name in OVERLAY_MODELS:
            points = [
                (i, v) for i, q in enumerate(flavors) for n, _, v in self._reference_values(metric, q) if n == name
            ]
            if points:
                entry = self.reference["models"][name]
                x, y = zip(*points)
                ax.scatter(x, y, zorder=5, label=overlay_label(entry), **REFERENCE_STYLE[name]["marker"])

    def _reference_lines(self, ax, metric: str, flavor: str, handles: dict) -> None:
        for name, entry, value in self._reference_values(metric, flavor):
            h = ax.axhline(value, zorder=1, **REFERENCE_STYLE[name]["line"])
            handles.setdefault(overlay_label(entry), h)

    def _draw_fits(self, ax, doc, color, higher, handles) -> None:
        xs = np.asarray(doc["points"]["x"], dtype=float)
        if xs.size == 0:
            return
        grid = np.geomspace(xs.min() / 1.5, xs.max() * 1.5, 200)
        verdict = (doc.get("comparison") or {}).get("verdict")
        for form, rec in doc["fits"].items():
            spec = forms.FORMS.get(form)
            if spec is None or spec.style is None or not rec["converged"]:
                continue
            status = rec.get("status", OK)
            if status != OK and not (status == UNCONSTRAINED and form == SMOOTH):
                continue
            preferred = status == OK and ((form == THRESHOLD) == (verdict == "threshold"))
            if not spec.in_threshold_test and not preferred:
                continue
            curve = within_range(evaluate_form(form, rec["params"], grid), doc.get("domain"))
            curve = 1 - curve if higher else curve
            if status != OK:
                ax.plot(grid, curve, color=color, **UNCONSTRAINED_STYLE)
                key = "unconstrained fit (not used)"
                handles.setdefault(key, ax.plot([], [], color="grey", **UNCONSTRAINED_STYLE)[0])
                continue
            ax.plot(
                grid, curve, ls=spec.style, color=color, lw=1.8 if preferred else 1.0, alpha=1.0 if preferred else 0.55
            )
            key = f"{spec.label} fit"
            if key not in handles:
                handles[key] = ax.plot([], [], ls=spec.style, color="grey", lw=1.5)[0]
        comp = doc.get("comparison") or {}
        if comp.get("verdict") == "threshold" and comp.get("n_c"):
            n_c, ci = comp["n_c"], comp.get("n_c_ci95")
            y_c = evaluate_form(THRESHOLD, doc["fits"][THRESHOLD]["params"], np.array([n_c]))[0]
            y_c = 1 - y_c if higher else y_c
            xerr = None if not ci else [[n_c - ci[0]], [ci[1] - n_c]]
            h = ax.errorbar(
                [n_c],
                [y_c],
                xerr=xerr,
                fmt=N_C_MARKER,
                ms=14,
                color=color,
                mec="black",
                mew=0.8,
                capsize=4,
                elinewidth=2,
            )
            handles.setdefault("$n_c$ (95% CI)", h)

    def mirage(self) -> list[Path]:
        from .outlook import mirage_figure

        return mirage_figure(self)


def charge_flip_ylim(top: float) -> tuple[float, float]:
    """Charge-flip panels span 0-0.6 (chance is 0.5), widened (up to 1) so that no point or error bar reaching
    ``top`` is cut off: a model worse than chance at small n is shown, not hidden above the frame."""
    return -0.02, min(1.02, max(0.62, top + 0.03))


def within_range(curve, domain) -> np.ndarray:
    """The fitted curve where it lies inside the fitted quantity's physical range, NaN (not drawn) elsewhere: an
    extrapolation to an efficiency below 0 or an error above 1 is no prediction and would stretch the axis."""
    curve = np.asarray(curve, dtype=float)
    lo, hi = domain or (None, None)
    inside = np.ones(curve.shape, dtype=bool)
    if lo is not None:
        inside &= curve >= lo
    if hi is not None:
        inside &= curve <= hi
    return np.where(inside, curve, np.nan)

"""Paper figures from the study tables and fit records (PNG + PDF under results/figures/).

confusion      row-normalised confusion matrices side by side, one per series, at report.confusion_n_train
flavor_metrics flavor-tag efficiency and charge-flip rate per quark flavor, grouped by series (same n_train)
scaling_<m>    metric m vs n_train, one panel per quark flavor: seed means ± error, fitted curves, n_c markers;
               marker shape = model (one per report, as on loss_scaling); hollow: a seed ended at its sample cap
               while still improving (stopped_by budget)
loss_scaling   test log-loss vs parameters, vs training jets and vs measured training compute (with frontier)
Every function returns the list of files it wrote and never raises on missing fits (it draws what exists).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config_view import report_view
from ..grid import absent, series_axes, series_label
from ..io import atomic_path
from ..models.catalog import is_fitted
from ..reference import reference_for
from .figure_style import (
    BASELINE_STYLE,
    MODEL_MARKERS,
    SERIES_FILLS,
    _plain,
    _same,
    _select,
    class_label,
    metric_label,
    model_markers,
)
from .loss_figures import LossFigures
from .scaling_figures import ScalingFigures
from .tables import chosen_n_train, seed_means


class Figures(ScalingFigures, LossFigures):
    """Holds the study tables, fit records and style; one method per figure."""

    def __init__(self, cfg: dict, tables: dict, fit_docs: list[dict], out_dir: Path):
        self.cfg, self.tables, self.fit_docs, self.out_dir = cfg, tables, fit_docs, Path(out_dir)
        self.runs = tables["runs"]
        self.axes = series_axes(cfg, self.runs)
        self.varying = [a for a in self.axes if self.runs[a].nunique() > 1] or self.axes[:1]
        self.report = report_view(cfg["report"])  # absent keys: the schema's defaults
        self.color_by = self.report.color_by
        if self.color_by not in self.axes:  # n_train is the x axis and seeds are averaged: colour by a series axis
            self.color_by = (self.varying or self.axes or ["model"])[0]
        self.facet_by = self.report.facet_by
        self.series = self._series_list()
        self.colors = self._colors()
        self.model_shapes = self._model_shapes()
        self.reference = reference_for(cfg)  # published CEPC numbers; None unless the 11 JoI classes

    # ------------------------------------------------------------------------------------------ helpers
    def _series_list(self) -> list[dict]:
        if not self.axes:
            return [{}]
        uniq = self.runs[self.axes].drop_duplicates()
        return [{a: _plain(v) for a, v in row.items()} for _, row in uniq.iterrows()]

    def label(self, series: dict) -> str:
        label = series_label(series, self.varying)
        return f"{label} (baseline)" if self.is_baseline(series) else label

    @staticmethod
    def is_baseline(series: dict) -> bool:
        """A fitted model's series (the bdt physics baseline): drawn as a grey reference, not in the palette."""
        return is_fitted(series.get("model"))

    def _colors(self) -> dict:
        import matplotlib.pyplot as plt

        palette = plt.get_cmap("tab10").colors if self._style_cycle() is None else self._style_cycle()
        if self.color_by in ("n_train", "seed"):
            values = sorted(self.runs[self.color_by].unique())
        else:
            values = list(dict.fromkeys(s.get(self.color_by) for s in self.series if not self.is_baseline(s)))
        return {v: palette[i % len(palette)] for i, v in enumerate(values)}

    def _style_cycle(self):
        try:
            import mplhep as hep

            style = getattr(hep.style, self.report.style, None)
            cycle = (style or {}).get("axes.prop_cycle") if isinstance(style, dict) else None
            return [c["color"] for c in cycle] if cycle is not None else None
        except Exception:  # noqa: BLE001 - cosmetic only
            return None

    def color(self, series: dict):
        if self.is_baseline(series):
            return BASELINE_STYLE["color"]
        return self.colors.get(series.get(self.color_by), "black")

    def _model_shapes(self) -> dict:
        """Each network's marker shape for every figure of this report: from the study's list of models (then any
        other model in the runs), never from the models one figure or facet happens to draw."""
        listed = self.cfg["grid"]["axes"].get("model") or []
        drawn = self.runs["model"].tolist() if "model" in self.runs.columns else []
        return model_markers(m for m in [*listed, *drawn] if not absent(m) and not is_fitted(m))

    def marker(self, series: dict) -> str:
        """The shape of ``series``: its model's (the baseline's square for a fitted model)."""
        if self.is_baseline(series):
            return BASELINE_STYLE["marker"]
        return self.model_shapes.get(series.get("model"), MODEL_MARKERS[0])

    def fill(self, series: dict) -> str:
        """The marker fill of ``series``: several series of one model in one colour (its widths) filled
        differently, never hollow (hollow marks a seed stopped at its sample cap)."""
        if self.is_baseline(series):
            return "full"
        twins = [
            s
            for s in self.series
            if not self.is_baseline(s) and s.get("model") == series.get("model") and self.color(s) == self.color(series)
        ]
        return SERIES_FILLS[twins.index(series) % len(SERIES_FILLS)] if series in twins else "full"

    def style(self):
        import matplotlib.pyplot as plt
        import mplhep as hep

        style = getattr(hep.style, self.report.style, None)
        base = style if style is not None else "default"
        overrides = {
            "font.size": 16,
            "axes.labelsize": 17,
            "legend.fontsize": 12,
            "xtick.labelsize": 14,
            "ytick.labelsize": 14,
            "figure.dpi": 100,
            "savefig.bbox": "tight",
        }
        return plt.style.context([base, overrides])

    def save(self, fig, name: str) -> list[Path]:
        import matplotlib.pyplot as plt

        self.out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for ext in ("png", "pdf"):
            path = self.out_dir / f"{name}.{ext}"
            with atomic_path(path) as tmp:  # never through a link at the figure's name
                fig.savefig(tmp, format=ext, dpi=150 if ext == "png" else None)
            paths.append(path)
        plt.close(fig)
        return paths

    def _facets(self):
        if not self.facet_by or self.facet_by not in self.runs.columns:
            return [(None, self.series)]
        values = list(dict.fromkeys(s.get(self.facet_by) for s in self.series))
        return [(v, [s for s in self.series if s.get(self.facet_by) == v]) for v in values]

    def fit_doc(self, kind: str, **match):
        for doc in self.fit_docs:
            if doc["kind"] == kind and all(_same(doc.get(k), v) for k, v in match.items()):
                return doc
        return None

    # ------------------------------------------------------------------------------------------ figures
    def all(self) -> list[Path]:
        """Every figure, serially (make_figures draws them in parallel)."""
        out = []
        for make in (self.confusion, self.flavor_metrics, self.scaling, self.mirage, self.loss_scaling):
            out += make()
        self._remove_stale(out)
        return out

    def _remove_stale(self, produced: list[Path]) -> None:
        """Delete figures of an earlier report (e.g. other facets) so the folder matches this report."""
        keep = {p.name for p in produced}
        for prefix in ("confusion", "flavor_metrics", "scaling_", "loss_scaling", "mirage"):
            for path in self.out_dir.glob(f"{prefix}*"):
                if path.suffix in (".png", ".pdf") and path.name not in keep:
                    path.unlink()

    def confusion(self) -> list[Path]:
        import matplotlib.pyplot as plt

        conf = self.tables.get("confusion")
        n_train = chosen_n_train(self.cfg, self.runs)
        if conf is None or conf.empty or n_train is None:
            return []
        conf = conf[conf["n_train"] == n_train]
        classes = list(dict.fromkeys(conf["truth"]))
        panels = []
        for series in self.series:
            sub = _select(conf, series)
            if sub.empty:
                continue
            mean = sub.groupby(["truth", "predicted"], sort=False)["fraction"].mean()
            matrix = np.array([[mean.get((t, p), np.nan) for p in classes] for t in classes])
            panels.append((series, matrix, sub["seed"].nunique()))
        if not panels:
            return []
        with self.style():
            ncols = len(panels)
            fig, axes = plt.subplots(
                1, ncols, figsize=(6.2 * ncols + 1.2, 6.6), squeeze=False, gridspec_kw={"wspace": 0.08}
            )
            image = None
            for ax, (series, matrix, n_seeds) in zip(axes[0], panels):
                image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1, origin="upper")
                for i in range(len(classes)):
                    for j in range(len(classes)):
                        v = matrix[i, j]
                        if np.isfinite(v) and v >= 0.005:
                            ax.text(
                                j,
                                i,
                                f"{100 * v:.0f}",
                                ha="center",
                                va="center",
                                fontsize=8,
                                color="white" if v > 0.55 else "black",
                            )
                ticks = np.arange(len(classes))
                ax.set_xticks(ticks, [class_label(c) for c in classes], fontsize=12)
                ax.set_yticks(ticks, [class_label(c) for c in classes] if ax is axes[0][0] else [], fontsize=12)
                ax.tick_params(which="minor", length=0)
                ax.tick_params(which="major", length=0, top=False, right=False)
                ax.set_xlabel("Predicted class", fontsize=15)
                ax.set_title(f"{self.label(series)}  ({n_seeds} seed{'s' if n_seeds != 1 else ''})", fontsize=15)
            axes[0][0].set_ylabel("True class", fontsize=15)
            cbar = fig.colorbar(image, ax=list(axes[0]), fraction=0.025, pad=0.015)
            cbar.set_label("Fraction of true-class jets")
            fig.suptitle(f"Confusion matrices at $n_{{train}}$ = {n_train:,} jets (entries in %)", fontsize=16, y=0.98)
            return self.save(fig, "confusion")

    def flavor_metrics(self) -> list[Path]:
        import matplotlib.pyplot as plt

        n_train = chosen_n_train(self.cfg, self.runs)
        flavors = list(self.cfg["flavor_pairs"])
        if n_train is None:
            return []
        with self.style():
            fig, axes = plt.subplots(1, 2, figsize=(14, 5.6))
            bars = [s for s in self.series if not self.is_baseline(s)]
            width = 0.8 / max(1, len(bars))
            for ax, metric in zip(axes, ("tag_efficiency", "charge_flip")):
                for series in self.series:
                    vals, errs = [], []
                    for q in flavors:
                        m = _select(seed_means(self.runs, self.axes, metric, q), series)
                        m = m[m["n_train"] == n_train]
                        vals.append(m["mean"].iloc[0] if len(m) else np.nan)
                        errs.append(m["err"].iloc[0] if len(m) else np.nan)
                    if self.is_baseline(series):  # a reference level across each flavor's group of bars
                        ax.hlines(
                            vals,
                            np.arange(len(flavors)) - 0.45,
                            np.arange(len(flavors)) + 0.45,
                            colors=BASELINE_STYLE["color"],
                            linestyles=BASELINE_STYLE["ls"],
                            lw=2.2,
                            zorder=4,
                            label=self.label(series),
                        )
                        continue
                    k = bars.index(series)
                    xpos = np.arange(len(flavors)) + (k - (len(bars) - 1) / 2) * width
                    ax.bar(
                        xpos,
                        vals,
                        width=width * 0.92,
                        yerr=errs,
                        capsize=3,
                        color=self.color(series),
                        label=self.label(series),
                        alpha=0.9,
                        error_kw={"elinewidth": 1.2},
                    )
                self._reference_markers(ax, metric, flavors)
                ax.set_xticks(np.arange(len(flavors)), [f"${q}$" for q in flavors])
                ax.tick_params(axis="x", which="minor", bottom=False, top=False)
                ax.set_xlabel("Quark flavor $q$")
                ax.set_ylabel(metric_label(metric))
                ax.set_ylim(0, 1.05 if metric == "tag_efficiency" else max(0.6, ax.get_ylim()[1]))
                if metric == "charge_flip":
                    ax.axhline(0.5, color="grey", ls=":", lw=1)
                    ax.text(
                        len(flavors) - 0.5,
                        0.51,
                        "no charge information",
                        ha="right",
                        va="bottom",
                        fontsize=11,
                        color="grey",
                    )
            for ax in axes:
                ax.tick_params(axis="x", which="both", top=False, length=0)
            handles, labels = axes[0].get_legend_handles_labels()
            fig.suptitle(f"Per-flavor metrics at $n_{{train}}$ = {n_train:,} jets (seed mean ± unc.)", fontsize=16)
            fig.tight_layout(rect=(0, 0, 1, 0.91))
            fig.legend(
                handles, labels, ncol=min(4, len(labels)), loc="upper center", bbox_to_anchor=(0.5, 0.93), frameon=False
            )
            return self.save(fig, "flavor_metrics")


FIGURE_GROUPS = (("scaling", "mirage"), ("confusion", "flavor_metrics", "loss_scaling"))  # two balanced halves


def _figure_group(job) -> list[Path]:
    cfg, tables, fit_docs, out_dir, names = job
    import matplotlib

    matplotlib.use("Agg")
    figures = Figures(cfg, tables, fit_docs, out_dir)
    return [p for name in names for p in getattr(figures, name)()]


def make_figures(cfg: dict, tables: dict, fit_docs: list[dict], out_dir: Path) -> list[Path]:
    """Every figure (two groups drawn in parallel processes where possible); stale figure files removed."""
    import matplotlib

    from ..workers import parallel_map

    matplotlib.use("Agg")
    groups = parallel_map(
        _figure_group, [(cfg, tables, fit_docs, out_dir, names) for names in FIGURE_GROUPS], min_jobs=2
    )
    produced = [p for group in groups for p in group]
    Figures(cfg, tables, fit_docs, out_dir)._remove_stale(produced)
    return produced

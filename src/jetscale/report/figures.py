"""Paper figures from the study tables and fit records (PNG + PDF under results/figures/).

confusion      row-normalised confusion matrices side by side, one per series, at report.confusion_n_train
flavor_metrics flavor-tag efficiency and charge-flip rate per quark flavor, grouped by series (same n_train)
scaling_<m>    metric m vs n_train, one panel per quark flavor: seed means ± error, fitted curves, n_c markers;
               hollow: a seed ended at its sample cap while still improving (stopped_by budget)
loss_scaling   test log-loss vs parameters, vs training jets and vs measured training compute (with frontier)
Every function returns the list of files it wrote and never raises on missing fits (it draws what exists).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import metric_catalog
from ..fit import forms
from ..fit.forms import JOINT_LAW, LOSS_LAW, SMOOTH, THRESHOLD
from ..fit.forms import evaluate as evaluate_form
from ..fit.status import OK, UNCONSTRAINED, usable
from ..fit.study import compute_frontier
from ..grid import series_axes
from ..io import atomic_path
from ..reference import OVERLAY_MODELS, overlay_label, reference_for
from .tables import chosen_n_train, seed_means

UNCONSTRAINED_STYLE = {"ls": ":", "lw": 0.9, "alpha": 0.45}  # a fit the data do not determine: not used
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
REFERENCE_STYLE = {  # published CEPC numbers: black/grey, apart from the study's palette
    "particlenet": {"marker": {"marker": "D", "s": 55, "color": "black"}, "line": {"color": "black", "ls": "-."}},
    "part": {"marker": {"marker": "*", "s": 120, "color": "dimgray"}, "line": {"color": "dimgray", "ls": (0, (1, 1))}},
}


def class_label(name: str) -> str:
    if name.endswith("bar"):
        return rf"$\bar{{{name[:-3]}}}$"
    return f"${name}$"


class Figures:
    """Holds the study tables, fit records and style; one method per figure."""

    def __init__(self, cfg: dict, tables: dict, fit_docs: list[dict], out_dir: Path):
        self.cfg, self.tables, self.fit_docs, self.out_dir = cfg, tables, fit_docs, Path(out_dir)
        self.runs = tables["runs"]
        self.axes = series_axes(cfg, self.runs)
        self.varying = [a for a in self.axes if self.runs[a].nunique() > 1] or self.axes[:1]
        self.color_by = cfg["report"].get("color_by") or "model"
        if self.color_by not in self.axes:  # n_train is the x axis and seeds are averaged: colour by a series axis
            self.color_by = (self.varying or self.axes or ["model"])[0]
        self.facet_by = cfg["report"].get("facet_by")
        self.series = self._series_list()
        self.colors = self._colors()
        self.reference = reference_for(cfg)  # published CEPC numbers; None unless the 11 JoI classes

    # ------------------------------------------------------------------------------------------ helpers
    def _series_list(self) -> list[dict]:
        if not self.axes:
            return [{}]
        uniq = self.runs[self.axes].drop_duplicates()
        return [{a: _plain(v) for a, v in row.items()} for _, row in uniq.iterrows()]

    def label(self, series: dict) -> str:
        parts = [str(series[a]) if a == "model" else f"{a}={series[a]}" for a in self.varying if a in series]
        return ", ".join(parts) or "all"

    def _colors(self) -> dict:
        import matplotlib.pyplot as plt

        palette = plt.get_cmap("tab10").colors if self._style_cycle() is None else self._style_cycle()
        if self.color_by in ("n_train", "seed"):
            values = sorted(self.runs[self.color_by].unique())
        else:
            values = list(dict.fromkeys(s.get(self.color_by) for s in self.series))
        return {v: palette[i % len(palette)] for i, v in enumerate(values)}

    def _style_cycle(self):
        try:
            import mplhep as hep

            style = getattr(hep.style, self.cfg["report"].get("style") or "CMS", None)
            cycle = (style or {}).get("axes.prop_cycle") if isinstance(style, dict) else None
            return [c["color"] for c in cycle] if cycle is not None else None
        except Exception:  # noqa: BLE001 - cosmetic only
            return None

    def color(self, series: dict):
        return self.colors.get(series.get(self.color_by), "black")

    def marker(self, series: dict) -> str:
        same = [s for s in self.series if s.get(self.color_by) == series.get(self.color_by)]
        return MARKERS[same.index(series) % len(MARKERS)] if series in same else "o"

    def style(self):
        import matplotlib.pyplot as plt
        import mplhep as hep

        name = self.cfg["report"].get("style") or "CMS"
        style = getattr(hep.style, name, None)
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
            width = 0.8 / max(1, len(self.series))
            for ax, metric in zip(axes, ("tag_efficiency", "charge_flip")):
                for k, series in enumerate(self.series):
                    vals, errs = [], []
                    for q in flavors:
                        m = _select(seed_means(self.runs, self.axes, metric, q), series)
                        m = m[m["n_train"] == n_train]
                        vals.append(m["mean"].iloc[0] if len(m) else np.nan)
                        errs.append(m["err"].iloc[0] if len(m) else np.nan)
                    xpos = np.arange(len(flavors)) + (k - (len(self.series) - 1) / 2) * width
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

        ncols = min(3, len(flavors))
        nrows = math.ceil(len(flavors) / ncols)
        spec = metric_catalog.find(metric)
        higher = bool(spec and spec.higher_is_better)
        with self.style():
            fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 4.9 * nrows), squeeze=False, sharex=True)
            handles = {}
            for ax, flavor in zip(axes.flat, flavors):
                means = seed_means(self.runs, self.axes, metric, flavor)
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
                        color=color,
                        ms=6,
                        capsize=2.5,
                        lw=1.2,
                        label=self.label(series),
                    )
                    handles.setdefault(self.label(series), h)
                    if m["budget_limited"].any():  # ended at the sample cap while still improving: hollow
                        capped = m[m["budget_limited"]]
                        handles["stopped at the sample cap"] = ax.plot(
                            capped["n_train"],
                            capped["mean"],
                            ls="none",
                            marker=self.marker(series),
                            ms=6,
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
                    ax.set_ylim(-0.02, 0.62)
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
            series_keys = [k for k in handles if k in {self.label(s) for s in series_list}]
            ordered = series_keys + [k for k in handles if k not in series_keys]
            legend_target.legend([handles[k] for k in ordered], ordered, frameon=False, fontsize=13, **kwargs)
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
            curve = evaluate_form(form, rec["params"], grid)
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
                [n_c], [y_c], xerr=xerr, fmt="*", ms=14, color=color, mec="black", mew=0.8, capsize=4, elinewidth=2
            )
            handles.setdefault("$n_c$ (95% CI)", h)

    def mirage(self) -> list[Path]:
        from .outlook import mirage_figure

        return mirage_figure(self)

    def joint_laws(self) -> tuple[list[dict], str]:
        """(usable L(N, D) records, why there is none): one per architecture with enough widths."""
        docs = [d for d in self.fit_docs if d["kind"] == JOINT_LAW]
        good = [d for d in docs if usable(d["fits"].get(JOINT_LAW))]
        if good:
            return good, ""
        reasons = [d["fits"][JOINT_LAW]["message"] for d in docs if d["fits"].get(JOINT_LAW)]
        return [], (reasons[0] if reasons else "no L(N, D) fit in results/fits/")

    def loss_scaling(self) -> list[Path]:
        import matplotlib.pyplot as plt

        loss = self.runs[self.runs["metric"] == "log_loss"].dropna(subset=["value"])
        if loss.empty:
            return []
        laws, why = self.joint_laws()
        with self.style():
            fig, axes = plt.subplots(1, 3, figsize=(20, 6.2))
            self._loss_vs_params(axes[0], loss, laws, why)
            self._loss_vs_data(axes[1], loss, laws)
            self._loss_vs_compute(axes[2], loss)
            for ax in axes:
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_ylabel(metric_label("log_loss"))
                _plain_log_labels(ax.yaxis)
            fig.tight_layout()
            return self.save(fig, "loss_scaling")

    def _loss_vs_params(self, ax, loss, laws, why) -> None:
        import textwrap

        import matplotlib as mpl

        sizes = sorted(loss["n_train"].unique())
        cmap = mpl.colormaps["viridis"]
        norm = mpl.colors.LogNorm(vmin=min(sizes), vmax=max(sizes) * 1.0001)
        means = loss.groupby(["n_params", "n_train"])["value"].agg(["mean", "std", "count"]).reset_index()
        for n_train, sub in means.groupby("n_train"):
            err = (sub["std"].fillna(0) / np.sqrt(sub["count"])).to_numpy()
            ax.errorbar(sub["n_params"], sub["mean"], yerr=err, fmt="o", color=cmap(norm(n_train)), ms=6, capsize=2)
            for doc in laws:  # within its architecture's own range of N only
                n_params = np.asarray(doc["points"]["x"], dtype=float)
                grid = np.geomspace(n_params.min() / 1.5, n_params.max() * 1.5, 100)
                params = doc["fits"][JOINT_LAW]["params"]
                ax.plot(grid, evaluate_form(JOINT_LAW, params, grid, n_train), color=cmap(norm(n_train)), lw=1.2)
        sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        cbar = ax.figure.colorbar(sm, ax=ax, pad=0.01)
        cbar.set_label("$n_{train}$ [jets]")
        ax.set_xlabel("Parameters $N$")
        ax.set_title("vs model size" + (" (lines: $L(N,D)$ fit)" if laws else ""), fontsize=15)
        if not laws:
            note = "no $L(N,D)$ fit: " + why.removeprefix("not applicable: ")
            ax.text(0.03, 0.03, textwrap.fill(note, 48), transform=ax.transAxes, fontsize=9, va="bottom", color="0.3")

    def _law_for(self, laws, series: dict):
        for doc in laws:
            if all(_same(series.get(k), v) for k, v in (doc.get("series") or {}).items()):
                return doc
        return None

    def _loss_vs_data(self, ax, loss, laws) -> None:
        for series in self.series:
            sub = _select(loss, series)
            if sub.empty:
                continue
            means = sub.groupby("n_train")["value"].agg(["mean", "std", "count"]).reset_index()
            err = (means["std"].fillna(0) / np.sqrt(means["count"])).to_numpy()
            color = self.color(series)
            ax.errorbar(
                means["n_train"],
                means["mean"],
                yerr=err,
                fmt=self.marker(series),
                color=color,
                ms=6,
                capsize=2,
                label=self.label(series),
            )
            grid = np.geomspace(means["n_train"].min() / 1.5, means["n_train"].max() * 1.5, 100)
            doc = self.fit_doc("loss_vs_data", series=series)
            rec = doc["fits"][LOSS_LAW] if doc else None
            if rec and rec["converged"] and rec.get("status", OK) in (OK, UNCONSTRAINED):
                ok = rec.get("status", OK) == OK
                alpha = rec["params"]["alpha"]
                style = {"ls": "--", "lw": 1.3} if ok else UNCONSTRAINED_STYLE
                label = rf"  power law, $\alpha$={alpha:.2f}" if ok else "  power law: unconstrained"
                ax.plot(grid, evaluate_form(LOSS_LAW, rec["params"], grid), color=color, label=label, **style)
            law = self._law_for(laws, series)
            if law is not None and "n_params" in sub:
                n_params = float(sub["n_params"].median())
                params = law["fits"][JOINT_LAW]["params"]
                ax.plot(grid, evaluate_form(JOINT_LAW, params, n_params, grid), ":", color=color, lw=1.3)
        ax.set_xlabel("Training jets $D = n_{train}$")
        ax.set_title("vs data" + (" (dotted: $L(N,D)$)" if laws else ""), fontsize=15)
        ax.legend(frameon=False, fontsize=10)

    def _loss_vs_compute(self, ax, loss) -> None:
        sub = loss.dropna(subset=["train_flops"])
        for series in self.series:
            s = _select(sub, series)
            if not s.empty:
                ax.scatter(
                    s["train_flops"],
                    s["value"],
                    s=22,
                    color=self.color(series),
                    marker=self.marker(series),
                    alpha=0.75,
                    label=self.label(series),
                )
        if sub.empty:
            return
        c, y = sub["train_flops"].to_numpy(float), sub["value"].to_numpy(float)
        front = compute_frontier(c, y)
        ax.step(c[front], y[front], where="post", color="black", lw=1.6, label="compute-optimal frontier")
        doc = self.fit_doc("loss_vs_compute")
        if doc and usable(doc["fits"][LOSS_LAW]):
            rec = doc["fits"][LOSS_LAW]
            grid = np.geomspace(c.min() / 1.5, c.max() * 1.5, 100)
            ax.plot(
                grid,
                evaluate_form(LOSS_LAW, rec["params"], grid),
                "--",
                color="black",
                lw=1.2,
                label=rf"frontier fit, $\alpha_C$={rec['params']['alpha']:.2f}",
            )
        ax.set_xlabel("Measured training compute $C$ [FLOP]")
        ax.set_title("vs compute", fontsize=15)
        ax.legend(frameon=False, fontsize=10)


def metric_label(metric: str) -> str:
    spec = metric_catalog.find(metric)
    return spec.label if spec else metric


def _plain_log_labels(axis) -> None:
    """Label a log axis spanning < 2 decades with plain numbers (0.4, 0.6, 1, 2) instead of 4×10⁻¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _same(a, b) -> bool:
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

    from ..fit.study import parallel_map

    matplotlib.use("Agg")
    groups = parallel_map(
        _figure_group, [(cfg, tables, fit_docs, out_dir, names) for names in FIGURE_GROUPS], min_jobs=2
    )
    produced = [p for group in groups for p in group]
    Figures(cfg, tables, fit_docs, out_dir)._remove_stale(produced)
    return produced

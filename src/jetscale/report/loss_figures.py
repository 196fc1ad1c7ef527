"""Loss-scaling figures: test log-loss vs parameters, vs training jets and vs measured training compute, with the
joint laws and the compute frontier (``loss_scaling``). A part of :class:`jetscale.report.figures.Figures`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..fit.forms import JOINT_LAW, LOSS_LAW
from ..fit.forms import evaluate as evaluate_form
from ..fit.status import OK, UNCONSTRAINED, usable
from ..fit.study import compute_frontier
from .figure_style import (
    BASELINE_STYLE,
    UNCONSTRAINED_STYLE,
    _plain_log_labels,
    _same,
    _select,
    metric_label,
)

NOTE_BAND = 0.3  # share of the loss-vs-parameters panel's height kept free of points for its note
# the points of one N moved left, not at all and right in turn by n_train (by this share of the panel's log N
# span), so that equal losses stay apart
DODGE = 0.015


class LossFigures:
    """The loss-scaling figure family (drawn with the style and helpers of
    :class:`~jetscale.report.figures.Figures`)."""

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

    def model_style(self, series: dict) -> dict:
        """The marker of ``series`` on this figure: its model's shape (named in the loss-vs-parameters panel's
        legend) on every panel; several series of one model in one colour (its widths) filled differently."""
        return {"marker": self.marker(series), "fillstyle": self.fill(series)}

    def _loss_vs_params(self, ax, loss, laws, why) -> None:
        """Seed means ± error vs N: colour = n_train, marker = model (named in the legend; edge in the model's
        colour where colour is by model), a model's points at one n_train joined across its widths where no
        L(N, D) law is drawn for it; the laws' curves within each architecture's own range of N."""
        import matplotlib as mpl
        from matplotlib.lines import Line2D

        sizes = sorted(loss["n_train"].unique())
        cmap = mpl.colormaps["viridis"]
        norm = mpl.colors.LogNorm(vmin=min(sizes), vmax=max(sizes) * 1.0001)
        counts = loss["n_params"].dropna()
        span = max(np.log10(counts.max() / counts.min()), 0.5) if len(counts) else 1.0
        dodge = {n: 10 ** (DODGE * span * (k % 3 - 1)) for k, n in enumerate(sizes)}  # a zigzag, not a slope
        networks = [s for s in self.series if not self.is_baseline(s)]  # the baseline has no N
        shapes = self.model_shapes  # the report's one shape per model (figure_style.model_markers)
        all_means, handles, joined = [], {}, False
        for series in networks:
            sub = _select(loss, series).dropna(subset=["n_params"])
            if sub.empty:
                continue
            model = series.get("model")
            edge = self.color(series) if self.color_by == "model" else "0.25"
            means = sub.groupby(["n_params", "n_train"])["value"].agg(["mean", "std", "count"]).reset_index()
            all_means.append(means)
            for n_train, pts in means.groupby("n_train"):
                err = (pts["std"].fillna(0) / np.sqrt(pts["count"])).to_numpy()
                style = {"color": cmap(norm(n_train)), "mec": edge, "mew": 1.0, "ms": 8.5}
                x = pts["n_params"] * dodge[n_train]
                ax.errorbar(x, pts["mean"], yerr=err, fmt=shapes[model], capsize=2, zorder=3, **style)
            handles.setdefault(model, (shapes[model], edge))
        for series, widths in self._architectures(networks, loss).items():
            if len(widths) < 2 or self._law_for(laws, dict(series)) is not None:
                continue  # one width: nothing to join; a drawn L(N, D) law already shows the trend in N
            arch = _select(loss, dict(series)).dropna(subset=["n_params"])
            trend = arch.groupby(["n_train", "n_params"])["value"].mean().reset_index()
            for n_train, pts in trend.groupby("n_train"):
                x = pts["n_params"] * dodge[n_train]
                ax.plot(x, pts["value"], color=cmap(norm(n_train)), lw=0.8, alpha=0.8, zorder=2)
                joined = True
        for n_train in sizes:
            for doc in laws:  # within its architecture's own range of N only
                n_params = np.asarray(doc["points"]["x"], dtype=float)
                grid = np.geomspace(n_params.min() / 1.5, n_params.max() * 1.5, 100)
                params = doc["fits"][JOINT_LAW]["params"]
                ax.plot(grid, evaluate_form(JOINT_LAW, params, grid, n_train), color=cmap(norm(n_train)), lw=1.2)
        sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        cbar = ax.figure.colorbar(sm, ax=ax, pad=0.01)
        cbar.set_label("$n_{train}$ [jets]")
        ax.margins(x=0.08)
        ax.set_xlabel("Parameters $N$")
        ax.set_title("vs model size" + (" (lines: $L(N,D)$ fit)" if laws else ""), fontsize=15)
        legend = [
            Line2D([], [], ls="none", marker=shape, mfc="white", mec=edge, mew=1.3, ms=8, label=str(model))
            for model, (shape, edge) in handles.items()
        ]
        if joined:
            legend.append(Line2D([], [], color="0.4", lw=0.8, label="one $n_{train}$ across widths"))
        if not laws and all_means:
            self._note_band(ax, pd.concat(all_means), why)
        if legend:  # in the note's band (free of points) when there is one
            ax.legend(handles=legend, loc="lower right" if not laws else "best", frameon=False, fontsize=11)

    def _architectures(self, networks: list[dict], loss) -> dict:
        """Each architecture (a series but its width) -> the widths with test log-loss points."""
        out: dict = {}
        for series in networks:
            if not _select(loss, series).dropna(subset=["n_params"]).empty:
                arch = tuple((k, v) for k, v in series.items() if k != "width")
                out.setdefault(arch, []).append(series.get("width"))
        return out

    @staticmethod
    def _note_band(ax, means, why: str) -> None:
        """Why there is no L(N, D) curve, in a band below the lowest point (the axis is made logarithmic by the
        caller), so the note hides no point."""
        import textwrap

        note = "no $L(N,D)$ fit: " + why.removeprefix("not applicable: ")
        lo, hi = (means["mean"] - means["std"].fillna(0)).min(), (means["mean"] + means["std"].fillna(0)).max()
        lo, hi = max(lo, 1e-3) / 1.03, hi * 1.03
        ax.set_ylim(hi / (hi / lo) ** (1 / (1 - NOTE_BAND)), hi)
        box = {"facecolor": "white", "edgecolor": "0.8", "alpha": 0.85}
        ax.text(
            0.03,
            0.03,
            textwrap.fill(note, 48),
            transform=ax.transAxes,
            fontsize=9,
            va="bottom",
            color="0.3",
            bbox=box,
            zorder=5,
        )

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
            marker = self.model_style(series)
            ax.errorbar(
                means["n_train"],
                means["mean"],
                yerr=err,
                fmt=marker["marker"],
                fillstyle=marker["fillstyle"],
                color=color,
                ms=6,
                capsize=2,
                label=self.label(series),
                **({"ls": BASELINE_STYLE["ls"]} if self.is_baseline(series) else {}),
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
            if law is not None and "n_params" in sub and not self.is_baseline(series):  # the baseline has no N
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
                ax.plot(
                    s["train_flops"],
                    s["value"],
                    ls="none",
                    ms=5,
                    color=self.color(series),
                    alpha=0.75,
                    label=self.label(series),
                    **self.model_style(series),
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

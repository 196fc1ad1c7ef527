"""Loss-scaling figures: test log-loss vs parameters, vs training jets and vs measured training compute, with the
joint laws and the compute frontier (``loss_scaling``). A part of :class:`jetscale.report.figures.Figures`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
            # a band below the lowest point holds the note (the axis is made logarithmic by the caller), so the
            # note hides no point
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
            ax.errorbar(
                means["n_train"],
                means["mean"],
                yerr=err,
                fmt=self.marker(series),
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

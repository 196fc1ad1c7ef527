"""Report section of a study with pretraining: effective data transferred, fine-tuned vs from-scratch curves,
pretraining loss vs compute and vs n_pretrain. Reads only tables/ and fits/transfer/ (never a run dir)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from .. import paths
from ..fit.forms import powerlaw
from ..fit.status import usable
from ..fit.transfer import format_transfer
from ..fit.transfer_study import TRANSFER_KEY, transfer_dir
from ..paths import figures_dir, results_root
from .figure_style import _plain_log_labels

FIGURE_NAMES = ("transfer_dt", "transfer_curves", "pretrain_loss")
CAPTIONS = {
    "transfer_dt": (
        "Effective data transferred (Hernandez et al. 2021). Left: D_T(n), the extra labelled jets a from-scratch "
        "model of the same architecture would need to match the fine-tuned one at n labelled jets, read off the "
        "from-scratch seed-mean curve (monotone, log-linear between measured sizes); error bars: bootstrap over "
        "seeds (95%). Right: the data multiplier (n + D_T)/n; 1 (dotted) = no transfer, below 1 = pretraining "
        "hurts. Triangles ▲ are lower bounds: the fine-tuned model is better than anything the from-scratch curve "
        "reaches, so only D_T > m_max − n is known (never extrapolated); ▼ are upper bounds (worse than the "
        "smallest from-scratch point). D_T is defined only where the from-scratch curve rises beyond its seed scatter; "
        "a series against a flat from-scratch curve is listed as undefined and not drawn. Rows: test log-loss and "
        "test accuracy."
    ),
    "transfer_curves": (
        "Test accuracy (left) and log-loss (right) vs labelled training jets: from scratch (black) against each "
        "pretraining method / pool size / fine-tuning mode, mean over seeds ± spread."
    ),
    "pretrain_loss": (
        "Self-supervised loss on held-out validation jets (labels unused). Left: along every pretraining job vs its "
        "measured compute (FLOP counted with torch's flop counter, ×3 for training), with a power law with floor "
        "fitted to each method's compute-optimal frontier (dashed). Right: final held-out loss vs the unlabelled "
        "pool size n_pretrain per method × width, with a power-law-with-floor fit where there are enough points "
        "and the fit is ok (floors held to ≥ 0; unconstrained fits are not drawn). "
        "Losses are in each objective's own units and are not comparable across methods."
    ),
}


def _read(cfg):
    import pandas as pd

    d = transfer_dir(cfg)
    table, laws_file, loss_file = d / paths.TRANSFER_TABLE, d / paths.TRANSFER_LAWS, d / paths.PRETRAIN_LOSS_FITS
    frame = pd.read_csv(table) if table.is_file() else pd.DataFrame()
    laws = json.loads(laws_file.read_text()) if laws_file.is_file() else []
    loss = json.loads(loss_file.read_text()) if loss_file.is_file() else {}
    return frame, laws, loss


def _label(row) -> str:
    return f"{row['method']} n_pre={int(row['n_pretrain'])} {row['finetune']}"


def _save(fig, out: Path, name: str) -> list[Path]:
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        with atomic_path(out / f"{name}.{ext}") as tmp:  # never through a link at the figure's name
            fig.savefig(tmp, format=ext, dpi=130 if ext == "png" else None, bbox_inches="tight")
        paths.append(out / f"{name}.{ext}")
    plt.close(fig)
    return paths


def make_transfer_figures(cfg: dict, tables: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    frame, _, loss = _read(cfg)
    out = figures_dir(results_root(cfg))
    paths = []
    if not frame.empty:
        paths += _dt_figure(frame, out)
    paths += _curves_figure(tables["runs"], out, len(cfg["classes"]))
    if loss.get("vs_compute"):
        paths += _loss_figure(loss, out)
    return paths


def _dt_figure(frame, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    metrics = [m for m in ("log_loss", "accuracy") if (frame["metric"] == m).any()]
    fig, axes = plt.subplots(len(metrics), 2, figsize=(12, 4.2 * len(metrics)), squeeze=False)
    keys = ["model", "width", "method", "n_pretrain", "finetune"]
    for r, metric in enumerate(metrics):
        sub = frame[(frame["metric"] == metric) & frame["n"].notna()]
        for i, (_, series) in enumerate(sub.groupby(keys, sort=False)):
            color = f"C{i % 10}"
            label = f"{series['model'].iloc[0]} " + _label(series.iloc[0])
            if (series["status"] == "undefined").all():
                label += " (D_T undefined: flat from-scratch curve)"
            ok = series[(series["status"] == "ok") & series["bound"].isna()]
            lo_b = series[series["bound"] == "lower"]
            up_b = series[series["bound"] == "upper"]
            n = ok["n"].to_numpy(float)
            d = ok["d_t"].to_numpy(float)
            lo = np.where(ok["ci_low"].notna(), d - ok["ci_low"].to_numpy(float), 0)
            hi = np.where(ok["ci_high"].notna(), ok["ci_high"].to_numpy(float) - d, 0)
            axes[r, 0].errorbar(n, d, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], fmt="o-", color=color, label=label)
            axes[r, 1].errorbar(
                n, 1 + d / n, yerr=[np.maximum(lo, 0) / n, np.maximum(hi, 0) / n], fmt="o-", color=color
            )
            for frame_b, marker in ((lo_b, "^"), (up_b, "v")):
                if len(frame_b):
                    nb, vb = frame_b["n"].to_numpy(float), frame_b["bound_value"].to_numpy(float)
                    axes[r, 0].scatter(nb, vb, marker=marker, s=70, color=color)
                    axes[r, 1].scatter(nb, 1 + vb / nb, marker=marker, s=70, color=color)
        axes[r, 0].set_xscale("log")
        axes[r, 0].set_yscale("symlog", linthresh=max(1.0, float(sub["n"].min() or 1) / 10))
        axes[r, 0].axhline(0, color="k", lw=0.8, ls=":")
        axes[r, 0].set_ylabel(f"D_T (jets), test {metric}")
        axes[r, 1].set_xscale("log")
        axes[r, 1].set_yscale("log")
        axes[r, 1].axhline(1, color="k", lw=0.8, ls=":")
        axes[r, 1].set_ylabel("data multiplier (n + D_T)/n")
        for ax in axes[r]:
            ax.set_xlabel("labelled training jets n")
            ax.grid(alpha=0.3, which="both")
            _plain_log_labels(ax.xaxis)
        _plain_log_labels(axes[r, 1].yaxis)
        axes[r, 0].legend(fontsize=8)
    return _save(fig, out, "transfer_dt")


def _curves_figure(runs, out: Path, n_classes: int) -> list[Path]:
    """Test accuracy and log-loss vs n, one column per model: its from-scratch curve (black, solid) and each
    fine-tuned series (coloured, dashed) on the same axes, so each comparison is read within one panel and a
    model with a much larger log-loss does not flatten the others; chance level dotted."""
    import matplotlib.pyplot as plt

    if "pretrain" not in runs.columns:
        return []
    runs = runs[runs["flavor"].fillna("") == ""]
    models = list(dict.fromkeys(runs["model"]))
    fig, axes = plt.subplots(2, len(models), figsize=(4.6 * len(models), 7.4), squeeze=False)
    for c, model in enumerate(models):
        for r, metric in enumerate(("accuracy", "log_loss")):
            ax = axes[r, c]
            rows = runs[(runs["metric"] == metric) & (runs["model"] == model)]
            groups = rows.groupby(["width", "pretrain", "n_pretrain", "finetune"], sort=False, dropna=False)
            for i, (key, sub) in enumerate(groups):
                stats = sub.groupby("n_train")["value"].agg(["mean", "std"]).reset_index()
                scratch = key[1] == "none"
                label = f"w{key[0]} " + ("from scratch" if scratch else f"{key[1]} n_pre={int(key[2])} {key[3]}")
                ax.errorbar(
                    stats["n_train"],
                    stats["mean"],
                    yerr=stats["std"].fillna(0),
                    fmt="o-" if scratch else "s--",
                    color="k" if scratch else f"C{i % 10}",
                    capsize=3,
                    label=label,
                )
            chance = 1.0 / n_classes if metric == "accuracy" else float(np.log(n_classes))
            ax.axhline(chance, color="grey", lw=0.8, ls=":", label="chance" if r == 0 else None)
            ax.set_xscale("log")
            ax.set_xlabel("labelled training jets n")
            ax.set_ylabel(f"test {metric.replace('_', '-')}")
            ax.grid(alpha=0.3, which="both")
            _plain_log_labels(ax.xaxis)
        axes[0, c].set_title(model)
        axes[0, c].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "transfer_curves")


def _loss_figure(loss: dict, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, doc in enumerate(loss["vs_compute"]):
        c, y = np.array(doc["points"]["flops"]), np.array(doc["points"]["val_loss"])
        axes[0].scatter(c, y, s=10, color=f"C{i}", alpha=0.5, label=f"{doc['method']} (held-out, all jobs)")
        front = np.array(doc["points"]["frontier"], dtype=int)
        if len(front):
            axes[0].plot(c[front], y[front], "o", color=f"C{i}", mfc="none")
        fitted = doc["fit"]
        if usable(fitted) and len(front):
            xs = np.geomspace(c[front].min(), c[front].max(), 50)
            p = fitted["params"]
            axes[0].plot(
                xs,
                powerlaw(xs, p["y_inf"], p["A"], p["alpha"]),
                "--",
                color=f"C{i}",
                label=f"fit: α={p['alpha']:.2g}, floor {p['y_inf']:.3g}",
            )
    for i, doc in enumerate(loss.get("vs_n_pretrain", [])):
        x, y = np.array(doc["points"]["n_pretrain"]), np.array(doc["points"]["val_loss"])
        axes[1].plot(x, y, "o-", color=f"C{i}", label=f"{doc['method']} w{doc['width']}")
        if usable(doc["fit"]):
            p = doc["fit"]["params"]
            xs = np.geomspace(x.min(), x.max(), 50)
            axes[1].plot(
                xs, powerlaw(xs, p["y_inf"], p["A"], p["alpha"]), "--", color=f"C{i}", label=f"fit: α={p['alpha']:.2g}"
            )
    axes[0].set_xlabel("pretraining compute (FLOP)")
    axes[1].set_xlabel("unlabelled jets n_pretrain")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_ylabel("held-out pretraining loss")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return _save(fig, out, "pretrain_loss")


def transfer_section(cfg: dict, figures: list[Path]) -> str:
    """HTML: the transfer figures, a D_T table and the D_T-law fits."""
    from .html import _embed, _table

    frame, laws, loss = _read(cfg)
    parts = ["<h2 id='transfer'>Pretraining and transfer</h2>"]
    for name in FIGURE_NAMES:
        png = next((p for p in figures if p.stem == name and p.suffix == ".png"), None)
        if png is not None:
            parts.append(
                f"<figure id='{name}'>{_embed(png, results_root(cfg))}<figcaption><b>{name}.</b> "
                f"{html.escape(CAPTIONS[name])} "
                f"(PDF: <code>figures/{name}.pdf</code>)</figcaption></figure>"
            )
    if not frame.empty:
        view = frame.copy()
        view["D_T"] = [
            format_transfer(_row(r)) if r["status"] in ("ok", "beyond", "below", "undefined") else r["status"]
            for r in view.to_dict("records")
        ]
        parts.append(
            "<h3>Effective data transferred</h3><p>D_T with its 95% bootstrap-over-seeds interval; "
            "'&gt; x' = beyond the from-scratch curve's reach (a lower bound); full table: "
            "<code>results/fits/transfer/transfer.csv</code>.</p>"
        )
        cols = [*TRANSFER_KEY, "y_tuned", "y_scratch_same_n", "D_T", "multiplier"]
        parts.append(_table(view, cols))
    if laws:
        import pandas as pd

        rows = [
            {
                **{
                    k: d[k]
                    for k in (
                        "method",
                        "finetune",
                        "n_pretrain",
                        "metric",
                        "form",
                        "n_points",
                        "n_excluded",
                        "n_beyond_reach",
                        "message",
                    )
                },
                **{f"{k}": v for k, v in d.get("params", {}).items()},
            }
            for d in laws
        ]
        parts.append(
            "<h3>D_T = k · n^α · N^β</h3><p>Fitted in log space on the points with finite D_T &gt; 0 "
            "(bounds and negative transfer excluded: with many lower bounds the law says little).</p>"
        )
        parts.append(_table(pd.DataFrame(rows)))
    parts.append(generative_quality_html(cfg))
    return "\n".join(parts)


def generative_quality_html(cfg: dict) -> str:
    """HTML table of the generative backbones' quality (``tables/pretrain_quality.csv``); empty without one."""
    import pandas as pd

    from ..pretrain.tables import pretrain_quality_path
    from .html import _table

    path = pretrain_quality_path(results_root(cfg))
    if not path.is_file():
        return ""
    q = pd.read_csv(path)
    if q.empty:
        return ""
    keys = ["method", "width", "n_pretrain"]
    w1 = q[q["kind"].isin(["feature", "observable"])].copy()
    w1["value"] = [f"{g:.3g} ({r:.3g})" for g, r in zip(w1["generated"], w1["reconstructed"])]
    table = w1.pivot_table(index=keys, columns="name", values="value", aggfunc="first", sort=False)
    usage = q[q["kind"] == "codebook"].pivot_table(index=keys, columns="name", values="reconstructed")
    usage.columns = [f"codebook {c.replace('_', ' ')}" for c in usage.columns]
    view = usage.join(table, how="outer").reset_index()
    return (
        "<h3>Generative backbones: what they generate</h3><p>Per backbone: codebook usage on held-out jets, then "
        "the Wasserstein-1 distance to held-out real jets of generated jets per particle feature and jet "
        "observable, with, in brackets, that of the same real jets tokenized and decoded again (the tokenization "
        "floor a perfect GPT would reach). Units: the model inputs'. Table: "
        "<code>tables/pretrain_quality.csv</code>.</p>" + _table(view)
    )


def _row(r: dict) -> dict:
    clean = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
    clean["ci_high_beyond"] = bool(clean.get("ci_high_beyond"))
    clean["ci_low_below"] = bool(clean.get("ci_low_below"))
    return clean

"""Report sections for forecasts, backtests and the mirage check (from results/fits/ only)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd

from ..paths import backtests_table, fits_dir, forecasts_table
from .figure_style import metric_label

MIRAGE_ROWS_MAX = 12  # rows of the mirage figure (one per checked threshold)
FORECAST_TEXT = (
    "Training jets and training compute each series needs to reach the targets in <code>fits.targets</code>: the "
    "fitted curve (S-curve where the series has a threshold verdict, else power law with floor, unless the target "
    "names a form) inverted at the target, with the 95% interval from a bootstrap over seeds. Compute is this "
    "study's training recipe at that n_train: the series' measured training FLOPs, interpolated in log-log and "
    "extended with the slope of the two nearest sizes. Beyond the measured n_train range a forecast is an "
    "extrapolation: see the backtests for how far that has held. Table: <code>results/fits/forecasts.csv</code>."
)
BACKTEST_TEXT = (
    "Each scaling series refitted without its largest n_train value(s) (<code>fits.backtest_holdout</code>), "
    "with the form chosen on the remaining points; observed = mean over seeds at the held-out n_train, "
    "predicted ± 95% bootstrap prediction interval (curve replicates + seed noise of the mean). Coverage near 95% "
    "means the intervals can be trusted one step beyond the data; on synthetic curves with 2-3 seeds per size the "
    "method covers 85-92% (<code>benchmarks/forecast_coverage.py</code>), so somewhat below 95% is expected. "
    "Table: <code>results/fits/backtests.csv</code>."
)
MIRAGE_TEXT = (
    "Schaeffer et al. (2023): a jump in a thresholded metric (ε_q, f_q and accuracy count argmax decisions) can "
    "come from a smooth improvement of the scores. For every series with a threshold verdict, the same classes' "
    "threshold-free counterpart (tag log-loss −ln(p_q+p_q̄) for ε_q, charge log-loss −ln(p_true/(p_q+p_q̄)) for "
    "f_q, log-loss for accuracy; 1 − AUC as a second opinion) is fitted with the same comparison. <b>emergent</b>: "
    "the threshold is there too, at an overlapping n_c; <b>metric artefact</b>: the counterpart improves smoothly "
    "(power law preferred); <b>undetermined</b>: neither clearly."
)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.is_file() else pd.DataFrame()


def _text(v) -> str:
    return v if isinstance(v, str) else ""


def _sci(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if abs(v) < 1e3:
        return f"{v:.3g}"
    mantissa, exponent = f"{v:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _interval(row, key) -> str:
    lo, hi = row[f"{key}_lo"], row[f"{key}_hi"]
    lo_s = "0" if pd.isna(lo) else _sci(lo)
    hi_s = "∞" if pd.isna(hi) else _sci(hi)
    return f"{_sci(row[key]) if not pd.isna(row[key]) else '–'} [{lo_s}, {hi_s}]"


def forecasts_section(root: Path) -> str:
    df = _read(forecasts_table(root))
    out = ["<h2 id='forecasts'>Forecasts</h2>", f"<p>{FORECAST_TEXT}</p>"]
    if df.empty:
        return "\n".join(out + ["<p><em>no targets in fits.targets</em></p>"])
    rows = []
    for _, r in df.iterrows():
        flavor = r["flavor"] if isinstance(r["flavor"], str) else ""
        name = html.escape(f"{r['metric']}{'(' + flavor + ')' if flavor else ''} = {r['target']:g}")
        if bool(r["reachable"]):
            jets, flops = _interval(r, "n_train"), _interval(r, "train_flops")
            note = "extrapolated" if bool(r["extrapolated"]) else "inside the measured range"
            if _text(r["reason"]):
                note += "; " + r["reason"]
        else:
            jets, flops, note = "not reached", "–", _text(r["reason"])
        rows.append(
            f"<tr><td>{name}</td><td>{html.escape(str(r['series']))}</td><td>{html.escape(r['form'])}</td>"
            f"<td>{jets}</td><td>{flops}</td><td>{html.escape(str(note))}</td></tr>"
        )
    head = "<tr><th>target</th><th>series</th><th>form</th><th>training jets [95%]</th>"
    head += "<th>training FLOP [95%]</th><th>note</th></tr>"
    return "\n".join(out + [f"<table class='tab'>{head}{''.join(rows)}</table>"])


def backtests_section(root: Path) -> str:
    df = _read(backtests_table(root))
    out = ["<h2 id='backtests'>Backtests</h2>", f"<p>{BACKTEST_TEXT}</p>"]
    if df.empty:
        return "\n".join(out + ["<p><em>no series with enough points for a backtest</em></p>"])
    judged = df.dropna(subset=["covered"])
    covered = judged["covered"].astype(str).str.lower() == "true"
    out.append(
        f"<p><b>Coverage:</b> {int(covered.sum())} of {len(judged)} held-out points inside their 95% interval "
        f"({covered.mean():.0%})"
        + ("" if len(judged) == len(df) else f"; {len(df) - len(judged)} without one")
        + ".</p>"
    )
    by = judged.assign(covered=covered).groupby(["metric", "form"], sort=False)["covered"].agg(["sum", "count"])
    cells = "".join(
        f"<tr><td>{html.escape(str(m))}</td><td>{html.escape(str(f))}</td><td>{int(s)} / {int(c)}</td></tr>"
        for (m, f), (s, c) in by.iterrows()
    )
    out.append(f"<table class='tab'><tr><th>metric</th><th>form</th><th>covered</th></tr>{cells}</table>")
    rows = []
    for _, r in df.iterrows():
        interval = "–" if pd.isna(r["lo"]) else f"[{r['lo']:.4g}, {r['hi']:.4g}]"
        pred = "–" if pd.isna(r["predicted"]) else f"{r['predicted']:.4g}"
        mark = {"true": "yes", "false": "<b class='warn'>no</b>"}.get(str(r["covered"]).lower(), "–")
        rows.append(
            f"<tr><td>{html.escape(str(r['quantity']))}</td><td>{html.escape(_text(r['flavor']))}</td>"
            f"<td>{html.escape(str(r['series']))}</td><td>{html.escape(r['form'])}</td><td>{r['x']:.0f}</td>"
            f"<td>{r['observed']:.4g}</td><td>{pred}</td><td>{interval}</td><td>{mark}</td></tr>"
        )
    head = "<tr><th>quantity</th><th>flavor</th><th>series</th><th>form</th><th>held-out n_train</th>"
    head += "<th>observed</th><th>predicted</th><th>95% interval</th><th>covered</th></tr>"
    out.append(f"<details><summary>all held-out points</summary><table class='tab'>{head}{''.join(rows)}</table>")
    out.append("</details>")
    return "\n".join(out)


def mirage_section(root: Path) -> str:
    out = ["<h2 id='mirage'>Mirage check</h2>", f"<p>{MIRAGE_TEXT}</p>"]
    docs = [json.loads(p.read_text()) for p in sorted(fits_dir(root).glob("mirage__*.json"))]
    if not docs:
        return "\n".join(out + ["<p><em>no threshold verdicts on a thresholded metric: nothing to check</em></p>"])
    rows = []
    for d in docs:
        m = d["mirage"]
        comp = d.get("comparison") or {}
        nc = comp.get("n_c")
        rows.append(
            f"<tr><td>{html.escape(d['thresholded_metric'])}</td><td>{html.escape(d['flavor'])}</td>"
            f"<td>{html.escape(d['label'])}</td><td>{html.escape(d['y'])}</td>"
            f"<td>{html.escape(str(m.get('continuous_verdict')))}"
            + (f" (n_c = {nc:.3g})" if nc else "")
            + f"</td><td>{html.escape(str(m.get('auc_verdict')))}</td><td><b>{html.escape(str(m['verdict']))}</b>"
            f"</td><td>{html.escape(m['reason'])}</td></tr>"
        )
    head = "<tr><th>thresholded metric</th><th>flavor</th><th>series</th><th>counterpart</th>"
    head += "<th>its verdict</th><th>1 − AUC verdict</th><th>mirage verdict</th><th>why</th></tr>"
    return "\n".join(out + [f"<table class='tab'>{head}{''.join(rows)}</table>"])


def outlook_sections(root: Path) -> str:
    return "\n".join((mirage_section(root), forecasts_section(root), backtests_section(root)))


def mirage_figure(figs) -> list[Path]:
    """One row per checked threshold: the thresholded metric (left) and its continuous counterpart (right)."""
    import matplotlib.pyplot as plt
    import numpy as np

    checked = [d for d in figs.fit_docs if d["kind"] == "mirage"][:MIRAGE_ROWS_MAX]  # the table lists them all
    if not checked:
        return []
    with figs.style():
        fig, axes = plt.subplots(len(checked), 2, figsize=(11, 3.8 * len(checked)), squeeze=False)
        for row, doc in zip(axes, checked):
            scaling = figs.fit_doc(
                "scaling", metric=doc["thresholded_metric"], flavor=doc["flavor"], label=doc["label"]
            )
            series = doc["series"] if isinstance(doc["series"], dict) else {}
            color = figs.color(series)
            for ax, d in zip(row, (scaling, doc)):
                if d is None or not d["points"]["x"]:
                    ax.text(0.5, 0.5, "not computed", transform=ax.transAxes, ha="center")
                    continue
                x, y = np.asarray(d["points"]["x"], float), np.asarray(d["points"]["y"], float)
                ax.plot(x, y, "o", color=color, ms=5, alpha=0.7)
                handles: dict = {}
                figs._draw_fits(ax, d, color, False, handles)
                ax.set_xscale("log")
                ax.set_xlabel("Training jets $n_{train}$")
                ax.set_ylabel(metric_label(d["metric"], doc["flavor"], error=True))
                verdict = (d.get("comparison") or {}).get("verdict")
                ax.set_title(f"{figs.label(series) if series else doc['label']}: {verdict}", fontsize=13)
                if handles:
                    ax.legend(handles.values(), handles.keys(), loc="best", fontsize=10)
            row[1].text(
                0.02,
                0.04,
                f"mirage check: {doc['mirage']['verdict']}",
                transform=row[1].transAxes,
                fontsize=13,
                weight="bold",
            )
        fig.tight_layout()
        return figs.save(fig, "mirage")

"""The study's largest training set side by side with the published CEPC numbers (``jetscale.reference``).

Rows: flavor-tag efficiency ε_q and charge-flip rate f_q for q = b, c, s, u, d, then accuracy (for balanced
classes the mean of the confusion diagonal, which is how the reference's is computed). Columns: every series of
the study at its largest n_train (seed mean ± uncertainty, as in the figures), then each published model.
Only for studies of the 11 JoI classes (:func:`jetscale.reference.reference_for`); otherwise nothing.
"""

from __future__ import annotations

import html

import pandas as pd

from ..grid import series_axes, series_label
from ..models.catalog import is_fitted
from ..reference import JOI_FLAVORS, overlay_label, reference_for
from .tables import seed_means

QUANTITIES = (("tag_efficiency", "ε"), ("charge_flip", "f"))


def _series_label(series: dict, varying: list[str]) -> str:
    label = series_label(series, [a for a in series if a in varying or a == "model"], empty="study")
    return f"{label} (baseline)" if is_fitted(series.get("model")) else label


def comparison_table(cfg: dict, runs: pd.DataFrame) -> pd.DataFrame | None:
    """One row per quantity; study columns hold 'mean ± err' strings, reference columns floats. None: no overlay."""
    ref = reference_for(cfg)
    if ref is None or runs is None or runs.empty:
        return None
    n_max = int(runs["n_train"].max())
    axes = series_axes(cfg, runs)
    varying = [a for a in axes if runs[a].nunique() > 1]
    rows = [(metric, sym, q) for metric, sym in QUANTITIES for q in JOI_FLAVORS] + [("accuracy", "accuracy", "")]
    table = {"quantity": [f"{sym}_{q}" if q else sym for _, sym, q in rows]}
    for series in runs[axes].drop_duplicates().to_dict("records"):
        label = f"{_series_label(series, varying)} (n_train = {n_max:,})"
        col = []
        for metric, _, q in rows:
            m = seed_means(runs, axes, metric, q)
            for axis, value in series.items():
                m = m[m[axis].isna()] if pd.isna(value) else m[m[axis] == value]
            m = m[m["n_train"] == n_max]
            col.append(f"{m['mean'].iloc[0]:.3f} ± {m['err'].iloc[0]:.3f}" if len(m) else "")
        table[label] = col
    for name in ("particlenet", "part"):
        entry = ref["models"][name]
        values = []
        for metric, _, q in rows:
            if metric == "accuracy":
                values.append(entry["mean_diagonal"])
            else:
                values.append(entry["flavors"][q]["tag_efficiency" if metric == "tag_efficiency" else "charge_flip"])
        table[overlay_label(entry)] = values
    return pd.DataFrame(table)


def reference_section(cfg: dict, runs: pd.DataFrame) -> str:
    """The report's reference section (HTML), or '' when the study's classes are not the JoI ones."""
    table = comparison_table(cfg, runs)
    if table is None:
        return ""
    ref = reference_for(cfg)
    sources = "".join(
        f"<li><b>{html.escape(ref['models'][m]['label'])}</b>: {html.escape(ref['models'][m]['source'])}; sample: "
        f"{html.escape(ref['models'][m]['sample'])}</li>"
        for m in ("particlenet", "part")
    )
    body = table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3f}", classes="tab", border=0)
    return (
        "<!-- reference section (jetscale.report.reference) -->\n"
        "<h2 id='reference'>Published reference</h2>"
        "<p>The study's largest training set beside the published CEPC results, each labelled as its source "
        "describes it. "
        "ε<sub>q</sub>: flavor-tag efficiency, f<sub>q</sub>: charge-flip rate, accuracy: mean diagonal of the "
        f"row-normalised confusion matrix. Sources:</p><ul>{sources}</ul>{body}\n"
        "<!-- end reference section -->"
    )

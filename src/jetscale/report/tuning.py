"""Report section of a study with tuning axes (``grid.tune``): the value chosen for each cell against n_train
(and width) with its power-law trend, the candidates' validation scores, and the table of choices. Reads only
``tables/tuning.csv`` and ``fits/tuning_trends.csv``."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from ..config import tune_axes
from ..fit.tuning import trend_value
from ..grid import series_label
from ..io import atomic_path
from .figure_style import MARKERS, _plain_log_labels

FIGURE_PREFIX = "tuning_"


def caption(axis: str, by: str) -> str:
    return (
        f"Per-cell tuning of {axis}. Left: the value chosen for each cell (the lowest seed-mean validation "
        f"{by.removeprefix('val_')} among the values tried, never a test metric) against training jets, one "
        "marker per series; hollow markers lie at the edge of the values tried (the best value may lie beyond). "
        "Dashed: the fitted trend C·n^a (·w^b across widths), from fits/tuning_trends.csv; the values tried are "
        f"the faint horizontal lines. Right: seed-mean validation {by.removeprefix('val_')} of every candidate "
        "against its value, one curve per series and n_train (darker = more jets); the chosen one circled."
    )


def read_tuning(cfg: dict, tables_dir: Path, fits_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tuning.csv, tuning_trends.csv); empty frames where absent."""

    def read(path: Path) -> pd.DataFrame:
        return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.is_file() else pd.DataFrame()

    return read(paths.tuning_table(tables_dir)), read(paths.tuning_trends_table(fits_dir))


def _series_cols(cfg: dict, tuning: pd.DataFrame) -> list[str]:
    skip = {"n_train", *tune_axes(cfg), "by", "mean", "std", "n_seeds", "n_candidates", "chosen", "edge"}
    return [c for c in tuning.columns if c not in skip and tuning[c].nunique(dropna=False) > 1] or (
        ["model"] if "model" in tuning.columns else []
    )


def _label(row, cols) -> str:
    return series_label(row, cols)


def _is_chosen(frame: pd.DataFrame) -> pd.Series:
    return frame["chosen"].astype(str).str.lower() == "true"


def make_tuning_figures(cfg: dict, tuning: pd.DataFrame, trends: pd.DataFrame, out: Path) -> list[Path]:
    """One figure per numeric tuning axis (``tuning_<axis>.png|pdf``); stale ones removed."""
    import matplotlib

    matplotlib.use("Agg")
    produced = []
    if not tuning.empty:
        for axis in tune_axes(cfg):
            values = pd.to_numeric(tuning[axis], errors="coerce")
            if values.notna().all() and (values > 0).all():
                produced += _figure(cfg, tuning, trends, axis, out)
    keep = {p.name for p in produced}
    for stale in Path(out).glob(f"{FIGURE_PREFIX}*"):
        if stale.suffix in (".png", ".pdf") and stale.name not in keep:
            stale.unlink()
    return produced


def _figure(cfg: dict, tuning: pd.DataFrame, trends: pd.DataFrame, axis: str, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    cols = _series_cols(cfg, tuning)
    chosen = tuning[_is_chosen(tuning)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for v in sorted(pd.to_numeric(tuning[axis]).unique()):
        left.axhline(v, color="0.85", lw=0.8, zorder=0)
    series = list(dict.fromkeys(_label(r, cols) for _, r in tuning.iterrows()))
    colors = plt.get_cmap("tab10").colors
    for i, name in enumerate(series):
        mine = chosen[[_label(r, cols) == name for _, r in chosen.iterrows()]].sort_values("n_train")
        color, marker = colors[i % len(colors)], MARKERS[i % len(MARKERS)]
        edge = mine["edge"].fillna("").astype(str) != ""
        x, y = mine["n_train"].to_numpy(float), pd.to_numeric(mine[axis]).to_numpy(float)
        left.plot(x, y, color=color, lw=0.8, alpha=0.5)
        left.scatter(x[~edge], y[~edge], color=color, marker=marker, s=45, label=name, zorder=3)
        left.scatter(x[edge], y[edge], facecolors="none", edgecolors=color, marker=marker, s=45, zorder=3)
        trend = _trend_for(trends, axis, mine)
        if trend is not None and len(x):
            grid = np.geomspace(x.min(), x.max(), 50)
            width = mine["width"].iloc[0] if "width" in mine else None
            left.plot(grid, trend_value(trend, grid, width), color=color, ls="--", lw=1.2)
        cands = tuning[[_label(r, cols) == name for _, r in tuning.iterrows()]]
        sizes = sorted(cands["n_train"].unique())
        for j, n in enumerate(sizes):
            at = cands[cands["n_train"] == n].sort_values(axis, key=lambda s: pd.to_numeric(s))
            shade = 0.35 + 0.65 * (j + 1) / len(sizes)
            xs, ys = pd.to_numeric(at[axis]).to_numpy(float), at["mean"].to_numpy(float)
            right.plot(xs, ys, color=color, alpha=shade, marker=marker, ms=4, lw=1)
            best = at[_is_chosen(at)]
            if not best.empty:
                right.scatter(pd.to_numeric(best[axis]), best["mean"], s=110, facecolors="none", edgecolors=color)
            if len(xs):
                right.annotate(f"n={int(n)}", (xs[-1], ys[-1]), fontsize=7, color=color, alpha=shade)
    by = str(tuning["by"].iloc[0])
    for ax in (left, right):
        ax.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("Training jets n_train")
    left.set_ylabel(f"chosen {axis}")
    right.set_xlabel(axis)
    right.set_ylabel(f"seed-mean {by}")
    _plain_log_labels(left.xaxis)
    from matplotlib.ticker import NullFormatter

    tried = sorted(pd.to_numeric(tuning[axis]).unique())
    right.set_xticks(tried, [f"{v:.3g}" for v in tried])
    right.xaxis.set_minor_formatter(NullFormatter())
    left.scatter([], [], facecolors="none", edgecolors="0.3", s=45, label="at the edge of the values tried")
    left.legend(fontsize=8)
    fig.tight_layout()
    Path(out).mkdir(parents=True, exist_ok=True)
    written = []
    for ext in ("png", "pdf"):
        path = Path(out) / f"{FIGURE_PREFIX}{axis}.{ext}"
        with atomic_path(path) as tmp:  # never through a link at the figure's name
            fig.savefig(tmp, format=ext, dpi=130 if ext == "png" else None, bbox_inches="tight")
        written.append(path)
    plt.close(fig)
    return written


def _trend_for(trends: pd.DataFrame, axis: str, mine: pd.DataFrame):
    """The trend row of ``mine``'s family (the family label lists its axes as 'a=v, ...')."""
    if trends.empty or mine.empty:
        return None
    first = mine.iloc[0]
    for _, row in trends[(trends["axis"] == axis) & (trends["status"] == "ok")].iterrows():
        parts = [p.split("=", 1) for p in str(row["family"]).split(", ") if "=" in p]
        if all(a in first and _same_text(first[a], v) for a, v in parts):
            return row.to_dict()
    return None


def _same_text(value, text: str) -> bool:
    try:
        return math.isclose(float(value), float(text))
    except (TypeError, ValueError):
        return str(value) == text


def tuning_section(cfg: dict, tuning: pd.DataFrame, trends: pd.DataFrame, figures: list[Path]) -> str:
    """HTML: the tuning figures, the trend fits and the choice for every cell with its candidates' scores."""
    from .html import _embed, _table

    parts = ["<h2 id='tuning'>Per-cell tuning</h2>"]
    if tuning.empty:
        return "".join(parts) + "<p><em>No tuned cell has a result yet (tables/tuning.csv is empty).</em></p>"
    by = str(tuning["by"].iloc[0])
    parts.append(
        f"<p>Each scaling series above is built from the best value of {', '.join(tune_axes(cfg))} for each cell: "
        f"the lowest seed-mean <code>{html.escape(by)}</code> (validation set; test metrics never enter the "
        "choice). Every candidate's score: <code>tables/tuning.csv</code>; the trend fits: "
        "<code>fits/tuning_trends.csv</code>.</p>"
    )
    scored = tuning[tuning["n_seeds"] > 0].groupby(_cell_cols(cfg, tuning), sort=False, dropna=False)
    short = sum(len(sub) < int(sub["n_candidates"].iloc[0]) for _, sub in scored)
    if short:
        parts.append(
            f"<p><b>{short} tuned cell(s) chose among fewer candidates than declared</b> (the others have no result "
            "yet: <code>tables/missing.csv</code>); their choice may change when those cells finish.</p>"
        )
    for png in [p for p in figures if p.suffix == ".png"]:
        axis = png.stem.removeprefix(FIGURE_PREFIX)
        parts.append(
            f"<figure id='{html.escape(png.stem)}'>{_embed(png, paths.results_root(cfg))}<figcaption>"
            f"<b>{html.escape(png.stem)}.</b> "
            f"{html.escape(caption(axis, by))} (PDF: <code>figures/{html.escape(png.stem)}.pdf</code>)"
            "</figcaption></figure>"
        )
    if not trends.empty:
        parts.append("<h3>Trend of the chosen values</h3>")
        parts.append(_table(trends))
    parts.append("<h3>Choice per cell</h3>")
    parts.append(_table(choice_table(cfg, tuning)))
    return "".join(parts)


def _cell_cols(cfg: dict, tuning: pd.DataFrame) -> list[str]:
    return [c for c in _series_cols(cfg, tuning) if c in tuning.columns] + ["n_train"]


def choice_table(cfg: dict, tuning: pd.DataFrame) -> pd.DataFrame:
    """One row per tuned cell: its axes, the chosen value(s), the edge flag and every candidate's score."""
    taxes = tune_axes(cfg)
    cell_cols = _cell_cols(cfg, tuning)
    rows = []
    for _, sub in tuning.groupby(cell_cols, sort=False, dropna=False):
        first = sub.iloc[0]
        row = {c: first[c] for c in cell_cols}
        best = sub[_is_chosen(sub)]
        for a in taxes:
            row[f"chosen {a}"] = best[a].iloc[0] if not best.empty else "none"
        row["edge"] = best["edge"].iloc[0] if not best.empty else ""
        for _, cand in sub.iterrows():
            name = series_label(cand, taxes)
            row[f"{first['by']} @ {name}"] = cand["mean"]
        rows.append(row)
    return pd.DataFrame(rows)

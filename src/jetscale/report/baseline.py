"""The report's physics-baseline section: the fitted baseline (``bdt``) per n_train, and the networks below it.

A fitted model's series (catalog kind "fitted") is the yardstick of a study: gradient-boosted trees on hand-made
jet observables, trained on the same nested subsets and scored on the same test set. The table lists its
accuracy, ε_b, ε_c, f_b, f_c (seed mean ± uncertainty, as in the figures) and seconds per cell at each n_train;
the list below it names every network series that is worse than the baseline at the same n_train (lower ε_q or
higher f_q beyond the combined uncertainty): undertrained for that many jets.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from .. import metric_catalog
from ..grid import series_axes, series_label
from ..models.catalog import is_fitted
from .tables import seed_means

QUANTITIES = (("accuracy", "", "accuracy"), ("tag_efficiency", "b", "ε_b"), ("tag_efficiency", "c", "ε_c"))
QUANTITIES += (("charge_flip", "b", "f_b"), ("charge_flip", "c", "f_c"))


def _means(runs: pd.DataFrame, axes: list[str]) -> dict[tuple, pd.DataFrame]:
    return {(m, f): seed_means(runs, axes, m, f) for m, f, _ in QUANTITIES}


def _label(series: dict, varying: list[str]) -> str:
    """The model and the other axes that vary in the study (a fitted model's missing width left out)."""
    return series_label(series, ["model", *(a for a in varying if a != "model")])


def _varying(runs: pd.DataFrame, axes: list[str]) -> list[str]:
    return [a for a in axes if runs[a].nunique() > 1]


def _rows_of(means: pd.DataFrame, series: dict) -> pd.DataFrame:
    for axis, value in series.items():
        means = means[means[axis].isna()] if pd.isna(value) else means[means[axis] == value]
    return means


def baseline_table(cfg: dict, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per fitted-model series x n_train: the quantities as 'mean ± err' and seconds per cell."""
    if runs is None or runs.empty or "model" not in runs:
        return pd.DataFrame()
    fitted = runs[runs["model"].map(is_fitted)]
    if fitted.empty:
        return pd.DataFrame()
    axes = series_axes(cfg, fitted)
    means = _means(fitted, axes)
    rows = []
    for series in fitted[axes].drop_duplicates().to_dict("records"):
        sub = _rows_of(fitted, series)
        for n_train in sorted(sub["n_train"].unique()):
            row = {"baseline": _label(series, _varying(runs, axes)), "n_train": int(n_train)}
            for metric, flavor, name in QUANTITIES:
                m = _rows_of(means[(metric, flavor)], series)
                m = m[m["n_train"] == n_train]
                row[name] = f"{m['mean'].iloc[0]:.3f} ± {m['err'].iloc[0]:.3f}" if len(m) else ""
            cells = sub[sub["n_train"] == n_train].drop_duplicates("cell_id")
            row["seconds per cell"] = round(float(cells["wall_time_s"].mean()), 1)
            rows.append(row)
    return pd.DataFrame(rows)


def below_baseline(cfg: dict, runs: pd.DataFrame) -> list[str]:
    """One line per network series and n_train where it is worse than a baseline beyond the uncertainties."""
    if runs is None or runs.empty or "model" not in runs:
        return []
    fitted_mask = runs["model"].map(is_fitted)
    if not fitted_mask.any() or fitted_mask.all():
        return []
    axes = series_axes(cfg, runs)
    means = _means(runs, axes)
    baselines = runs.loc[fitted_mask, axes].drop_duplicates().to_dict("records")
    networks = runs.loc[~fitted_mask, axes].drop_duplicates().to_dict("records")
    varying = _varying(runs, axes)
    out = []
    for net in networks:
        for base in baselines:
            for n_train in sorted(set(runs.loc[~fitted_mask, "n_train"]) & set(runs.loc[fitted_mask, "n_train"])):
                worse = []
                for metric, flavor, name in QUANTITIES:
                    a = _rows_of(means[(metric, flavor)], net)
                    b = _rows_of(means[(metric, flavor)], base)
                    a, b = a[a["n_train"] == n_train], b[b["n_train"] == n_train]
                    if a.empty or b.empty:
                        continue
                    gap = float(a["mean"].iloc[0] - b["mean"].iloc[0])
                    sigma = math.hypot(float(a["err"].iloc[0]), float(b["err"].iloc[0]))
                    if (-gap if metric_catalog.get(metric).higher_is_better else gap) > sigma:
                        worse.append(f"{name} {a['mean'].iloc[0]:.3f} vs {b['mean'].iloc[0]:.3f}")
                if worse:
                    out.append(
                        f"{_label(net, varying)} at n_train = {int(n_train):,}: "
                        + ", ".join(worse)
                        + f" ({_label(base, varying)})"
                    )
    return out


def baseline_section(cfg: dict, runs: pd.DataFrame) -> str:
    """The HTML section ('' when the study has no fitted model)."""
    table = baseline_table(cfg, runs)
    if table.empty:
        return ""
    worse = below_baseline(cfg, runs)
    body = table.to_html(index=False, na_rep="", classes="tab", border=0)
    listing = (
        "<p>Network series worse than the baseline beyond their combined uncertainty (undertrained for that "
        "many jets):</p><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in worse) + "</ul>"
        if worse
        else "<p>No network series is worse than the baseline beyond the uncertainties.</p>"
    )
    return (
        "<h2 id='baseline'>Physics baseline</h2><p>Gradient-boosted trees (LightGBM) on hand-made jet "
        "observables (jet charge at four κ, charges of the leading particle, charged particle, kaon, lepton and "
        "displaced track, charge sums, displaced-track counts and mass, impact-parameter significances, "
        "multiplicities, jet mass), trained on the same nested subsets, early-stopped on the same validation set "
        "and scored on the same test set as the networks. It has no width, optimiser or FLOPs per jet. Seed mean ± "
        f"uncertainty as in the figures; seconds per cell on the run's hardware.</p>{body}{listing}"
    )

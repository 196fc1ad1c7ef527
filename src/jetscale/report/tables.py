"""Aggregations of the tidy study tables that the figures and the report share.

Seed means: for each series (grid axes other than n_train and seed) and n_train, the mean over seeds of a metric
and its uncertainty σ² = s²/n_seeds + mean(σ_stat²), where s is the spread over seeds (training randomness) and
σ_stat the test-set counting error of each run (the test set is shared by all seeds, so that part does not
average down).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from ..config_view import report_view


def load_tables(cfg: dict, table: Path | None = None, fit_summary: Path | None = None) -> dict[str, pd.DataFrame]:
    """runs.csv, confusion.csv, missing.csv (empty frames where absent) and fit_summary.csv.

    ``table`` / ``fit_summary`` default to the study's (``jetscale.paths``); confusion and missing lie beside
    the table."""
    from ..fit.study import read_runs_table

    root = paths.results_root(cfg)
    table = Path(table) if table is not None else paths.runs_table(root)
    tables = {"runs": read_runs_table(cfg, table)}
    for name, path in (
        ("confusion", paths.confusion_table(table.parent)),
        ("missing", paths.missing_table(table.parent)),
        ("fit_summary", fit_summary if fit_summary is not None else paths.fit_summary(root)),
    ):
        tables[name] = (
            pd.read_csv(path, keep_default_na=False, na_values=[""]) if Path(path).is_file() else pd.DataFrame()
        )
    return tables


def seed_means(table: pd.DataFrame, group_axes: list[str], metric: str, flavor: str = "") -> pd.DataFrame:
    """Columns: group_axes..., n_train, mean, err, n_seeds, budget_limited (one row per series × n_train;
    ``budget_limited``: a seed ended at its sample cap while still improving, ``stopped_by`` = budget)."""
    rows = table[(table["metric"] == metric) & (table["flavor"].fillna("") == flavor)].dropna(subset=["value"])
    keys = [*group_axes, "n_train"]
    if rows.empty:
        return pd.DataFrame(columns=[*keys, "mean", "err", "n_seeds", "budget_limited"])
    columns = ["value", "error"] + (["stopped_by"] if "stopped_by" in rows.columns else [])

    def agg(sub):
        n = len(sub)
        spread = sub["value"].std(ddof=1) if n > 1 else 0.0
        stat = np.nanmean(sub["error"].to_numpy(float) ** 2) if sub["error"].notna().any() else 0.0
        limited = bool((sub["stopped_by"] == "budget").any()) if "stopped_by" in sub.columns else False
        mean, err = sub["value"].mean(), float(np.sqrt(spread**2 / n + stat))
        return pd.Series({"mean": mean, "err": err, "n_seeds": n, "budget_limited": limited}, dtype=object)

    out = rows.groupby(keys, sort=False, dropna=False)[columns].apply(agg).reset_index()
    out = out.astype({"mean": float, "err": float, "n_seeds": int, "budget_limited": bool})
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def chosen_n_train(cfg: dict, table: pd.DataFrame) -> int | None:
    """report.confusion_n_train resolved against the n_train values present ('max' = the largest)."""
    present = sorted(table["n_train"].dropna().unique())
    if not present:
        return None
    want = report_view(cfg["report"]).confusion_n_train
    if want == "max":
        return int(present[-1])
    return int(want) if want in present else int(min(present, key=lambda v: abs(np.log(v / want))))

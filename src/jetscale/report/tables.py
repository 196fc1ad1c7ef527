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

from ..grid import axis_names
from ..paths import results_root, runs_table


def load_tables(cfg: dict) -> dict[str, pd.DataFrame]:
    """runs.csv, confusion.csv, missing.csv (empty frames where absent) and fit_summary.csv."""
    from ..fit.study import read_runs_table

    root = results_root(cfg)
    tables = {"runs": read_runs_table(cfg)}
    for name, path in (
        ("confusion", runs_table(root).with_name("confusion.csv")),
        ("missing", runs_table(root).with_name("missing.csv")),
        ("fit_summary", root / "fits" / "fit_summary.csv"),
    ):
        tables[name] = (
            pd.read_csv(path, keep_default_na=False, na_values=[""]) if Path(path).is_file() else pd.DataFrame()
        )
    return tables


def series_axes(cfg: dict, table: pd.DataFrame) -> list[str]:
    return [a for a in axis_names(cfg) if a not in ("n_train", "seed") and a in table.columns]


def seed_means(table: pd.DataFrame, group_axes: list[str], metric: str, flavor: str = "") -> pd.DataFrame:
    """Columns: group_axes..., n_train, mean, err, n_seeds (one row per series × n_train)."""
    rows = table[(table["metric"] == metric) & (table["flavor"].fillna("") == flavor)].dropna(subset=["value"])
    keys = [*group_axes, "n_train"]
    if rows.empty:
        return pd.DataFrame(columns=[*keys, "mean", "err", "n_seeds"])

    def agg(sub):
        n = len(sub)
        spread = sub["value"].std(ddof=1) if n > 1 else 0.0
        stat = np.nanmean(sub["error"].to_numpy(float) ** 2) if sub["error"].notna().any() else 0.0
        return pd.Series({"mean": sub["value"].mean(), "err": float(np.sqrt(spread**2 / n + stat)), "n_seeds": n})

    out = rows.groupby(keys, sort=False, dropna=False)[["value", "error"]].apply(agg).reset_index()
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def chosen_n_train(cfg: dict, table: pd.DataFrame) -> int | None:
    """report.confusion_n_train resolved against the n_train values present ('max' = the largest)."""
    present = sorted(table["n_train"].dropna().unique())
    if not present:
        return None
    want = cfg["report"].get("confusion_n_train", "max")
    if want == "max":
        return int(present[-1])
    return int(want) if want in present else int(min(present, key=lambda v: abs(np.log(v / want))))

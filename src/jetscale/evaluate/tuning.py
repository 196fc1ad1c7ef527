"""Per-cell tuning: the best value of each tuning axis (``grid.tune``) for every cell, chosen on validation only.

A tuning axis' values are ordinary cells. For each *tuned cell* (one combination of the grid axes other than
the tuning axes and seed: model, width, n_train, compute, ...) the candidates are its values of the tuning
axes (jointly, when there are several); each candidate is scored by the seed mean of its ``by`` metric
(``val_loss``: lowest wins, ``val_accuracy``: highest), a number from the validation set that training
reports in metrics.json. Test-set metrics never enter: the choice must not look at what the report then
shows. Ties go to the candidate listed first in the config.

Every scaling series is then built from the chosen candidate of each of its cells (:func:`chosen_rows`, which
``fit.study.read_runs_table`` applies), so tuned and untuned studies flow through fits and the report alike.
The choice is recorded in ``tables/tuning.csv`` (one row per candidate: its seed-mean score, spread, seeds,
whether it was chosen, and whether the chosen value lies at the edge of the values tried) and as the
``chosen`` column of ``tables/runs.csv``. Cells whose model is given only one value of the tuning axes
(``grid.per_model``) are not tuned: they are kept as they are and left out of tuning.csv.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd

from ..config import TUNE_METRICS, axis_values, tune_axes
from ..grid import axis_names

STAT_COLUMNS = ("by", "mean", "std", "n_seeds", "n_candidates", "chosen", "edge")


def tuning_columns(cfg: dict, table: pd.DataFrame | None = None) -> list[str]:
    """tuning.csv's columns: the tuned cell's axes, the tuning axes, then :data:`STAT_COLUMNS`."""
    return [*cell_axes(cfg, table), *tune_axes(cfg), *STAT_COLUMNS]


def cell_axes(cfg: dict, table: pd.DataFrame | None = None) -> list[str]:
    """The axes that name a tuned cell: every grid axis but the tuning axes and seed (those in ``table``)."""
    skip = {"seed", *tune_axes(cfg)}
    return [a for a in axis_names(cfg) if a not in skip and (table is None or a in table.columns)]


def choose(cfg: dict, table: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """(mask of ``table``'s rows that belong to a chosen candidate, the tuning table).

    ``table`` is the tidy runs table (collect's rows). Without tuning axes every row is kept and the tuning
    table is empty."""
    taxes = tune_axes(cfg)
    keep = pd.Series(True, index=table.index)
    columns = tuning_columns(cfg, table)
    if not taxes or table.empty:
        return keep, pd.DataFrame(columns=columns)
    by = cfg["grid"]["tune"][taxes[0]]["by"]
    lower_wins = TUNE_METRICS[by] == "min"
    gaxes = cell_axes(cfg, table)
    records = []
    for _, sub in table.groupby(gaxes, sort=False, dropna=False):
        model = sub["model"].iloc[0]
        declared = {a: axis_values(cfg, a, model) for a in taxes}
        n_candidates = math.prod(len(v) for v in declared.values())
        if n_candidates < 2:
            continue  # this model is not tuned over these axes: keep its cells as they are
        cell = {a: _plain(sub[a].iloc[0]) for a in gaxes}
        candidates = _score(sub, taxes, by, declared)
        finite = [c for c in candidates if c["n_seeds"] > 0]
        best = min(finite, key=lambda c: c["mean"] if lower_wins else -c["mean"]) if finite else None
        for c in candidates:
            is_best = c is best
            records.append(
                {
                    **cell,
                    **c["values"],
                    "by": by,
                    "mean": c["mean"],
                    "std": c["std"],
                    "n_seeds": c["n_seeds"],
                    "n_candidates": n_candidates,
                    "chosen": is_best,
                    "edge": _edge(c["values"], declared) if is_best else "",
                }
            )
        keep[sub.index] = False
        if best is not None:
            keep[best["rows"]] = True
    return keep, pd.DataFrame(records, columns=columns)


def chosen_rows(cfg: dict, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` restricted to the chosen candidates (the whole table when the grid has no tuning axis)."""
    if not tune_axes(cfg):
        return table
    keep, _ = choose(cfg, table)
    return table[keep].reset_index(drop=True)


def _score(sub: pd.DataFrame, taxes: list[str], by: str, declared: dict) -> list[dict]:
    """One record per candidate, in config order: its values and seed-mean score. Declared candidates without
    a result (not trained yet, failed: missing.csv says which) are listed with no score (``n_seeds`` 0)."""
    scores = sub[(sub["metric"] == by) & (sub["flavor"].fillna("") == "")]
    out = []
    for _, cand in sub.groupby(taxes, sort=False, dropna=False):
        values = {a: _plain(cand[a].iloc[0]) for a in taxes}
        mine = scores.loc[scores.index.intersection(cand.index), "value"].astype(float).dropna()
        out.append(
            {
                "values": values,
                "rows": cand.index,
                "mean": float(mine.mean()) if len(mine) else math.nan,
                "std": float(mine.std(ddof=1)) if len(mine) > 1 else math.nan,
                "n_seeds": int(len(mine)),
            }
        )
    for combo in itertools.product(*(declared[a] for a in taxes)):
        values = dict(zip(taxes, combo))
        if not any(all(_same(c["values"][a], v) for a, v in values.items()) for c in out):
            out.append({"values": values, "rows": sub.index[:0], "mean": math.nan, "std": math.nan, "n_seeds": 0})
    return sorted(out, key=lambda c: tuple(_position(declared[a], c["values"][a]) for a in taxes))


def _position(values: list, value) -> int:
    return next((i for i, v in enumerate(values) if _same(v, value)), len(values))


def _edge(values: dict, declared: dict) -> str:
    """Where a chosen value lies at the edge of the numeric values tried ('lr: lowest'): the best value may
    then lie outside them."""
    out = []
    for axis, value in values.items():
        tried = [v for v in declared[axis] if _is_number(v)]
        if len(tried) < 2 or not _is_number(value):
            continue
        if _same(value, min(tried)):
            out.append(f"{axis}: lowest")
        elif _same(value, max(tried)):
            out.append(f"{axis}: highest")
    return "; ".join(out)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _same(a, b) -> bool:
    """Equal as axis values, whatever types a CSV round trip gave them (1000 and 1000.0, 'auto', NaN/None)."""
    a, b = _plain(a), _plain(b)
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    if _is_number(a) and _is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return str(a) == str(b)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _plain(v):
    return v.item() if hasattr(v, "item") and not isinstance(v, str) else v

"""Transfer fits of a study with pretraining: D_T per fine-tuned series, its law, and pretraining-loss fits.

Reads ``tables/runs.csv`` (fine-tuned and from-scratch cells) and ``tables/pretrain*.csv``; writes
``fits/transfer/``:

* ``transfer.csv``: one row per fine-tuned series × n_train × metric (test ``log_loss``, lower is better, and
  ``accuracy``): D_T, multiplier, bound ("lower" = beyond the from-scratch curve's reach: D_T > bound_value),
  bootstrap-over-seeds interval (see :mod:`jetscale.fit.transfer`); ``status`` undefined (with ``reason``)
  where the from-scratch curve does not rise beyond its seed scatter. The from-scratch curve of a series is the
  ``pretrain~none`` cells with the same model, width, compute and extra-axis values.
* ``laws.json``: D_T = k · n^α · N^β per (method, finetune, n_pretrain, metric), N = the classifier's parameters.
* ``pretrain_loss.json``: held-out pretraining loss (FM4NPP-style) vs measured pretraining compute (power law
  with floor on the compute-optimal frontier of all logged points of a method) and vs n_pretrain (final loss
  per method × width).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import metric_catalog, paths
from ..config_schema import PRETRAIN_AXES
from ..config_view import fits_view
from ..evaluate.collect import RUN_COLUMNS
from ..io import atomic_path, write_json
from ..paths import results_root
from .fitting import fit
from .forms import LOSS_LAW, Domain
from .transfer import effective_data_transferred, fit_transfer_law

TRANSFER_METRICS = ("log_loss", "accuracy")  # direction: jetscale.metric_catalog
LOSS_DOMAIN = Domain(0.0, math.inf, falling=True)  # pretraining losses are non-negative and fall
#: what names a row of transfer.csv: the fine-tuned series and its labelled size n
TRANSFER_KEY = ("model", "width", "method", "n_pretrain", "finetune", "metric", "n")
TRANSFER_COLUMNS = (
    *TRANSFER_KEY,
    "n_params",
    "y_tuned",
    "y_scratch_same_n",
    "n_eq",
    "d_t",
    "multiplier",
    "bound",
    "bound_value",
    "ci_low",
    "ci_high",
    "ci_high_beyond",
    "ci_low_below",
    "frac_beyond",
    "status",
    "reason",
    "series",
)


def transfer_dir(cfg: dict) -> Path:
    return paths.transfer_dir(results_root(cfg))


def run_transfer_fits(cfg: dict, table) -> Path:
    """Write fits/transfer/{transfer.csv, laws.json, pretrain_loss.json}; return the directory."""
    import pandas as pd

    out = transfer_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    opts = fits_view(cfg["fits"])
    boot, seed = int(opts.bootstrap), 0
    rows = transfer_rows(table, boot, seed)
    frame = pd.DataFrame(rows, columns=TRANSFER_COLUMNS)
    with atomic_path(out / paths.TRANSFER_TABLE) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")
    write_json(out / paths.TRANSFER_LAWS, transfer_laws(frame))
    write_json(out / paths.PRETRAIN_LOSS_FITS, pretrain_loss_fits(cfg, int(opts.min_points), boot))
    return out


def _matching_axes(table) -> list[str]:
    skip = {"cell_id", "n_train", "seed", "metric", "flavor", "value", "error", *PRETRAIN_AXES}
    return [c for c in table.columns if c not in skip and c not in RUN_COLUMNS]


def transfer_rows(table, boot: int, seed: int) -> list[dict]:
    if "pretrain" not in table.columns:
        return []
    series_axes = _matching_axes(table)
    out = []
    for metric in TRANSFER_METRICS:
        higher = metric_catalog.get(metric).higher_is_better
        rows = table[(table["metric"] == metric) & (table["flavor"].fillna("") == "")].dropna(subset=["value"])
        scratch = rows[rows["pretrain"] == "none"]
        tuned = rows[rows["pretrain"] != "none"]
        if tuned.empty:
            continue
        for key, sub in tuned.groupby([*series_axes, *PRETRAIN_AXES], sort=False, dropna=False):
            key = dict(zip([*series_axes, *PRETRAIN_AXES], key))
            ref = scratch
            for axis in series_axes:
                ref = ref[_eq(ref[axis], key[axis])]
            label = "/".join(f"{a}~{_fmt(key[a])}" for a in [*series_axes, *PRETRAIN_AXES])
            if ref["n_train"].nunique() < 2:
                out.append({**_keys(key, metric), "status": "no from-scratch curve (< 2 sizes)", "series": label})
                continue
            results = effective_data_transferred(
                ref["n_train"],
                ref["value"],
                sub["n_train"],
                sub["value"],
                higher_is_better=higher,
                bootstrap=boot,
                seed=seed,
            )
            for r in results:
                same = ref[ref["n_train"] == r["n"]]["value"]
                params = sub[sub["n_train"] == r["n"]]["n_params"]
                out.append(
                    {
                        **_keys(key, metric),
                        **{k: r[k] for k in r if k in TRANSFER_COLUMNS},
                        "n_params": float(params.iloc[0]) if len(params) else None,
                        "y_scratch_same_n": float(same.mean()) if len(same) else None,
                        "series": label,
                    }
                )
    return out


def _keys(key: dict, metric: str) -> dict:
    return {
        "model": key.get("model"),
        "width": key.get("width"),
        "method": key["pretrain"],
        "n_pretrain": key["n_pretrain"],
        "finetune": key["finetune"],
        "metric": metric,
    }


def _eq(column, value):
    if isinstance(value, float) and math.isnan(value):
        return column.isna()
    return column == value


def _fmt(v):
    return int(v) if isinstance(v, float) and v.is_integer() else v


def transfer_laws(frame) -> list[dict]:
    docs = []
    if frame.empty:
        return docs
    ok = frame.dropna(subset=["n"])
    for key, sub in ok.groupby(["method", "finetune", "n_pretrain", "metric"], sort=False):
        d = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else float(v) for v in sub["d_t"]]
        law = fit_transfer_law(sub["n"].to_numpy(float), d, sub["n_params"].to_numpy(float))
        n_beyond = int((sub["bound"] == "lower").sum())
        docs.append(
            {
                **dict(zip(["method", "finetune", "n_pretrain", "metric"], [_fmt(k) for k in key])),
                **law,
                "n_beyond_reach": n_beyond,
            }
        )
    return docs


def pretrain_loss_fits(cfg: dict, min_points: int, boot: int) -> dict:
    import pandas as pd

    from ..pretrain.tables import pretrain_tables_paths
    from .series import compute_frontier

    rec_path, curve_path = pretrain_tables_paths(results_root(cfg))
    if not rec_path.is_file():
        return {"vs_compute": [], "vs_n_pretrain": []}
    records = pd.read_csv(rec_path)
    curves = pd.read_csv(curve_path) if curve_path.is_file() else pd.DataFrame()
    vs_compute, vs_n = [], []
    for method in sorted(records["method"].unique()) if not records.empty else []:
        pts = curves[(curves["method"] == method)].dropna(subset=["val_loss", "flops"]) if not curves.empty else curves
        c = pts["flops"].to_numpy(float) if len(pts) else np.array([])
        y = pts["val_loss"].to_numpy(float) if len(pts) else np.array([])
        front = compute_frontier(c, y) if len(c) else np.array([], dtype=int)
        result = fit(LOSS_LAW, c[front], y[front], bootstrap=boot, min_points=min_points, domain=LOSS_DOMAIN)
        vs_compute.append(
            {
                "method": method,
                "points": {"flops": c.tolist(), "val_loss": y.tolist(), "frontier": front.tolist()},
                "fit": result.record(),
            }
        )
        for width, sub in records[records["method"] == method].groupby("width"):
            sub = sub.dropna(subset=["final_val_loss"]).sort_values("n_pretrain")
            x, yy = sub["n_pretrain"].to_numpy(float), sub["final_val_loss"].to_numpy(float)
            vs_n.append(
                {
                    "method": method,
                    "width": int(width),
                    "points": {"n_pretrain": x.tolist(), "val_loss": yy.tolist()},
                    "fit": fit(
                        LOSS_LAW, x, yy, bootstrap=boot, min_points=min(min_points, 3), domain=LOSS_DOMAIN
                    ).record(),
                }
            )
    return {"vs_compute": vs_compute, "vs_n_pretrain": vs_n}

"""Study-level analysis beyond the fits: forecasts for ``fits.targets``, backtests, and the mirage check.

Run by :func:`jetscale.fit.study.run_study_fits` after the scaling fits (it needs their verdicts). Writes
    fits/forecasts.csv   one row per target x series: training jets and training compute to reach the target
    fits/backtests.csv   one row per held-out n_train of every scaling series with enough points
and, for the mirage check, one ``mirage__*.json`` fit record per thresholded series (plus a ``mirage`` entry in
that series' scaling record).

- Forecast form: the target's ``form``, or (auto) the S-curve where the series' scaling fit says "threshold",
  else the power law. Only a fit with status ok forecasts or backtests (an unconstrained one gives a row
  that says so). Compute: the series' measured training FLOPs (mean over seeds per n_train), interpolated in
  log-log between measured sizes and extended with the slope of the two nearest sizes: what this study's
  training recipe would spend at that n_train (a recipe with a sample cap spends the same beyond it).
- Backtest form: chosen on the training points only (the S-curve where it beats the power law by the compare
  rule's ΔAIC and ΔBIC, else the power law); a series needs held-out points plus enough distinct n_train left.
"""

from __future__ import annotations

import math

import numpy as np

from ..config_view import fits_view
from ..io import atomic_path
from . import forms
from .backtest import backtest, split_holdout
from .compare import DELTA_AIC_MIN, DELTA_BIC_MIN, fit_and_compare
from .fitting import fit
from .forecast import forecast
from .forms import SMOOTH, THRESHOLD
from .mirage import classify, counterpart
from .record import FitRecord
from .status import usable

FORECAST_COLUMNS = [
    "metric",
    "flavor",
    "series",
    "target",
    "quantity",
    "form",
    "reachable",
    "n_train",
    "n_train_lo",
    "n_train_hi",
    "extrapolated",
    "train_flops",
    "train_flops_lo",
    "train_flops_hi",
    "replicates_reaching",
    "reason",
]
BACKTEST_COLUMNS = [
    "kind",
    "metric",
    "flavor",
    "series",
    "quantity",
    "form",
    "holdout",
    "x_train_max",
    "x",
    "observed",
    "n_seeds",
    "predicted",
    "lo",
    "hi",
    "covered",
    "message",
]


# ---------------------------------------------------------------------------------------------- forecasts
def compute_at(n_train, flops, n: float | None) -> float | None:
    """Training FLOPs at ``n`` training jets from a series' measured (n_train, train_flops) points."""
    if n is None or not math.isfinite(n) or n <= 0:
        return None
    n_train, flops = np.asarray(n_train, dtype=float), np.asarray(flops, dtype=float)
    ok = np.isfinite(n_train) & np.isfinite(flops) & (n_train > 0) & (flops > 0)
    if not ok.any():
        return None
    xs = np.unique(n_train[ok])
    ys = np.array([np.log(flops[ok][n_train[ok] == v]).mean() for v in xs])
    lx, lxs = math.log(n), np.log(xs)
    if xs.size == 1:
        return float(math.exp(ys[0]))
    if lx <= lxs[0] or lx >= lxs[-1]:
        i = 0 if lx <= lxs[0] else xs.size - 2
        slope = (ys[i + 1] - ys[i]) / (lxs[i + 1] - lxs[i])
        return float(math.exp(ys[i] + slope * (lx - lxs[i])))
    return float(math.exp(np.interp(lx, lxs, ys)))


def forecast_jobs(table, groups, docs, opts, to_error, error_quantity, series_label_of, options_of) -> list[tuple]:
    verdicts = {
        (d["metric"], d["flavor"], d["label"]): (d.get("comparison") or {}).get("verdict")
        for d in docs
        if d["kind"] == "scaling"
    }
    opts, jobs = fits_view(opts), []
    for target in opts.targets:
        metric, flavor = target.metric, target.flavor
        rows = table[(table["metric"] == metric) & (table["flavor"] == flavor)].dropna(subset=["value"])
        for series, sub in groups(rows):
            label = series_label_of(series)
            form = target.form
            if form == "auto":
                form = THRESHOLD if verdicts.get((metric, flavor, label)) == "threshold" else SMOOTH
            job = {
                "metric": metric,
                "flavor": flavor,
                "label": label,
                "target": float(target.value),
                "target_error": float(to_error(metric, [target.value])[0]),
                "quantity": error_quantity(metric),
                "form": form,
                "x": sub["n_train"].to_numpy(float),
                "y": to_error(metric, sub["value"]),
                "flops": sub["train_flops"].to_numpy(float) if "train_flops" in sub else np.array([]),
                "bootstrap": opts.bootstrap,
                "min_points": opts.min_points,
                "options": options_of(opts, metric),
            }
            jobs.append((forecast_row, (job,)))
    return jobs


def forecast_row(job: dict) -> dict:
    out = forecast(
        job["form"],
        job["x"],
        job["y"],
        job["target_error"],
        bootstrap=job["bootstrap"],
        min_points=job["min_points"],
        **job["options"],
    )
    flops = [compute_at(job["x"], job["flops"], out[k]) for k in ("x", "x_lo", "x_hi")]
    return {
        "metric": job["metric"],
        "flavor": job["flavor"],
        "series": job["label"],
        "target": job["target"],
        "quantity": f"{job['quantity']} = {job['target_error']:g}",
        "form": job["form"],
        "reachable": out["reachable"],
        "n_train": out["x"],
        "n_train_lo": out["x_lo"],
        "n_train_hi": out["x_hi"],
        "extrapolated": out["extrapolated"],
        "train_flops": flops[0],
        "train_flops_lo": flops[1],
        "train_flops_hi": flops[2],
        "replicates_reaching": out["replicates_reaching"],
        "reason": out["reason"],
    }


# ---------------------------------------------------------------------------------------------- backtests
def backtest_jobs(docs, opts, options_of) -> list[tuple]:
    opts = fits_view(opts)
    holdout = opts.backtest_holdout
    jobs = []
    for doc in docs:
        if doc["kind"] not in ("scaling", "loss_vs_data"):
            continue
        x, y = np.asarray(doc["points"]["x"], float), np.asarray(doc["points"]["y"], float)
        train, held = split_holdout(x, holdout)
        n_left = np.unique(x[train]).size
        if not held.any() or n_left < max(opts.min_points, len(forms.get(SMOOTH).params) + 1):
            continue
        meta = {k: doc[k] for k in ("kind", "metric", "flavor", "label", "y")}
        options = options_of(opts, doc["metric"])
        jobs.append((backtest_rows, (meta, x, y, holdout, opts.bootstrap, opts.min_points, options)))
    return jobs


def choose_form(x, y, min_points: int, **options) -> str:
    """S-curve where it clearly beats the power law on these points (ΔAIC, ΔBIC as in compare) and is ok, else
    the power law."""
    pl = fit(SMOOTH, x, y, min_points=min_points, **options)
    sc = fit(THRESHOLD, x, y, min_points=min_points, **options)
    pl_ok, sc_ok = usable(pl.record()), usable(sc.record())
    if sc_ok and (not pl_ok or (pl.aic - sc.aic >= DELTA_AIC_MIN and pl.bic - sc.bic >= DELTA_BIC_MIN)):
        return THRESHOLD
    return SMOOTH


def backtest_rows(meta, x, y, holdout, bootstrap, min_points, options=None) -> list[dict]:
    options = options or {}
    train, _ = split_holdout(x, holdout)
    form = choose_form(x[train], y[train], min_points, **options)
    out = backtest(form, x, y, holdout, bootstrap=bootstrap, min_points=min_points, **options)
    base = {
        "kind": meta["kind"],
        "metric": meta["metric"],
        "flavor": meta["flavor"],
        "series": meta["label"],
        "quantity": meta["y"],
        "form": form,
        "holdout": holdout,
        "x_train_max": out["x_train_max"],
        "message": out["message"],
    }
    return [
        {**base, **{k: p[k] for k in ("x", "observed", "n_seeds", "predicted", "lo", "hi", "covered")}}
        for p in out["points"]
    ]


# ------------------------------------------------------------------------------------------------- mirage
def mirage_jobs(table, docs, groups, opts, to_error, error_quantity, series_label_of, options_of) -> list[tuple]:
    """One job per scaling record with a threshold verdict on a thresholded metric that has a counterpart."""
    wanted = {}
    for i, doc in enumerate(docs):
        if doc["kind"] == "scaling" and (doc.get("comparison") or {}).get("verdict") == "threshold":
            if counterpart(doc["metric"]):
                wanted[(doc["metric"], doc["flavor"], doc["label"])] = i
    jobs = []
    for (metric, flavor, label), i in wanted.items():
        series_points = {}
        for name in counterpart(metric):
            rows = table[(table["metric"] == name) & (table["flavor"] == flavor)].dropna(subset=["value"])
            for series, sub in groups(rows):
                if series_label_of(series) == label:
                    sub = sub.sort_values(["n_train", "seed"])
                    series_points[name] = (sub["n_train"].to_numpy(float), to_error(name, sub["value"]))
        job = {
            "index": i,
            "metric": metric,
            "flavor": flavor,
            "label": label,
            "series": docs[i]["series"],
            "comparison": docs[i]["comparison"],
            "points": series_points,
            "names": counterpart(metric),
            "quantities": [error_quantity(n) for n in counterpart(metric)],
            "options": {n: options_of(opts, n) for n in counterpart(metric)},
            "opts": opts,
        }
        jobs.append((mirage_doc, (job,)))
    return jobs


def mirage_doc(job: dict) -> dict:
    opts, (loss_name, auc_name) = fits_view(job["opts"]), job["names"]
    comps, fits = {}, {}
    for name in (loss_name, auc_name):
        if name in job["points"]:
            x, y = job["points"][name]
            fits[name], comps[name] = fit_and_compare(
                x,
                y,
                (SMOOTH, THRESHOLD),
                bootstrap=opts.bootstrap,
                min_points=opts.min_points,
                **job.get("options", {}).get(name, {}),
            )
    verdict = classify(job["comparison"], comps.get(loss_name), comps.get(auc_name))
    from .series import slug

    loss_points = job["points"].get(loss_name, (np.array([]), np.array([])))
    return FitRecord(
        file=f"mirage__{job['metric']}__{job['flavor'] or 'all'}__{slug(job['label'])}.json",
        index=job["index"],
        kind="mirage",
        metric=loss_name,
        flavor=job["flavor"],
        series=job["series"],
        label=job["label"],
        x="n_train",
        y=job["quantities"][0],
        thresholded_metric=job["metric"],
        points={"x": loss_points[0].tolist(), "y": np.asarray(loss_points[1]).tolist()},
        fits={f: r.record() for f, r in fits.get(loss_name, {}).items()},
        comparison=comps.get(loss_name),
        auc=None
        if auc_name not in comps
        else {
            "metric": auc_name,
            "y": job["quantities"][1],
            "fits": {f: r.record() for f, r in fits[auc_name].items()},
            "comparison": comps[auc_name],
        },
        mirage={**verdict, "rule": "see jetscale.fit.mirage"},
    ).to_json()


def write_csv(rows: list[dict], columns: list[str], path) -> None:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False, lineterminator="\n")

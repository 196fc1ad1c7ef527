"""Study mode: ``results/tables/runs.csv`` -> ``results/fits/*.json`` + ``results/fits/fit_summary.csv``.

Targets (each seed is one point; a "series" is one combination of the grid axes other than n_train and seed,
e.g. one model at one width):
- scaling: for every metric in ``fits.metrics`` × flavor × series, the error-type quantity vs n_train
  (1 − value for higher-is-better metrics such as tag_efficiency, the value itself for charge_flip / losses),
  fitted with every form in ``fits.forms`` within the metric's physical range (:mod:`jetscale.metric_catalog`);
  power law vs S-curve decided by :mod:`jetscale.fit.compare`. ``fits.loss`` / ``fits.huber_delta`` choose the
  objective (:mod:`jetscale.fit.solver`), ``fits.monotone`` the monotone filter (:mod:`jetscale.fit.monotone`).
- loss_vs_data: test log-loss vs n_train per series (power law).
- loss_vs_params: test log-loss vs n_params per n_train within one architecture (every series axis but width)
  that has at least MIN_WIDTHS model sizes (power law; needs ≥ 4 distinct sizes to be determined).
- chinchilla: L(N, D) with N = n_params and D = n_train (unique training jets), per architecture with at least
  MIN_WIDTHS sizes; a study without one gets a ``not applicable`` record saying why (one fit across
  architectures would mix different laws).
- loss_vs_compute: the compute-optimal frontier (lowest test log-loss reached at or below each measured
  training compute, train_flops) and a power law with floor fitted to the frontier points.

After these: the mirage check, forecasts for fits.targets and backtests (:mod:`jetscale.fit.outlook`).

Every record keeps converged=false with a reason instead of failing, so the report always builds; each fit's
``status`` (ok, unconstrained, failed, not applicable: :mod:`jetscale.fit.status`) goes into fit_summary.csv,
and only ``ok`` fits are drawn bold or forecast from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import metric_catalog
from ..config_view import FitsConfig, fits_view
from ..evaluate.collect import integral_axes
from ..grid import axis_names, series_axes, series_label
from ..io import atomic_path, write_json
from ..paths import backtests_table, fit_summary, fits_dir, forecasts_table, results_root, runs_table
from ..workers import parallel_map
from .compare import fit_and_compare
from .fitting import fit
from .forms import FREE, JOINT_LAW, LOSS_LAW, Domain
from .record import FitRecord
from .series import compute_frontier, slug
from .solver import Objective
from .summary import SUMMARY_COLUMNS, summary_rows

LOSS_METRIC = "log_loss"
MIN_WIDTHS = 3  # L(N, D) and loss-vs-params: within one architecture with at least this many sizes N


def higher_is_better(metric: str) -> bool:
    spec = metric_catalog.find(metric)
    return bool(spec and spec.higher_is_better)


def error_quantity(metric: str) -> str:
    """The name of the fitted (error-type) quantity for a metric."""
    spec = metric_catalog.find(metric)
    return spec.error_quantity() if spec else metric


def to_error(metric: str, values):
    values = np.asarray(values, dtype=float)
    return 1.0 - values if higher_is_better(metric) else values


def error_domain(metric: str) -> Domain:
    """Physical range of a metric's error-type quantity (falling with n); unbounded for an unknown metric."""
    spec = metric_catalog.find(metric)
    return Domain(*spec.error_range(), falling=True) if spec else FREE


def fit_options(opts: FitsConfig | dict, metric: str | None) -> dict:
    """``domain`` and ``objective`` for :func:`jetscale.fit.fitting.fit` from the ``fits:`` section."""
    opts = fits_view(opts)
    objective = Objective(opts.loss, opts.huber_delta)
    return {"domain": error_domain(metric) if metric else FREE, "objective": objective}


def read_runs_table(cfg: dict, path: Path | None = None):
    """The tidy runs table (``path``, default: the study's ``tables/runs.csv``); with tuning axes, only the
    rows of each tuned cell's chosen candidate (``evaluate.tuning``), so every series is a tuned one."""
    import pandas as pd

    from ..errors import DataError

    path = Path(path) if path is not None else runs_table(results_root(cfg))
    if not path.is_file():
        raise DataError(f"{path}: not found; run `jetscale collect --config ...` first")
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    table["flavor"] = table["flavor"].fillna("")
    from ..evaluate.tuning import chosen_rows

    return chosen_rows(cfg, integral_axes(table, axis_names(cfg)))


def run_study_fits(cfg: dict, table: Path | None = None, summary: Path | None = None) -> Path:
    """Fit every target of the study; write the JSON records and fit_summary.csv; return the summary path.

    ``table`` (default: the study's runs.csv) is read; ``summary`` (default: ``paths.fit_summary``) is written
    last, with the JSON fit records in its directory."""
    import pandas as pd

    table_path = Path(table) if table is not None else runs_table(results_root(cfg))
    table = read_runs_table(cfg, table_path)
    opts = fits_view(cfg["fits"])
    if opts.exclude_budget_limited and "stopped_by" in table.columns:
        table = table[table["stopped_by"] != "budget"]  # fit only cells whose validation loss converged
    summary = Path(summary) if summary is not None else fit_summary(results_root(cfg))
    out_dir = summary.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tuning_trends(cfg, table_path.parent, out_dir)
    s_axes = series_axes(cfg, table)
    varying = [a for a in s_axes if table[a].nunique() > 1] or (["model"] if "model" in s_axes else [])
    first = loss_jobs(table, s_axes, varying, opts)  # holds the slowest job (chinchilla): start it first
    docs = parallel_map(_run_job, first + scaling_jobs(table, s_axes, varying, opts))
    docs = docs[len(first) :] + docs[: len(first)]
    docs += outlook(table, docs, s_axes, varying, opts, results_root(cfg))
    written, rows = set(), []
    for doc in docs:
        name = doc.pop("_file")
        write_json(out_dir / name, doc)
        written.add(name)
        rows += summary_rows(doc, name)
    for stale in out_dir.glob("*.json"):
        if stale.name not in written:
            stale.unlink()
    with atomic_path(summary) as tmp:
        pd.DataFrame(rows, columns=SUMMARY_COLUMNS).to_csv(tmp, index=False, lineterminator="\n")
    from ..config import uses_pretraining

    if uses_pretraining(cfg):  # effective data transferred + pretraining-loss fits (fits/transfer/)
        from .transfer_study import run_transfer_fits

        run_transfer_fits(cfg, table)
    return summary


def write_tuning_trends(cfg: dict, tables: Path, out_dir: Path) -> None:
    """With tuning axes: the chosen values' trend with n_train and width (``fit.tuning``) -> tuning_trends.csv
    in ``out_dir``, from the tuning.csv in ``tables``; without: remove one left by an earlier config."""
    import pandas as pd

    from ..config import tune_axes
    from ..paths import tuning_table, tuning_trends_table
    from .tuning import tuning_trends

    out = tuning_trends_table(out_dir)
    source = tuning_table(tables)
    if not tune_axes(cfg) or not source.is_file():
        out.unlink(missing_ok=True)
        return
    tuning = pd.read_csv(source, keep_default_na=False, na_values=[""])
    families = [a for a in series_axes(cfg, tuning) if a != "width"]
    with atomic_path(out) as tmp:
        tuning_trends(tuning, tune_axes(cfg), families).to_csv(tmp, index=False, lineterminator="\n")


def outlook(table, docs, s_axes, varying, opts, root) -> list[dict]:
    """Mirage check (returns its records, marks the checked scaling records), forecasts.csv, backtests.csv."""
    from . import outlook as ol

    def groups(rows):
        return _groups(rows, s_axes)

    def label_of(series):
        return series_label(series, varying)

    args = (to_error, error_quantity, label_of, fit_options)
    mirage = parallel_map(_run_job, ol.mirage_jobs(table, docs, groups, opts, *args))
    for doc in mirage:
        docs[doc.pop("_index")]["mirage"] = doc["mirage"]
    jobs = ol.forecast_jobs(table, groups, docs, opts, *args)
    ol.write_csv(parallel_map(_run_job, jobs), ol.FORECAST_COLUMNS, forecasts_table(root))
    backtests = [row for rows in parallel_map(_run_job, ol.backtest_jobs(docs, opts, fit_options)) for row in rows]
    ol.write_csv(backtests, ol.BACKTEST_COLUMNS, backtests_table(root))
    return mirage


def _groups(table, s_axes):
    if not s_axes:
        yield {}, table
        return
    for key, sub in table.groupby(s_axes, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        yield dict(zip(s_axes, [_plain(k) for k in key])), sub


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _run_job(job):
    func, args = job
    return func(*args)


def scaling_targets(table, s_axes, varying, opts) -> list[dict]:
    return [_run_job(j) for j in scaling_jobs(table, s_axes, varying, opts)]


def scaling_jobs(table, s_axes, varying, opts) -> list[tuple]:
    opts, jobs = fits_view(opts), []
    for metric in opts.metrics:
        rows = table[table["metric"] == metric]
        if rows.empty:
            continue
        for flavor in list(dict.fromkeys(rows["flavor"])):
            for series, sub in _groups(rows[rows["flavor"] == flavor], s_axes):
                sub = sub.sort_values(["n_train", "seed"])
                x, y = sub["n_train"].to_numpy(float), to_error(metric, sub["value"])
                jobs.append(
                    (
                        _scaling_doc,
                        (
                            {
                                "metric": metric,
                                "flavor": flavor,
                                "series": series,
                                "label": series_label(series, varying),
                                "x": x,
                                "y": y,
                                "seed": sub["seed"].tolist(),
                                "opts": opts,
                            },
                        ),
                    )
                )
    return jobs


def _scaling_doc(job: dict) -> dict:
    from .monotone import monotone_filter

    opts, x, y, metric, label = fits_view(job["opts"]), job["x"], job["y"], job["metric"], job["label"]
    keep, dropped = monotone_filter(x, y) if opts.monotone else (np.ones(len(x), dtype=bool), [])
    fits, comparison = fit_and_compare(
        x[keep],
        y[keep],
        opts.forms,
        bootstrap=opts.bootstrap,
        seed=0,
        min_points=opts.min_points,
        **fit_options(opts, metric),
    )
    if dropped:
        comparison["monotone_dropped"] = dropped
    return FitRecord(
        file=f"scaling__{metric}__{job['flavor'] or 'all'}__{slug(label)}.json",
        kind="scaling",
        metric=metric,
        flavor=job["flavor"],
        series=job["series"],
        label=label,
        x="n_train",
        y=error_quantity(metric),
        points={"x": x.tolist(), "y": y.tolist(), "seed": job["seed"], "used": keep.tolist()},
        domain=list(error_domain(metric).describe_pair()),
        fits={f: r.record() for f, r in fits.items()},
        comparison=comparison,
    ).to_json()


def loss_targets(table, s_axes, varying, opts) -> list[dict]:
    return [_run_job(j) for j in loss_jobs(table, s_axes, varying, opts)]


def loss_jobs(table, s_axes, varying, opts) -> list[tuple]:
    loss = table[table["metric"] == LOSS_METRIC].dropna(subset=["value"])
    if loss.empty:
        return []
    # a fitted model (the bdt baseline) has no parameter count or training FLOPs: its loss-vs-data series is
    # fitted like any other, but it never enters the architecture fits (L(N, D), vs parameters, vs compute)
    arch = loss.dropna(subset=["n_params"])
    opts = fits_view(opts)
    boot, min_points = opts.bootstrap, opts.min_points
    options = fit_options(opts, LOSS_METRIC)
    arch_axes = [a for a in s_axes if a != "width"]  # one architecture: every series axis but the width
    groups, why_not = architecture_groups(arch, arch_axes)
    jobs = [(chinchilla_target, (group, label, sub, boot, min_points)) for group, label, sub in groups]
    if not groups:  # slowest jobs first: better load balance
        jobs.append((joint_law_absent, (why_not,)))
    for series, sub in _groups(loss, s_axes):
        label = series_label(series, varying)
        jobs.append(
            (
                _single,
                (
                    "loss_vs_data",
                    f"loss_vs_data__{slug(label)}.json",
                    series,
                    label,
                    "n_train",
                    sub["n_train"],
                    sub["value"],
                    boot,
                    min_points,
                    options,
                ),
            )
        )
    for group, label, sub in groups:
        for n_train, at_n in sub.groupby("n_train", sort=True):
            name = f"loss_vs_params__{slug(label)}__n_train={int(n_train)}.json"
            args = ({**group, "n_train": int(n_train)}, f"{label}, n_train={int(n_train)}", "n_params")
            jobs.append(
                (_single, ("loss_vs_params", name, *args, at_n["n_params"], at_n["value"], boot, min_points, options))
            )
    jobs.append((compute_target, (arch, s_axes, boot, min_points, options)))
    return jobs


def architecture_groups(loss, arch_axes) -> tuple[list, str]:
    """(group, label, rows) of each architecture with at least MIN_WIDTHS sizes N; else why there is none."""
    out, sizes = [], []
    for group, sub in _groups(loss, arch_axes):
        n_sizes = sub["n_params"].nunique()
        label = series_label(group, list(group)) if group else "all"
        sizes.append(f"{label}: {n_sizes} size{'s' if n_sizes != 1 else ''}")
        if n_sizes >= MIN_WIDTHS:
            out.append((group, label, sub))
    why = (
        f"L(N, D) and loss vs parameters are fitted only within one architecture with at least {MIN_WIDTHS} "
        f"widths; here {'; '.join(sizes) or 'no architecture'}"
    )
    return out, why


def _single(kind, name, series, label, xcol, x, y, boot, min_points, options) -> dict:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    result = fit(LOSS_LAW, x, y, bootstrap=boot, min_points=min_points, **options)
    points = {"x": x.tolist(), "y": y.tolist()}
    return _loss_doc(name, kind, series, label, xcol, points, {LOSS_LAW: result.record()})


def _loss_doc(name: str, kind: str, series: dict, label: str, x: str, points: dict, fits: dict, **axes) -> dict:
    """The record of a test log-loss target (one form fitted, no comparison); ``axes``: ``x2`` for L(N, D)."""
    loss = {"metric": LOSS_METRIC, "flavor": "", "y": LOSS_METRIC, "comparison": None}
    record = FitRecord(file=name, kind=kind, series=series, label=label, x=x, points=points, fits=fits, **loss, **axes)
    return record.to_json()


def _joint_doc(name: str, series: dict, label: str, points: dict, record: dict) -> dict:
    return _loss_doc(name, JOINT_LAW, series, label, "n_params", points, {JOINT_LAW: record}, x2="n_train")


def chinchilla_target(group, label, loss, boot, min_points) -> dict:
    n, d, y = (loss[c].to_numpy(float) for c in ("n_params", "n_train", "value"))
    result = fit(JOINT_LAW, n, y, d, bootstrap=boot, min_points=min_points)
    points = {"x": n.tolist(), "x2": d.tolist(), "y": y.tolist()}
    return _joint_doc(f"{JOINT_LAW}__{slug(label)}.json", group, label, points, result.record())


def joint_law_absent(why: str) -> dict:
    """The L(N, D) record of a study without an architecture at three or more widths: why it is absent."""
    from .fitting import Fit
    from .status import NOT_APPLICABLE

    record = Fit(JOINT_LAW, status=NOT_APPLICABLE, message=f"not applicable: {why}").record()
    return _joint_doc(
        f"{JOINT_LAW}.json", {}, "no architecture with enough widths", {"x": [], "x2": [], "y": []}, record
    )


def compute_target(loss, s_axes, boot, min_points, options) -> dict:
    sub = loss.dropna(subset=["train_flops"])
    c, y = sub["train_flops"].to_numpy(float), sub["value"].to_numpy(float)
    front = compute_frontier(c, y) if len(c) else np.array([], dtype=int)
    result = fit(LOSS_LAW, c[front], y[front], bootstrap=boot, min_points=min_points, **options)
    points = {"x": c.tolist(), "y": y.tolist(), "cell_id": sub["cell_id"].tolist(), "frontier": front.tolist()}
    label = "compute-optimal frontier"
    return _loss_doc(
        "loss_vs_compute.json", "loss_vs_compute", {}, label, "train_flops", points, {LOSS_LAW: result.record()}
    )


def load_fit_docs(cfg: dict, directory: Path | None = None) -> list[dict]:
    """The fit records (JSON) in ``directory`` (default: the study's fits/)."""
    out = []
    for path in sorted(Path(directory or fits_dir(results_root(cfg))).glob("*.json")):
        doc = json.loads(path.read_text())
        doc["_file"] = path.name
        out.append(doc)
    return out

"""Every evaluated cell of the study grid -> one tidy table (``results/tables/runs.csv``).

One row per cell × metric × flavor. Columns (in this order):
    cell_id, <every grid axis>, n_params, flops_per_jet, train_flops, samples_seen, stopped_by, wall_time_s,
    hardware, metric, flavor, value, error
``stopped_by`` is ``converged`` (the validation loss stopped improving) or ``budget`` (the sample cap or fixed
budget ended the run first: the point is a lower bound on what its data can teach).
``flavor`` is empty for global metrics (accuracy, log_loss, ...), the quark species for tag_efficiency,
charge_flip and their continuous counterparts (tag/charge log-loss and AUC), and the class name for auc.
``error`` is the test-set counting uncertainty where one exists (empty otherwise). Rows follow the config grid
order, then a fixed metric order, so two runs of the same study give byte-identical tables apart from the
timing/hardware columns.

Cells that are not usable (``failure.json`` present, metrics.json / eval.json absent, or an eval.json made from
an earlier training of the cell, i.e. with another settings_hash) go to
``results/tables/missing.csv`` with the reason, and are printed, never silently dropped.
Also written: ``results/tables/confusion.csv`` (cell_id, axes, truth, predicted, fraction, count), which the
report reads so it never has to open a run directory. A grid with tuning axes (``grid.tune``) adds a ``chosen``
column (true for the rows of each tuned cell's best candidate on validation) and ``results/tables/tuning.csv``
(:mod:`jetscale.evaluate.tuning`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from .. import metric_catalog, paths
from ..config import tune_axes
from ..errors import DataError
from ..grid import axis_names, cell_id, cells
from ..io import atomic_path, read_json
from ..paths import results_root, run_dir, runs_table
from ..terminal import printable

RUN_COLUMNS = ("n_params", "flops_per_jet", "train_flops", "samples_seen", "stopped_by", "wall_time_s", "hardware")


def tidy_columns(cfg: dict) -> list[str]:
    """runs.csv's columns; a grid with tuning axes adds ``chosen`` (the row's cell is its tuned cell's choice)."""
    chosen = ["chosen"] if tune_axes(cfg) else []
    return ["cell_id", *axis_names(cfg), *RUN_COLUMNS, "metric", "flavor", "value", "error", *chosen]


def collect(cfg: dict, *, out: Path | None = None, quiet: bool = False) -> tuple[Path, list[dict]]:
    """Write runs.csv (at ``out``, default: the study's), confusion.csv and missing.csv beside it; return
    (runs.csv path, missing rows)."""
    import pandas as pd

    root = results_root(cfg)
    table = Path(out) if out is not None else runs_table(root)
    axes = axis_names(cfg)
    rows, confusion_rows, missing = [], [], []
    for cell in cells(cfg):
        cid = cell_id(cfg, cell)
        cell_rows, cell_confusion, reason = read_cell(run_dir(root, cid), cid, cell, axes)
        if reason:
            missing.append({"cell_id": cid, **cell, "reason": reason})
            continue
        rows += cell_rows
        confusion_rows += cell_confusion
    columns = tidy_columns(cfg)
    write_csv(
        integral_axes(
            pd.DataFrame(confusion_rows, columns=["cell_id", *axes, "truth", "predicted", "fraction", "count"]), axes
        ),
        paths.confusion_table(table.parent),
    )
    write_csv(
        integral_axes(pd.DataFrame(missing, columns=["cell_id", *axes, "reason"]), axes),
        paths.missing_table(table.parent),
    )
    frame = pd.DataFrame(rows, columns=[c for c in columns if c != "chosen"])
    write_tuning(cfg, frame, table.parent)
    write_csv(integral_axes(frame[columns], axes), table)  # the rule's target: last
    if missing and not quiet:
        print(
            f"jetscale collect: {len(missing)} of {len(missing) + len({r['cell_id'] for r in rows})} cells missing "
            f"(listed in {paths.missing_table(table.parent)}):",
            file=sys.stderr,
        )
        for m in missing:
            print(f"  {m['cell_id']}: {printable(m['reason'])}", file=sys.stderr)
    from ..config import uses_pretraining

    if uses_pretraining(cfg):
        from ..pretrain.plan import study_backbones
        from ..pretrain.tables import collect_pretraining

        collect_pretraining(cfg, list(study_backbones(cfg)), quiet=quiet)
    return table, missing


def read_cell(run: Path, cid: str, cell: dict, axes: list[str]) -> tuple[list[dict], list[dict], str | None]:
    """A finished cell's tidy rows and confusion rows, or the reason it counts as missing (nothing raised: the
    other cells are still collected)."""
    reason = missing_reason(run)
    if reason:
        return [], [], reason
    try:
        metrics = read_json(run / paths.METRICS, "metrics file")
        evaluation = read_json(run / paths.EVAL, "evaluation")
    except DataError as exc:
        return [], [], f"unreadable: {exc}"
    if evaluation.get("settings_hash", metrics.get("settings_hash")) != metrics.get("settings_hash"):
        return [], [], "stale eval.json (settings_hash differs from metrics.json): re-run jetscale evaluate"
    try:
        base = {"cell_id": cid, **{a: cell[a] for a in axes}, **run_info(metrics)}
        cell_rows = [{**base, **r} for r in metric_rows(metrics, evaluation)]
        cell_confusion = confusion_long(base, axes, evaluation)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return (
            [],
            [],
            (
                f"malformed metrics.json or eval.json ({type(exc).__name__}: "
                f"{exc}): re-run jetscale evaluate (or retrain the cell)"
            ),
        )
    problem = implausible(cell_rows)
    if problem:
        return [], [], f"{problem}: re-run jetscale evaluate"
    return cell_rows, cell_confusion, None


def write_tuning(cfg: dict, frame, tables: Path) -> None:
    """With tuning axes: mark ``frame``'s chosen rows (column ``chosen``) and write tuning.csv beside runs.csv;
    without: remove a tuning.csv left by an earlier config of the study."""
    from .tuning import choose

    path = paths.tuning_table(tables)
    if not tune_axes(cfg):
        path.unlink(missing_ok=True)
        return
    keep, tuning = choose(cfg, frame)
    frame["chosen"] = keep
    write_csv(tuning, path)


def integral_axes(table, axes: list[str]):
    """Axis columns of whole numbers with gaps (a fitted model's cells have no width: None) as object columns of
    ints and None, so they print as 16, not 16.0, in tables, labels and CSV files. Returns ``table``."""
    import pandas as pd

    for axis in axes:
        if axis not in table.columns or not pd.api.types.is_float_dtype(table[axis]):
            continue
        present = table[axis].dropna()
        if len(present) < len(table[axis]) and (present == present.round()).all():
            table[axis] = pd.Series(
                [None if pd.isna(v) else int(v) for v in table[axis]], index=table.index, dtype=object
            )
    return table


def missing_reason(run: Path) -> str | None:
    failure = run / paths.FAILURE
    if failure.is_file():
        try:
            info = json.loads(failure.read_text())
            detail = next(
                (str(info[k]) for k in ("reason", "error", "message") if isinstance(info, dict) and k in info),
                json.dumps(info),
            )
        except (OSError, ValueError):
            detail = "failure.json unreadable"
        return f"failed: {detail}"
    if not (run / paths.METRICS).is_file():
        return "not trained (no metrics.json)"
    if not (run / paths.EVAL).is_file():
        return "not evaluated (no eval.json)"
    return None


def run_info(metrics: dict) -> dict:
    hardware = metrics.get("hardware")
    if isinstance(hardware, dict):
        hardware = "; ".join(f"{k}={v}" for k, v in sorted(hardware.items()))
    info = {k: metrics.get(k) for k in RUN_COLUMNS}
    info["hardware"] = hardware
    return info


def metric_rows(metrics: dict, evaluation: dict) -> list[dict]:
    """The (metric, flavor, value, error) rows of one cell, in the metric catalog's order (global metrics, then
    per-flavor ones, then per-class ones). A metric of the catalog is read from eval.json (global: its key and
    ``uncertainties``; per flavor: ``flavors.<q>.<name>`` and ``<name>_err``, skipped where absent, as in
    eval.json files made before it existed) unless it is derived below."""
    unc = evaluation.get("uncertainties", {})
    n = evaluation.get("n_jets") or 0
    acc = _num(evaluation.get("accuracy"))
    acc_err = _num(unc.get("accuracy")) if "accuracy" in unc else (math.sqrt(acc * (1 - acc) / n) if n else math.nan)
    auc = {k: _num(v) for k, v in (evaluation.get("auc") or {}).items()}
    finite_auc = [v for v in auc.values() if math.isfinite(v)]
    derived = {
        "accuracy": (acc, acc_err),
        "val_loss": (_num(metrics.get("val_loss")), math.nan),
        "val_accuracy": (_num(metrics.get("val_accuracy")), math.nan),
        "mean_auc": (sum(finite_auc) / len(finite_auc) if finite_auc else math.nan, math.nan),
    }
    specs = list(metric_catalog.METRICS.values())
    rows = []
    for spec in (s for s in specs if s.scope == metric_catalog.GLOBAL):
        value, err = derived.get(spec.name, (_num(evaluation.get(spec.name)), _num(unc.get(spec.name))))
        rows.append({"metric": spec.name, "flavor": "", "value": value, "error": err})
    for spec in (s for s in specs if s.scope == metric_catalog.PER_FLAVOR):
        for flavor, fm in evaluation.get("flavors", {}).items():
            if spec.name in fm:
                rows.append(
                    {
                        "metric": spec.name,
                        "flavor": flavor,
                        "value": _num(fm.get(spec.name)),
                        "error": _num(fm.get(f"{spec.name}_err")),
                    }
                )
    for spec in (s for s in specs if s.scope == metric_catalog.PER_CLASS):
        values = auc if spec.name == "auc" else {k: _num(v) for k, v in (evaluation.get(spec.name) or {}).items()}
        rows += [{"metric": spec.name, "flavor": cls, "value": v, "error": math.nan} for cls, v in values.items()]
    return rows


LOSSES = ("log_loss", "val_loss", "tag_log_loss", "charge_log_loss")


def implausible(rows: list[dict]) -> str | None:
    """Why a cell's values cannot be right (a fraction or AUC outside [0, 1], a negative or infinite loss), or
    None; a missing value (NaN) is allowed."""
    for row in rows:
        value = row["value"]
        if isinstance(value, float) and math.isnan(value):
            continue
        bad = (value < 0 or math.isinf(value)) if row["metric"] in LOSSES else not 0 <= value <= 1
        if bad:
            where = f"{row['metric']}" + (f" ({row['flavor']})" if row["flavor"] else "")
            return f"implausible {where} = {value!r} in eval.json or metrics.json"
    return None


def confusion_long(base: dict, axes: list[str], evaluation: dict) -> list[dict]:
    classes = evaluation["classes"]
    frac = evaluation["confusion"]
    counts = evaluation.get("counts")
    out = []
    for i, truth in enumerate(classes):
        for j, pred in enumerate(classes):
            out.append(
                {
                    "cell_id": base["cell_id"],
                    **{a: base[a] for a in axes},
                    "truth": truth,
                    "predicted": pred,
                    "fraction": _num(frac[i][j]),
                    "count": counts[i][j] if counts else None,
                }
            )
    return out


def _num(value) -> float:
    return math.nan if value is None else float(value)


def write_csv(df, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")

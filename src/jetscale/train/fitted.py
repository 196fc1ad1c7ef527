"""One cell of a *fitted* model (catalog ``kind="fitted"``, the ``bdt`` baseline): fit, score, write.

``train_cell`` hands such cells here. There is no gradient loop, optimiser, checkpoint or width: the cell's
training subset (the same nested first-n_train jets the networks train on) becomes a matrix of jet observables
(:mod:`jetscale.data.observables`), the model's fit function (``ModelSpec.builder``) fits it with early stopping
on the study's validation split, and the test split is scored as for any cell. The outputs keep the network
cells' names and keys, so evaluate, collect, fits and the report read them unchanged:

* ``predictions.parquet``: ``jet_id``, ``label``, ``score_<class>`` (float32), one row per test jet;
* ``metrics.json``: every key of a network cell's record; those that do not apply to a fitted model (width,
  compute, n_params, flops_per_jet, train_flops, samples_seen, samples_budget, epochs_seen, steps,
  steps_budget, batch_size, best_step, truncated_jets) are null, never made up. ``stopped_by`` is
  ``converged`` (early stopping) or ``budget`` (``max_rounds`` reached while still improving); ``fit`` holds
  the library, rounds run, the best round and the fit's seconds;
* ``train_log.csv``: one row per boosting round (``step`` = round, ``val_loss`` = validation log-loss);
* ``model.txt``: the fitted model (LightGBM's text format, trimmed to the best round).

A rerun refits from scratch (a fit takes seconds); a finished result is archived in ``history/`` first.
"""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import io as jio
from .. import paths
from ..errors import DataError
from ..grid import parse_cell_id
from ..models import catalog
from ..resources import train_resources
from ..settings import resolve_settings, settings_hash
from .history import archive
from .outputs import CsvLog, loss_and_accuracy, write_predictions
from .record import MetricsRecord, scored_fields

# metrics.json keys a fitted model has no value for (null): no width, compute budget, parameter count, forward
# FLOPs, optimiser steps or sample stream
NOT_APPLICABLE = (
    "width",
    "compute",
    "n_params",
    "flops_per_jet",
    "train_flops",
    "samples_seen",
    "samples_budget",
    "epochs_seen",
    "steps",
    "steps_budget",
    "batch_size",
    "best_step",
    "truncated_jets",
)
LIBRARIES = {"jetscale.models.bdt:fit": "lightgbm"}  # fit function -> the library whose version is recorded


def train_fitted(cfg: dict, cell_id: str, splits_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Fit the fitted-model cell ``cell_id``, write its outputs to ``out_dir``; return the metrics record."""
    import numpy as np

    from ..data.observables import split_observables
    from ..data.splits import load_split

    t_start = time.perf_counter()
    cell = parse_cell_id(cfg, cell_id)
    settings = resolve_settings(cfg, cell)
    shash = settings_hash(settings)
    spec = catalog.get(settings["model"])
    options = spec.parse_options(settings["model_options"])
    classes = list(settings["classes"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (paths.METRICS, paths.FAILURE):  # a finished result survives in history/
        (out_dir / stale).unlink(missing_ok=True)

    splits = {
        split: load_split(splits_dir, split, settings["n_train"] if split == "train" else None)
        for split in ("train", "val", "test")
    }
    meta = splits["train"].meta
    if meta.get("classes") and list(meta["classes"]) != classes:
        raise DataError(f"{splits_dir}/meta.json: classes {meta['classes']} differ from the config's {classes}")
    x = {split: split_observables(arrays) for split, arrays in splits.items()}
    y = {split: np.asarray(arrays["labels"], dtype=np.int64) for split, arrays in splits.items()}
    threads = train_resources(cfg, cell)["threads"]  # the cores the job asked for (a run knob, not hashed)

    t_fit = time.perf_counter()
    fitted = catalog.resolve(spec.builder)(
        options,
        (x["train"], y["train"]),
        (x["val"], y["val"]),
        n_classes=len(classes),
        seed=cell["seed"],
        threads=threads,
    )
    fit_s = time.perf_counter() - t_fit
    val_probs, test_probs = (fitted.predict_proba(x[s]).astype(np.float32) for s in ("val", "test"))
    val, test = loss_and_accuracy(val_probs, y["val"]), loss_and_accuracy(test_probs, y["test"])
    library = LIBRARIES.get(spec.builder)
    record = _record(
        cell_id=cell_id,
        cell=cell,
        settings=settings,
        shash=shash,
        scores=(val, test),
        fitted=fitted,
        fit_info={"library": library, "max_rounds": options.max_rounds, "fit_time_s": round(fit_s, 3)},
        times=(t_start, t_fit),
        sizes=(len(y["val"]), len(y["test"])),
        threads=threads,
        meta=meta,
    )
    jio.write_text(out_dir / paths.FITTED_MODEL, fitted.model_text())
    CsvLog(out_dir / paths.TRAIN_LOG).close([{"step": i + 1, "val_loss": v} for i, v in enumerate(fitted.val_history)])
    write_predictions(out_dir / paths.PREDICTIONS, splits["test"]["jet_id"], y["test"], test_probs, classes)
    jio.write_json(out_dir / paths.METRICS, record)  # the train rule's target: last
    archive(out_dir, shash)
    return record


def _record(*, cell_id, cell, settings, shash, scores, fitted, fit_info, times, sizes, threads, meta) -> dict:
    """The ``metrics.json`` record of a fitted cell: a network cell's keys, null where they do not apply."""
    from ..data.observables import OBSERVABLES

    (val, test), (t_start, t_fit), library = scores, times, fit_info["library"]
    return MetricsRecord(
        **dict.fromkeys(NOT_APPLICABLE),
        **scored_fields(cell_id, cell, settings, shash, val, test, meta),
        stopped_by=fitted.stopped_by,
        fit={
            "library": library,
            **fitted.record(),
            "max_rounds": fit_info["max_rounds"],
            "fit_time_s": fit_info["fit_time_s"],
        },
        wall_time_s=round(time.perf_counter() - t_start, 3),
        setup_time_s=round(t_fit - t_start, 3),
        n_val=sizes[0],
        n_test=sizes[1],
        hardware={
            "device": "cpu",
            "engine": library,
            "processes": 1,
            "threads": threads,
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "hostname": platform.node(),
        },
        versions=_versions(library),
        inputs={"observables": list(OBSERVABLES)},
    ).to_json()


def _versions(library: str | None) -> dict[str, Any]:
    import numpy as np

    out = {"python": platform.python_version(), "numpy": np.__version__}
    for pkg in ("jetscale", "pandas", "pyarrow", *([library] if library else [])):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out

"""`jetscale metrics | evaluate | collect` (heavy imports happen inside the command functions)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError
from ..io import not_a_file


def register(sub) -> None:
    p = sub.add_parser("metrics", help="print the metrics JSON of a predictions file or a raw confusion-count table")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--predictions", help="parquet: label (class index) + score_<class> columns")
    src.add_argument(
        "--confusion", help="CSV of raw counts: header = class names, index column = class names, rows = truth"
    )
    p.add_argument("--config", help="study config (classes, flavor pairs); default: the 11 JoI classes")
    p.set_defaults(func=_metrics)

    p = sub.add_parser("evaluate", help="write <run>/eval.json from <run>/predictions.parquet")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--run", help="a run directory, results/runs/<cell id> (sets the three paths below)")
    p.add_argument("--predictions", help="test-set predictions (default: <run>/predictions.parquet)")
    p.add_argument("--metrics", help="the run's metrics.json (default: <run>/metrics.json)")
    p.add_argument("--out", help="where eval.json goes (default: <run>/eval.json)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("collect", help="all evaluated cells -> results/tables/runs.csv (+ missing.csv)")
    p.add_argument("--config", default="config.yaml")
    p.add_argument(
        "--out", help="the tidy table (default: <results>/tables/runs.csv); missing.csv, confusion.csv beside"
    )
    p.set_defaults(func=_collect)


def _classes(config: str | None) -> tuple[list[str], dict]:
    from .metrics import JOI_CLASSES, JOI_FLAVOR_PAIRS

    if not config:
        return list(JOI_CLASSES), dict(JOI_FLAVOR_PAIRS)
    from ..config import load_config

    cfg = load_config(config)
    return list(cfg["classes"]), dict(cfg["flavor_pairs"])


def _metrics(args) -> int:
    from ..io import json_safe
    from .metrics import metrics_from_counts

    classes, pairs = _classes(args.config)
    if args.predictions:
        doc = _predictions_metrics(Path(args.predictions), classes, pairs)
        keep = ("classes", "n_jets", "accuracy", "log_loss", "confusion", "flavors", "auc")
    else:
        counts = read_confusion_csv(Path(args.confusion), classes)
        doc = metrics_from_counts(counts, classes, pairs)
        keep = ("classes", "n_jets", "accuracy", "log_loss", "confusion", "flavors")
    print(json.dumps(json_safe({k: doc[k] for k in keep if k in doc})))
    return 0


def _predictions_metrics(path: Path, classes: list[str], pairs: dict) -> dict:
    import pandas as pd

    from .metrics import metrics_from_predictions

    if not path.is_file():
        raise DataError(not_a_file(path, "predictions file"))
    try:
        df = pd.read_parquet(path)
        return metrics_from_predictions(df, classes, pairs)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None


def read_confusion_csv(path: Path, classes: list[str]):
    """Raw count table -> (n, n) int array in ``classes`` order (rows = truth, columns = prediction)."""
    import numpy as np
    import pandas as pd

    if not path.is_file():
        raise DataError(not_a_file(path, "confusion table"))
    try:
        df = pd.read_csv(path, index_col=0)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a CSV confusion table ({' '.join(str(exc).split())})") from None
    df.index = df.index.astype(str).str.strip()
    df.columns = df.columns.astype(str).str.strip()
    for what, names in (("row (truth) labels", list(df.index)), ("column (prediction) labels", list(df.columns))):
        if sorted(names) != sorted(classes):
            raise DataError(f"{path}: {what} {names} do not match the classes {classes}")
    try:
        values = df.loc[classes, classes].to_numpy(dtype=float)
    except ValueError:
        raise DataError(f"{path}: counts must be numbers (the table holds text)") from None
    if not np.isfinite(values).all() or np.any(values < 0) or np.any(values != np.round(values)):
        raise DataError(f"{path}: counts must be non-negative integers")
    if values.max(initial=0) >= 2**53:
        raise DataError(f"{path}: a count of {values.max():.3g} is beyond what can be counted exactly (2^53)")
    return values.astype(np.int64)


def _evaluate(args) -> int:
    from .. import paths
    from ..config import load_config
    from ..errors import JetscaleError
    from ..io import write_json

    cfg = load_config(args.config)
    from ..results_dir import check_owner

    check_owner(cfg)  # writes into this study's results dir
    if not args.run and not (args.predictions and args.out):
        raise JetscaleError("give --run DIR, or --predictions FILE --out FILE [--metrics FILE]")
    run = Path(args.run) if args.run else None
    predictions = Path(args.predictions) if args.predictions else run / paths.PREDICTIONS
    metrics_file = Path(args.metrics) if args.metrics else (run / paths.METRICS if run else None)
    out = Path(args.out) if args.out else run / paths.EVAL
    failure = predictions.parent / paths.FAILURE
    if failure.is_file():
        raise DataError(f"{predictions.parent}: the run failed (failure.json present); nothing to evaluate")
    doc = _predictions_metrics(predictions, list(cfg["classes"]), dict(cfg["flavor_pairs"]))
    if metrics_file is not None and metrics_file.is_file():
        from ..io import read_json

        meta = read_json(metrics_file, "metrics file")
        doc = {"cell_id": meta.get("cell_id"), "settings_hash": meta.get("settings_hash"), **doc}
    write_json(out, doc)
    if out.name == paths.EVAL:  # in a run directory: archive it with the run's finished result
        from ..train.history import archive_evaluation  # torch-free

        archive_evaluation(out.parent)
    return 0


def _collect(args) -> int:
    from ..config import load_config
    from .collect import collect

    cfg = load_config(args.config)
    from ..results_dir import check_owner

    check_owner(cfg)  # writes into this study's results dir
    path, missing = collect(cfg, out=Path(args.out) if args.out else None)
    print(path)
    return 0


__all__ = ["register", "read_confusion_csv"]

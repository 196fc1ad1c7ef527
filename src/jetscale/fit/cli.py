"""`jetscale fit`: one form on any CSV table, or every fit of a study (--config)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import DataError, JetscaleError

FORMS = ("powerlaw", "scurve", "bnsl", "chinchilla")


def register(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit a scaling law to a CSV table (--csv) or fit the whole study (--config)",
        description="Table mode: jetscale fit --csv FILE --x COL [--x2 COL] --y COL --form FORM [--bootstrap N] "
        "prints one fit record as JSON (repeated x values are seeds). Study mode: jetscale fit --config "
        "config.yaml reads results/tables/runs.csv and writes results/fits/*.json + fit_summary.csv.",
    )
    p.add_argument("--config", help="study mode: fit everything in results/tables/runs.csv")
    p.add_argument("--table", help="study mode: the runs table to fit (default: the study's tables/runs.csv)")
    p.add_argument(
        "--out", help="study mode: fit_summary.csv to write, fit records beside it (default: <results>/fits/)"
    )
    p.add_argument("--csv", help="table mode: any CSV file")
    p.add_argument("--x", help="column of the scaling variable (N for chinchilla)")
    p.add_argument("--x2", help="second column (D for chinchilla)")
    p.add_argument("--y", help="column of the fitted quantity")
    p.add_argument("--form", choices=FORMS)
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap replicates for stderr and ci95 (default 0)")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=_fit)


def _fit(args) -> int:
    if args.csv:
        return _table_mode(args)
    if args.config:
        from ..results_dir import load_study_config
        from .study import run_study_fits

        print(run_study_fits(load_study_config(args.config), table=args.table, summary=args.out))
        return 0
    raise JetscaleError("give either --csv FILE --x COL --y COL --form FORM, or --config config.yaml")


def _table_mode(args) -> int:
    import pandas as pd

    from ..io import json_safe
    from .fitting import fit

    missing = [flag for flag, v in (("--x", args.x), ("--y", args.y), ("--form", args.form)) if not v]
    if missing:
        raise JetscaleError(f"table mode needs {', '.join(missing)}")
    if args.form == "chinchilla" and not args.x2:
        raise JetscaleError("--form chinchilla needs --x2 (D) next to --x (N)")
    path = Path(args.csv)
    if not path.is_file():
        raise DataError(f"{path}: CSV file not found")
    table = pd.read_csv(path)
    for col in (args.x, args.y, args.x2):
        if col and col not in table.columns:
            raise DataError(f"{path}: no column {col!r}; columns: {list(table.columns)}")
    x2 = pd.to_numeric(table[args.x2], errors="coerce") if args.form == "chinchilla" else None
    result = fit(
        args.form,
        pd.to_numeric(table[args.x], errors="coerce"),
        pd.to_numeric(table[args.y], errors="coerce"),
        x2,
        bootstrap=args.bootstrap,
        seed=args.seed,
    )
    print(json.dumps(json_safe(result.record())))
    return 0


__all__ = ["register"]

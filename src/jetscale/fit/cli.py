"""`jetscale fit`: one form on any CSV table, or every fit of a study (--config)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..argtypes import BOOTSTRAP, SEED
from ..errors import DataError, JetscaleError
from ..io import not_a_file, read_csv_table


def table_domain(metric: str | None):
    """``--metric NAME``: the physical range of that metric's values (the y column holds the metric itself,
    rising for a higher-is-better one); no --metric: unbounded values, positive exponents only."""
    from .. import metric_catalog
    from .forms import FREE, Domain

    if not metric:
        return FREE
    spec = metric_catalog.find(metric)
    if spec is None:
        raise JetscaleError(f"--metric: unknown metric {metric!r}; metrics: {metric_catalog.names()}")
    return Domain(*spec.range, falling=not spec.higher_is_better)


def add_fit_choices(p, forms_of_n_x: int | None = None, default_form: str | None = None) -> None:
    """--form (the form catalog), --metric (the metric catalog: its range bounds the fit), --loss, --huber-delta."""
    from .. import metric_catalog
    from . import forms
    from .solver import HUBER_LOG_DELTA, LOSSES

    p.add_argument("--form", choices=forms.names(forms_of_n_x), default=default_form)
    p.add_argument(
        "--metric",
        choices=metric_catalog.names(),
        help="the metric in the y column: fitted floors, ceilings and asymptotes stay in its physical range",
    )
    p.add_argument("--loss", choices=LOSSES, default="squares", help="squares (default) or huber_log")
    p.add_argument("--huber-delta", type=float, default=HUBER_LOG_DELTA, help="Huber scale on ln residuals")


def objective_of(args):
    from .solver import Objective

    try:
        return Objective(args.loss, args.huber_delta)
    except ValueError as exc:
        raise JetscaleError(f"--loss/--huber-delta: {exc}") from None


def register(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit a scaling law to a CSV table (--csv) or fit the whole study (--config)",
        description="Table mode: jetscale fit --csv FILE --x COL [--x2 COL] --y COL --form FORM [--metric NAME] "
        "[--bootstrap N] prints one fit record as JSON (repeated x values are seeds; --metric holds the fit to that "
        "metric's physical range, and the record's status says ok, unconstrained, failed or not applicable). "
        "Study mode: jetscale fit --config "
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
    add_fit_choices(p)
    p.add_argument(
        "--bootstrap", type=BOOTSTRAP, default=0, help="bootstrap replicates for stderr and ci95 (default 0)"
    )
    p.add_argument("--seed", type=SEED, default=0, help=argparse.SUPPRESS)
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
    from . import forms
    from .fitting import fit

    missing = [flag for flag, v in (("--x", args.x), ("--y", args.y), ("--form", args.form)) if not v]
    if missing:
        raise JetscaleError(f"table mode needs {', '.join(missing)}")
    two_x = forms.get(args.form).n_x == 2
    if two_x and not args.x2:
        raise JetscaleError(f"--form {args.form} needs --x2 (D) next to --x (N)")
    path = Path(args.csv)
    if not path.is_file():
        raise DataError(not_a_file(path, "CSV file"))
    table = read_csv_table(path)
    for col in (args.x, args.y, args.x2):
        if col and col not in table.columns:
            raise DataError(f"{path}: no column {col!r}; columns: {list(table.columns)}")
    x2 = pd.to_numeric(table[args.x2], errors="coerce") if two_x else None
    domain, objective = table_domain(args.metric), objective_of(args)
    result = fit(
        args.form,
        pd.to_numeric(table[args.x], errors="coerce"),
        pd.to_numeric(table[args.y], errors="coerce"),
        x2,
        bootstrap=args.bootstrap,
        seed=args.seed,
        domain=domain,
        objective=objective,
    )
    print(json.dumps(json_safe(result.record())))
    return 0


__all__ = ["register", "add_fit_choices", "table_domain", "objective_of"]

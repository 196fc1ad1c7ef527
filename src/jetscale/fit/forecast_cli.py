"""`jetscale forecast` and `jetscale backtest` on any CSV table (repeated x values are seeds)."""

from __future__ import annotations

import json
from pathlib import Path

from ..argtypes import BOOTSTRAP, SEED, float_in, int_in
from ..errors import DataError, JetscaleError
from ..io import not_a_file, read_csv_table
from .cli import add_fit_choices, objective_of, table_domain


def register(sub) -> None:
    p = sub.add_parser(
        "forecast",
        help="x at which a fitted scaling curve reaches a target value, with a bootstrap interval",
        description="Prints one JSON object: x, x_lo, x_hi (bootstrap interval over seeds), reachable (false with "
        "the reason for a target the curve never reaches) and the fit record.",
    )
    _common(p)
    p.add_argument("--target", type=float_in(), required=True, help="the y value to reach (same units as --y)")
    p.set_defaults(func=_forecast)

    p = sub.add_parser(
        "backtest",
        help="fit without the K largest x values and check the prediction intervals at the held-out ones",
        description="Prints JSON {points: [{x, observed (mean over seeds), predicted, lo, hi, covered}], coverage, "
        "fit, ...}.",
    )
    _common(p)
    p.add_argument("--holdout", type=int_in(1), default=1, help="how many of the largest distinct x values to hold out")
    p.set_defaults(func=_backtest)


def _common(p) -> None:
    p.add_argument("--csv", required=True, help="any CSV table")
    p.add_argument("--x", required=True, help="column of the scaling variable")
    p.add_argument("--y", required=True, help="column of the fitted quantity")
    from .forms import SMOOTH

    add_fit_choices(p, forms_of_n_x=1, default_form=SMOOTH)
    p.add_argument(
        "--bootstrap", type=BOOTSTRAP, default=200, help="bootstrap replicates for the interval (default 200)"
    )
    p.add_argument(
        "--level",
        type=float_in(0, 1, open_lo=True, open_hi=True),
        default=0.95,
        help="interval probability (default 0.95)",
    )
    p.add_argument("--seed", type=SEED, default=0, help="bootstrap random seed")


def read_xy(path: str, xcol: str, ycol: str):
    """Numeric (x, y) columns of a CSV file; a clear error for a missing file or column."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(not_a_file(path, "CSV file"))
    table = read_csv_table(path)
    for col in (xcol, ycol):
        if col not in table.columns:
            raise DataError(f"{path}: no column {col!r}; columns: {list(table.columns)}")
    return (pd.to_numeric(table[c], errors="coerce").to_numpy(float) for c in (xcol, ycol))


def _check(args) -> None:
    if not 0 < args.level < 1:
        raise JetscaleError(f"--level must lie between 0 and 1, not {args.level}")
    if args.bootstrap < 0:
        raise JetscaleError(f"--bootstrap must be >= 0, not {args.bootstrap}")


def _forecast(args) -> int:
    from ..io import json_safe
    from .forecast import forecast

    _check(args)
    x, y = read_xy(args.csv, args.x, args.y)
    options = {"domain": table_domain(args.metric), "objective": objective_of(args)}
    out = forecast(args.form, x, y, args.target, bootstrap=args.bootstrap, seed=args.seed, level=args.level, **options)
    print(json.dumps(json_safe({"x_column": args.x, "y_column": args.y, **out})))
    return 0


def _backtest(args) -> int:
    from ..io import json_safe
    from .backtest import backtest

    _check(args)
    if args.holdout < 1:
        raise JetscaleError(f"--holdout must be >= 1, not {args.holdout}")
    x, y = read_xy(args.csv, args.x, args.y)
    options = {"domain": table_domain(args.metric), "objective": objective_of(args)}
    out = backtest(args.form, x, y, args.holdout, bootstrap=args.bootstrap, seed=args.seed, level=args.level, **options)
    print(json.dumps(json_safe({"x_column": args.x, "y_column": args.y, **out})))
    return 0


__all__ = ["register", "read_xy"]

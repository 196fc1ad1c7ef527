"""`jetscale` command line: one subcommand per pipeline stage.

Each area of the package contributes its subcommands through a ``register(subparsers)`` function in its own
``cli.py`` (data, inputs, models, train, evaluate, fit, report, launch). Those modules import heavy dependencies (torch,
pythia8) lazily inside the command functions, so `jetscale --help` and the Snakemake DAG stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys

from .errors import JetscaleError

AREA_MODULES = (
    "jetscale.data.cli",
    "jetscale.inputs.cli",
    "jetscale.models.cli",
    "jetscale.train.cli",
    "jetscale.pretrain.cli",
    "jetscale.evaluate.cli",
    "jetscale.fit.cli",
    "jetscale.fit.forecast_cli",
    "jetscale.report.cli",
    "jetscale.launch.cli",
    "jetscale.status",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jetscale", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _register_plan(sub)
    for name in AREA_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not built yet
                continue
            raise
        module.register(sub)
    return parser


def _register_plan(sub) -> None:
    p = sub.add_parser("plan", help="validate a config and list its grid cells")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--json", action="store_true", help="print cells as JSON")
    p.set_defaults(func=_plan)


def _plan(args) -> int:
    from .config import load_config
    from .grid import cell_ids, cells

    cfg = load_config(args.config)
    if args.json:
        print(json.dumps(cells(cfg), indent=1))
    else:
        ids = cell_ids(cfg)
        print("\n".join(ids))
        print(f"# {len(ids)} cells", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A preempted `jetscale train` must end as "requeue me" (75) even when the signal comes while torch is
    # still importing: take SIGUSR1/SIGTERM as stop requests before anything heavy is imported.
    with _stop_requests_from_the_start(argv[:1] == ["train"]):
        parser = build_parser()
        args = parser.parse_args(argv)
        try:
            return int(args.func(args) or 0)
        except JetscaleError as exc:
            print(f"jetscale {args.command}: error: {exc}", file=sys.stderr)
            return 2


def _stop_requests_from_the_start(enabled: bool):
    from . import signals  # signal + threading only

    return signals.default_signals_stop() if enabled else contextlib.nullcontext()


if __name__ == "__main__":
    sys.exit(main())

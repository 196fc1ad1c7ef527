"""`jetscale` command line: one subcommand per pipeline stage.

Each area of the package contributes its subcommands through a ``register(subparsers)`` function in its own
``cli.py`` (data, inputs, models, train, evaluate, fit, report, launch). Those modules import heavy dependencies (torch,
pythia8) lazily inside the command functions, so `jetscale --help` and the Snakemake DAG stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import json
import os
import sys

from .errors import JetscaleError

AREA_MODULES = (
    "jetscale.data.cli",
    "jetscale.inputs.cli",
    "jetscale.models.cli",
    "jetscale.train.cli",
    "jetscale.pretrain.cli",
    "jetscale.evaluate.cli",
    "jetscale.export.cli",
    "jetscale.fit.cli",
    "jetscale.fit.forecast_cli",
    "jetscale.report.cli",
    "jetscale.launch.cli",
    "jetscale.status",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jetscale",
        description=__doc__.splitlines()[0],
        epilog=f"Errors are one line; --debug (anywhere on the line) or {DEBUG_ENV}=1 shows tracebacks.",
    )
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


DEBUG_ENV = "JETSCALE_DEBUG"
MAX_MESSAGE = 400  # characters of an unexpected error's message shown on its one line


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. A failure is one line on stderr naming the file, key or argument (exit 2; an
    unexpected error exit 1, an interrupt 130); ``--debug`` anywhere on the line, or ``JETSCALE_DEBUG=1``,
    shows the traceback of anything that is not a :class:`JetscaleError` instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
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
        except KeyboardInterrupt:
            if debug:
                raise
            print(f"jetscale {args.command}: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            if debug:
                raise
            print(f"jetscale {args.command}: error: {one_line(exc)}", file=sys.stderr)
            return 2 if isinstance(exc, OSError | MemoryError) else 1


def one_line(exc: BaseException) -> str:
    """What went wrong, on one line: a file-system error names its file and cause (disk full, read-only,
    permission, name too long); anything else its type and message, with how to see the traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        hint = {
            errno.ENOSPC: " (the disk is full)",
            errno.EDQUOT: " (disk quota exceeded)",
            errno.EROFS: " (the file system is read-only)",
            errno.EACCES: " (no permission)",
            errno.ENAMETOOLONG: " (a path component is longer than the file system allows, usually 255 bytes)",
        }.get(exc.errno, "")
        return f"{where}{exc.strerror}{hint}"
    if isinstance(exc, MemoryError):
        return "out of memory (MemoryError); lower the sizes asked for (widths, batch size, jets)"
    text = " ".join(str(exc).split())
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + " ..."
    return f"{type(exc).__name__}: {text} (unexpected; rerun with --debug or {DEBUG_ENV}=1 for the traceback)"


def _stop_requests_from_the_start(enabled: bool):
    from . import signals  # signal + threading only

    return signals.default_signals_stop() if enabled else contextlib.nullcontext()


if __name__ == "__main__":
    sys.exit(main())

"""`jetscale train`: train one grid cell (torch is imported only when the command runs)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..argtypes import PROCESSES, THREADS


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train one grid cell (resumes from its checkpoint)")
    p.add_argument("--config", default="config.yaml", help="study config (YAML)")
    p.add_argument("--cell", required=True, help="cell id, e.g. model~part/width~16/n_train~1000/compute~auto/seed~0")
    p.add_argument("--splits", default="results/data/splits", help="splits directory (meta.json, train/ val/ test/)")
    p.add_argument(
        "--out",
        required=True,
        help="run directory (metrics.json, predictions.parquet, ...), or the metrics.json in it (the train rule's "
        "declared output)",
    )
    p.add_argument(
        "--backbone", default=None, help="fine-tuning cells: the pretrained backbone.pt (default: results/pretrain/...)"
    )
    p.add_argument("--threads", type=THREADS, default=None, help="override training.threads")
    p.add_argument(
        "--processes",
        type=PROCESSES,
        default=None,
        help="data-parallel processes on this node (default: training.processes; 'auto' = one per GPU "
        "the cell's resources request)",
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulated preemption
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..results_dir import hold_lock, load_study_config

    args.out = run_directory(args.out)  # the rule passes its metrics.json
    cfg = load_study_config(args.config)  # refuses another study's results dir
    if "WORLD_SIZE" in os.environ:  # a rank (of our launcher, which holds the cell's lock, or of torchrun)
        return _run(args, cfg)
    with hold_lock(Path(args.out) / ".train.lock", f"jetscale train --cell {args.cell}"):  # one trainer per cell
        return _run(args, cfg)


def _run(args, cfg: dict) -> int:
    from .. import signals
    from ..errors import ConfigError
    from ..grid import parse_cell_id
    from ..resources import train_processes

    if args.threads:
        cfg["training"]["threads"] = args.threads
    processes = args.processes if args.processes is not None else train_processes(cfg, parse_cell_id(cfg, args.cell))
    if processes < 1:
        raise ConfigError(f"--processes: {processes} is not allowed; use 1 or more")
    cores = os.cpu_count() or 1
    if processes > cores and "WORLD_SIZE" not in os.environ:  # refused before any rank starts
        raise ConfigError(
            f"--processes / training.processes: {processes} processes on a machine with {cores} CPU cores; "
            f"each rank needs a core of its own (allowed: 1 to {cores})"
        )
    if signals.stop_requested():  # signalled while starting up: nothing trained, nothing to save
        return _stopped_before_training()
    if processes > 1 and "WORLD_SIZE" not in os.environ:  # this is the launcher: start the ranks
        from .launcher import run_ranks

        return run_ranks(rank_argv(args), processes)

    from .loop import train_cell  # torch: seconds; a signal meanwhile is a stop request (jetscale.cli.main)

    if signals.stop_requested():
        return _stopped_before_training()
    with signals.stop_on_signals():  # SIGUSR1/SIGTERM: checkpoint at the next step, exit 75 (requeue)
        try:
            record = train_cell(
                cfg,
                args.cell,
                args.splits,
                args.out,
                progress=not args.no_progress,
                stop_after_steps=args.stop_after_steps,
                backbone=args.backbone,
            )
        except signals.StopForCheckpoint as exc:
            if os.environ.get("RANK", "0") == "0":
                print(f"jetscale train: {exc}", file=sys.stderr)
            return signals.EXIT_REQUEUE
    if os.environ.get("RANK", "0") == "0":
        summary = {k: record[k] for k in ("cell_id", "test_loss", "test_accuracy", "samples_seen", "wall_time_s")}
        print(json.dumps(summary))
    return 0


def _stopped_before_training() -> int:
    from .. import signals

    if os.environ.get("RANK", "0") == "0":
        print(
            f"jetscale train: stopped by {signals.stop_reason()} before training started; rerun to train",
            file=sys.stderr,
        )
    return signals.EXIT_REQUEUE


def run_directory(out: str) -> str:
    """``--out``: a run directory, or the path of the metrics.json inside one."""
    from ..paths import METRICS

    return os.path.dirname(out) or "." if os.path.basename(out) == METRICS else out


def rank_argv(args) -> list[str]:
    """The command line each rank runs (the launcher's own, already resolved)."""
    argv = ["train", "--config", args.config, "--cell", args.cell, "--splits", args.splits, "--out", args.out]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.backbone:
        argv += ["--backbone", args.backbone]
    if args.no_progress:
        argv.append("--no-progress")
    if args.stop_after_steps is not None:
        argv += ["--stop-after-steps", str(args.stop_after_steps)]
    return argv

"""`jetscale train`: train one grid cell (torch is imported only when the command runs)."""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train one grid cell (resumes from its checkpoint)")
    p.add_argument("--config", default="config.yaml", help="study config (YAML)")
    p.add_argument("--cell", required=True, help="cell id, e.g. model~part/width~16/n_train~1000/compute~auto/seed~0")
    p.add_argument("--splits", default="results/data/splits", help="splits directory (meta.json, train/ val/ test/)")
    p.add_argument("--out", required=True, help="run directory (metrics.json, predictions.parquet, ...)")
    p.add_argument("--threads", type=int, default=None, help="override training.threads")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import load_config
    from ..launch import preempt
    from .loop import train_cell

    cfg = load_config(args.config)
    if args.threads:
        cfg["training"]["threads"] = args.threads
    with preempt.stop_on_signals():  # SIGUSR1/SIGTERM: checkpoint at the next step, exit 75 (requeue)
        try:
            record = train_cell(cfg, args.cell, args.splits, args.out, progress=not args.no_progress)
        except preempt.StopForCheckpoint as exc:
            print(f"jetscale train: {exc}", file=sys.stderr)
            return preempt.EXIT_REQUEUE
    summary = {k: record[k] for k in ("cell_id", "test_loss", "test_accuracy", "samples_seen", "wall_time_s")}
    print(json.dumps(summary))
    return 0

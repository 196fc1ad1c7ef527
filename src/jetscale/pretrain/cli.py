"""`jetscale pretrain`: one pretraining job (a backbone shared by fine-tuning cells); torch loads lazily."""

from __future__ import annotations

import argparse
import json
import sys

from ..argtypes import PROCESSES, THREADS


def register(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="pretrain one backbone on unlabelled jets (resumes from its checkpoint)")
    p.add_argument("--config", default="config.yaml", help="study config (YAML)")
    p.add_argument(
        "--backbone", required=True, help="backbone id, e.g. method~mpm/model~part/width~16/n_pretrain~20000"
    )
    p.add_argument("--splits", default="results/data/splits", help="splits directory (labels are not read)")
    p.add_argument(
        "--pool",
        nargs="?",
        default=None,
        help="ingested pretraining.pool directory (default with a pool: results/data/pool; "
        "without a value or a pool: the tail of the training split)",
    )
    p.add_argument("--out", required=True, help="backbone directory (backbone.pt, pretrain.json, ...)")
    p.add_argument("--threads", type=THREADS, default=None, help="override training.threads")
    p.add_argument("--processes", type=PROCESSES, default=1, help="data-parallel processes on this node (default 1)")
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: preemption
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from .. import signals
    from ..config import load_config
    from ..errors import ConfigError
    from .plan import parse_backbone_id

    cfg = load_config(args.config)
    if args.threads:
        cfg["training"]["threads"] = args.threads
    try:
        parse_backbone_id(args.backbone)
    except ValueError as exc:
        raise ConfigError(f"--backbone: {exc}") from None
    pool_dir = pool_argument(cfg, args.pool)
    if args.processes < 1:
        raise ConfigError(f"--processes: {args.processes} is not allowed; use 1 or more")
    if args.processes > 1 and "WORLD_SIZE" not in os.environ:  # this is the launcher: start the ranks
        from ..train.launcher import run_ranks

        return run_ranks(rank_argv(args, pool_dir), args.processes)
    from .loop import pretrain_backbone

    with signals.stop_on_signals():
        try:
            record = pretrain_backbone(
                cfg, args.backbone, args.splits, args.out, pool_dir=pool_dir, stop_after_steps=args.stop_after_steps
            )
        except signals.StopForCheckpoint as exc:
            if os.environ.get("RANK", "0") == "0":
                print(f"jetscale pretrain: {exc}", file=sys.stderr)
            return signals.EXIT_REQUEUE
    if os.environ.get("RANK", "0") == "0":
        keys = ("backbone_id", "final_loss", "final_val_loss", "samples_seen", "train_flops", "wall_time_s")
        print(json.dumps({k: record[k] for k in keys}))
    return 0


def rank_argv(args, pool_dir) -> list[str]:
    """The command line each rank runs (the launcher's own, already resolved)."""
    argv = ["pretrain", "--config", args.config, "--backbone", args.backbone, "--splits", args.splits]
    argv += ["--out", args.out] + (["--pool", str(pool_dir)] if pool_dir is not None else [])
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.stop_after_steps is not None:
        argv += ["--stop-after-steps", str(args.stop_after_steps)]
    return argv


def pool_argument(cfg: dict, given: str | None):
    """The pool directory to read: --pool, else the study's own one when pretraining.pool is configured.

    The pretrain rule passes ``--pool`` with no value when there is no pool (an empty input list)."""
    from .. import paths
    from ..data.pool import pool_config
    from ..errors import ConfigError

    if pool_config(cfg) is None:
        if given:
            raise ConfigError(f"--pool {given}: the config has no pretraining.pool (pretraining reads the splits)")
        return None
    return given or paths.pool_dir(paths.results_root(cfg))

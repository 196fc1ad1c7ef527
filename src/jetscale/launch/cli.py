"""`jetscale launch`: submit training cells through submitit (Slurm with requeue, or local processes)."""

from __future__ import annotations

import json
import sys

from ..argtypes import float_in, int_in


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "launch",
        help="submit training cells through submitit (Slurm or local), with checkpoint/requeue",
        description="Submit grid cells as checkpointable submitit jobs. A job reaching its time limit or "
        "preempted saves its checkpoint, is requeued and resumes. Without Snakemake: for large GPU "
        "cells or ad-hoc runs. Paths follow the results tree of --config.",
    )
    p.add_argument("--config", default="config.yaml")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--cells", nargs="+", metavar="ID", help="cell ids (see `jetscale plan`)")
    which.add_argument("--all", action="store_true", help="every cell of the grid that has no metrics.json")
    p.add_argument(
        "--cluster",
        default="slurm",
        choices=["slurm", "local", "debug"],
        help="slurm (sbatch), local (subprocesses on this machine), debug (in this process)",
    )
    p.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's default)")
    p.add_argument("--account", default=None)
    p.add_argument("--timeout-min", type=int_in(1), default=60, help="time limit per attempt (minutes)")
    p.add_argument("--cpus", type=int_in(1, 4096), default=1, help="CPUs per task")
    p.add_argument("--mem-gb", type=float_in(0, open_lo=True), default=4)
    p.add_argument("--gpus", type=int_in(0, 1024), default=0, help="GPUs per node (one task per GPU when > 0)")
    p.add_argument("--nodes", type=int_in(1, 100_000), default=1)
    p.add_argument("--max-timeouts", type=int_in(0, 1000), default=3, help="requeues allowed after time limits")
    p.add_argument(
        "--signal-delay-s",
        type=int_in(0),
        default=90,
        help="seconds before the time limit at which the job is told to checkpoint",
    )
    p.add_argument("--folder", default=None, help="submitit logs/pickles (default: <results>/logs/submitit)")
    p.add_argument("--no-wait", action="store_true", help="print job ids and return at once")
    p.add_argument(
        "--toy-steps",
        type=int,
        default=0,
        metavar="N",
        help="smoke test: run the toy step counter (N steps of 1 s) instead of training",
    )
    p.set_defaults(func=_launch)


def _launch(args) -> int:
    from pathlib import Path

    from .. import paths
    from ..config import load_config
    from ..errors import ConfigError
    from ..grid import cell_ids
    from . import submit

    cfg = load_config(args.config)
    root = paths.results_root(cfg)
    known = cell_ids(cfg)
    if args.all:
        ids = [c for c in known if not paths.run_file(root, c, paths.METRICS).exists()]
    else:
        ids = list(dict.fromkeys(args.cells))
        unknown = [c for c in ids if c not in set(known)]
        if unknown:
            raise ConfigError(
                f"not a cell of {args.config}: {', '.join(unknown)} (list them with "
                f"`jetscale plan --config {args.config}`; e.g. {known[0] if known else '-'})"
            )
    if not ids:
        print("jetscale launch: nothing to run (every cell has metrics.json)", file=sys.stderr)
        return 0
    tasks = max(1, args.gpus)
    executor = submit.make_executor(
        args.folder or paths.logs_dir(root) / "submitit",
        args.cluster,
        partition=args.partition,
        account=args.account,
        timeout_min=args.timeout_min,
        cpus_per_task=args.cpus,
        mem_gb=args.mem_gb,
        gpus_per_node=args.gpus,
        nodes=args.nodes,
        tasks_per_node=tasks,
        signal_delay_s=args.signal_delay_s,
        max_num_timeout=args.max_timeouts,
    )
    config: str | dict = str(Path(args.config).resolve())
    fn = submit.TRAIN_FN
    if args.toy_steps:
        config = dict(cfg, toy={"steps": args.toy_steps, "step_s": 1.0})
        fn = "jetscale.launch.toy:toy_train_cell"
    jobs = submit.submit_cells(executor, config, ids, fn=fn)
    for cid, job in zip(ids, jobs):
        print(f"{job.job_id}\t{cid}")
    sys.stdout.flush()
    if args.no_wait:
        return 0
    results = submit.wait(jobs)
    if args.toy_steps:
        print(json.dumps(results, indent=1))
    print(f"jetscale launch: {len(jobs)} cell(s) finished", file=sys.stderr)
    return 0

"""Submit training cells through submitit: Slurm (requeue-on-timeout/preemption) or a local executor.

    from jetscale.launch.submit import make_executor, submit_cells, wait
    ex = make_executor("results/logs/submitit", cluster="slurm", partition="gpu", timeout_min=240, gpus_per_node=4,
                       tasks_per_node=4)
    jobs = submit_cells(ex, "config.yaml", ["model~part/width~16/n_train~1000/compute~auto/seed~0"])
    wait(jobs)                                       # -> list of train_cell results; raises on a failed cell

Each cell runs as ``TrainCell(config, cell_id, splits_dir, out_dir)``, a ``submitit.helpers.Checkpointable``:
near its time limit (Slurm sends USR2 ``signal_delay_s`` before) or when preempted, the training loop is asked
to save ``out_dir/checkpoint.pt`` at its next step boundary (:mod:`jetscale.signals`), then submitit
requeues the job, and the new attempt resumes from the checkpoint. One task per GPU: ranks and the master
address come from ``submitit.JobEnvironment`` and are exported as the torch.distributed ``env://`` variables.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import submitit

from .. import paths, signals
from ..errors import JetscaleError, TrainingError

TRAIN_FN = "jetscale.train.loop:train_cell"
CLUSTERS = ("slurm", "local", "debug")


def resolve(ref: str | Callable) -> Callable:
    """'package.module:function' -> the function (kept as a string so pickles stay small and importable)."""
    if callable(ref):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def setup_distributed_env(env=None) -> dict[str, str]:
    """Export RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the submitit job.

    The port is derived from the job id, so every task of a job agrees on it without talking to each other.
    Returns the variables set (empty outside a submitit job).
    """
    env = env or submitit.JobEnvironment()
    try:
        hosts = env.hostnames
        job_id = env.job_id
    except RuntimeError:  # not inside a submitit job
        return {}
    digits = "".join(ch for ch in str(job_id).split("_")[0] if ch.isdigit()) or "0"
    values = {
        "RANK": str(env.global_rank),
        "WORLD_SIZE": str(env.num_tasks),
        "LOCAL_RANK": str(env.local_rank),
        "LOCAL_WORLD_SIZE": str(max(1, env.num_tasks // max(1, env.num_nodes))),
        "MASTER_ADDR": str(hosts[0]) if hosts else "127.0.0.1",
        "MASTER_PORT": str(20000 + int(digits) % 20000),
    }
    os.environ.update(values)
    return values


class TrainCell(submitit.helpers.Checkpointable):
    """Checkpointable callable training one cell; ``fn`` has the signature of ``train_cell``.

    ``config`` is a config path (loaded with jetscale.config.load_config in the job) or an already-loaded dict.
    On USR2 (submitit's timeout/preemption signal) or USR1, training is asked to stop at its next step boundary
    (:mod:`jetscale.signals`); when it raises ``StopForCheckpoint`` (or returns/fails while a stop is
    pending) submitit's handler checkpoints this callable and requeues the job. A training that does not stop
    within ``grace_s`` gets submitit's handler anyway (requeue from its last periodic checkpoint).
    """

    def __init__(self, fn: str = TRAIN_FN, grace_s: float = 45):
        self.fn = fn
        self.grace_s = grace_s

    def __call__(self, config: str | dict, cell_id: str, splits_dir: str, out_dir: str) -> Any:
        setup_distributed_env()
        cfg = config
        if not isinstance(config, dict):
            from ..config import load_config

            cfg = load_config(config)
        signals.reset()
        submitit_handler = signal.getsignal(signal.SIGUSR2)
        watchdog: list[threading.Timer] = []

        def defer(signum, frame):  # runs in the main thread, between two bytecodes of training
            signals.request_stop(signum)
            if callable(submitit_handler) and not watchdog:
                signal.signal(signal.SIGUSR2, submitit_handler)  # a second USR2 goes straight to submitit
                timer = threading.Timer(self.grace_s, os.kill, (os.getpid(), signal.SIGUSR2))
                timer.daemon = True
                watchdog.append(timer)
                timer.start()

        usr1_handler = signal.getsignal(signal.SIGUSR1)
        signal.signal(signal.SIGUSR2, defer)
        signal.signal(signal.SIGUSR1, defer)
        try:
            return resolve(self.fn)(cfg, cell_id, splits_dir, out_dir)
        except BaseException:
            if not signals.stop_requested() or not callable(submitit_handler):
                raise
        finally:
            for timer in watchdog:
                timer.cancel()
            # give the process its handlers back (the local/debug executors run cells in the caller's process)
            signal.signal(signal.SIGUSR1, usr1_handler)
            signal.signal(signal.SIGUSR2, submitit_handler)
        # training saved its checkpoint and stopped: submitit calls self.checkpoint(), requeues, then exits
        submitit_handler(signal.SIGUSR2, None)
        raise TrainingError(f"cell {cell_id} stopped for a checkpoint but was not requeued")

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit before requeueing: resubmit the same call; training resumes from its checkpoint."""
        signals.request_stop()
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def make_executor(
    folder: str | Path,
    cluster: str = "slurm",
    *,
    partition: str | None = None,
    timeout_min: int = 60,
    cpus_per_task: int = 1,
    mem_gb: float = 2,
    gpus_per_node: int = 0,
    nodes: int = 1,
    tasks_per_node: int = 1,
    account: str | None = None,
    signal_delay_s: int = 90,
    max_num_timeout: int = 3,
    name: str = "jetscale-train",
    check: bool = True,
    **slurm_extra: Any,
):
    """A configured submitit executor. ``cluster``: slurm | local (subprocesses) | debug (in-process).

    On Slurm the partition is checked with ``sinfo`` first (``check=False`` skips that).
    """
    if cluster not in CLUSTERS:
        raise JetscaleError(f"unknown cluster '{cluster}'; choose one of {', '.join(CLUSTERS)}")
    if cluster == "slurm" and check:
        from .slurm import check_partition

        partition = check_partition(partition)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster, slurm_max_num_timeout=max_num_timeout)
    params: dict[str, Any] = dict(
        timeout_min=timeout_min,
        cpus_per_task=cpus_per_task,
        mem_gb=mem_gb,
        nodes=nodes,
        tasks_per_node=tasks_per_node,
        name=name,
    )
    if gpus_per_node:
        params["gpus_per_node"] = gpus_per_node
    if cluster == "slurm":
        params["slurm_signal_delay_s"] = signal_delay_s
        if partition:
            params["slurm_partition"] = partition
        if account:
            params["slurm_account"] = account
        params.update({k if k.startswith("slurm_") else f"slurm_{k}": v for k, v in slurm_extra.items()})
    executor.update_parameters(**params)
    return executor


def cell_paths(cfg: dict, cell_id: str) -> tuple[str, str]:
    root = paths.results_root(cfg)
    return str(paths.splits_dir(root)), str(paths.run_dir(root, cell_id))


def submit_cells(
    executor,
    config: str | Path | dict,
    cell_ids: Sequence[str],
    *,
    fn: str = TRAIN_FN,
    out_dirs: Sequence[str] | None = None,
):
    """Submit one checkpointable job per cell; returns the submitit jobs (same order as ``cell_ids``).

    ``config`` is a path (loaded again inside each job) or a dict (pickled into the job). ``out_dirs`` overrides
    the results/runs/<cell> directories (tests).
    """
    if isinstance(config, dict):
        cfg = config
    else:
        from ..config import load_config

        cfg = load_config(config)
        config = str(Path(config).resolve())
    jobs = []
    with executor.batch():
        for i, cid in enumerate(cell_ids):
            splits, out = cell_paths(cfg, cid)
            if out_dirs is not None:
                out = str(out_dirs[i])
            jobs.append(executor.submit(TrainCell(fn), config, cid, splits, out))
    return jobs


def wait(jobs) -> list[Any]:
    """Results of all jobs; raises TrainingError naming every failed cell (after all have finished)."""
    results, failures = [], []
    for job in jobs:
        try:
            results.append(job.result())
        except Exception as exc:  # submitit FailedJobError / UncompletedJobError
            failures.append(f"job {job.job_id}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}")
            results.append(None)
    if failures:
        raise TrainingError(f"{len(failures)} of {len(jobs)} training jobs failed: " + "; ".join(failures))
    return results

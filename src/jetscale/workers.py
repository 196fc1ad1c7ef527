"""Worker processes that end with their parent: a killed ``jetscale report`` (or ``generate``) leaves no pool
worker behind, blocked on a pipe and holding its memory.

:func:`die_with_parent` is a pool ``initializer``: on Linux the kernel sends the worker SIGKILL when its parent
ends (``prctl(PR_SET_PDEATHSIG)``), however the parent ended (SIGKILL, SIGTERM, Ctrl-C, a crash); elsewhere a
daemon thread polls the parent id and ends the worker once it changed. Workers ignore SIGINT: Ctrl-C reaches
the parent, which stops its pool at once (:func:`stop_pool`) instead of waiting for the jobs still queued.
:func:`parallel_map` runs jobs on such a pool (the fits and the report's figures).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """End this process when process ``parent_pid`` (its parent) ends. Use as a pool initializer:
    ``initializer=die_with_parent, initargs=(os.getpid(),)``."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent ended before the death signal was armed
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch, args=(parent_pid, poll_s), daemon=True, name="die-with-parent").start()


def _watch(parent_pid: int, poll_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(1)


def stop_pool(pool) -> None:
    """Kill a ``ProcessPoolExecutor``'s workers and drop its queued jobs (its running jobs would otherwise run to
    the end before the interrupted parent could exit)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def parallel_map(func, jobs: list, min_jobs: int = 4) -> list:
    """``[func(j) for j in jobs]`` on up to os.cpu_count() forked processes (JETSCALE_FIT_WORKERS overrides).

    The same jobs as the serial loop, in its order; falls back to serial where fork is unavailable or for a handful
    of jobs. Every fit's status, and an ``ok`` fit's parameters and intervals, come out the same in every run; a fit
    the data leave unconstrained (a step, a ceiling far out) can differ in the last digits of its optimum and in
    its bootstrap intervals (and so the comparisons built on it: ΔAIC, the bootstrap fraction) from one run of
    ``jetscale fit`` to the next, serial too, on one BLAS thread, with a fixed hash seed (measured; the cause is
    not known: each such fit alone, repeated in one process, gives the same bits).
    """
    import multiprocessing as mp
    import os

    workers = int(os.environ.get("JETSCALE_FIT_WORKERS", os.cpu_count() or 1))
    if workers <= 1 or len(jobs) < min_jobs or "fork" not in mp.get_all_start_methods():
        return [func(j) for j in jobs]
    import gc
    from concurrent.futures import ProcessPoolExecutor

    # A forked worker must never finalize an object it inherited: a native one (an onnxruntime session left in a
    # reference cycle) waits there forever on a lock or condition of threads that exist only in the parent. So
    # the parent's garbage is collected here, where its threads live, and the rest frozen for the workers' GC.
    gc.collect()
    gc.freeze()
    try:
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)),
            mp_context=mp.get_context("fork"),
            initializer=die_with_parent,  # a killed report leaves no worker behind
            initargs=(os.getpid(),),
        )
        try:
            results = list(pool.map(func, jobs, chunksize=1))
        except BaseException:  # Ctrl-C or a failed fit: the workers go now, not after the remaining jobs
            stop_pool(pool)
            raise
        pool.shutdown()
    finally:
        gc.unfreeze()
    return results

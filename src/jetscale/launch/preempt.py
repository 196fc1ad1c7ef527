"""The stop-and-checkpoint protocol between whoever runs a training and the training loop.

A launcher (``jetscale train`` under sbatch, or ``TrainCell`` under submitit) turns a cluster's warning signal
into a *stop request*; the training loop polls :func:`stop_requested` at step boundaries, writes
``checkpoint.pt`` and raises :class:`StopForCheckpoint`. Whoever launched it then exits or requeues, and the
next attempt resumes from the checkpoint. Saving at a step boundary (not inside the signal handler) keeps the
model and optimizer state consistent.

Training-loop side (``jetscale.train.loop.train_cell``)::

    from jetscale.launch import preempt
    for step in ...:
        ...
        if preempt.stop_requested():
            save_checkpoint(out_dir / "checkpoint.pt", ...)
            raise preempt.StopForCheckpoint(step)

Process side (``jetscale train`` run directly by an sbatch job)::

    with preempt.stop_on_signals():        # SIGUSR1, SIGTERM -> stop request
        try:
            train_cell(...)
        except preempt.StopForCheckpoint:
            sys.exit(preempt.EXIT_REQUEUE)  # not a success: Snakemake's retry resubmits, training resumes
"""

from __future__ import annotations

import contextlib
import signal
import threading

#: exit status of a training process that stopped after writing its checkpoint (EX_TEMPFAIL)
EXIT_REQUEUE = 75

_stop = threading.Event()
_signum: list[int] = []


class StopForCheckpoint(Exception):
    """Raised by the training loop after it saved its checkpoint because a stop was requested."""


def request_stop(signum: int | None = None, frame=None) -> None:
    """Ask the training loop to checkpoint and stop at its next step boundary (usable as a signal handler)."""
    if signum is not None:
        _signum.append(signum)
    _stop.set()


def stop_requested() -> bool:
    return _stop.is_set()


def stop_signal() -> int | None:
    """The first signal that requested the stop (None when requested by a call)."""
    return _signum[0] if _signum else None


def reset() -> None:
    _stop.clear()
    _signum.clear()


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGUSR1, signal.SIGTERM)):
    """Within the block, the given signals request a stop instead of killing the process."""
    previous = {s: signal.signal(s, request_stop) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

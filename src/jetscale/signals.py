"""Signals and the stop-and-checkpoint protocol, in one place (torch-free; train and launch both use it).

Whoever runs a training turns a cluster's warning signal into a *stop request*; the training loop polls
:func:`stop_requested` at step boundaries, writes ``checkpoint.pt`` and raises :class:`StopForCheckpoint`; the
process then exits with :data:`EXIT_REQUEUE` (75) and the next attempt resumes from the checkpoint. Saving at a
step boundary (not inside the signal handler) keeps the model and optimizer state consistent.

* ``jetscale train`` (run by Snakemake/sbatch): :func:`stop_on_signals` maps SIGUSR1/SIGTERM to stop requests.
* ``train_cell`` called directly: :class:`default_signals_stop` does the same, but only for signals that still
  have their default handler (a launcher's own handlers win).
* submitit's ``TrainCell`` (:mod:`jetscale.launch.submit`) installs its own handlers that call
  :func:`request_stop`.
* ``jetscale train --processes N`` (:mod:`jetscale.train.launcher`): :func:`forwarding` passes SIGTERM/SIGINT/
  SIGUSR1 on to every rank; the ranks vote and checkpoint together at the next step.
* :func:`checkpoint_now` asks for a checkpoint at the next step boundary without stopping.
"""

from __future__ import annotations

import contextlib
import signal
import threading

#: exit status of a training process that stopped after writing its checkpoint (EX_TEMPFAIL)
EXIT_REQUEUE = 75

#: what a multi-process launcher passes on to its ranks
FORWARDED = tuple(s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None)) if s is not None)
#: what a training process turns into a stop request
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGUSR1", None), signal.SIGTERM) if s is not None)

_stop = threading.Event()
_signum: list[int] = []


class StopForCheckpoint(Exception):
    """Raised by the training loop after it saved its checkpoint because a stop was requested."""


class _Requests:
    checkpoint = False  # a checkpoint (without stopping) is wanted at the next step boundary


REQUESTS = _Requests()


def request_stop(signum: int | None = None, frame=None) -> None:
    """Ask the training loop to checkpoint and stop at its next step boundary (usable as a signal handler)."""
    if signum is not None:
        _signum.append(signum)
    _stop.set()


def checkpoint_now(stop: bool = False) -> None:
    """Ask the running training to write a checkpoint at the end of its current step (signal-safe); with
    ``stop=True`` also request the stop."""
    REQUESTS.checkpoint = True
    if stop:
        request_stop()


def stop_requested() -> bool:
    return _stop.is_set()


def stop_signal() -> int | None:
    """The first signal that requested the stop (None when requested by a call)."""
    return _signum[0] if _signum else None


def stop_reason() -> str:
    signum = stop_signal()
    return signal.Signals(signum).name if signum is not None else "a stop request"


def reset() -> None:
    _stop.clear()
    _signum.clear()
    REQUESTS.checkpoint = False


@contextlib.contextmanager
def handling(signals, handler):
    """Within the block, ``handler`` handles the given signals; the previous handlers come back after it."""
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def stop_on_signals(signals=STOP_SIGNALS):
    """Within the block, the given signals request a stop instead of killing the process."""
    return handling(signals, request_stop)


class default_signals_stop:
    """Context manager: SIGUSR1/SIGTERM → :func:`request_stop` where they have the default handler (main
    thread only; elsewhere, or where a launcher installed its own handler, nothing changes)."""

    def __enter__(self):
        self.previous = {}
        try:
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) in (signal.SIG_DFL, None):
                    self.previous[sig] = signal.signal(sig, request_stop)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def forwarding(children, signals=FORWARDED):
    """Within the block, the given signals are sent on to every still-running child process."""

    def forward(signum, frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    return handling(signals, forward)

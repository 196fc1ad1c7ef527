"""Atomic training checkpoints, and checkpoint-on-signal for preemptible (Slurm/submitit) jobs.

A checkpoint (``checkpoint.pt``, written through a temporary file + rename) holds everything needed to
continue bit-identically on CPU: model, optimizer and scheduler state, torch/numpy/python RNG states, the
sampler position (samples drawn so far), the step, early-stopping state (best weights, best val loss,
evaluations since the best) and the train-log rows so far; plus the run's ``settings_hash``: a checkpoint from
different settings is never resumed.

Stopping follows the launcher protocol of :mod:`jetscale.launch.preempt`: the loop polls
``preempt.stop_requested()`` after every optimizer step; when set it writes a checkpoint and raises
:class:`TrainingInterrupted` (a ``preempt.StopForCheckpoint``); rerunning the same cell resumes. ``jetscale
train`` turns SIGUSR1/SIGTERM into stop requests and exits with ``preempt.EXIT_REQUEUE`` (75); submitit's
``TrainCell`` installs its own handlers. When ``train_cell`` is called directly it also maps SIGUSR1/SIGTERM to
stop requests, but only where those signals still have their default handler. :func:`checkpoint_now` asks
for a checkpoint at the next step boundary without stopping (or, with ``stop=True``, requests the stop).
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import JetscaleError
from ..io import atomic_path
from ..launch import preempt

CHECKPOINT_NAME = "checkpoint.pt"


class TrainingInterrupted(preempt.StopForCheckpoint, JetscaleError):
    """The run stopped on request (signal / stop request / ``stop_after_steps``) after writing a checkpoint."""


class _Requests:
    checkpoint = False


REQUESTS = _Requests()


def checkpoint_now(stop: bool = False) -> None:
    """Ask the running ``train_cell`` to write a checkpoint at the end of its current step (signal-safe).

    With ``stop=True`` this is ``preempt.request_stop()``: checkpoint, then raise :class:`TrainingInterrupted`.
    """
    REQUESTS.checkpoint = True
    if stop:
        preempt.request_stop()


def stop_requested() -> bool:
    return preempt.stop_requested()


def stop_reason() -> str:
    signum = preempt.stop_signal()
    return signal.Signals(signum).name if signum is not None else "a stop request"


class signal_handlers:
    """Context manager: SIGUSR1/SIGTERM → ``preempt.request_stop`` where they have the default handler
    (main thread only; elsewhere, or where a launcher installed its own handler, nothing changes)."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGUSR1", None), signal.SIGTERM) if s is not None)

    def __enter__(self):
        self.previous = {}
        try:
            for sig in self.SIGNALS:
                if signal.getsignal(sig) in (signal.SIG_DFL, None):
                    self.previous[sig] = signal.signal(sig, preempt.request_stop)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` with torch.save to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, settings_hash: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists, is readable and belongs to ``settings_hash``; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a corrupt file: start afresh rather than fail forever
        return None
    if state.get("settings_hash") != settings_hash:
        return None
    return state

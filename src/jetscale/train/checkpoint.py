"""Atomic training checkpoints, and checkpoint-on-signal for preemptible (Slurm/submitit) jobs.

A checkpoint (``checkpoint.pt``, written through a temporary file + rename) holds everything needed to
continue bit-identically on CPU: model, optimizer and scheduler state, torch/numpy/python RNG states, the
sampler position (samples drawn so far), the step, early-stopping state (best weights, best val loss,
evaluations since the best) and the train-log rows so far; plus the run's ``settings_hash``: a checkpoint from
different settings is never resumed.

Signals: while ``train_cell`` runs, SIGUSR1 and SIGTERM (Slurm's pre-timeout and cancel signals) only set a
flag; at the end of the current optimizer step the loop writes a checkpoint and raises
:class:`TrainingInterrupted` (the CLI exits with status 3). Rerunning the same command resumes. A launcher
that wraps ``train_cell`` (e.g. a submitit ``checkpoint()`` method) calls :func:`checkpoint_now` instead:
it requests a checkpoint at the next step boundary and, with ``stop=True``, the interruption as well.
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

CHECKPOINT_NAME = "checkpoint.pt"


class TrainingInterrupted(JetscaleError):
    """The run stopped on request (signal / ``checkpoint_now(stop=True)``) after writing a checkpoint."""


class _Requests:
    checkpoint = False
    stop = False
    signal_name: str | None = None


REQUESTS = _Requests()


def checkpoint_now(stop: bool = False) -> None:
    """Ask the running ``train_cell`` to write a checkpoint at the end of its current step (signal-safe).

    With ``stop=True`` it then raises :class:`TrainingInterrupted`.
    """
    REQUESTS.checkpoint = True
    REQUESTS.stop = REQUESTS.stop or stop


def reset_requests() -> None:
    REQUESTS.checkpoint = REQUESTS.stop = False
    REQUESTS.signal_name = None


def _on_signal(signum, frame) -> None:
    REQUESTS.signal_name = signal.Signals(signum).name
    checkpoint_now(stop=True)


class signal_handlers:
    """Context manager: SIGUSR1/SIGTERM → checkpoint + stop (main thread only; elsewhere a no-op)."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGUSR1", None), signal.SIGTERM) if s is not None)

    def __enter__(self):
        self.previous = {}
        try:
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, _on_signal)
        except ValueError:  # not the main thread
            self.previous = {}
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

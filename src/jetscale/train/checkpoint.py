"""Atomic training checkpoints for preemptible (Slurm/submitit) jobs.

A checkpoint (``checkpoint.pt``, written through a temporary file + rename) holds everything needed to
continue bit-identically on CPU: model, optimizer and scheduler state, torch/numpy/python RNG states, the
sampler position (samples drawn so far), the step, early-stopping state (best weights, best val loss,
evaluations since the best), the train-log rows so far and the running-loss window since the last row (all of
``task.TrainState``); plus the run's ``settings_hash``: a checkpoint from different settings is never resumed.

A checkpoint is data, never code: it is read with ``torch.load(weights_only=True)`` (tensors, numbers, strings
and containers only; the RNG states are stored as such), and DeepSpeed's per-rank files are read the same way
with an allow-list of exactly the DeepSpeed types they hold. A checkpoint that cannot be used (unreadable,
holding other objects, from other settings) is reported on stderr and the run starts afresh.

Stopping follows the protocol of :mod:`jetscale.signals`: the loop polls ``signals.stop_requested()`` after
every optimizer step; when set it writes a checkpoint and raises :class:`TrainingInterrupted` (a
``signals.StopForCheckpoint``); rerunning the same cell resumes.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import paths
from ..errors import JetscaleError
from ..io import atomic_path
from ..signals import StopForCheckpoint

CHECKPOINT_NAME = paths.CHECKPOINT


class TrainingInterrupted(StopForCheckpoint, JetscaleError):
    """The run stopped on request (signal / stop request / ``stop_after_steps``) after writing a checkpoint."""


def rng_state() -> dict[str, Any]:
    """torch/numpy/python RNG states as tensors and plain data (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` with torch.save to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, settings_hash: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists, holds only tensors and plain data, and belongs to
    ``settings_hash``; else None (said on stderr when a file was there but cannot be used)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or holding code: never executed, never fatal
        return report_unusable(path, _load_failure(exc))
    if not isinstance(state, dict) or "settings_hash" not in state:
        return report_unusable(path, "not a jetscale checkpoint")
    if state["settings_hash"] != settings_hash:
        return report_unusable(
            path, f"written for settings hash {state['settings_hash']!r}, this run's is {settings_hash!r}"
        )
    return state


def report_unusable(path: str | os.PathLike, reason: str) -> None:
    """Say on stderr (rank 0 only) that the checkpoint at ``path`` is not used and why; returns None."""
    if os.environ.get("RANK", "0") == "0":
        print(
            f"jetscale: checkpoint {path} is unusable ({reason}); training starts afresh", file=sys.stderr, flush=True
        )
    return None


def _load_failure(exc: Exception) -> str:
    found = re.search(r"GLOBAL (\S+)", str(exc))
    if found:
        return f"it holds a Python object that is not plain data: {found.group(1)}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"unreadable: {first[:200]}"


# DeepSpeed (0.19) per-rank files hold these besides tensors and plain data (measured on ZeRO 0-3, fp32 and bf16)
DEEPSPEED_GLOBALS = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


def unsafe_globals(path: str | os.PathLike, allowed: tuple[str, ...] = ()) -> list[str]:
    """Python objects in the torch file at ``path`` that ``weights_only`` loading would refuse, beyond ``allowed``."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:
        return [f"unreadable: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}"]
    return sorted(set(found) - set(allowed))


@contextlib.contextmanager
def weights_only_loads(allowed: tuple[str, ...] = ()):
    """Within the block every ``torch.load`` (also a library's, e.g. DeepSpeed's ``weights_only=False``) is a
    ``weights_only=True`` load that accepts exactly the ``allowed`` types besides tensors and plain data."""
    import importlib

    types = []
    for name in allowed:
        module, _, attr = name.rpartition(".")
        types.append(getattr(importlib.import_module(module), attr))
    real = torch.load

    def safe_load(*args, **kwargs):
        kwargs["weights_only"] = True
        with torch.serialization.safe_globals(types):
            return real(*args, **kwargs)

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = real

"""The contract between the one training loop (:mod:`.runner`) and what it trains.

A :class:`Task` says what is trained (model, loss on a batch of rows, held-out score, the record written at the
end); a :class:`RunPlan` says how long and how; a :class:`TrainState` is what a run has done so far (all of it
checkpointed); a :class:`RunOutcome` is what a finished run hands back to its task.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from .distributed import EngineOptions, Ranks
from .stopping import StoppingPlan


class Validation(NamedTuple):
    """A held-out score: the loss the runner compares (lower is better) and extra scalars to keep with it."""

    loss: float
    extras: dict[str, float] = {}


class Task(Protocol):
    """What a run trains. The runner calls, in order: ``setup``, ``checkpoint_problem`` (a checkpoint found),
    ``fit_once`` (no usable checkpoint), ``param_groups`` and ``lr_lambdas``, ``restore_extras`` (resumed), ``ready``,
    then ``prefetch``/``loss``/``validate``/``row_extras`` per step, ``state_extras`` per checkpoint, ``finish`` once.

    ``loss`` is the training step's seam: it gets the engine's forward module (the model, or its DDP, DeepSpeed
    or compiled wrapper: call it, not the model), this rank's share of the global batch as row indices of the
    training stream, and runs under the engine's autocast; it returns the mean loss of those rows. ``prefetch``
    gets this rank's share of a batch of the next steps before ``loss`` runs, each batch once and in order, up to
    ``runner.AHEAD_STEPS`` steps on: a task whose inputs are read from storage reads and prepares them there, in
    the background, so they overlap the steps before; it must change nothing else."""

    name: str  # cell id or backbone id: bars and messages
    identity: dict  # what names the run in checkpoint and failure records, e.g. {"cell_id": ...}
    settings_hash: str  # a checkpoint of other settings is never resumed
    outputs: tuple[str, ...]  # result files a new attempt removes first (they describe an earlier run)
    model: torch.nn.Module  # built by setup(): what the engine wraps and the optimiser trains
    n_train: int  # the sampler permutes range(n_train) every epoch
    fits_once: bool  # fit_once() does something (refused on partitioned weights)

    def setup(self, device: torch.device, ranks: Ranks) -> None: ...
    def checkpoint_problem(self, saved: dict) -> str | None: ...
    def fit_once(self) -> None: ...
    def ready(self) -> None: ...  # the weights are those the first step starts from (fitted or resumed)
    def param_groups(self) -> Iterable: ...
    def lr_lambdas(self, schedule: Callable[[int], float]) -> Callable | list[Callable]: ...
    def prefetch(self, rows: np.ndarray) -> None: ...
    def loss(self, module: torch.nn.Module, rows: np.ndarray, device: torch.device) -> torch.Tensor: ...
    def validate(self, module: torch.nn.Module, autocast: Callable) -> Validation: ...
    def row_extras(self, state: TrainState) -> dict: ...
    def state_extras(self) -> dict: ...
    def restore_extras(self, saved: dict) -> None: ...
    def finish(self, outcome: RunOutcome) -> dict: ...


@dataclass(frozen=True)
class RunPlan:
    """How long and how a task is trained (AdamW, gradient-norm clipping, a fixed batch).

    ``stopping``: how long, how often the held-out score is taken and the learning-rate schedule
    (:class:`~jetscale.train.stopping.StoppingPlan`: classifier cells get theirs from the stopping rule,
    pretraining a fixed budget); ``keep_best``: restore the weights of the best evaluation at the end;
    ``engine``: precision, DeepSpeed and compile (:class:`~jetscale.train.distributed.EngineOptions`);
    ``batch_key``: the config key to name when the batch is too small to share among the ranks.
    """

    batch_size: int
    lr: float
    weight_decay: float
    grad_clip: float | None
    stopping: StoppingPlan
    keep_best: bool
    checkpoint_every_steps: int
    seed: int
    engine: EngineOptions = EngineOptions()
    batch_key: str = "training.batch_size"

    @property
    def max_samples(self) -> int:
        return self.stopping.max_samples

    @property
    def total_steps(self) -> int:
        return self.stopping.max_steps

    @property
    def eval_every_samples(self) -> int:
        return self.stopping.eval_every_samples


@dataclass
class TrainState:
    """What a run has done so far: everything a checkpoint needs beyond model, optimizer, engine and RNGs.

    ``window_*`` accumulate the training loss, steps and seconds since the last log row, so the first row
    after a resume averages the same steps as an uninterrupted run's.
    """

    step: int = 0  # optimizer steps done
    position: int = 0  # samples drawn from the sampler's stream
    best_val: float = math.inf
    best_extras: dict = field(default_factory=dict)  # the extras of the best validation
    best_step: int = 0
    best_state: dict | None = None  # weights at the best validation loss (keep_best; None: no evaluation yet)
    evals_since_best: int = 0
    lr_scale: float = 1.0  # the stopping plan's learning-rate drops so far (reduce on plateau)
    last_val: float | None = None  # the latest validation loss
    log_rows: list[dict] = field(default_factory=list)
    elapsed: float = 0.0  # training seconds of earlier attempts
    done: bool = False
    stopped_by: str | None = None  # set when the patience ends the run; the plan's verdict otherwise
    window_loss: float = 0.0
    window_steps: int = 0
    window_seconds: float = 0.0

    def as_checkpoint(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> TrainState:
        """The state saved in ``saved`` (keys a checkpoint of an older version lacks keep their defaults)."""
        return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})


@dataclass
class RunOutcome:
    """What a finished run hands its task: the state, the engine (its ``module`` holds the last weights) and
    the ranks and device it ran on, the plan, and when it started (``wall_s()``, ``setup_s``)."""

    state: TrainState
    engine: Any
    ranks: Ranks
    device: torch.device
    plan: RunPlan
    t_start: float
    t_run: float

    @property
    def setup_s(self) -> float:
        return self.t_run - self.t_start

    def wall_s(self) -> float:
        """Training seconds of every attempt, up to now."""
        return self.state.elapsed + (time.perf_counter() - self.t_run)

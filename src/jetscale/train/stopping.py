"""How long a classifier cell trains, how often it is checked, and its learning-rate schedule.

``plan_for(settings, batch_size)`` reads a cell's resolved settings and returns a :class:`StoppingPlan`: the
evaluation cadence, the patience, the sample cap and the schedule. The training loop asks the plan four
things: the learning-rate factor of each step (``plan.schedule.factor(step, lr_scale)``), whether a
validation loss is progress over the best so far (``plan.is_progress(val_loss, best_val)``), what follows an
evaluation (``plan.after_evaluation(progress, improved)``), and the verdict at the end (``plan.verdict``).
Torch-free (``jetscale status`` imports it).

Two kinds of budget, chosen by the cell's ``compute``:

``auto``: the budget follows the data (``training.stopping``). The cell trains until its validation loss
stops improving, which is where its n_train jets are exhausted, not where a sample count says.

* Cadence: every ``n_train / evals_per_epoch`` samples, clamped to [``min_eval_samples``,
  ``max_eval_samples``]. An evaluation scores the whole validation set, so a small cell is checked a few times
  per ``min_eval_samples`` (often enough to stop within a few epochs of its best) without spending most of its
  time on validation, and a large cell is checked a few times per epoch, a small fraction of its time.
* Patience: ``patience`` evaluations without progress end the run: ``stopped_by: converged``. Progress is a
  validation loss below the best so far by more than the fraction ``min_improvement`` of it; a smaller gain
  still updates the best weights but does not reset the count, so a run at a low rate whose loss creeps down by
  0.1% per evaluation ends instead of spending most of its samples on its last percent.
* Safety cap: ``min(max_epochs × n_train, max_samples)`` samples; a run that reaches it while still
  improving ends with ``stopped_by: budget`` (its point is a lower bound on what its data can teach). A run
  still going in the last ``cap_decay_fraction`` of its cap anneals its rate linearly to ``min_lr_factor`` at
  the cap (the decay phase of warmup-stable-decay, placed where the end is known): a budget-limited point gets
  the end-of-training gain that a converged one got from its plateau drops.
* Schedule: linear warmup over ``warmup_samples`` (at most one epoch), then a constant learning rate that
  drops by ``lr_drop`` each time ``lr_patience`` evaluations pass without improvement (reduce on plateau),
  down to ``min_lr_factor``; ``patience`` > ``lr_patience`` so a run gets one or two lower rates before it
  is declared converged.

  Why reduce-on-plateau rather than cosine or warmup-stable-decay: cosine needs the end in advance (it
  decays to zero at the cap, so a cap that is too small for the data *is* the result, and one that is too
  large wastes most of the run at a useless rate); warmup-stable-decay needs its decay phase placed in
  advance, or triggered by a plateau, which is this rule with a smoother drop. Reduce-on-plateau lets the
  data decide each drop: a small cell that overfits stops at a plateau after at most a couple of drops, a
  large cell that keeps improving keeps its full rate; the drops before the stop give the end-of-training
  annealing gain that a cosine tail gives. Its whole state is one number (``lr_scale``), changed only at
  evaluations, whose positions are fixed by the cadence; with it in the checkpoint a resumed run is
  bit-identical to an uninterrupted one. (A drop decided at the evaluation after step k acts from step k + 2:
  the scheduler set step k + 1's rate before the evaluation; the same in a resumed run.)

A number (``compute: 360000``): a fixed budget of that many samples, for compute-scaling studies where the
budget is the axis. The end is known, so the schedule is the one matched to it: linear warmup over
``warmup_fraction`` of the steps, then cosine decay to zero at the budget. Evaluations every
``eval_every_samples``; ``early_stopping_patience`` evaluations without improvement stop it early
(``stopped_by: converged``; null: always the whole budget, ``stopped_by: budget``).

Either way the test set is scored on the best validation checkpoint (the loop restores it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from ..config_view import training_view

CONVERGED = "converged"  # the patience ran out: the validation loss stopped improving
BUDGET = "budget"  # the sample cap (auto) or fixed budget (numeric compute) was reached first
STOPPED_BY = (CONVERGED, BUDGET)


class Progress(Protocol):
    """What the plan reads and updates in the loop's state after each evaluation (TrainState has these)."""

    evals_since_best: int
    lr_scale: float
    stopped_by: str | None
    done: bool


@dataclass(frozen=True)
class CosineSchedule:
    """Fixed budget: linear warmup over ``warmup_steps``, then cosine decay to zero at ``total_steps``."""

    total_steps: int
    warmup_steps: int

    def factor(self, step: int, lr_scale: float = 1.0) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def lr_scale_after(self, evals_since_best: int, lr_scale: float) -> float:
        return lr_scale  # the cosine already decays; no plateau drops


@dataclass(frozen=True)
class PlateauSchedule:
    """Unknown end: linear warmup over ``warmup_steps``, then constant × ``lr_scale`` (reduce on plateau); a run
    that reaches the last ``decay_steps`` before its cap ``total_steps`` anneals linearly into it."""

    warmup_steps: int
    lr_patience: int | None  # evaluations without improvement per drop; None: never drop
    lr_drop: float
    min_lr_factor: float
    total_steps: int = 0  # the cap in steps (0: no decay tail)
    decay_steps: int = 0

    def factor(self, step: int, lr_scale: float = 1.0) -> float:
        warm = (step + 1) / self.warmup_steps if step < self.warmup_steps else 1.0
        return warm * lr_scale * self.tail(step)

    def tail(self, step: int) -> float:
        """1 until the last ``decay_steps`` before the cap, then a linear decay to ``min_lr_factor`` at it."""
        left = self.total_steps - step
        if self.decay_steps <= 0 or left > self.decay_steps:
            return 1.0
        return max(self.min_lr_factor, left / self.decay_steps)

    def lr_scale_after(self, evals_since_best: int, lr_scale: float) -> float:
        """The scale after an evaluation that leaves ``evals_since_best`` evaluations without improvement."""
        if self.lr_patience and evals_since_best > 0 and evals_since_best % self.lr_patience == 0:
            return max(self.min_lr_factor, lr_scale * self.lr_drop)
        return lr_scale


@dataclass(frozen=True)
class StoppingPlan:
    budget: str  # "auto" (follows the data) | "fixed" (numeric compute)
    max_samples: int  # the cap (auto) or the budget (fixed)
    max_steps: int
    eval_every_samples: int
    patience: int | None  # evaluations without improvement that stop the run; None: run to max_samples
    schedule: CosineSchedule | PlateauSchedule
    min_improvement: float = 0.0  # relative gain over the best validation loss that counts as progress

    def is_progress(self, val_loss: float, best_val: float) -> bool:
        """Whether ``val_loss`` improves on ``best_val`` (the best before this evaluation) by enough to count."""
        return val_loss < best_val - self.min_improvement * abs(best_val) if math.isfinite(best_val) else True

    def after_evaluation(self, progress: Progress, improved: bool) -> None:
        """Count this evaluation: reset or advance the patience counter, drop the rate on a plateau, and end
        the run (``stopped_by: converged``) when the patience is spent."""
        progress.evals_since_best = 0 if improved else progress.evals_since_best + 1
        progress.lr_scale = self.schedule.lr_scale_after(progress.evals_since_best, progress.lr_scale)
        if self.patience and progress.evals_since_best >= self.patience:
            progress.done, progress.stopped_by = True, CONVERGED

    def verdict(self, progress: Progress) -> str:
        """``converged`` when the patience ended the run, else ``budget`` (it ran to its cap or budget)."""
        return progress.stopped_by or BUDGET


def max_samples(settings: dict) -> int:
    """Training samples a cell may draw at most: its numeric ``compute``, or the auto rule's safety cap."""
    compute = settings["compute"]
    if compute == "auto":
        rule = training_view(settings["training"]).stopping
        return max(1, int(min(rule.max_epochs * settings["n_train"], rule.max_samples)))
    return int(compute)


def eval_every_samples(settings: dict) -> int:
    compute, training = settings["compute"], training_view(settings["training"])
    if compute == "auto":
        rule = training.stopping
        every = settings["n_train"] / rule.evals_per_epoch
        return max(1, int(round(min(max(every, rule.min_eval_samples), rule.max_eval_samples))))
    return max(1, int(training.eval_every_samples))


def plan_for(settings: dict, batch_size: int) -> StoppingPlan:
    """The stopping plan of a classifier cell with these resolved settings, trained with this global batch
    (the rule's keys through the typed view: an absent one takes the schema's default)."""
    training = training_view(settings["training"])
    cap = max_samples(settings)
    steps = max(1, math.ceil(cap / batch_size))
    if settings["compute"] == "auto":
        rule = training.stopping
        warmup = min(int(rule.warmup_samples), int(settings["n_train"]))
        schedule = PlateauSchedule(
            warmup_steps=max(1, math.ceil(warmup / batch_size)) if warmup > 0 else 0,
            lr_patience=rule.lr_patience,
            lr_drop=float(rule.lr_drop),
            min_lr_factor=float(rule.min_lr_factor),
            total_steps=steps,
            decay_steps=int(round(float(rule.cap_decay_fraction) * steps)),
        )
        return StoppingPlan(
            "auto",
            cap,
            steps,
            eval_every_samples(settings),
            rule.patience,
            schedule,
            float(rule.min_improvement),
        )
    return StoppingPlan(
        "fixed",
        cap,
        steps,
        eval_every_samples(settings),
        training.early_stopping_patience,
        cosine(steps, float(training.warmup_fraction)),
    )


def cosine(total_steps: int, warmup_fraction: float) -> CosineSchedule:
    """The fixed-budget schedule (also pretraining's, whose budget is fixed by its recipe)."""
    warmup = max(1, int(round(warmup_fraction * total_steps))) if warmup_fraction > 0 else 0
    return CosineSchedule(total_steps=total_steps, warmup_steps=warmup)


def clamped_samples(n: int, epochs: float, min_samples: int, max_samples: int) -> int:
    """A fixed budget of ``epochs`` passes over ``n`` jets, clamped (pretraining's ``compute`` recipe)."""
    return int(min(max(epochs * n, min_samples), max_samples))

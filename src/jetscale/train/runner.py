"""The one training loop: a :class:`Runner` trains a :class:`Task` under a :class:`RunPlan`.

The runner owns everything a gradient-trained run shares, whatever it trains: seeding, the engine and the
data-parallel ranks (:mod:`.distributed`), the :class:`Sampler` stream, the learning-rate schedule, the
evaluation cadence and the best-weights bookkeeping, log rows (to :class:`RowSink` s: the CSV log, and any other
logger), checkpoint and resume (bit-identical on CPU), stop signals (:mod:`jetscale.signals`: checkpoint, then
:class:`~.checkpoint.TrainingInterrupted`), the failure record of a non-finite loss, and the progress bar.
What is trained, on what, and what is written at the end is the task's: a classifier cell
(:class:`jetscale.train.classifier.ClassifierTask`) or a pretraining objective
(:class:`jetscale.pretrain.loop.PretrainTask`).

One run, top to bottom (:meth:`Runner.run`):

1. set-up: the output directory (stale results removed), the seed, ``task.setup()`` (data and model), a
   usable checkpoint or the task's fit-once step, the optimiser, schedule and engine, the resumed state;
2. steps: each draws the next global batch from the sampler, trains this rank's share (``task.loss``), and
   then logs a row, validates (``task.validate``) and checkpoints when due; a stop request checkpoints and
   raises;
3. the end: a last checkpoint and the log; the :class:`RunOutcome` goes to ``task.finish``.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .. import io as jio
from .. import paths, signals
from ..config_view import training_view
from ..errors import ConfigError, TrainingError
from . import checkpoint as ckpt
from .distributed import Ranks, init_ranks, make_engine, resolve_device
from .task import RunOutcome, RunPlan, Task, TrainState, Validation

LOG_EVERY_STEPS = 10
# the training loop hands the task the batches of the next steps up to this many on (Task.prefetch)
AHEAD_STEPS = 2
RANK_SEED_STRIDE = 1_000_003  # rank r > 0 reseeds with seed + r * stride: its own dropout stream


# ------------------------------------------------------------------------------ stream, schedule, logs
class Sampler:
    """Endless stream of training indices: epoch e is a permutation drawn from Generator([seed, e])."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._perms: dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perms[epoch]

    def batch(self, position: int, size: int) -> np.ndarray:
        """Indices of stream positions [position, position + size). Epochs more than one before the batch's first
        are dropped: the batches asked for ahead of the one drawn (``AHEAD_STEPS``) may start a new epoch while
        it is in the last, so up to three are kept at a boundary."""
        first = position // self.n
        self._perms = {epoch: perm for epoch, perm in self._perms.items() if epoch >= first - 1}
        out = []
        while size > 0:
            epoch, offset = divmod(position, self.n)
            take = min(size, self.n - offset)
            out.append(self._permutation(epoch)[offset : offset + take])
            position, size = position + take, size - take
        return np.concatenate(out)


class RowSink(Protocol):
    """Where log rows go (rank 0 only): ``add`` sees each row as it is made, ``close`` all rows of every attempt."""

    def add(self, row: dict) -> None: ...
    def close(self, rows: list[dict]) -> None: ...


def write_failure(out_dir: Path, reason: str, **extra) -> None:
    record = {"status": "failed", "reason": reason, **extra, "time": datetime.now(UTC).isoformat()}
    jio.write_json(out_dir / paths.FAILURE, record)


# ------------------------------------------------------------------------------------------ the process
def tune_allocator() -> None:
    """Keep freed activation buffers (up to 32 MiB each) in glibc's heap instead of returning them to the OS.

    Batches of variable size otherwise mmap/munmap fresh buffers every step; on CPU that page-fault traffic
    cost ParticleNet ~25% of its run time. No-op where glibc's ``mallopt`` is not available.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 512 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def start_process(training: dict) -> tuple[torch.device, Ranks]:
    """Threads, allocator, device and the data-parallel ranks of this process (``training`` run knobs)."""
    knobs = training_view(training)
    torch.set_num_threads(knobs.threads)
    tune_allocator()
    device = resolve_device(knobs.device)
    return device, init_ranks(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------- the runner
class Runner:
    """Train ``task`` under ``plan`` in ``out_dir``: :meth:`run` returns the :class:`RunOutcome`.

    ``sinks``: where log rows go besides the state (rank 0 only; e.g. a :class:`~.outputs.CsvLog`).
    """

    def __init__(
        self,
        task: Task,
        plan: RunPlan,
        out_dir: Path,
        device: torch.device,
        ranks: Ranks,
        *,
        t_start: float,
        sinks: Sequence[RowSink] = (),
    ):
        self.task, self.plan, self.out_dir = task, plan, Path(out_dir)
        self.device, self.ranks, self.t_start = device, ranks, t_start
        self.sinks = list(sinks) if ranks.is_main else []
        self.ckpt_path = self.out_dir / ckpt.CHECKPOINT_NAME
        self.bar = None
        # (step, samples before it, loss on the device) of the steps whose loss the host has not read yet
        self._unread: list[tuple[int, int, torch.Tensor]] = []
        self._requested_to = 0  # the sample position up to which batches were handed to Task.prefetch

    def run(self, *, progress: bool = True, stop_after_steps: int | None = None) -> RunOutcome:
        """Set up, train to the end (budget or patience), write the log; raises TrainingInterrupted on a stop."""
        self.setup()
        self.train(progress=progress, stop_after_steps=stop_after_steps)
        return RunOutcome(self.state, self.engine, self.ranks, self.device, self.plan, self.t_start, self.t_run)

    # ---- set-up -------------------------------------------------------------------------------------
    def setup(self) -> None:
        task, plan, ranks = self.task, self.plan, self.ranks
        if ranks.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for stale in (*task.outputs, paths.FAILURE):  # a finished result survives in history/
                (self.out_dir / stale).unlink(missing_ok=True)
        ranks.barrier()
        seed_everything(plan.seed)
        task.setup(self.device, ranks)
        if plan.batch_size < ranks.world:
            raise ConfigError(
                f"{plan.batch_key}: a batch of {plan.batch_size} jets cannot be shared among {ranks.world} "
                f"processes; use a batch of at least {ranks.world} or fewer processes"
            )
        saved = self._usable_checkpoint()
        if saved is None:
            # Before the engine exists (it may wrap or partition the weights): a resumed run gets the fitted
            # weights from its checkpoint instead, so it never refits.
            task.fit_once()
        if ranks.rank > 0:  # same initial weights everywhere, but each rank its own dropout stream
            torch.manual_seed(plan.seed + RANK_SEED_STRIDE * ranks.rank)
        self.state = TrainState()  # the schedule reads its lr_scale; replaced by the resumed or fresh state below
        self.engine = self._make_engine()
        self.sampler = Sampler(task.n_train, plan.seed)
        self.state = self._resume(saved) or self._fresh(refit=saved is not None)
        task.ready()

    def _make_engine(self):
        task, plan = self.task, self.plan
        # fused: the whole update in one kernel per parameter group (CPU and CUDA): measured on ParT w16 at batch
        # 32, the step 2.7 -> 1.55 ms of a ~17 ms training step; it rounds like the per-parameter loop up to an
        # ulp, not bit for bit (resumed runs stay bit-identical: the same kernel before and after)
        optimizer = torch.optim.AdamW(task.param_groups(), lr=plan.lr, weight_decay=plan.weight_decay, fused=True)

        def factor(step: int) -> float:  # the plan's schedule under the run's learning-rate drops so far
            return plan.stopping.schedule.factor(step, self.state.lr_scale)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, task.lr_lambdas(factor))
        return make_engine(
            task.model,
            optimizer,
            scheduler,
            plan.engine,
            self.ranks,
            grad_clip=plan.grad_clip,
            batch_size=plan.batch_size,
        )

    def _usable_checkpoint(self) -> dict | None:
        """The run's checkpoint when it belongs to these settings (and the task accepts it), else None."""
        saved = ckpt.load_checkpoint(self.ckpt_path, self.task.settings_hash)
        problem = self.task.checkpoint_problem(saved) if saved is not None else None
        return ckpt.report_unusable(self.ckpt_path, problem) if problem else saved

    def _fresh(self, *, refit: bool) -> TrainState:
        """A new run's state. ``refit``: the fit-once step was skipped for a checkpoint the engine then refused,
        so it runs now (the engine has not stepped yet; its weights are the model's)."""
        if refit and self.task.fits_once:
            if self.engine.partitioned:
                raise TrainingError(
                    f"{self.ckpt_path}: unusable, and {self.task.name}'s fit-once step cannot run on partitioned "
                    "weights; delete the checkpoint and rerun"
                )
            self.task.fit_once()
        return TrainState()

    def _resume(self, saved: dict | None) -> TrainState | None:
        if saved is None or not self.engine.load(self.out_dir, saved):
            return None
        rngs = saved.get("rng_ranks")
        ckpt.set_rng_state(rngs[self.ranks.rank] if rngs and len(rngs) == self.ranks.world else saved["rng"])
        self.task.restore_extras(saved)
        return TrainState.from_checkpoint(saved)

    # ---- the loop -------------------------------------------------------------------------------------
    def train(self, *, progress: bool = True, stop_after_steps: int | None = None) -> None:
        """Steps until the budget is spent or patience runs out; raises TrainingInterrupted after a stop request."""
        state, total = self.state, self.plan.total_steps
        self.t_run = self.t_window = time.perf_counter()
        if progress and self.ranks.is_main:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=state.step, desc=self.task.name, unit="step", leave=False, file=sys.stderr
            )
        signals.REQUESTS.checkpoint = False
        self.task.model.train()
        try:
            with signals.default_signals_stop():
                while not state.done and state.step < total:
                    try:
                        drawn = self.step()
                    except Exception:
                        self._read_losses()  # an earlier step's non-finite loss is the cause to report
                        raise
                    last = state.step >= total
                    every = self.plan.eval_every_samples
                    evaluated = state.position // every > (state.position - drawn) // every
                    if evaluated or last or state.step % LOG_EVERY_STEPS == 0:
                        self.log_row(evaluate=evaluated or last)
                    self._checkpoint_when_due()
                    if stop_after_steps is not None and state.step >= stop_after_steps and not state.done and not last:
                        self.save()
                        raise ckpt.TrainingInterrupted(
                            f"{self.task.name}: stopped after {state.step} steps (stop_after_steps)"
                        )
        finally:
            if self.bar is not None:
                self.bar.close()
        state.done = True
        self.save()
        for sink in self.sinks:
            sink.close(state.log_rows)

    def step(self) -> int:
        """One optimizer step on the next global batch; returns the number of jets drawn."""
        state, ranks, engine = self.state, self.ranks, self.engine
        idx = self.sampler.batch(state.position, self.plan.batch_size)  # the global batch; this rank trains its share
        local = ranks.shard(idx)
        self._request_next(state.position + len(idx))
        with engine.autocast():
            loss = self.task.loss(engine.forward_model, local, self.device)
        if ranks.world > 1:
            # Weight each rank's mean by its share so the ranks' averaged gradient is the global-batch mean
            # (shares differ by one jet when the batch does not divide); stop requests are voted on so all
            # ranks stop, and checkpoint, at the same step.
            share = len(local) / len(idx)
            step_loss, *self._votes = ranks.all_sum(
                [float(loss.detach()) * share, signals.stop_requested(), signals.REQUESTS.checkpoint]
            )
            loss = loss * (share * ranks.world)
            if not math.isfinite(step_loss):
                self.fail(f"non-finite training loss ({step_loss}) at step {state.step + 1}")
            state.window_loss += step_loss
        else:
            # Not read here: on a GPU that would make the host wait for this forward at every step. The host
            # reads the losses when it needs them anyway (a log row, a checkpoint): _read_losses.
            self._unread.append((state.step + 1, state.position, loss.detach()))
        engine.backward(loss)
        engine.step()
        state.step += 1
        state.position += len(idx)
        state.window_steps += 1
        if self.bar is not None:
            self.bar.update(1)
        return len(idx)

    def _request_next(self, position: int) -> None:
        """Give the task this rank's share of each batch up to :data:`AHEAD_STEPS` steps on that it has not been
        given yet (the sampler knows them), so that a task whose inputs are read from storage reads and prepares
        them while this step and the next run, instead of after them: two steps ahead, one batch's reads
        overlap the preparation of the one before (one step ahead, both had to fit into one step). Not beyond
        the budget's last step. ``position``: where the next step's batch starts."""
        batch = self.plan.batch_size
        for ahead in range(AHEAD_STEPS):
            start = position + ahead * batch
            if start >= self._requested_to and self.state.step + 1 + ahead < self.plan.total_steps:
                self.task.prefetch(self.ranks.shard(self.sampler.batch(start, batch)))
                self._requested_to = start + batch

    def _read_losses(self) -> None:
        """Add the unread steps' losses to the window, in step order (the same float sum as reading each at its
        step), and fail on a non-finite one. Called before anything reads the window or the weights: a log row
        (and its evaluation) and a checkpoint, so no checkpoint holds weights from a non-finite step."""
        unread, self._unread = self._unread, []
        if not unread:
            return
        values = torch.stack([loss.to(torch.float64) for *_, loss in unread]).tolist()  # one transfer, exact
        for (step, samples, _), value in zip(unread, values, strict=True):
            if not math.isfinite(value):
                steps = f"{unread[0][0]}-{unread[-1][0]}"
                self.fail(
                    f"non-finite training loss ({value}) at step {step} (the losses of steps {steps} are read "
                    "together; no checkpoint holds their weights)",
                    step=step,
                    samples=samples,
                )
            self.state.window_loss += value

    def requests(self) -> tuple[bool, bool]:
        """(stop, checkpoint) asked for: by this process, or by any rank's vote at this step."""
        if self.ranks.world > 1:
            stop_votes, ckpt_votes = self._votes
            return stop_votes > 0, ckpt_votes > 0
        return signals.stop_requested(), signals.REQUESTS.checkpoint

    def _checkpoint_when_due(self) -> None:
        state = self.state
        stop, wants_ckpt = self.requests()
        if state.step % self.plan.checkpoint_every_steps == 0 or wants_ckpt or stop:
            self.save()
            signals.REQUESTS.checkpoint = False
            if stop:
                raise ckpt.TrainingInterrupted(
                    f"{self.task.name}: stopped by {signals.stop_reason()} at step {state.step}; "
                    "checkpoint written, rerun to resume"
                )

    def fail(self, reason: str, *, step: int | None = None, samples: int | None = None) -> None:
        """Write the failure record and raise; ``step``/``samples``: the failing step (default: the next one)."""
        state, task = self.state, self.task
        if self.ranks.is_main:
            write_failure(
                self.out_dir,
                reason,
                step=state.step + 1 if step is None else step,
                samples=state.position if samples is None else samples,
                **task.identity,
                settings_hash=task.settings_hash,
            )
        raise TrainingError(f"{task.name}: {reason}; see {self.out_dir / paths.FAILURE}")

    def log_row(self, *, evaluate: bool) -> None:
        """A log row for the steps since the last one (and a validation score when ``evaluate``: ``val_loss`` and
        the task's other held-out scalars as ``val_<name>``, e.g. a classifier's ``val_accuracy``; the CSV log keeps
        its columns, other sinks (TensorBoard) see them all)."""
        self._read_losses()
        state = self.state
        seconds = state.window_seconds + (time.perf_counter() - self.t_window)
        row = {
            "step": state.step,
            "samples": state.position,
            "loss": round(state.window_loss / state.window_steps, 6),
            "lr": float(f"{self.engine.scheduler.get_last_lr()[0]:.6g}"),
            "throughput": round(state.window_steps * self.plan.batch_size / max(seconds, 1e-9), 1),
            "val_loss": None,
            **self.task.row_extras(state),
        }
        if evaluate:
            scored = self.evaluate()
            row["val_loss"] = round(scored.loss, 6)
            row |= {f"val_{name}": round(float(value), 6) for name, value in scored.extras.items()}
            if self.bar is not None:
                self.bar.set_postfix(loss=row["loss"], val=row["val_loss"])
        state.log_rows.append(row)
        for sink in self.sinks:
            sink.add(row)
        state.window_loss, state.window_steps, state.window_seconds = 0.0, 0, 0.0
        self.t_window = time.perf_counter()

    def evaluate(self) -> Validation:
        """Score the held-out set; keep the best (weights when ``keep_best``); let the plan count. Returns the score."""
        state, plan = self.state, self.plan
        scored: Validation = self.task.validate(self.engine.module, self.engine.eval_autocast)
        state.last_val = scored.loss
        progress = plan.stopping.is_progress(scored.loss, state.best_val)  # enough of a gain to reset the patience
        if scored.loss < state.best_val:
            state.best_val, state.best_extras, state.best_step = scored.loss, dict(scored.extras), state.step
            if plan.keep_best:
                state.best_state = self.engine.full_state_dict()
        plan.stopping.after_evaluation(state, progress)  # patience, plateau drops, the end: stopping.py's rule
        return scored

    def save(self) -> None:
        """checkpoint.pt (rank 0) + the engine's own files; collective under DeepSpeed/ZeRO-3."""
        self._read_losses()
        state, ranks, engine, task = self.state, self.ranks, self.engine, self.task
        tag = f"step{state.step}"
        engine_state = engine.save(self.out_dir, tag)
        weights = engine.full_state_dict(copy=False)  # saved right away
        rngs = ranks.gather_objects(ckpt.rng_state())
        if ranks.is_main:
            now = time.perf_counter()
            ckpt.save_checkpoint(
                self.ckpt_path,
                {
                    **state.as_checkpoint(),
                    "window_seconds": state.window_seconds + (now - self.t_window),
                    "model": weights,
                    "engine": engine_state,
                    "rng": rngs[0],
                    "rng_ranks": rngs if ranks.world > 1 else None,
                    "settings_hash": task.settings_hash,
                    **task.identity,
                    **task.state_extras(),
                    "elapsed": state.elapsed + (now - self.t_run),
                },
            )
        ranks.barrier()
        engine.prune(self.out_dir, tag)


__all__ = [
    "RowSink",
    "RunOutcome",
    "RunPlan",
    "Runner",
    "Sampler",
    "Task",
    "TrainState",
    "Validation",
    "seed_everything",
    "start_process",
    "write_failure",
]

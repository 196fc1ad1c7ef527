"""Train one grid cell: ``train_cell(cfg, cell_id, splits_dir, out_dir)``.

``train_cell`` sets up the process (threads, device, ranks) and runs a :class:`CellTraining`: its constructor
builds everything from the cell's resolved settings and resumes a :class:`TrainState` from the checkpoint,
``train()`` runs the steps, ``finish()`` scores the best weights and writes the outputs.

Recipe: AdamW (weight decay from config; learning rate = ``training.lr`` or the model's default),
gradient-norm clipping, fixed batch size. How long, how often the validation set is scored, and the
learning-rate schedule are the cell's :class:`~jetscale.train.stopping.StoppingPlan`: ``compute: auto`` trains
until the validation loss stops improving (warmup, constant rate with drops on plateaus, patience, a safety
cap), a numeric ``compute`` is a fixed budget (warmup, cosine to zero); ``metrics.json`` says which ended the
run (``stopped_by``: ``converged`` | ``budget``). The sampler draws an independent permutation of the
n_train jets per epoch (seeded by (seed, epoch)), so the stream is a pure function of the seed and resumes
from a single number. The best weights are restored at the end and the test set is scored on them
(``predictions.parquet``). A model whose spec declares a
fit-once step (``ModelSpec.fit_inputs``, e.g. vq_gpt's tokenizer) runs it on the training jets' inputs before
the first step of a from-scratch cell; a resumed run takes the fitted weights from its checkpoint.

Outputs in ``out_dir`` (all written atomically; ``metrics.json`` last, it is Snakemake's target):

* ``metrics.json``: see :func:`metrics_record` for the keys.
* ``predictions.parquet``: one row per test jet: ``jet_id`` (int64), ``label`` (int64) and
  ``score_<class>`` (float32 softmax probability) for every class, in config class order.
* ``train_log.csv``: ``step, samples, loss, lr, throughput, val_loss`` (``loss`` = mean training loss since the
  previous row, ``throughput`` = training jets/s over those steps, ``val_loss`` only on evaluation rows).
* ``checkpoint.pt``: see ``jetscale.train.checkpoint``; written every ``checkpoint_every_steps`` and at the end.
* ``history/<settings_hash>[.n]/``: hard links to the whole finished run (see ``jetscale.train.history``), so
  a later retrain never destroys it.
* ``failure.json`` instead of ``metrics.json`` when the loss becomes NaN/inf (keys: status, reason, step,
  samples, cell_id, settings_hash, time); :class:`~jetscale.errors.TrainingError` is raised.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import io as jio
from .. import paths, signals
from ..config import resolve_settings, settings_hash
from ..errors import ConfigError, DataError, TrainingError
from ..grid import parse_cell_id
from ..models import catalog
from ..models.registry import build_model, count_params, measure_flops_per_jet
from . import checkpoint as ckpt
from .distributed import Ranks, init_ranks, make_engine, resolve_device
from .history import archive
from .inputs import SplitInputs, input_transform, load_split_inputs
from .stopping import cosine, plan_for

LOG_COLUMNS = ("step", "samples", "loss", "lr", "throughput", "val_loss")
LOG_EVERY_STEPS = 10
EVAL_BATCH = 256


# ----------------------------------------------------------------------------------------------- data
def read_meta(splits_dir: str | os.PathLike) -> dict:
    from ..data.splits import read_meta as read_split_meta  # a broken meta.json: DataError naming it

    return read_split_meta(splits_dir) if (Path(splits_dir) / "meta.json").is_file() else {}


class Sampler:
    """Endless stream of training indices: epoch e is a permutation drawn from Generator([seed, e])."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perm

    def batch(self, position: int, size: int) -> np.ndarray:
        """Indices of stream positions [position, position + size)."""
        out = []
        while size > 0:
            epoch, offset = divmod(position, self.n)
            take = min(size, self.n - offset)
            out.append(self._permutation(epoch)[offset : offset + take])
            position, size = position + take, size - take
        return np.concatenate(out)


# ------------------------------------------------------------------------------------------- schedule
def lr_lambda(total_steps: int, warmup_fraction: float):
    """A fixed budget's factor per step: warmup, then cosine to zero (pretraining uses it too)."""
    return cosine(total_steps, warmup_fraction).factor


# --------------------------------------------------------------------------------------------- losses
def compute_loss(model, batch: dict[str, torch.Tensor], labels: torch.Tensor, pretrain: bool = False) -> torch.Tensor:
    """Cross-entropy of the class logits (+ next-patch byte LM loss for BBT-Neutron when ``pretrain``).

    ``training.pretrain`` trains the LM head *beside* the classifier on the labelled jets (a multi-task
    auxiliary loss). Pretraining proper, on unlabelled jets before fine-tuning, is the grid's ``pretrain``
    axis (``jetscale.pretrain``); both use the same next-patch loss.
    """
    if pretrain and "patches" in batch:
        from ..pretrain.next_patch import next_patch_loss

        logits, lm = model(**batch, return_lm=True)
        return F.cross_entropy(logits.float(), labels) + next_patch_loss(lm, batch["patches"])
    return F.cross_entropy(model(**batch).float(), labels)


@torch.no_grad()
def predict(model, inputs: SplitInputs, device, autocast, ranks: Ranks | None = None) -> np.ndarray:
    """Softmax probabilities (n, n_classes), float32, in eval mode.

    With several ranks each scores its strided share in the same number of batches (a ZeRO-3 forward is a
    collective) and every rank gets all rows back.
    """
    ranks = ranks or Ranks()
    was_training = model.training
    model.eval()
    n = inputs.n
    if ranks.world == 1:
        chunks = [slice(start, min(n, start + EVAL_BATCH)) for start in range(0, n, EVAL_BATCH)]
    else:
        if n < ranks.world:
            raise DataError(f"{n} jets cannot be shared among {ranks.world} processes")
        n_batches = math.ceil(math.ceil(n / ranks.world) / EVAL_BATCH)
        chunks = np.array_split(ranks.shard(np.arange(n)), n_batches)
    out = []
    for rows in chunks:
        batch = inputs.tensors(rows, device)
        with autocast():
            logits = model(**batch)
        out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    model.train(was_training)
    return ranks.gather_rows(np.concatenate(out).astype(np.float32), n)


def loss_and_accuracy(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)
    return float(-np.log(p).mean()), float((probs.argmax(axis=1) == labels).mean())


# --------------------------------------------------------------------------------------- environment
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


def git_revision() -> str | None:
    root = Path(__file__).resolve().parents[3]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def hardware(device: torch.device, threads: int, engine, ranks: Ranks) -> dict[str, Any]:
    info = {
        "device": device.type,
        "engine": engine.name,
        "precision": "bf16" if engine.bf16 else "fp32",
        "compiled": engine.compiled,
        "processes": ranks.world,
        "threads": threads,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def versions(engine_name: str = "torch") -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    if torch.version.cuda:
        out["cuda"] = torch.version.cuda
    for pkg in ("jetscale", "pandas", "pyarrow") + (("deepspeed",) if engine_name == "deepspeed" else ()):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


# -------------------------------------------------------------------------------------------- outputs
def write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in LOG_COLUMNS})
    jio.write_text(path, buf.getvalue())


def write_predictions(
    path: Path, jet_id: np.ndarray, labels: np.ndarray, probs: np.ndarray, classes: list[str]
) -> None:
    import pandas as pd

    frame = pd.DataFrame({"jet_id": jet_id.astype(np.int64), "label": labels.astype(np.int64)})
    for i, name in enumerate(classes):
        frame[f"score_{name}"] = probs[:, i].astype(np.float32)
    with jio.atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_failure(out_dir: Path, reason: str, **extra) -> None:
    record = {"status": "failed", "reason": reason, **extra, "time": datetime.now(UTC).isoformat()}
    jio.write_json(out_dir / paths.FAILURE, record)


# ------------------------------------------------------------------------------------------- the run
@dataclass
class TrainState:
    """What a run has done so far: everything a checkpoint needs beyond model, optimizer, engine and RNGs.

    ``window_*`` accumulate the training loss, steps and seconds since the last ``train_log.csv`` row, so the
    first row after a resume averages the same steps as an uninterrupted run's.
    """

    step: int = 0  # optimizer steps done
    position: int = 0  # samples drawn from the sampler's stream
    best_val: float = math.inf
    best_val_accuracy: float | None = None
    best_step: int = 0
    best_state: dict | None = None  # weights at the best validation loss (None: no evaluation yet)
    evals_since_best: int = 0
    lr_scale: float = 1.0  # the stopping plan's learning-rate drops so far (reduce on plateau)
    log_rows: list[dict] = field(default_factory=list)
    elapsed: float = 0.0  # training seconds of earlier attempts
    done: bool = False
    stopped_by: str | None = None  # set when the patience ends the run; the plan's verdict otherwise
    window_loss: float = 0.0
    window_steps: int = 0
    window_seconds: float = 0.0
    input_fit: dict | None = None  # stats of the model's fit-once step (ModelSpec.fit_inputs), from scratch only

    def as_checkpoint(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> TrainState:
        """The state saved in ``saved`` (keys a checkpoint of an older version lacks keep their defaults)."""
        return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})


def train_cell(
    cfg: dict,
    cell_id: str,
    splits_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    stop_after_steps: int | None = None,
    backbone: str | os.PathLike | None = None,
) -> dict:
    """Train the cell ``cell_id`` of the (validated) config ``cfg``; return the metrics record.

    A fine-tuning cell (``pretrain~<method>``) first loads the pretrained backbone its id names from
    ``backbone`` (default: its place under ``results/pretrain/``); see :mod:`jetscale.pretrain.finetune`.

    Resumes from ``out_dir/checkpoint.pt`` when it belongs to the same resolved settings. ``stop_after_steps``
    simulates a preemption (checkpoint + :class:`~jetscale.train.checkpoint.TrainingInterrupted` once that
    many steps are done); launchers use :func:`jetscale.signals.checkpoint_now` or signals instead.
    Run by several data-parallel processes (see :mod:`jetscale.train.distributed`), every rank returns the
    record and rank 0 writes the files.
    """
    t_start = time.perf_counter()
    torch.set_num_threads(int(cfg["training"].get("threads", 1)))
    tune_allocator()
    device = resolve_device(cfg["training"].get("device", "auto"))
    ranks = init_ranks(device)
    try:
        run = CellTraining(
            cfg, cell_id, Path(splits_dir), Path(out_dir), device, ranks, t_start=t_start, backbone=backbone
        )
        run.train(progress=progress, stop_after_steps=stop_after_steps)
        return run.finish()
    finally:
        ranks.close()


class CellTraining:
    """One cell's run: ``__init__`` sets up (settings, data, model, engine, resumed state), :meth:`train` runs
    the steps (each: :meth:`step`, then log/:meth:`evaluate`/early stop, then :meth:`save` when due),
    :meth:`finish` scores the best weights and writes the outputs."""

    def __init__(
        self, cfg, cell_id, splits_dir: Path, out_dir: Path, device, ranks: Ranks, *, t_start: float, backbone=None
    ):
        self.cfg, self.cell_id, self.splits_dir, self.out_dir = cfg, cell_id, splits_dir, out_dir
        self.device, self.ranks, self.t_start = device, ranks, t_start
        self.cell = parse_cell_id(cfg, cell_id)
        self.settings = settings = resolve_settings(cfg, self.cell)
        self.shash = settings_hash(settings)
        self.training = training = settings["training"]
        if ranks.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            for stale in (paths.METRICS, paths.FAILURE):  # a finished result survives in history/
                (out_dir / stale).unlink(missing_ok=True)
        ranks.barrier()
        self.seed = seed = int(settings["seed"])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.backbone = None  # a fine-tuning cell: (path, contents) of the backbone its id names, hash-checked
        if "pretrain" in settings:
            from ..pretrain.finetune import default_backbone_path, read_backbone

            path = Path(backbone or default_backbone_path(cfg, self.cell))
            self.backbone = (path, read_backbone(path, settings["pretrain"]["backbone_hash"]))
        self._load_data()
        self.model = self.new_model()
        self.finetune = None
        if self.backbone is not None:
            from ..pretrain.finetune import attach

            self.finetune = attach(self.model, settings["pretrain"], *self.backbone)
            self.backbone = None  # its weights are in the model now; do not hold a second copy while training
        self.ckpt_path = out_dir / ckpt.CHECKPOINT_NAME
        saved = self._usable_checkpoint()
        # Before the engine exists (it may wrap or partition the weights): a resumed run gets the fitted
        # weights from its checkpoint instead, so it never refits.
        input_fit = self.fit_inputs() if saved is None else None
        if ranks.rank > 0:  # same initial weights everywhere, but each rank its own dropout stream
            torch.manual_seed(seed + 1_000_003 * ranks.rank)
        self.state = TrainState()  # the schedule reads its lr_scale; replaced by the resumed or fresh state below
        self._make_engine(training)
        self.sampler = Sampler(settings["n_train"], seed)
        self.eval_every = self.plan.eval_every_samples
        self.ckpt_every = int(cfg["training"].get("checkpoint_every_steps", 200))  # a run knob, not hashed
        self.state = self._resume(saved) or self._fresh_state(input_fit, refit=saved is not None)

    # ---- set-up ---------------------------------------------------------------------------------
    def _load_data(self) -> None:
        settings, splits_dir = self.settings, self.splits_dir
        self.name, self.classes = name, classes = settings["model"], settings["classes"]
        self.meta = read_meta(splits_dir)
        if self.meta.get("classes") and list(self.meta["classes"]) != list(classes):
            raise DataError(
                f"{splits_dir}/meta.json: classes {self.meta['classes']} differ from the config's {classes}"
            )
        self.spec = catalog.get(name)
        self.options = copy.deepcopy(settings["model_options"])
        self.pretrain = bool(self.training.get("pretrain")) and "next_patch" in self.spec.pretrain_heads
        if self.pretrain:
            self.options["lm_head"] = True
        self.transform, self.stats_source = input_transform(
            settings.get("inputs"), splits_dir, settings["n_train"], backbone=self.backbone
        )
        self.inputs = {
            split: load_split_inputs(
                splits_dir,
                split,
                name,
                self.options,
                settings["n_train"] if split == "train" else None,
                transform=self.transform,
            )
            for split in ("train", "val", "test")
        }
        self.input_info = {split: inp.info for split, inp in self.inputs.items()}
        self.train_labels = torch.from_numpy(self.inputs["train"].labels)

    def new_model(self):
        n_features = self.inputs["train"].n_features
        return build_model(self.name, self.settings["width"], len(self.classes), n_features, self.options).to(
            self.device
        )

    def _make_engine(self, training: dict) -> None:
        ranks = self.ranks
        self.batch_size = min(int(training["batch_size"]), self.settings["n_train"])
        if self.batch_size < ranks.world:
            raise ConfigError(
                f"training.batch_size: a batch of {self.batch_size} jets cannot be shared among "
                f"{ranks.world} processes; use a batch of at least {ranks.world} or fewer processes"
            )
        self.plan = plan_for(self.settings, self.batch_size)
        self.budget, self.total_steps = self.plan.max_samples, self.plan.max_steps
        finetune = self.finetune
        params = finetune.param_groups(self.model) if finetune else self.model.parameters()
        optimizer = torch.optim.AdamW(params, lr=float(training["lr"]), weight_decay=float(training["weight_decay"]))

        def schedule(step: int) -> float:
            return self.plan.schedule.factor(step, self.state.lr_scale)

        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, finetune.lr_lambdas(schedule) if finetune else schedule
        )
        compile_ = self.cfg["training"].get("compile", False)  # a speed knob, kept out of the settings
        self.engine = make_engine(
            self.model, optimizer, scheduler, {**training, "batch_size": self.batch_size, "compile": compile_}, ranks
        )

    def fit_inputs(self) -> dict | None:
        """The model's fit-once step on this cell's training inputs, never its labels (``ModelSpec.fit_inputs``,
        e.g. vq_gpt's tokenizer); from-scratch cells only: a fine-tuning cell loaded it with the backbone."""
        if self.spec.fit_inputs is None or self.finetune is not None:
            return None
        fit = catalog.resolve(self.spec.fit_inputs)
        return fit(self.model, self.inputs["train"].unlabelled(), self.seed)

    def _usable_checkpoint(self) -> dict | None:
        """This cell's checkpoint when it belongs to these settings and splits, else None."""
        saved = ckpt.load_checkpoint(self.ckpt_path, self.shash)
        if saved is not None and saved.get("data_fingerprint") != self.meta.get("data_fingerprint"):
            saved = ckpt.report_unusable(self.ckpt_path, "trained on other splits (data_fingerprint differs)")
        return saved

    def _fresh_state(self, input_fit: dict | None, *, refit: bool) -> TrainState:
        """A new run's state. ``refit``: the fit was skipped for a checkpoint the engine then refused, so the
        model still needs its fit-once step (the engine has not stepped yet; its weights are the model's)."""
        if refit and self.spec.fit_inputs is not None and self.finetune is None:
            if self.engine.partitioned:
                raise TrainingError(
                    f"{self.ckpt_path}: unusable, and {self.name}'s fit-once step cannot run on partitioned "
                    "weights; delete the checkpoint and rerun"
                )
            input_fit = self.fit_inputs()
        return TrainState(input_fit=input_fit)

    def _resume(self, saved: dict | None) -> TrainState | None:
        if saved is None or not self.engine.load(self.out_dir, saved):
            return None
        rngs = saved.get("rng_ranks")
        ckpt.set_rng_state(rngs[self.ranks.rank] if rngs and len(rngs) == self.ranks.world else saved["rng"])
        return TrainState.from_checkpoint(saved)

    # ---- the loop -------------------------------------------------------------------------------
    def train(self, *, progress: bool = True, stop_after_steps: int | None = None) -> None:
        """Steps until the budget is spent or early stopping; raises TrainingInterrupted after a stop request."""
        state, ranks = self.state, self.ranks
        self.t_run = self.t_window = time.perf_counter()
        self.bar = None
        if progress and ranks.is_main:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total_steps, initial=state.step, desc=self.cell_id, unit="step", leave=False, file=sys.stderr
            )
        signals.REQUESTS.checkpoint = False
        self.model.train()
        try:
            with signals.default_signals_stop():
                while not state.done and state.step < self.total_steps:
                    drawn = self.step()
                    last = state.step >= self.total_steps
                    evaluated = state.position // self.eval_every > (state.position - drawn) // self.eval_every
                    if evaluated or last or state.step % LOG_EVERY_STEPS == 0:
                        self.log_row(evaluate=evaluated or last)
                    stop, wants_ckpt = self.requests()
                    if state.step % self.ckpt_every == 0 or wants_ckpt or stop:
                        self.save()
                        signals.REQUESTS.checkpoint = False
                        if stop:
                            raise ckpt.TrainingInterrupted(
                                f"{self.cell_id}: stopped by {signals.stop_reason()} at step "
                                f"{state.step}; checkpoint written, rerun to resume"
                            )
                    if stop_after_steps is not None and state.step >= stop_after_steps and not state.done and not last:
                        self.save()
                        raise ckpt.TrainingInterrupted(
                            f"{self.cell_id}: stopped after {state.step} steps (stop_after_steps)"
                        )
        finally:
            if self.bar is not None:
                self.bar.close()
        state.done = True
        self.save()
        if ranks.is_main:
            write_log(self.out_dir / paths.TRAIN_LOG, state.log_rows)

    def step(self) -> int:
        """One optimizer step on the next global batch; returns the number of jets drawn."""
        state, ranks, device = self.state, self.ranks, self.device
        idx = self.sampler.batch(state.position, self.batch_size)  # the global batch; this rank trains its share
        local = ranks.shard(idx)
        batch = self.inputs["train"].tensors(local, device)
        with self.engine.autocast():
            loss = compute_loss(self.engine.forward_model, batch, self.train_labels[local].to(device), self.pretrain)
        if ranks.world > 1:
            # Weight each rank's mean by its share so the ranks' averaged gradient is the global-batch mean
            # (shares differ by one jet when the batch does not divide); stop requests are voted on so all
            # ranks stop, and checkpoint, at the same step.
            share = len(local) / len(idx)
            step_loss, *self._votes = ranks.all_sum(
                [float(loss.detach()) * share, signals.stop_requested(), signals.REQUESTS.checkpoint]
            )
            loss = loss * (share * ranks.world)
        else:
            step_loss = float(loss.detach())
        if not math.isfinite(step_loss):
            self.fail(f"non-finite training loss ({step_loss}) at step {state.step + 1}")
        self.engine.backward(loss)
        self.engine.step()
        state.step += 1
        state.position += len(idx)
        state.window_loss += step_loss
        state.window_steps += 1
        if self.bar is not None:
            self.bar.update(1)
        return len(idx)

    def requests(self) -> tuple[bool, bool]:
        """(stop, checkpoint) asked for: by this process, or by any rank's vote at this step."""
        if self.ranks.world > 1:
            stop_votes, ckpt_votes = self._votes
            return stop_votes > 0, ckpt_votes > 0
        return signals.stop_requested(), signals.REQUESTS.checkpoint

    def fail(self, reason: str) -> None:
        state = self.state
        if self.ranks.is_main:
            write_failure(
                self.out_dir,
                reason,
                step=state.step + 1,
                samples=state.position,
                cell_id=self.cell_id,
                settings_hash=self.shash,
            )
        raise TrainingError(f"{self.cell_id}: {reason}; see {self.out_dir / paths.FAILURE}")

    def log_row(self, *, evaluate: bool) -> None:
        """A train_log.csv row for the steps since the last one (and a validation score when ``evaluate``)."""
        state = self.state
        now = time.perf_counter()
        seconds = state.window_seconds + (now - self.t_window)
        row = {
            "step": state.step,
            "samples": state.position,
            "loss": round(state.window_loss / state.window_steps, 6),
            "lr": float(f"{self.engine.scheduler.get_last_lr()[0]:.6g}"),
            "throughput": round(state.window_steps * self.batch_size / max(seconds, 1e-9), 1),
            "val_loss": None,
        }
        if evaluate:
            row["val_loss"] = round(self.evaluate(), 6)
            if self.bar is not None:
                self.bar.set_postfix(loss=row["loss"], val=row["val_loss"])
        state.log_rows.append(row)
        state.window_loss, state.window_steps, state.window_seconds = 0.0, 0, 0.0
        self.t_window = time.perf_counter()

    def evaluate(self) -> float:
        """Score the validation set; keep the best weights; count towards early stopping. Returns val loss."""
        state = self.state
        probs = predict(self.engine.module, self.inputs["val"], self.device, self.engine.eval_autocast, self.ranks)
        val_loss, val_acc = loss_and_accuracy(probs, self.inputs["val"].labels)
        improved = val_loss < state.best_val
        if improved:
            state.best_val, state.best_val_accuracy, state.best_step = val_loss, val_acc, state.step
            state.best_state = self.engine.full_state_dict()
        self.plan.after_evaluation(state, improved)
        return val_loss

    def save(self) -> None:
        """checkpoint.pt (rank 0) + the engine's own files; collective under DeepSpeed/ZeRO-3."""
        state, ranks, engine = self.state, self.ranks, self.engine
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
                    "settings_hash": self.shash,
                    "data_fingerprint": self.meta.get("data_fingerprint"),  # a resume needs the same splits
                    "cell_id": self.cell_id,
                    "elapsed": state.elapsed + (now - self.t_run),
                },
            )
        ranks.barrier()
        engine.prune(self.out_dir, tag)

    # ---- the result -----------------------------------------------------------------------------
    def finish(self) -> dict:
        """Restore the best weights, score val and test, write predictions + metrics.json; return the record."""
        state, engine, ranks = self.state, self.engine, self.ranks
        final_model = engine.module
        if engine.partitioned:  # ZeRO-3 holds a slice of each weight per rank: score a plain, whole copy
            final_model = self.new_model()
            final_model.load_state_dict(state.best_state or engine.full_state_dict())
        elif state.best_state is not None:
            final_model.load_state_dict(state.best_state)
        val, test = self.inputs["val"], self.inputs["test"]
        if state.best_state is not None:  # the best evaluation already scored these weights on val
            val_loss, val_acc = state.best_val, state.best_val_accuracy
        else:
            probs = predict(final_model, val, self.device, engine.eval_autocast, ranks)
            val_loss, val_acc = loss_and_accuracy(probs, val.labels)
        test_probs = predict(final_model, test, self.device, engine.eval_autocast, ranks)
        test_loss, test_acc = loss_and_accuracy(test_probs, test.labels)
        sample = val.tensors(slice(0, min(64, val.n)), self.device)
        record = metrics_record(
            cfg=self.cfg,
            cell=self.cell,
            cell_id=self.cell_id,
            settings=self.settings,
            shash=self.shash,
            model=final_model,
            state=state,
            flops_per_jet=measure_flops_per_jet(final_model, sample),
            val=(val_loss, val_acc),
            test=(test_loss, test_acc),
            budget=self.budget,
            total_steps=self.total_steps,
            batch_size=self.batch_size,
            plan=self.plan,
            device=self.device,
            engine=engine,
            ranks=ranks,
            wall_time_s=state.elapsed + (time.perf_counter() - self.t_run),
            input_info=self.input_info,
            meta=self.meta,
            setup_s=self.t_run - self.t_start,
            inputs={"features": self.transform.record(), "statistics": self.stats_source}
            if self.transform is not None
            else None,
        )
        if state.input_fit is not None:
            record["input_fit"] = state.input_fit
        if self.finetune is not None:
            record["backbone_id"] = self.finetune.backbone_id
            record["trainable_params"] = sum(p.numel() for p in final_model.parameters() if p.requires_grad)
        if ranks.is_main:
            write_predictions(self.out_dir / paths.PREDICTIONS, test.jet_id, test.labels, test_probs, self.classes)
            jio.write_json(self.out_dir / paths.METRICS, record)
            archive(self.out_dir, self.shash)
        ranks.barrier()
        return record


def metrics_record(
    *,
    cfg,
    cell,
    cell_id,
    settings,
    shash,
    model,
    state,
    flops_per_jet,
    val,
    test,
    budget,
    total_steps,
    batch_size,
    plan,
    device,
    engine,
    ranks,
    wall_time_s,
    input_info,
    meta,
    setup_s,
    inputs=None,
) -> dict:
    """The ``metrics.json`` record (keys below; losses are mean cross-entropy in nats, accuracy a fraction)."""
    samples = int(state.position)
    return {
        "status": "ok",
        "cell_id": cell_id,
        "cell": cell,
        "model": settings["model"],
        "width": settings["width"],
        "n_train": settings["n_train"],
        "compute": settings["compute"],
        "seed": settings["seed"],
        "val_loss": val[0],
        "val_accuracy": val[1],
        "test_loss": test[0],
        "test_accuracy": test[1],
        "n_params": count_params(model),
        "flops_per_jet": flops_per_jet,
        "train_flops": 3.0 * flops_per_jet * samples,
        "samples_seen": samples,
        "samples_budget": budget,
        "epochs_seen": samples / settings["n_train"],
        "steps": int(state.step),
        "steps_budget": total_steps,
        "batch_size": batch_size,
        "best_step": int(state.best_step),
        "stopped_by": plan.verdict(state),
        "wall_time_s": round(wall_time_s, 3),
        "setup_time_s": round(setup_s, 3),
        "n_val": input_info["val"]["n_jets"],
        "n_test": input_info["test"]["n_jets"],
        "truncated_jets": {k: v.get("truncated_jets") for k, v in input_info.items()}
        if catalog.get(settings["model"]).inputs.counts_truncation
        else None,
        "hardware": hardware(device, torch.get_num_threads(), engine, ranks),
        "versions": versions(engine.name),
        "git_revision": git_revision(),
        "data": {k: meta[k] for k in ("sizes", "n_particles") if k in meta},
        "inputs": inputs,  # the resolved input spec (centres/scales of this subset); None = raw features
        "settings": settings,
        "settings_hash": shash,
        "finished_at": datetime.now(UTC).isoformat(),
    }

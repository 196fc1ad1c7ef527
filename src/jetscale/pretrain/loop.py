"""One pretraining job: ``pretrain_backbone(cfg, backbone_id, splits_dir, out_dir)``.

The unlabelled pool is the *tail* of the training split: its last ``n_pretrain`` jets (features, mask and
four-vectors only: the labels file is never opened). The labelled n_train subsets are prefixes of the same split,
so with n_pretrain + n_train ≤ pool the fine-tuning jets are not among the pretraining jets either; the validation
and test splits are never pretrained on. With ``pretraining.pool`` the pool is other files instead, ingested into
``results/data/pool/`` (:mod:`jetscale.data.pool_store`), and a backbone reads its *first* ``n_pretrain`` jets; the
manifest's fingerprint must be the one in the backbone's settings. The pretraining loss is also scored on up to
``pretraining.eval_jets`` validation jets (inputs only) as a held-out loss.

A job is a :class:`PretrainTask` on the one training loop (:class:`jetscale.train.runner.Runner`): AdamW, linear
warmup then cosine decay, gradient clipping, the seeded sampler stream, the engine and data-parallel ranks of
classifier training (DeepSpeed too), atomic checkpoints with RNG states that resume bit-identically,
stop-on-signal; ``jetscale pretrain --processes N`` runs it on N data-parallel ranks. Compute budget: jets seen =
clamp(epochs × n_pretrain, min_samples, max_samples) from ``pretraining.compute``. A method's fit-once ``prepare``
step (K-means, VQ-VAE) runs before the first step and is stored in the objective's state, so a resumed job does not
repeat it.

Outputs in ``out_dir`` (atomic):

* ``backbone.pt``: ``{"backbone": {name: tensor}, "settings_hash", "backbone_id", "method", "model", "width"}``
  (plain containers of tensors: loadable with ``torch.load(weights_only=True)``).
* ``pretrain.json``: the record (:func:`~jetscale.pretrain.record.pretrain_record`): final training and held-out
  loss, parameters, measured FLOPs, jets seen, wall time, prepare stats, settings + hash.
* ``pretrain_log.csv``: ``step, samples, loss, lr, throughput, val_loss, flops`` (the loss curve; ``flops`` =
  measured training FLOPs so far, 3 × forward).
* ``tensorboard/``: the same curve as TensorBoard event files (optional, :mod:`jetscale.train.tensorboard`: the
  classifier runs' sink).
* ``checkpoint.pt`` while running; ``failure.json`` on a non-finite loss (:class:`~jetscale.errors.TrainingError`).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from .. import io as jio
from .. import paths
from ..config_view import pretraining_view
from ..data.pool_store import load_pool
from ..errors import DataError
from ..inputs.prepare import InputTransform
from ..inputs.spec import needs_statistics
from ..inputs.stats import compute_stats
from ..models.registry import batch_tensors, prepare_inputs
from ..settings import settings_hash
from ..train.distributed import EngineOptions
from ..train.outputs import LOG_COLUMNS, CsvLog
from ..train.runner import Runner, start_process
from ..train.stopping import StoppingPlan, clamped_samples, cosine
from ..train.task import RunOutcome, RunPlan, TrainState, Validation
from ..train.tensorboard import tensorboard_sink
from . import method
from .base import check_unlabelled
from .plan import backbone_settings, parse_backbone_id
from .record import held_out_loss, measure_loss_flops, plain, pretrain_record, write_backbone

UNLABELLED = ("features", "mask", "vectors")  # the only split arrays pretraining reads


def load_unlabelled(splits_dir: str | os.PathLike, split: str, n: int, *, tail: bool) -> dict[str, np.ndarray]:
    """``n`` jets of ``split`` (its last n when ``tail``, else its first n): inputs only, never labels."""
    root = Path(splits_dir)
    meta_path = paths.split_meta(root)
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: splits metadata not found (run `jetscale split` first)")
    size = int(json.loads(meta_path.read_text())["sizes"][split])
    if n > size:
        raise DataError(
            f"{root}/{split}: n_pretrain {n} exceeds the {size} jets of the training pool; "
            "lower grid.axes.n_pretrain or raise data.generate.jets_per_class"
        )
    rows = slice(size - n, size) if tail else slice(0, n)
    out = {}
    for name in UNLABELLED:
        path = root / split / f"{name}.npy"
        if not path.is_file():
            raise DataError(f"{path}: split array missing")
        out[name] = np.asarray(np.load(path, mmap_mode="r")[rows])
    return out


def unlabelled_pool(settings: dict, splits_dir, pool_dir) -> tuple[dict[str, np.ndarray], dict]:
    """(the jets backbone ``settings`` pretrains on: inputs only, where they came from, for ``pretrain.json``)."""
    n = int(settings["n_pretrain"])
    pool = settings.get("pool")
    if pool is None:
        return load_unlabelled(splits_dir, "train", n, tail=True), {"split": "train", "rows": "last n_pretrain"}
    if pool_dir is None:
        raise DataError("pretraining.pool is configured: give the ingested pool directory (jetscale pretrain --pool)")
    expect = {"fingerprint": pool["fingerprint"], "mapping": pool["mapping"], "n_particles": settings["n_particles"]}
    arrays, recorded = load_pool(pool_dir, n, expect=expect)
    source = {
        "source": "pretraining.pool",
        "dir": str(pool_dir),
        "rows": "first n_pretrain",
        "pool_size": recorded["n_jets"],
        "mapping": recorded["mapping"],
        "fingerprint": recorded["fingerprint"],
        "files": [{k: f[k] for k in ("path", "size", "sha256")} for f in recorded["files"]],
    }
    return arrays, source


def pool_input_transform(features: list[dict] | None, pool: dict[str, np.ndarray]):
    """(statistics, transform) of the backbone's input spec; ``auto`` standardisation uses the unlabelled pool.

    Fine-tuning cells reuse these statistics (not their own subset's), so the backbone sees the same scale of
    inputs it was pretrained on. (None, None) for the raw features.
    """
    if not features:
        return None, None
    stats = compute_stats(pool, len(pool["mask"])) if needs_statistics(features) else None
    return stats, InputTransform.from_spec(features, stats)


def build_options(settings: dict) -> dict:
    """What a method's ``build`` gets: ``models.<model>`` merged with ``pretraining.methods.<method>``."""
    return {**settings["model_options"], **settings["method_options"]}


def pretrain_settings_for(cfg: dict, bid: str) -> tuple[dict, str]:
    settings = backbone_settings(cfg, parse_backbone_id(bid))
    return settings, settings_hash(settings)


class PretrainTask:
    """One backbone's pretraining objective on its unlabelled jets: the runner's :class:`~jetscale.train.task.Task`."""

    outputs = (paths.PRETRAIN_RECORD,)
    fits_once = False  # set by setup(): the method has a fit-once prepare step

    def __init__(self, cfg: dict, bid: str, splits_dir, out_dir: Path, *, pool_dir=None):
        self.cfg, self.name, self.splits_dir, self.out_dir, self.pool_dir = cfg, bid, splits_dir, out_dir, pool_dir
        self.settings, self.settings_hash = pretrain_settings_for(cfg, bid)
        self.identity = {"backbone_id": bid}
        self.p = self.settings["pretraining"]
        self.n_train = int(self.settings["n_pretrain"])
        self.seed = int(self.p["seed"])
        self.prepared: dict | None = None  # stats of the method's fit-once prepare step
        self.flops_per_jet: float | None = None  # measured by ready()

    def plan(self) -> RunPlan:
        """The recipe's fixed budget (``pretraining.compute``: hashes unchanged), warmup then cosine decay."""
        p, knobs = self.p, self.cfg["training"]
        batch_size = min(int(p["batch_size"]), self.n_train)
        budget = clamped_samples(self.n_train, **p["compute"])
        steps = max(1, math.ceil(budget / batch_size))
        every = max(1, int(p["eval_every_samples"]))
        return RunPlan(
            batch_size=batch_size,
            lr=float(p["lr"]),
            weight_decay=float(p["weight_decay"]),
            grad_clip=p.get("grad_clip"),
            stopping=StoppingPlan("fixed", budget, steps, every, None, cosine(steps, float(p["warmup_fraction"]))),
            keep_best=False,
            checkpoint_every_steps=int(pretraining_view(self.cfg["pretraining"]).checkpoint_every_steps),
            seed=self.seed,
            # training's DeepSpeed and compile; precision auto; an objective's loss leaves the classifier's head out
            engine=EngineOptions.from_training(
                {key: knobs[key] for key in ("deepspeed", "compile") if key in knobs},
                find_unused_parameters=True,
            ),
            batch_key="pretraining.batch_size",
        )

    def setup(self, device: torch.device, ranks) -> None:
        """The unlabelled jets (inputs only) and held-out validation jets, and the objective."""
        settings, splits_dir = self.settings, self.splits_dir
        self.device, self.ranks = device, ranks
        model_name, options = settings["model"], settings["model_options"]
        raw, self.pool_source = unlabelled_pool(settings, splits_dir, self.pool_dir)
        self.input_stats, self.transform = pool_input_transform(settings.get("inputs"), raw)
        self.arrays, self.info = prepare_inputs(
            model_name, options, raw["features"], raw["mask"], raw["vectors"], self.transform
        )
        val_size = int(json.loads(paths.split_meta(splits_dir).read_text())["sizes"]["val"])
        held = load_unlabelled(splits_dir, "val", min(int(self.p["eval_jets"]), val_size), tail=False)
        self.held_arrays, _ = prepare_inputs(
            model_name, options, held["features"], held["mask"], held["vectors"], self.transform
        )
        self.n_held = len(held["mask"])
        n_features = self.transform.n_features if self.transform is not None else int(raw["features"].shape[-1])
        self.module = method(settings["method"]).load()
        # build() gets the catalog model's options (so the backbone fits the classifier) + the method's own
        self.model = self.module.build(
            model_name,
            settings["width"],
            n_features,
            len(settings["classes"]),
            build_options(settings),
            self.seed,
            input_names=self.transform.names if self.transform is not None else None,
        ).to(device)
        self.fits_once = hasattr(self.module, "prepare")

    def checkpoint_problem(self, saved: dict) -> str | None:
        return None

    def fit_once(self) -> None:
        """The method's prepare step (K-means, VQ-VAE) on the unlabelled jets; what it fits is in the weights."""
        if self.fits_once:
            t0 = time.perf_counter()
            stats = self.module.prepare(self.model, self.arrays, self.seed) or {}
            self.prepared = {**plain(stats), "wall_time_s": round(time.perf_counter() - t0, 3)}

    def state_extras(self) -> dict:
        return {"prepare": self.prepared}

    def restore_extras(self, saved: dict) -> None:
        self.prepared = saved.get("prepare")

    def param_groups(self):
        return [q for q in self.model.parameters() if q.requires_grad]

    def lr_lambdas(self, schedule):
        return schedule

    def loss(self, module, rows: np.ndarray, device) -> torch.Tensor:
        batch = batch_tensors(self.arrays, rows, device)
        check_unlabelled(batch)
        loss, _extra = module(**batch)  # Objective.forward is its loss (so DDP and DeepSpeed see the call)
        return loss

    def prefetch(self, rows: np.ndarray) -> None:
        pass  # the pool's arrays are in memory

    def validate(self, module, autocast) -> Validation:
        return Validation(held_out_loss(module, self.held_arrays, self.device))

    def ready(self) -> None:
        """Measure the loss's forward FLOPs per jet (the objective works once prepared; a train-mode forward)."""
        sample = batch_tensors(self.held_arrays, slice(0, min(64, self.n_held)), self.device)
        self.flops_per_jet = measure_loss_flops(self.model, sample)

    def row_extras(self, state: TrainState) -> dict:
        return {"flops": 3.0 * self.flops_per_jet * state.position}

    def quality(self) -> dict | None:
        """A generative backbone (vq_gpt) is also judged by what it generates: token quality and W1 distances of
        sampled jets to the held-out validation jets (never trained on), under a fixed seed; as many generated
        jets as real ones (at least 200), so the W1 distances have comparable noise on both sides."""
        if not hasattr(self.module, "evaluate"):
            return None
        n_samples = max(200, self.n_held)
        return plain(self.module.evaluate(self.model.eval(), self.held_arrays, self.seed, n_samples=n_samples))

    def finish(self, outcome: RunOutcome) -> dict:
        """Judge a generative backbone by what it generates; write pretrain.json and backbone.pt (rank 0)."""
        wall = outcome.wall_s()
        with outcome.engine.gathered():  # ZeRO-3: the whole weights on every rank while they are read
            backbone = {k: v.detach().cpu().clone() for k, v in self.model.backbone_state_dict().items()}
            record = pretrain_record(self, outcome, backbone, wall_time_s=wall, quality=self.quality())
        if outcome.ranks.is_main:
            jio.write_json(self.out_dir / paths.PRETRAIN_RECORD, record)
            write_backbone(self.out_dir / paths.BACKBONE, backbone, self, self.input_stats)
        outcome.ranks.barrier()
        return record


def pretrain_backbone(
    cfg: dict,
    bid: str,
    splits_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    pool_dir: str | os.PathLike | None = None,
    progress: bool = False,
    stop_after_steps: int | None = None,
) -> dict:
    """Pretrain backbone ``bid`` (see :func:`jetscale.pretrain.plan.backbone_id`); return its record.

    ``pool_dir``: the ingested ``pretraining.pool`` (needed exactly when the config has one). Run by several
    data-parallel processes (``jetscale pretrain --processes N``), every rank returns the record and rank 0
    writes the files.
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    task = PretrainTask(cfg, bid, splits_dir, out_dir, pool_dir=pool_dir)
    device, ranks = start_process(cfg["training"])
    try:
        sinks = [CsvLog(out_dir / paths.PRETRAIN_LOG, (*LOG_COLUMNS, "flops"))]
        if ranks.is_main and (board := tensorboard_sink(out_dir)) is not None:
            sinks.append(board)
        runner = Runner(task, task.plan(), out_dir, device, ranks, t_start=t_start, sinks=sinks)
        return task.finish(runner.run(progress=progress, stop_after_steps=stop_after_steps))
    finally:
        ranks.close()


__all__ = ["PretrainTask", "pretrain_backbone", "load_unlabelled"]

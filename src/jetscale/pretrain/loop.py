"""One pretraining job: ``pretrain_backbone(cfg, backbone_id, splits_dir, out_dir)``.

The unlabelled pool is the *tail* of the training split: its last ``n_pretrain`` jets (features, mask and
four-vectors only: the labels file is never opened). The labelled n_train subsets are prefixes of the same
split, so with n_pretrain + n_train ≤ pool the fine-tuning jets are not among the pretraining jets either; the
validation and test splits are never pretrained on. With ``pretraining.pool`` the pool is other files instead,
ingested into ``results/data/pool/`` (:mod:`jetscale.data.pool_store`), and a backbone reads its *first*
``n_pretrain`` jets; the manifest's fingerprint must be the one in the backbone's settings. The pretraining loss is
also scored on up to
``pretraining.eval_jets`` validation jets (inputs only) as a held-out loss.

The recipe is the training loop's (``jetscale.train.loop``): AdamW, linear warmup then cosine decay
(:func:`~jetscale.train.loop.lr_lambda`), gradient clipping, the seeded :class:`~jetscale.train.loop.Sampler`
stream, the torch engine, atomic checkpoints with RNG states that resume bit-identically
(:mod:`jetscale.train.checkpoint`), stop-on-signal. Compute budget: jets seen = clamp(epochs × n_pretrain,
min_samples, max_samples) from ``pretraining.compute``. A method's fit-once ``prepare`` step (K-means, VQ-VAE)
runs before the first step and is stored in the objective's state, so a resumed job does not repeat it.

Outputs in ``out_dir`` (atomic):

* ``backbone.pt``: ``{"backbone": {name: tensor}, "settings_hash", "backbone_id", "method", "model", "width"}``
  (plain containers of tensors: loadable with ``torch.load(weights_only=True)``).
* ``pretrain.json``: the record (:func:`pretrain_record`): final training and held-out loss, parameters,
  measured FLOPs, jets seen, wall time, prepare stats, settings + hash.
* ``pretrain_log.csv``: ``step, samples, loss, lr, throughput, val_loss, flops`` (the loss curve; ``flops`` =
  measured training FLOPs so far, 3 × forward).
* ``checkpoint.pt`` while running; ``failure.json`` on a non-finite loss (:class:`~jetscale.errors.TrainingError`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from .. import io as jio
from .. import signals
from ..config import settings_hash
from ..data.pool_store import load_pool
from ..errors import DataError, TrainingError
from ..inputs.prepare import InputTransform
from ..inputs.spec import needs_statistics
from ..inputs.stats import compute_stats
from ..models.registry import batch_tensors, count_params, prepare_inputs
from ..train import checkpoint as ckpt
from ..train.distributed import Ranks, TorchEngine, resolve_device
from ..train.loop import Sampler, git_revision, lr_lambda, tune_allocator, versions, write_failure
from ..train.stopping import clamped_samples
from . import method
from .base import check_unlabelled
from .plan import backbone_id, backbone_settings, parse_backbone_id

LOG_COLUMNS = ("step", "samples", "loss", "lr", "throughput", "val_loss", "flops")
LOG_EVERY_STEPS = 10
EVAL_BATCH = 256
EVAL_SEED = 20261201  # held-out loss of a stochastic objective (masking) under one fixed RNG stream
BACKBONE_NAME = "backbone.pt"
RECORD_NAME = "pretrain.json"
UNLABELLED = ("features", "mask", "vectors")  # the only split arrays pretraining reads


def load_unlabelled(splits_dir: str | os.PathLike, split: str, n: int, *, tail: bool) -> dict[str, np.ndarray]:
    """``n`` jets of ``split`` (its last n when ``tail``, else its first n): inputs only, never labels."""
    root = Path(splits_dir)
    meta_path = root / "meta.json"
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

    ``pool_dir``: the ingested ``pretraining.pool`` (needed exactly when the config has one).
    """
    t_start = time.perf_counter()
    settings, shash = pretrain_settings_for(cfg, bid)
    p = settings["pretraining"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (RECORD_NAME, "failure.json"):
        (out_dir / stale).unlink(missing_ok=True)
    torch.set_num_threads(int(cfg["training"].get("threads", 1)))
    tune_allocator()
    device = resolve_device(cfg["training"].get("device", "auto"))
    seed = int(p["seed"])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    # data: inputs only -------------------------------------------------------------------------------
    model_name, options = settings["model"], settings["model_options"]
    n_pretrain = int(settings["n_pretrain"])
    raw, pool_source = unlabelled_pool(settings, splits_dir, pool_dir)
    input_stats, transform = pool_input_transform(settings.get("inputs"), raw)
    arrays, info = prepare_inputs(model_name, options, raw["features"], raw["mask"], raw["vectors"], transform)
    val_size = int(json.loads((Path(splits_dir) / "meta.json").read_text())["sizes"]["val"])
    held = load_unlabelled(splits_dir, "val", min(int(p["eval_jets"]), val_size), tail=False)
    held_arrays, _ = prepare_inputs(model_name, options, held["features"], held["mask"], held["vectors"], transform)
    n_held = len(held["mask"])
    n_features = transform.n_features if transform is not None else int(raw["features"].shape[-1])

    # objective, optimiser, schedule --------------------------------------------------------------------
    spec = method(settings["method"])
    module = spec.load()
    # build() gets the catalog model's options (so the backbone fits the classifier) + the method's own
    objective = module.build(
        model_name,
        settings["width"],
        n_features,
        len(settings["classes"]),
        build_options(settings),
        seed,
        input_names=transform.names if transform is not None else None,
    ).to(device)
    batch_size = min(int(p["batch_size"]), n_pretrain)
    budget = clamped_samples(n_pretrain, **p["compute"])  # a fixed budget: the recipe's, hashes unchanged
    total_steps = max(1, math.ceil(budget / batch_size))
    optimizer = torch.optim.AdamW(
        [q for q in objective.parameters() if q.requires_grad], lr=float(p["lr"]), weight_decay=float(p["weight_decay"])
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, float(p["warmup_fraction"])))
    ranks = Ranks(device=device)
    engine = TorchEngine(objective, optimizer, scheduler, p.get("grad_clip"), ranks, device.type == "cuda")
    sampler = Sampler(n_pretrain, seed)
    eval_every = max(1, int(p["eval_every_samples"]))
    ckpt_every = int(cfg["pretraining"].get("checkpoint_every_steps", 200))
    ckpt_path = out_dir / ckpt.CHECKPOINT_NAME

    state = {"step": 0, "position": 0, "log_rows": [], "elapsed": 0.0, "prepare": None, "last_val": None}
    resumed = ckpt.load_checkpoint(ckpt_path, shash)
    if resumed is not None and engine.load(out_dir, resumed):
        ckpt.set_rng_state(resumed["rng"])
        state.update({k: resumed[k] for k in state})
    elif hasattr(module, "prepare"):
        t0 = time.perf_counter()
        stats = module.prepare(objective, arrays, seed) or {}
        state["prepare"] = {**_plain(stats), "wall_time_s": round(time.perf_counter() - t0, 3)}

    sample = batch_tensors(held_arrays, slice(0, min(64, n_held)), device)
    flops_per_jet = measure_loss_flops(objective, sample)

    def save() -> None:
        ckpt.save_checkpoint(
            ckpt_path,
            {
                **state,
                "model": engine.full_state_dict(copy=False),
                "engine": engine.save(out_dir, f"step{state['step']}"),
                "rng": ckpt.rng_state(),
                "settings_hash": shash,
                "backbone_id": bid,
                "elapsed": state["elapsed"] + (time.perf_counter() - t_run),
            },
        )

    # loop --------------------------------------------------------------------------------------------
    t_run = time.perf_counter()
    running, running_steps, t_window = 0.0, 0, time.perf_counter()
    signals.REQUESTS.checkpoint = False
    objective.train()
    with signals.default_signals_stop():
        while state["step"] < total_steps:
            idx = sampler.batch(state["position"], batch_size)
            batch = batch_tensors(arrays, idx, device)
            check_unlabelled(batch)
            with engine.autocast():
                loss, _extra = objective.loss(batch)
            step_loss = float(loss.detach())
            if not math.isfinite(step_loss):
                reason = f"non-finite pretraining loss ({step_loss}) at step {state['step'] + 1}"
                write_failure(out_dir, reason, step=state["step"] + 1, backbone_id=bid, settings_hash=shash)
                raise TrainingError(f"{bid}: {reason}; see {out_dir / 'failure.json'}")
            engine.backward(loss)
            engine.step()
            state["step"] += 1
            state["position"] += len(idx)
            running, running_steps = running + step_loss, running_steps + 1
            evaluated = state["position"] // eval_every > (state["position"] - len(idx)) // eval_every
            last = state["step"] >= total_steps
            if evaluated or last or state["step"] % LOG_EVERY_STEPS == 0:
                now = time.perf_counter()
                row = {
                    "step": state["step"],
                    "samples": state["position"],
                    "loss": round(running / running_steps, 6),
                    "lr": float(f"{engine.scheduler.get_last_lr()[0]:.6g}"),
                    "throughput": round(running_steps * batch_size / max(now - t_window, 1e-9), 1),
                    "val_loss": None,
                    "flops": 3.0 * flops_per_jet * state["position"],
                }
                if evaluated or last:
                    state["last_val"] = row["val_loss"] = round(held_out_loss(objective, held_arrays, device), 6)
                state["log_rows"].append(row)
                running, running_steps, t_window = 0.0, 0, time.perf_counter()
            stop = signals.stop_requested()
            if state["step"] % ckpt_every == 0 or signals.REQUESTS.checkpoint or stop:
                save()
                signals.REQUESTS.checkpoint = False
                if stop:
                    raise ckpt.TrainingInterrupted(f"{bid}: stopped by {signals.stop_reason()}; rerun to resume")
            if stop_after_steps is not None and state["step"] >= stop_after_steps and not last:
                save()
                raise ckpt.TrainingInterrupted(f"{bid}: stopped after {state['step']} steps (stop_after_steps)")
    save()
    wall = state["elapsed"] + (time.perf_counter() - t_run)
    # A generative backbone (vq_gpt) is also judged by what it generates: token quality and W1 distances of
    # sampled jets to the held-out validation jets (never trained on), under a fixed seed; as many generated
    # jets as real ones (at least 200), so the W1 distances have comparable noise on both sides.
    quality = None
    if hasattr(module, "evaluate"):
        quality = _plain(module.evaluate(objective.eval(), held_arrays, seed, n_samples=max(200, n_held)))
    record = pretrain_record(
        bid=bid,
        settings=settings,
        shash=shash,
        objective=objective,
        state=state,
        flops_per_jet=flops_per_jet,
        budget=budget,
        total_steps=total_steps,
        batch_size=batch_size,
        wall_time_s=wall,
        setup_s=t_run - t_start,
        info=info,
        n_held=n_held,
        device=device,
        inputs=transform.record() if transform is not None else None,
        pool_source=pool_source,
        quality=quality,
    )
    write_log(out_dir / "pretrain_log.csv", state["log_rows"])
    jio.write_json(out_dir / RECORD_NAME, record)
    backbone = {k: v.detach().cpu().clone() for k, v in objective.backbone_state_dict().items()}
    with jio.atomic_path(out_dir / BACKBONE_NAME) as tmp:
        torch.save(
            {
                "backbone": backbone,
                "settings_hash": shash,
                "backbone_id": bid,
                "method": settings["method"],
                "model": model_name,
                "width": settings["width"],
                "input_stats": input_stats,
            },
            tmp,
        )
    return record


@torch.no_grad()
def held_out_loss(objective, arrays: dict[str, np.ndarray], device) -> float:
    """Jet-weighted mean pretraining loss on the held-out jets, under a fixed RNG stream (same masks each time)."""
    was = objective.training
    objective.eval()
    n = len(next(iter(arrays.values())))
    total = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EVAL_SEED)
        for start in range(0, n, EVAL_BATCH):
            rows = slice(start, min(n, start + EVAL_BATCH))
            loss, _ = objective.loss(batch_tensors(arrays, rows, device))
            total += float(loss) * (rows.stop - rows.start)
    objective.train(was)
    return total / n


def measure_loss_flops(objective, batch: dict[str, torch.Tensor]) -> float:
    """Forward FLOPs per jet of the pretraining loss, counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    n = next(iter(batch.values())).shape[0]
    with torch.no_grad(), torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as counter:
        objective.loss(batch)
    return counter.get_total_flops() / n


def write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in LOG_COLUMNS})
    jio.write_text(path, buf.getvalue())


def _plain(value):
    """JSON-able copy of a prepare() stats dict (tensors/arrays to lists, numpy scalars to floats)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor | np.ndarray):
        return np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def pretrain_record(
    *,
    bid,
    settings,
    shash,
    objective,
    state,
    flops_per_jet,
    budget,
    total_steps,
    batch_size,
    wall_time_s,
    setup_s,
    info,
    n_held,
    device,
    inputs,
    pool_source,
    quality=None,
) -> dict:
    """``pretrain.json``: losses in the objective's own units (nats per target for cross-entropies)."""
    rows = state["log_rows"]
    samples = int(state["position"])
    backbone = objective.backbone_state_dict()
    return {
        "status": "ok",
        "backbone_id": bid,
        "method": settings["method"],
        "model": settings["model"],
        "width": settings["width"],
        "n_pretrain": settings["n_pretrain"],
        "final_loss": rows[-1]["loss"] if rows else None,
        "final_val_loss": state["last_val"],
        "n_params": count_params(objective),
        "n_backbone_params": int(
            sum(v.numel() for k, v in backbone.items() if v.is_floating_point() and "running_" not in k)
        ),
        "flops_per_jet": flops_per_jet,
        "train_flops": 3.0 * flops_per_jet * samples,
        "samples_seen": samples,
        "samples_budget": budget,
        "epochs_seen": samples / settings["n_pretrain"],
        "steps": int(state["step"]),
        "steps_budget": total_steps,
        "batch_size": batch_size,
        "n_held_out": n_held,
        "pool": {**pool_source, "n_jets": info.get("n_jets")},  # where the unlabelled jets came from
        "prepare": state["prepare"],
        "inputs": inputs,  # the resolved input spec (centres/scales of the pool); None = raw features
        "quality": quality,  # generative backbones: token quality, W1 of generated (and reconstructed) jets
        "wall_time_s": round(wall_time_s, 3),
        "setup_time_s": round(setup_s, 3),
        "hardware": {"device": device.type, "threads": torch.get_num_threads()},
        "versions": versions(),
        "git_revision": git_revision(),
        "settings": settings,
        "settings_hash": shash,
        "finished_at": datetime.now(UTC).isoformat(),
    }


__all__ = ["pretrain_backbone", "load_unlabelled", "backbone_id", "BACKBONE_NAME", "RECORD_NAME"]

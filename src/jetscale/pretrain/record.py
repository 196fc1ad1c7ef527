"""A pretraining job's outputs: ``pretrain.json`` (:class:`PretrainRecord`), ``backbone.pt``, and the measurements
they hold (the held-out loss under a fixed RNG stream, the FLOPs of the loss)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import io as jio
from ..models.registry import batch_tensors, count_params
from ..provenance import git_revision
from ..records import Record
from ..train.record import run_fields

EVAL_BATCH = 256
EVAL_SEED = 20261201  # held-out loss of a stochastic objective (masking) under one fixed RNG stream


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


def plain(value):
    """JSON-able copy of a prepare() stats dict (tensors/arrays to lists, numpy scalars to floats)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor | np.ndarray):
        return np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True, kw_only=True)
class PretrainRecord(Record):
    """``pretrain.json``: losses in the objective's own units (nats per target for cross-entropies). Read by the
    pretraining tables (:mod:`jetscale.pretrain.tables`), fine-tuning and the report."""

    status: str = "ok"
    backbone_id: str
    method: str
    model: str
    width: Any
    n_pretrain: int
    final_loss: float | None  # training loss, last log window
    final_val_loss: float | None  # held-out jets
    n_params: int
    n_backbone_params: int
    flops_per_jet: float
    train_flops: float
    samples_seen: int
    samples_budget: int | None
    epochs_seen: float
    steps: int
    steps_budget: int | None
    batch_size: int
    n_held_out: int
    pool: dict  # where the unlabelled jets came from
    prepare: Any
    inputs: Any  # the resolved input spec (centres/scales of the pool); None = raw features
    quality: dict | None  # generative backbones: token quality, W1 of generated (and reconstructed) jets
    wall_time_s: float
    setup_time_s: float
    hardware: dict
    versions: dict
    git_revision: str | None
    settings: dict
    settings_hash: str
    finished_at: str


def pretrain_record(task, outcome, backbone: dict[str, torch.Tensor], *, wall_time_s: float, quality=None) -> dict:
    """The job's ``pretrain.json`` object (:class:`PretrainRecord`)."""
    settings, state = task.settings, outcome.state
    rows = state.log_rows
    return PretrainRecord(
        **run_fields(outcome, task.flops_per_jet, settings["n_pretrain"]),
        backbone_id=task.name,
        method=settings["method"],
        model=settings["model"],
        width=settings["width"],
        n_pretrain=settings["n_pretrain"],
        final_loss=rows[-1]["loss"] if rows else None,
        final_val_loss=round(state.last_val, 6) if state.last_val is not None else None,
        n_params=count_params(task.model),
        n_backbone_params=int(
            sum(v.numel() for k, v in backbone.items() if v.is_floating_point() and "running_" not in k)
        ),
        n_held_out=task.n_held,
        pool={**task.pool_source, "n_jets": task.info.get("n_jets")},
        prepare=task.prepared,
        inputs=task.transform.record() if task.transform is not None else None,
        quality=quality,
        wall_time_s=round(wall_time_s, 3),
        git_revision=git_revision(),
        settings=settings,
        settings_hash=task.settings_hash,
        finished_at=datetime.now(UTC).isoformat(),
    ).to_json()


def write_backbone(path: Path, backbone: dict[str, torch.Tensor], task, input_stats) -> None:
    """``backbone.pt``: plain containers of tensors (loadable with ``torch.load(weights_only=True)``)."""
    settings = task.settings
    with jio.atomic_path(path) as tmp:
        torch.save(
            {
                "backbone": backbone,
                "settings_hash": task.settings_hash,
                "backbone_id": task.name,
                "method": settings["method"],
                "model": settings["model"],
                "width": settings["width"],
                "input_stats": input_stats,
            },
            tmp,
        )

"""A pretraining job's outputs: ``pretrain.json`` (:func:`pretrain_record`), ``backbone.pt``, and the measurements
they hold (the held-out loss under a fixed RNG stream, the FLOPs of the loss)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from .. import io as jio
from ..models.registry import batch_tensors, count_params
from ..provenance import git_revision, hardware, versions

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


def pretrain_record(task, outcome, backbone: dict[str, torch.Tensor], *, wall_time_s: float, quality=None) -> dict:
    """``pretrain.json``: losses in the objective's own units (nats per target for cross-entropies)."""
    settings, state, plan = task.settings, outcome.state, outcome.plan
    rows = state.log_rows
    samples = int(state.position)
    return {
        "status": "ok",
        "backbone_id": task.name,
        "method": settings["method"],
        "model": settings["model"],
        "width": settings["width"],
        "n_pretrain": settings["n_pretrain"],
        "final_loss": rows[-1]["loss"] if rows else None,
        "final_val_loss": round(state.last_val, 6) if state.last_val is not None else None,
        "n_params": count_params(task.model),
        "n_backbone_params": int(
            sum(v.numel() for k, v in backbone.items() if v.is_floating_point() and "running_" not in k)
        ),
        "flops_per_jet": task.flops_per_jet,
        "train_flops": 3.0 * task.flops_per_jet * samples,
        "samples_seen": samples,
        "samples_budget": plan.max_samples,
        "epochs_seen": samples / settings["n_pretrain"],
        "steps": int(state.step),
        "steps_budget": plan.total_steps,
        "batch_size": plan.batch_size,
        "n_held_out": task.n_held,
        "pool": {**task.pool_source, "n_jets": task.info.get("n_jets")},  # where the unlabelled jets came from
        "prepare": task.prepared,
        # the resolved input spec (centres/scales of the pool); None = raw features
        "inputs": task.transform.record() if task.transform is not None else None,
        "quality": quality,  # generative backbones: token quality, W1 of generated (and reconstructed) jets
        "wall_time_s": round(wall_time_s, 3),
        "setup_time_s": round(outcome.setup_s, 3),
        "hardware": hardware(outcome.device, torch.get_num_threads(), outcome.engine, outcome.ranks),
        "versions": versions(outcome.engine.name),
        "git_revision": git_revision(),
        "settings": settings,
        "settings_hash": task.settings_hash,
        "finished_at": datetime.now(UTC).isoformat(),
    }


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

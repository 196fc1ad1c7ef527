"""``metrics.json``, a trained or fitted cell's record: :class:`MetricsRecord` declares its keys once.

Written by a network cell (:func:`jetscale.train.classifier.metrics_record`) and by a fitted model's cell
(:mod:`jetscale.train.fitted`, the ``bdt`` baseline), with the same keys: a field that does not apply to a fitted
model is null, never made up. Losses are mean cross-entropy in nats, accuracies fractions; ``stopped_by`` says
whether the validation loss converged or the budget ended the run. Read by collect (``RUN_COLUMNS``, val scores,
``settings_hash``), status, export and evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..provenance import git_revision
from ..records import ABSENT, Record


@dataclass(frozen=True, kw_only=True)
class MetricsRecord(Record):
    status: str = "ok"
    cell_id: str
    cell: dict
    model: str
    width: Any
    n_train: int
    compute: Any
    seed: int
    val_loss: float
    val_accuracy: float
    test_loss: float
    test_accuracy: float
    n_params: int | None
    flops_per_jet: float | None
    train_flops: float | None
    samples_seen: int | None
    samples_budget: int | None
    epochs_seen: float | None
    steps: int | None
    steps_budget: int | None
    batch_size: int | None
    best_step: int | None
    stopped_by: str
    fit: Any = ABSENT  # a fitted model: library, rounds run, best round, max_rounds, fit seconds
    wall_time_s: float
    setup_time_s: float
    n_val: int
    n_test: int
    truncated_jets: dict | None
    hardware: dict
    versions: dict
    git_revision: str | None
    data: dict  # the splits' sizes and particle count
    inputs: dict | None  # the resolved input spec; None = raw features
    settings: dict
    settings_hash: str
    finished_at: str
    input_fit: Any = ABSENT  # the model's fit-once step (ModelSpec.fit_inputs), e.g. vq_gpt's tokenizer
    backbone_id: Any = ABSENT  # a fine-tuned cell: its pretrained backbone
    trainable_params: Any = ABSENT  # a fine-tuned cell: parameters not frozen


def scored_fields(cell_id: str, cell: dict, settings: dict, settings_hash: str, val, test, meta: dict) -> dict:
    """The keys every cell's record fills alike, network or fitted: the cell, its settings and hash, the
    (loss, accuracy) of the validation and test sets, the splits' sizes, the time it finished, the revision."""
    return dict(
        cell_id=cell_id,
        cell=cell,
        model=settings["model"],
        n_train=settings["n_train"],
        seed=settings["seed"],
        val_loss=val[0],
        val_accuracy=val[1],
        test_loss=test[0],
        test_accuracy=test[1],
        data={k: meta[k] for k in ("sizes", "n_particles") if k in meta},
        settings=settings,
        settings_hash=settings_hash,
        finished_at=datetime.now(UTC).isoformat(),
        git_revision=git_revision(),
    )


def run_fields(outcome, flops_per_jet: float, n_data: int) -> dict:
    """The keys a job trained by the runner fills from its :class:`~.task.RunOutcome` (a classifier cell's
    ``metrics.json``, a backbone's ``pretrain.json``): samples and steps against their budget, epochs over its
    ``n_data`` jets, training FLOPs (3 × forward FLOPs per jet × samples seen), set-up time and hardware."""
    import torch

    from ..provenance import hardware, versions

    state, plan = outcome.state, outcome.plan
    samples = int(state.position)
    return dict(
        flops_per_jet=flops_per_jet,
        train_flops=3.0 * flops_per_jet * samples,
        samples_seen=samples,
        samples_budget=plan.max_samples,
        epochs_seen=samples / n_data,
        steps=int(state.step),
        steps_budget=plan.total_steps,
        batch_size=plan.batch_size,
        setup_time_s=round(outcome.setup_s, 3),
        hardware=hardware(outcome.device, torch.get_num_threads(), outcome.engine, outcome.ranks),
        versions=versions(outcome.engine.name),
    )

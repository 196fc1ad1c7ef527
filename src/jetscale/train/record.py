"""``metrics.json``, a trained or fitted cell's record: :class:`MetricsRecord` declares its keys once.

Written by a network cell (:func:`jetscale.train.classifier.metrics_record`) and by a fitted model's cell
(:mod:`jetscale.train.fitted`, the ``bdt`` baseline), with the same keys: a field that does not apply to a fitted
model is null, never made up. Losses are mean cross-entropy in nats, accuracies fractions; ``stopped_by`` says
whether the validation loss converged or the budget ended the run. Read by collect (``RUN_COLUMNS``, val scores,
``settings_hash``), status, export and evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

"""Train one grid cell: ``train_cell(cfg, cell_id, splits_dir, out_dir)``.

``train_cell`` sets up the process (threads, device, ranks) and runs the cell's
:class:`~jetscale.train.classifier.ClassifierTask` on the one training loop,
:class:`~jetscale.train.runner.Runner`, which resumes from the checkpoint; the task then scores the best
weights and writes the outputs.

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

* ``metrics.json``: the keys are :class:`jetscale.train.record.MetricsRecord`'s.
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

import os
import time
from pathlib import Path

from .. import paths
from ..grid import parse_cell_id
from ..models import catalog


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

    A fitted model's cell (catalog kind "fitted", the ``bdt`` baseline) is fitted by
    :func:`jetscale.train.fitted.train_fitted` instead (no gradient steps: the options below do not apply).

    A fine-tuning cell (``pretrain~<method>``) first loads the pretrained backbone its id names from
    ``backbone`` (default: its place under ``results/pretrain/``); see :mod:`jetscale.pretrain.finetune`.

    Resumes from ``out_dir/checkpoint.pt`` when it belongs to the same resolved settings. ``stop_after_steps``
    simulates a preemption (checkpoint + :class:`~jetscale.train.checkpoint.TrainingInterrupted` once that
    many steps are done); launchers use :func:`jetscale.signals.checkpoint_now` or signals instead.
    Run by several data-parallel processes (see :mod:`jetscale.train.distributed`), every rank returns the
    record and rank 0 writes the files.
    """
    if catalog.is_fitted(parse_cell_id(cfg, cell_id)["model"]):  # fitted, not trained by gradient steps
        from .fitted import train_fitted

        return train_fitted(cfg, cell_id, splits_dir, out_dir)
    # torch (seconds) only for a network cell, a fitted cell's process never imports it; imported before the
    # run's clock starts, as when this module imported it (wall_time_s is the run's, not the interpreter's)
    from .classifier import ClassifierTask
    from .outputs import CsvLog
    from .runner import Runner, start_process
    from .tensorboard import tensorboard_sink

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    task = ClassifierTask(cfg, cell_id, Path(splits_dir), out_dir, backbone=backbone)
    device, ranks = start_process(cfg["training"])
    try:
        sinks = [CsvLog(out_dir / paths.TRAIN_LOG)]
        if ranks.is_main and (board := tensorboard_sink(out_dir)) is not None:
            sinks.append(board)
        runner = Runner(task, task.plan(), out_dir, device, ranks, t_start=t_start, sinks=sinks)
        outcome = runner.run(progress=progress, stop_after_steps=stop_after_steps)
        return task.finish(outcome)
    finally:
        ranks.close()

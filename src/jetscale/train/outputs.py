"""A cell's output files besides ``metrics.json``, without torch: the run's CSV log, the test set's
``predictions.parquet``, and the loss and accuracy of scored probabilities.

Network cells (:mod:`.classifier`, :mod:`.runner`) and fitted cells (:mod:`.fitted`, the ``bdt`` baseline) write
them the same way; a fitted cell's process never imports torch (~0.8 s of every such job).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .. import io as jio

LOG_COLUMNS = ("step", "samples", "loss", "lr", "throughput", "val_loss")


class CsvLog:
    """The run's CSV log (``train_log.csv``, ``pretrain_log.csv``), rewritten whole and atomically at the end."""

    def __init__(self, path: Path, columns: tuple[str, ...] = LOG_COLUMNS):
        self.path, self.columns = Path(path), columns

    def add(self, row: dict) -> None:
        pass

    def close(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in self.columns})
        jio.write_text(self.path, buf.getvalue())


def loss_and_accuracy(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy of class probabilities ``probs`` (n, classes) for ``labels``."""
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)
    return float(-np.log(p).mean()), float((probs.argmax(axis=1) == labels).mean())


def write_predictions(
    path: Path, jet_id: np.ndarray, labels: np.ndarray, probs: np.ndarray, classes: list[str]
) -> None:
    """``predictions.parquet``: ``jet_id``, ``label``, ``score_<class>`` (float32), one row per jet, atomically."""
    import pandas as pd

    frame = pd.DataFrame({"jet_id": jet_id.astype(np.int64), "label": labels.astype(np.int64)})
    for i, name in enumerate(classes):
        frame[f"score_{name}"] = probs[:, i].astype(np.float32)
    with jio.atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)

"""TensorBoard event files of a run (optional): a row sink of the Runner beside the CSV log.

Under ``<run>/tensorboard/`` of every classifier run and every pretraining job (so ``tensorboard --logdir
results/`` shows every cell and backbone, named by its run path): ``train/loss``, ``val/loss`` and the task's other
held-out scalars a row holds (a classifier's ``val/accuracy``), ``lr`` and ``jets_per_s`` against the training
jets seen. The CSV log stays the source of truth. Each run writes a fresh event file (TensorBoard's
writer names it by time, host and process), never through a link: a ``tensorboard`` directory that is a link
is replaced by a real one. Without the ``tensorboard`` package nothing is written, said once per process.
"""

from __future__ import annotations

import sys
from pathlib import Path

DIRNAME = "tensorboard"
_SAID = False


class TensorBoardLog:
    def __init__(self, writer):
        self.writer = writer

    def add(self, row: dict) -> None:
        x = int(row.get("samples") or row.get("step") or 0)
        scalars = {"train/loss": row.get("loss"), "lr": row.get("lr"), "jets_per_s": row.get("throughput")}
        scalars |= {f"val/{k[4:]}": v for k, v in row.items() if k.startswith("val_")}
        for tag, value in scalars.items():
            if value is not None:
                self.writer.add_scalar(tag, float(value), x)
        self.writer.flush()

    def close(self, rows: list[dict]) -> None:
        self.writer.close()


def tensorboard_sink(run_dir: Path) -> TensorBoardLog | None:
    """The sink for ``run_dir``, or None (said once) when the tensorboard package is absent."""
    global _SAID
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _SAID:
            print(
                "jetscale: tensorboard is not installed; no TensorBoard event files (train_log.csv has it all)",
                file=sys.stderr,
            )
            _SAID = True
        return None
    directory = Path(run_dir) / DIRNAME
    if directory.is_symlink():
        directory.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    return TensorBoardLog(SummaryWriter(log_dir=str(directory)))

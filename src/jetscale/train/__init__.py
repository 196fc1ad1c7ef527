"""Training: the one training loop (runner.py, its contract in task.py) and what it trains for a grid cell
(classifier.py; ``train_cell`` in loop.py is the entry), how long a cell trains (stopping.py), atomic checkpoints
(checkpoint.py), the DeepSpeed / plain-torch engine (distributed.py) and the ``jetscale train`` command (cli.py).

Importing this package does not import torch; the names below load lazily.
"""

from __future__ import annotations

__all__ = ["train_cell", "checkpoint_now", "TrainingInterrupted"]  # stop protocol: jetscale.signals


def __getattr__(name):
    if name == "train_cell":
        from .loop import train_cell

        return train_cell
    if name == "checkpoint_now":
        from ..signals import checkpoint_now

        return checkpoint_now
    if name == "TrainingInterrupted":
        from .checkpoint import TrainingInterrupted

        return TrainingInterrupted
    raise AttributeError(name)

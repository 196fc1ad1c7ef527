"""Writing large .npy outputs without mapping them: the split writer's and the pool writer's shared helpers.

A file written through one map for a whole build keeps every written page mapped in the writing process (and
dirty until the kernel writes it back), as many bytes as the file, counted against a batch job's memory limit.
Arrays written in row order go through plain sequential writes instead (:class:`NpyWriter`): the pages are the
page cache's, written back by the kernel as any file written in sequence. The bytes are those of ``np.save``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np


class NpyWriter:
    """An .npy file of ``shape`` and ``dtype`` written from its consecutive row chunks (``write``), in order.

    Closing checks that exactly ``shape[0]`` rows were written (a short file would read as garbage)."""

    def __init__(self, path: Path, shape: tuple, dtype):
        from numpy.lib import format as npy

        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self.rows = 0
        self._file = open(self.path, "wb")
        header = {"descr": npy.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        npy.write_array_header_1_0(self._file, header)

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, self.dtype)
        if chunk.shape[1:] != self.shape[1:] or self.rows + len(chunk) > self.shape[0]:
            raise ValueError(f"{self.path}: rows of shape {chunk.shape} do not fit {self.shape} after {self.rows}")
        self._file.write(memoryview(chunk.reshape(-1)).cast("B"))  # no copy of the chunk
        self.rows += len(chunk)

    def close(self) -> None:
        self._file.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path}: {self.rows} rows written, its header says {self.shape[0]}")

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.close()
        else:  # the caller's error is the one to see; the directory is discarded anyway
            self._file.close()


def write_in_order(path: Path, chunks, shape: tuple, dtype) -> None:
    """An .npy file of ``shape`` and ``dtype`` from its consecutive row chunks (sequential writes)."""
    with NpyWriter(path, shape, dtype) as out:
        for chunk in chunks:
            out.write(chunk)


def replace_dir(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final``, replacing an existing directory (old one moved aside, then deleted)."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

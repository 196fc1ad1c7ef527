"""Page-cache advice for memory-mapped split rows read at scattered positions (a training split streamed from
storage): no read-around per fault (:func:`advise_random_rows`), a batch's reads queued at once
(:func:`prefetch_rows`) unless its rows are cached (:func:`rows_cached`), and its pages mapped ahead by another
thread (:func:`populate_rows`). Each is a no-op, or says False, where the platform offers no such call."""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
from collections.abc import Mapping

import numpy as np


def advise_random_rows(arrays: Mapping[str, np.ndarray]) -> None:
    """Tell the kernel that ``arrays``' maps are read at scattered rows (a training split's batches): a page fault
    then reads that page alone, not the read-around window (128 kB) meant for sequential reads, most of which a
    batch never uses (at 1M jets, 5 GB of a split's pages resident for 0.6 GB of rows drawn). Not for sequential
    scans (statistics, scoring), which need the read-ahead. A no-op where the maps offer no advice."""
    for arr in arrays.values():
        mapped = getattr(arr, "_mmap", None)  # np.memmap's map, shared by its slices
        if mapped is not None and hasattr(mapped, "madvise"):
            mapped.madvise(mmap.MADV_RANDOM)


CACHE_SAMPLE_ROWS = 16  # rows of a batch whose first page is looked up before its reads are queued


def rows_cached(arr: np.ndarray, rows: np.ndarray, sample: int = CACHE_SAMPLE_ROWS) -> bool:
    """Whether ``rows`` of the memory-mapped ``arr`` are in the page cache, judged by the first page of an evenly
    spaced ``sample`` of them (mincore: about 2 us a row). A split in memory (warm, or small) then needs no reads
    queued (:func:`prefetch_rows` costs about 1 us a row even when nothing is read). False where it cannot be
    asked (no mincore)."""
    mincore = _libc("mincore", ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte))
    if mincore is None or not len(rows):
        return False
    page = mmap.PAGESIZE
    picks = np.asarray(rows)[np.linspace(0, len(rows) - 1, min(sample, len(rows))).astype(np.int64)]
    first, stride = arr.ctypes.data, arr.strides[0]
    resident = (ctypes.c_ubyte * 1)()
    for row in picks.tolist():
        if mincore((first + row * stride) & ~(page - 1), page, resident) != 0 or not resident[0] & 1:
            return False
    return True


def prefetch_rows(arr: np.ndarray, rows: np.ndarray, row_bytes: int | None = None) -> None:
    """Queue reads of the first ``row_bytes`` (default: all) of each of ``rows`` of the memory-mapped ``arr``,
    all at once (POSIX_FADV_WILLNEED per row), before they are read. Without read-around a page fault reads one
    page and waits for it: a batch of scattered rows read fault after fault pays the disk's latency per page,
    queued together it arrives at the disk's parallel rate. A cached row costs a lookup (about 1 us). ``arr``: a
    split's map or its first rows (:func:`load_split`'s arrays: a memmap's ``offset`` is its first row's). A no-op
    for an array not mapped from a file."""
    filename = getattr(arr, "filename", None)
    if filename is None or not hasattr(os, "posix_fadvise"):
        return
    stride = arr.strides[0]
    nbytes = stride if row_bytes is None else row_bytes
    fd = os.open(filename, os.O_RDONLY)
    try:
        for offset in (arr.offset + np.asarray(rows, np.int64) * stride).tolist():
            os.posix_fadvise(fd, offset, nbytes, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)


MADV_POPULATE_READ = 22  # Linux 5.14+: fault a range's pages in (reading them if needed); not in Python 3.11's mmap


def populate_rows(arr: np.ndarray, rows: np.ndarray, row_bytes: int | None = None) -> bool:
    """Map the pages of the first ``row_bytes`` (default: all) of each of ``rows`` of the memory-mapped ``arr``
    into this process now (MADV_POPULATE_READ per row, waiting for any read), so that reading them later takes no
    page fault: a second thread can take that cost off the one preparing batches (about 10 ms a batch of 512
    rows, even with every page in the page cache). The GIL is released meanwhile. False where the kernel or the
    platform has no such advice."""
    madvise = _libc("madvise", ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if madvise is None or not len(rows):
        return False
    page = mmap.PAGESIZE
    stride = arr.strides[0]
    nbytes = stride if row_bytes is None else row_bytes
    for start in (arr.ctypes.data + np.asarray(rows, np.int64) * stride).tolist():
        first = start & ~(page - 1)
        if madvise(first, start + nbytes - first, MADV_POPULATE_READ) != 0:
            return False
    return True


@functools.cache
def _libc(name: str, *argtypes):
    """libc's function ``name`` (returning int, with ``argtypes``), or None where there is none."""
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = list(argtypes)
    function.restype = ctypes.c_int
    return function

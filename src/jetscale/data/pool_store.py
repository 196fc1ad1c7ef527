"""The ingested pretraining pool, ``results/data/pool/``: written by ``jetscale ingest-pool``, read by pretraining.

The ``pretraining.pool`` files go through the ingest mapping with ``labels=False`` (no label branch is needed or
read) into the layout of a split's inputs: ``features.npy`` float32 (n, P, 19), ``mask.npy`` bool (n, P),
``vectors.npy`` float32 (n, P, 4), energy-ordered and padded or cut at ``data.n_particles`` exactly as the
labelled splits (:func:`jetscale.data.splits.pad`); jets in file order (files in glob order). ``manifest.json``
(:mod:`jetscale.data.manifest`: each file's path, size, SHA-256 and their fingerprint) also records the mapping,
``n_jets``, ``n_particles`` and ``truncated_jets``. The directory is built aside and renamed into place, so it is
complete or absent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import write_json
from .ingest import check_input, convert, count_entries, iter_branches, load_mapping
from .manifest import MANIFEST, manifest, read_manifest
from .npy_out import NpyWriter, replace_dir
from .schema import FEATURE_NAMES, VECTOR_NAMES
from .splits import pad

POOL_ARRAYS = ("features", "mask", "vectors")
# padded bytes of one ingest chunk: its awkward intermediates take a few times more, and the whole must stay
# within a job's memory request (resources.default, 2-4 GB); 100k jets at 128 slots peaked at 5 GB private
CHUNK_BYTES = 256 * 2**20


def chunk_jets(n_particles: int) -> int:
    """Jets per ingest chunk: as many as pad to :data:`CHUNK_BYTES` (features and vectors float32, the mask)."""
    per_jet = n_particles * ((len(FEATURE_NAMES) + len(VECTOR_NAMES)) * 4 + 1)
    return max(1000, CHUNK_BYTES // per_jet)


def ingest_pool(files, mapping: str, out_dir, *, n_particles: int, step: int | None = None) -> dict:
    """Write ``out_dir`` from ``files`` through ``mapping`` (a shipped name or a YAML path); return the manifest.
    ``step``: jets converted at once (default :func:`chunk_jets`); the files do not depend on it."""
    step = chunk_jets(n_particles) if step is None else step
    spec = load_mapping(mapping, labels=False)
    files = [Path(f) for f in files]
    if not files:
        raise DataError("ingest-pool: no input files")
    for path in files:  # fail before any work is done
        check_input(path, spec, labels=False)
    entries = [count_entries(path, spec) for path in files]
    total = sum(entries)
    if total == 0:
        raise DataError(f"ingest-pool: the files {[str(f) for f in files[:3]]} hold no jets")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        truncated = _write_arrays(tmp, files, entries, spec, n_particles, step)
        record = manifest(
            files,
            mapping=mapping,
            n_jets=total,
            n_particles=n_particles,
            truncated_jets=truncated,
            filled_zero=list(spec.get("fill_zero") or []),
            derived=list(spec.get("derive") or []),
        )
        write_json(tmp / MANIFEST, record)
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def _write_arrays(root: Path, files: list[Path], entries: list[int], spec: dict, n_particles: int, step: int) -> int:
    """Stream every file into the arrays, chunk by chunk in file order; return the number of truncated jets.

    Jets arrive in output order, so each array is written in sequence (:class:`NpyWriter`): memory ~ one chunk,
    and no page of the output is mapped in this process (one map per file for the whole build kept every written
    page mapped, and dirty until written back, as many bytes as the pool)."""
    total = sum(entries)
    shapes = {
        "features": ((total, n_particles, len(FEATURE_NAMES)), np.float32),
        "mask": ((total, n_particles), np.bool_),
        "vectors": ((total, n_particles, len(VECTOR_NAMES)), np.float32),
    }
    row, truncated = 0, 0
    with contextlib.ExitStack() as stack:
        out = {name: stack.enter_context(NpyWriter(root / f"{name}.npy", sh, dt)) for name, (sh, dt) in shapes.items()}
        for path, expected in zip(files, entries, strict=True):
            first = row
            for start, branches in iter_branches(path, spec, step, labels=False):
                table, _ = convert(branches, spec, None, str(path), start)
                if row + len(table) > total:
                    raise DataError(f"{path}: holds more jets than its metadata says ({expected})")
                dense = pad(table, n_particles)
                for name in POOL_ARRAYS:
                    out[name].write(dense[name])
                truncated += int((table.counts > n_particles).sum())
                row += len(table)
            if row - first != expected:
                raise DataError(f"{path}: read {row - first} jets, its metadata says {expected}")
            print(f"{path}: {expected} unlabelled jets", file=sys.stderr)
    return truncated


def load_pool(pool_dir, n: int, *, expect: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """(the first ``n`` jets' features, mask and vectors, the pool's manifest); the pool holds no labels.

    ``expect``: manifest values the caller's settings assume (fingerprint, mapping, n_particles); a mismatch means
    the directory was ingested from other files or with other settings, a DataError naming the key.
    """
    root = Path(pool_dir)
    recorded = read_manifest(root)
    if recorded is None:
        raise DataError(f"{root}: no pool {MANIFEST} (an incomplete or missing pool; run `jetscale ingest-pool`)")
    for key, want in (expect or {}).items():
        if recorded.get(key) != want:
            raise DataError(
                f"{root}: the pool was ingested with {key} {recorded.get(key)!r}, the settings say {want!r}; "
                "rerun `jetscale ingest-pool`"
            )
    size = int(recorded["n_jets"])
    if n > size:
        raise DataError(
            f"{root}: n_pretrain {n} exceeds the {size} jets of the pretraining pool (pretraining.pool.paths); "
            "lower grid.axes.n_pretrain or add files to pretraining.pool.paths"
        )
    arrays = {}
    for name in POOL_ARRAYS:
        path = root / f"{name}.npy"
        try:
            arr = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path}: unreadable pool array ({exc}); rerun `jetscale ingest-pool`") from None
        if len(arr) != size:
            raise DataError(f"{path}: {len(arr)} rows, {MANIFEST} says {size}; rerun `jetscale ingest-pool`")
        arrays[name] = np.asarray(arr[:n])
    return arrays, recorded

"""Train/val/test splits as padded, energy-ordered, memory-mappable arrays.

One class-balanced pool is drawn from all shards (every class cut to the rarest class's count, each class
shuffled with ``seed``). The first ``val_per_class`` jets of each class form the validation set, the next
``test_per_class`` the test set, and the rest the training pool. Every split is interleaved round by round (one
jet of each class per round, in a random class order), so *every prefix* of the training pool is class-balanced
to within one jet per class: the n_train subsets are nested prefixes (the 1k set is inside the 10k set) and the
val/test sets are the same for every cell of the study.

Layout of ``splits_dir`` (written atomically: built in a temporary directory, then renamed)::

    meta.json                   classes, features, vectors, n_particles, sizes, truncated_jets, data_fingerprint, ...
    {train,val,test}/features.npy  float32 (n, P, 19)  Table-1 features, FEATURE_NAMES order, zero padded
    {train,val,test}/mask.npy      bool    (n, P)      True for real particles (a prefix of each row)
    {train,val,test}/vectors.npy   float32 (n, P, 4)   px, py, pz, e in GeV, zero padded
    {train,val,test}/labels.npy    int64   (n,)        index into meta["classes"]
    {train,val,test}/jet_id.npy    int64   (n,)        jet_id of the shard row (traceable to its event)
    {train,val,test}/n_particles.npy int64 (n,)        true constituent count before the cap (> P: truncated)

P = data.n_particles; particles beyond P (the lowest-energy ones) are dropped and counted in meta.
Read with :func:`load_split`.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import paths
from ..errors import DataError
from .manifest import repeats
from .npy_out import replace_dir, write_in_order
from .schema import FEATURE_NAMES, VECTOR_NAMES
from .store import JetTable, read_shard, shard_metadata

SPLITS: tuple[str, ...] = ("train", "val", "test")
ARRAYS: tuple[str, ...] = ("features", "mask", "vectors", "labels", "jet_id", "n_particles")


class SplitArrays(dict):
    """One split: a dict of read-only memory maps (rows are jets) that also allows attribute access.

    Keys/attributes: features float32 (n, P, 19) in FEATURE_NAMES order; mask bool (n, P); vectors float32
    (n, P, 4) as (px, py, pz, e) GeV; labels int64 (n,) indices into ``meta["classes"]``; jet_id int64 (n,);
    n_particles int64 (n,) constituents before the padding cap (``mask.sum(1) == min(n_particles, P)``).
    ``.meta`` is the splits' meta.json (classes, features, vectors, n_particles, sizes, truncation,
    data_fingerprint); ``.n_jets`` the number of rows.
    """

    def __init__(self, meta: dict, **arrays: np.ndarray):
        super().__init__(arrays)
        self.meta = meta

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def n_jets(self) -> int:
        return len(self["labels"])


def read_meta(splits_dir: str | Path) -> dict:
    """``meta.json`` of a splits directory; missing or broken is a DataError naming the file."""
    path = paths.split_meta(splits_dir)
    if not path.is_file():
        raise DataError(f"{path}: splits metadata not found (run `jetscale split` first)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable splits metadata ({exc}); rerun `jetscale split`") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("sizes"), dict):
        raise DataError(f"{path}: not a splits metadata file (no 'sizes'); rerun `jetscale split`")
    return meta


def load_split(splits_dir: str | Path, split: str, n: int | None = None) -> SplitArrays:
    """Memory-map split ``split`` ("train", "val" or "test") of ``splits_dir``; with ``n``, only its first n jets.

    The first n training jets are the nested, class-balanced subset for ``n_train = n`` (every prefix is balanced
    to within one jet per class). Returns :class:`SplitArrays` (a dict of arrays with attribute access and
    ``.meta``). Arrays are read-only ``np.memmap`` views; slicing or fancy-indexing a minibatch
    (``arrays.features[idx]``) reads only those rows from disk; ``np.asarray(arrays["features"])`` loads all.

    Example::

        train = load_split("results/data/splits", "train", n=cell["n_train"])
        x, mask, y = train.features[idx], train.mask[idx], train.labels[idx] Raises DataError if the directory or a
    file is missing, or ``n`` exceeds the split's size.
    """
    root = Path(splits_dir)
    if split not in SPLITS:
        raise DataError(f"{root}: unknown split {split!r}; splits are {list(SPLITS)}")
    meta = read_meta(root)
    size = int(meta["sizes"][split])
    if n is not None and not 0 <= n <= size:
        raise DataError(
            f"{root}/{split}: asked for the first {n} jets but the split has {size}"
            + (" (the training pool; raise data.generate.jets_per_class)" if split == "train" else "")
        )
    arrays = {}
    for name in ARRAYS:
        path = root / split / f"{name}.npy"
        if not path.is_file():
            raise DataError(f"{path}: split array missing")
        try:
            arr = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:  # truncated or not an .npy file
            raise DataError(f"{path}: unreadable split array ({exc}); rerun `jetscale split`") from None
        if len(arr) != size:
            raise DataError(f"{path}: {len(arr)} rows, meta.json says {size}; rerun `jetscale split`")
        arrays[name] = arr if n is None else arr[:n]
    return SplitArrays(meta=meta, **arrays)


def interleave(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flatten (n_classes, m) indices round by round: each round holds one of each class, in a random order."""
    n_classes, rounds = groups.shape
    order = rng.permuted(np.tile(np.arange(n_classes), (rounds, 1)), axis=1)
    return groups[order, np.arange(rounds)[:, None]].reshape(-1)


def plan_splits(
    labels: np.ndarray, classes, val_per_class: int, test_per_class: int, seed: int, *, where: str = "shards"
) -> dict[str, np.ndarray]:
    """Row indices (into the concatenated shards) of each split, in output order. See module docstring."""
    n_classes = len(classes)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(
            f"{where}: labels must be in [0, {n_classes}) for classes {list(classes)}; "
            f"found {int(labels.min())}..{int(labels.max())}"
        )
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(n_classes)]
    counts = np.array([len(x) for x in per_class])
    n_min = int(counts.min())
    if n_min <= val_per_class + test_per_class:
        rare = classes[int(counts.argmin())]
        raise DataError(
            f"{where}: class {rare!r} has {n_min} jets, not more than val_per_class + test_per_class "
            f"= {val_per_class} + {test_per_class}; generate or ingest more jets"
        )
    cuts = {
        "val": (0, val_per_class),
        "test": (val_per_class, val_per_class + test_per_class),
        "train": (val_per_class + test_per_class, n_min),
    }
    return {
        split: interleave(np.stack([x[a:b] for x in per_class]), rng)
        for split, (a, b) in ((s, cuts[s]) for s in SPLITS)
    }


def pad(table: JetTable, n_particles: int) -> dict[str, np.ndarray]:
    """Dense (n, P, ·) arrays of an energy-ordered JetTable: features, vectors and mask (extra particles dropped)."""
    n = len(table)
    counts = table.counts
    within = np.arange(counts.sum()) - np.repeat(table.offsets[:-1], counts)
    row = np.repeat(np.arange(n), counts)
    keep = within < n_particles
    row, col = row[keep], within[keep]
    out = {
        "features": np.zeros((n, n_particles, len(FEATURE_NAMES)), np.float32),
        "vectors": np.zeros((n, n_particles, len(VECTOR_NAMES)), np.float32),
        "mask": np.zeros((n, n_particles), bool),
    }
    out["features"][row, col] = np.stack([table.particles[f][keep] for f in FEATURE_NAMES], axis=-1)
    out["vectors"][row, col] = np.stack([table.particles[v][keep] for v in VECTOR_NAMES], axis=-1)
    out["mask"][row, col] = True
    return out


def build_splits(
    shards: list[str | Path],
    out_dir: str | Path,
    *,
    classes,
    val_per_class: int,
    test_per_class: int,
    n_particles: int,
    seed: int = 0,
    n_train_max: int | None = None,
    data_fingerprint: str | None = None,
    study_fingerprint: str | None = None,
) -> dict:
    """Write the splits directory from ``shards`` (see module docstring); returns the meta dict.

    Reads only the label columns first, so bad inputs and a too-small pool fail before any array is written;
    then streams shard by shard into memory-mapped outputs whose pages are unmapped and written back after each
    shard (memory ~ one shard, mapped and dirty pages too; :func:`_write_arrays`). Shards are checked first
    (:func:`check_shards`, then :func:`check_jet_ids` on the columns read): none repeated, none of another study
    (``study_fingerprint``: the config's data fingerprint) or of other classes, no jet in two shards.
    """
    shards = expand_shards(shards)
    if not shards:
        raise DataError("split: no shard files given")
    check_shards(shards, list(classes), study_fingerprint)
    pool, starts = _pool_columns(shards)
    check_jet_ids(shards, np.split(pool["jet_id"], starts[1:-1]))
    labels, n_parts = pool["labels"], pool["n_particles"]
    plan = plan_splits(
        labels,
        list(classes),
        val_per_class,
        test_per_class,
        seed,
        where=", ".join(map(str, shards[:3])) + (" ..." if len(shards) > 3 else ""),
    )
    if n_train_max is not None and n_train_max > len(plan["train"]):
        raise DataError(
            f"n_train = {n_train_max} is larger than the training pool of {len(plan['train'])} jets "
            f"({len(plan['train']) // len(classes)} per class x {len(classes)} classes after "
            f"val/test); generate or ingest more jets or lower grid.axes.n_train"
        )
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_arrays(tmp, shards, starts, plan, n_particles, pool)
        truncated = {s: int((n_parts[plan[s]] > n_particles).sum()) for s in SPLITS}
        total = sum(len(plan[s]) for s in SPLITS)
        meta = {
            "classes": list(classes),
            "features": list(FEATURE_NAMES),
            "vectors": list(VECTOR_NAMES),
            "n_particles": n_particles,
            "sizes": {s: len(plan[s]) for s in SPLITS},
            "sizes_per_class": {s: len(plan[s]) // len(classes) for s in SPLITS},
            "truncated_jets": truncated,
            "truncated_fraction": sum(truncated.values()) / total,
            "data_fingerprint": data_fingerprint,
            "seed": seed,
            "shards": [str(s) for s in shards],
            "filled_zero": sorted({f for s in shards for f in shard_metadata(s).get("filled_zero", [])}),
            "source": sorted({shard_metadata(s).get("source", "unknown") for s in shards}),
        }
        paths.split_meta(tmp).write_text(json.dumps(meta, indent=2) + "\n")
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _pool_columns(shards: list[Path]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The per-jet columns (labels, jet_id, n_particles) of the concatenated shards, and each shard's first row."""
    columns: dict[str, list] = {"labels": [], "jet_id": [], "n_particles": []}
    for path in shards:
        table = read_shard(path, columns=["label", "jet_id", "n_particles"])
        for name, column in (("labels", "label"), ("jet_id", "jet_id"), ("n_particles", "n_particles")):
            columns[name].append(table.jets[column])
    starts = np.cumsum([0, *(len(x) for x in columns["labels"])])
    return {name: np.concatenate(parts) for name, parts in columns.items()}, starts


def check_shards(shards: list[Path], classes: list[str], study_fingerprint: str | None) -> None:
    """Refuse shards that would put one jet into two splits or that are not this study's, from their metadata: a
    shard given twice (or through a link), two shards of one source (the same input file or generated shard), a
    shard written for another study (its recorded data fingerprint differs from
    ``study_fingerprint``) or with other classes (its label indices would name other classes)."""
    repeated = repeats(shards)
    if repeated:
        first, again = repeated[0]
        raise DataError(f"{again}: the same shard as {first} (given twice or a link); give each shard once")
    sources: dict[str, Path] = {}
    for path in shards:
        meta = shard_metadata(path)
        recorded = meta.get("data_fingerprint")
        if study_fingerprint is not None and recorded is not None and recorded != study_fingerprint:
            raise DataError(
                f"{path}: written for another data configuration (data fingerprint {recorded}, this study's is "
                f"{study_fingerprint}); split only this study's shards"
            )
        if meta.get("classes") is not None and list(meta["classes"]) != classes:
            raise DataError(
                f"{path}: its labels index the classes {meta['classes']}, not this study's {classes}; "
                "split only this study's shards"
            )
        source = meta.get("source_id")
        if source is not None:
            if source in sources:
                raise DataError(
                    f"{path}: the same source as {sources[source]} ({source}); its jets would be in two splits"
                )
            sources[source] = path


def check_jet_ids(shards: list[Path], ids: list[np.ndarray]) -> None:
    """Refuse shards sharing a jet_id (``ids``: each shard's jet_id column, read once with the pool's columns)."""
    ordered = np.sort(np.concatenate(ids)) if ids else np.empty(0, np.int64)
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(twice):
        jet = int(twice[0])
        holders = [str(path) for path, x in zip(shards, ids, strict=True) if (x == jet).any()]
        where = f"in {holders[0]} twice" if len(holders) == 1 else "in " + " and ".join(holders[:2])
        raise DataError(
            f"jet_id {jet} is {where} ({len(np.unique(twice))} repeated jet ids in all); a jet may be in one split only"
        )


def expand_shards(paths) -> list[Path]:
    """Shard files from files and directories (a directory contributes its ``*.parquet``, sorted)."""
    out = []
    for p in map(Path, paths):
        out.extend(sorted(p.glob("*.parquet")) if p.is_dir() else [p])
    return out


# written shard by shard at their jets' output rows: (values per particle slot, dtype)
SCATTERED = {"features": (len(FEATURE_NAMES), np.float32), "vectors": (len(VECTOR_NAMES), np.float32)}
MASK_CHUNK_ROWS = 1 << 16  # rows of the mask built and written at once (8 MB at 128 slots)
_DATASYNC = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def _write_arrays(root: Path, shards: list[Path], starts: np.ndarray, plan: dict, n_particles: int, pool: dict):
    """The split arrays under ``root``. ``pool``: the per-jet columns of the concatenated shards (labels,
    jet_id, n_particles), already in memory for the plan: those, and the mask (a prefix of min(n, P) slots),
    are written in output order; features and vectors shard by shard (:func:`_scatter`).

    The rows of one shard lie all over the output (the pool is shuffled), so pages written through one map for
    the whole build stayed mapped to the end, as many bytes as the output (125 GB at the paper's 11M jets), and
    dirty until the kernel wrote them back, counted against a batch job's memory limit. Here each shard's part of
    a split is written through a map that is closed at once, and written back to disk by a second thread while
    the next part is read and padded; the next part waits for it: about one shard's pages mapped or dirty. The
    files written in order first (152 bytes per jet, 1.7 GB at 11M) are left to the kernel's own writeback, as
    any file written in sequence: syncing them took longer than all the rest's waits.
    """
    _write_per_jet(root, plan, n_particles, pool)
    with ThreadPoolExecutor(max_workers=1) as writeback:
        pending: list[Future] = []
        for i, path in enumerate(shards):
            table = read_shard(path)
            for split in SPLITS:
                rows = plan[split]
                pos = np.flatnonzero((rows >= starts[i]) & (rows < starts[i + 1]))
                if len(pos):
                    dense = pad(table.take(rows[pos] - starts[i]), n_particles)
                    _wait(pending)
                    files = [_scatter(root / split / f"{name}.npy", pos, dense[name]) for name in SCATTERED]
                    pending = [writeback.submit(_write_back, file) for file in files]
        _wait(pending)


def _write_per_jet(root: Path, plan: dict, n_particles: int, pool: dict) -> None:
    """Every split's directory with its labels, jet ids, particle counts and mask written in output order, and
    its features and vectors created (zeros)."""
    for split in SPLITS:
        (root / split).mkdir(parents=True)
        rows = plan[split]
        for name in ("labels", "jet_id", "n_particles"):
            write_in_order(root / split / f"{name}.npy", [pool[name][rows]], (len(rows),), np.int64)
        counts = np.minimum(pool["n_particles"][rows], n_particles)
        chunks = (
            np.arange(n_particles) < counts[i : i + MASK_CHUNK_ROWS, None] for i in range(0, len(rows), MASK_CHUNK_ROWS)
        )
        write_in_order(root / split / "mask.npy", chunks, (len(rows), n_particles), np.bool_)
        for name, (width, dtype) in SCATTERED.items():
            _create(root / split / f"{name}.npy", (len(rows), n_particles, width), dtype)


def _wait(futures: list[Future]) -> None:
    """Wait for ``futures`` (raising their errors)."""
    for future in futures:
        future.result()


def _write_back(path: Path) -> None:
    """Write ``path``'s dirty pages to disk (fdatasync; the GIL is released meanwhile)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        _DATASYNC(fd)
    finally:
        os.close(fd)


def _create(path: Path, shape: tuple, dtype) -> None:
    """An .npy file of zeros (sparse: only its header is written)."""
    from numpy.lib.format import open_memmap

    open_memmap(path, mode="w+", dtype=dtype, shape=shape)  # unmapped at once: no reference is kept


def _scatter(path: Path, pos: np.ndarray, values: np.ndarray) -> Path:
    """Write ``values`` to rows ``pos`` of the .npy at ``path`` through a map closed at once (its pages are then
    no longer this process's; they are dirty until written back); returns ``path``. The map reads only the pages
    it writes (MADV_RANDOM): a page left by an earlier shard and since evicted is read back alone, not with the
    kernel's read-around window."""
    from numpy.lib import format as npy

    with open(path, "r+b") as f:
        npy.read_magic(f)
        shape, fortran, dtype = npy.read_array_header_1_0(f)
        offset = f.tell()
        with mmap.mmap(f.fileno(), 0) as mapped:
            if hasattr(mapped, "madvise"):
                mapped.madvise(mmap.MADV_RANDOM)
            out = np.ndarray(shape, dtype, buffer=mapped, offset=offset, order="F" if fortran else "C")
            out[pos] = values
            del out  # the map closes only once no array uses it
    return path

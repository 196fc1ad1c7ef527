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
import os
import shutil
from pathlib import Path

import numpy as np

from .. import paths
from ..errors import DataError
from .manifest import repeats
from .schema import FEATURE_NAMES, VECTOR_NAMES
from .store import JetTable, read_shard, shard_jet_ids, shard_labels, shard_metadata

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
    then streams shard by shard into memory-mapped outputs (memory ~ one shard). Shards are checked first
    (:func:`check_shards`): none repeated, none of another study (``study_fingerprint``: the config's data
    fingerprint) or of other classes, no jet in two shards.
    """
    shards = expand_shards(shards)
    if not shards:
        raise DataError("split: no shard files given")
    check_shards(shards, list(classes), study_fingerprint)
    labels, n_parts, starts = [], [], [0]
    for path in shards:
        lab, npart = shard_labels(path)
        labels.append(lab)
        n_parts.append(npart)
        starts.append(starts[-1] + len(lab))
    labels, n_parts = np.concatenate(labels), np.concatenate(n_parts)
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
        meta = _write_arrays(tmp, shards, np.array(starts), plan, n_particles)
        truncated = {s: int((n_parts[plan[s]] > n_particles).sum()) for s in SPLITS}
        total = sum(len(plan[s]) for s in SPLITS)
        meta.update(
            {
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
        )
        paths.split_meta(tmp).write_text(json.dumps(meta, indent=2) + "\n")
        _replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def check_shards(shards: list[Path], classes: list[str], study_fingerprint: str | None) -> None:
    """Refuse shards that would put one jet into two splits or that are not this study's: a shard given twice
    (or through a link), two shards of one source (the same input file or generated shard), shards sharing a
    jet_id, a shard written for another study (its recorded data fingerprint differs from
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
    ids = [shard_jet_ids(path) for path in shards]
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


def _write_arrays(root: Path, shards: list[Path], starts: np.ndarray, plan: dict, n_particles: int) -> dict:
    from numpy.lib.format import open_memmap

    shapes = {
        "features": (n_particles, len(FEATURE_NAMES)),
        "vectors": (n_particles, len(VECTOR_NAMES)),
        "mask": (n_particles,),
        "labels": (),
        "jet_id": (),
        "n_particles": (),
    }
    dtypes = {
        "features": np.float32,
        "vectors": np.float32,
        "mask": bool,
        "labels": np.int64,
        "jet_id": np.int64,
        "n_particles": np.int64,
    }
    outs = {}
    for split in SPLITS:
        (root / split).mkdir(parents=True)
        n = len(plan[split])
        outs[split] = {
            a: open_memmap(root / split / f"{a}.npy", mode="w+", dtype=dtypes[a], shape=(n, *shapes[a])) for a in ARRAYS
        }
    for i, path in enumerate(shards):
        lo, hi = starts[i], starts[i + 1]
        table = read_shard(path)
        for split in SPLITS:
            rows = plan[split]
            pos = np.flatnonzero((rows >= lo) & (rows < hi))
            if not len(pos):
                continue
            part = table.take(rows[pos] - lo)
            dense = pad(part, n_particles)
            for name in ("features", "vectors", "mask"):
                outs[split][name][pos] = dense[name]
            outs[split]["labels"][pos] = part.jets["label"]
            outs[split]["jet_id"][pos] = part.jets["jet_id"]
            outs[split]["n_particles"][pos] = part.counts
    for split in SPLITS:
        for arr in outs[split].values():
            arr.flush()
    return {}


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final``, replacing an existing directory (old one moved aside, then deleted)."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

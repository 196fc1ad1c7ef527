"""Counts over a whole streamed split, recorded once beside the splits: BBT-Neutron's truncated jets.

A cell's ``metrics.json`` records, per split, how many jets its input preparation truncates
(``truncated_jets``). A streamed split is prepared batch by batch, so counting means preparing the whole split:
30 s per 1M jets, paid at every cell start and resume. The count is recorded the first time, as
``<results>/data/input_counts/<split>-n~<n>-<key>.json`` (beside ``data/splits``), and read back while
everything it depends on is unchanged (the record's ``key``, of which ``<key>`` is a digest):

* the splits: ``meta.json``'s bytes, and the size and modification time of the split's array files (a rebuilt
  split is counted again);
* the rows: the split's first ``n`` jets;
* the preparation: the input kind, the options it reads (the tokenizer's), the input spec with its statistics
  (``InputTransform.record``), the number of features, and the source of the module that prepares them.

A record that does not match, or cannot be read, is counted again and replaced (a line on stderr says why for
an unreadable one). Records are written atomically, never through a link; one that cannot be written (read-only
results) leaves the count used as it is, said on stderr.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import io as jio
from .. import paths
from ..errors import JetscaleError


def counted(raw, split_key: dict | None, count: Callable[[], dict]) -> dict:
    """``count()``'s result for the rows of ``raw``, read from its record when one matches ``split_key`` (see
    :func:`count_key`; None: nothing to key on, counted here), else counted and recorded."""
    if split_key is None:
        return count()
    path = record_path(raw, split_key)
    recorded = read_record(path, split_key)
    if recorded is not None:
        return recorded
    result = count()
    write_record(path, split_key, result)
    return result


def count_key(raw, kind, options, transform, n_features: int) -> dict | None:
    """What a count over ``raw`` (a split's memory maps, or its first rows) depends on; None where ``raw`` is not
    a split on disk."""
    mask = raw.get("mask") if hasattr(raw, "get") else None
    filename = getattr(mask, "filename", None)
    if filename is None:
        return None
    split_dir = Path(filename).parent
    meta = split_dir.parent / "meta.json"
    files = {}
    for name in ("features", "mask", "vectors"):
        st = os.stat(split_dir / f"{name}.npy")
        files[name] = [st.st_size, st.st_mtime_ns]
    return {
        "split": split_dir.name,
        "n_jets": len(mask),
        "meta_sha256": hashlib.sha256(meta.read_bytes()).hexdigest(),
        "files": files,
        "input_kind": kind.name,
        "options": _options_record(options),
        "inputs": transform.record() if transform is not None else None,
        "n_features": int(n_features),
        "code_sha256": _module_sha256(kind.prepare.partition(":")[0]),
    }


def _options_record(options) -> Any:
    """The options a preparation reads: the tokenizer's where there is one (a model's other options, e.g. its
    width, do not change its inputs), else all of them."""
    chosen = getattr(options, "tokenizer", options)
    return dataclasses.asdict(chosen) if dataclasses.is_dataclass(chosen) else repr(chosen)


def _module_sha256(module: str) -> str:
    """The digest of a module's source: a changed preparation is counted again."""
    origin = importlib.util.find_spec(module).origin
    return hashlib.sha256(Path(origin).read_bytes()).hexdigest()


def record_path(raw, key: dict) -> Path:
    splits_dir = Path(raw["mask"].filename).parent.parent
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return paths.input_counts_dir(splits_dir) / f"{key['split']}-n~{key['n_jets']}-{digest}.json"


def read_record(path: Path, key: dict) -> dict | None:
    """The recorded count at ``path`` if it was made under ``key``; None where there is none, it was made under
    another key, or it cannot be read (said on stderr: it is counted again)."""
    jio.refuse_link(path)
    if not path.exists():
        return None
    try:
        doc = jio.read_json(path, "recorded input count")
    except JetscaleError as exc:
        print(f"jetscale: {str(exc).splitlines()[0]}; counted again", file=sys.stderr, flush=True)
        return None
    count = doc.get("count")
    if doc.get("key") != key:
        return None
    if not isinstance(count, dict) or not all(type(v) is int for v in count.values()):
        print(f"jetscale: {path}: recorded input count is not a set of counts; counted again", file=sys.stderr)
        return None
    return count


def write_record(path: Path, key: dict, result: dict) -> None:
    """Record ``result`` atomically; a link at the record or its directory is refused, naming it. Where it cannot
    be written (read-only results, a full disk) the count is still used: one line on stderr says so."""
    jio.refuse_link(path.parent)
    try:
        jio.write_json(path, {"key": key, "count": result})
    except OSError as exc:
        print(f"jetscale: {path}: input count not recorded ({exc.strerror or exc}); counted again at the next start",
              file=sys.stderr, flush=True)  # fmt: skip

"""Shards: zstd parquet files with one row per jet (the on-disk contract of :mod:`jetscale.data.schema`).

A shard row holds the JET_COLUMNS scalars and one list column ``part_<name>`` (float32) per Table-1 feature and
four-vector component; particles within a jet are energy-ordered. In memory a shard is a :class:`JetTable`:
per-jet arrays plus flat per-particle arrays grouped by jet (``counts`` particles per jet).
Shards are written atomically (temporary name + rename), so a killed job never leaves a half-written shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_path, not_a_file
from ..paths import shard_name
from .schema import FEATURE_NAMES, JET_COLUMNS, PARTICLE_PREFIX, VECTOR_NAMES

PARTICLE_NAMES: tuple[str, ...] = FEATURE_NAMES + VECTOR_NAMES
JET_DTYPES = {
    "jet_id": np.int64,
    "label": np.int64,
    "event_id": np.int64,
    "n_particles": np.int64,
    "jet_energy": np.float64,
    "jet_pt": np.float64,
    "jet_eta": np.float64,
    "jet_phi": np.float64,
    "match_angle": np.float64,
}


@dataclass
class JetTable:
    """Jets in memory. ``jets[name]``: (n_jets,) for JET_COLUMNS; ``particles[name]``: (sum(counts),) float32."""

    jets: dict[str, np.ndarray]
    particles: dict[str, np.ndarray]
    source: str = field(default="<memory>")

    @property
    def counts(self) -> np.ndarray:
        return self.jets["n_particles"]

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.jets["jet_id"])

    def take(self, rows) -> JetTable:
        """Jets at ``rows`` (an index array), with their particles, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, counts = self.offsets[:-1][rows], self.counts[rows]
        new_starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        flat = np.arange(counts.sum(), dtype=np.int64) + np.repeat(starts - new_starts, counts)
        return JetTable(
            {k: v[rows] for k, v in self.jets.items()}, {k: v[flat] for k, v in self.particles.items()}, self.source
        )

    @staticmethod
    def concat(tables: list[JetTable]) -> JetTable:
        if not tables:
            return empty_table()
        jets = {k: np.concatenate([t.jets[k] for t in tables]) for k in JET_COLUMNS}
        parts = {k: np.concatenate([t.particles[k] for t in tables]) for k in PARTICLE_NAMES}
        return JetTable(jets, parts)


def empty_table() -> JetTable:
    return JetTable(
        {k: np.zeros(0, JET_DTYPES[k]) for k in JET_COLUMNS}, {k: np.zeros(0, np.float32) for k in PARTICLE_NAMES}
    )


def validate_table(table: JetTable, where: str) -> None:
    """Raise DataError (naming ``where`` and the column) for missing columns, empty jets or non-finite values."""
    for name in JET_COLUMNS:
        if name not in table.jets:
            raise DataError(f"{where}: missing jet column {name!r}")
    for name in PARTICLE_NAMES:
        if name not in table.particles:
            raise DataError(f"{where}: missing particle column {PARTICLE_PREFIX}{name!r}")
    counts = table.counts
    if len(counts) and counts.min() <= 0:
        bad = int(np.flatnonzero(counts <= 0)[0])
        raise DataError(f"{where}: jet {bad} (jet_id {int(table.jets['jet_id'][bad])}) has no particles")
    total = int(counts.sum())
    for name in PARTICLE_NAMES:
        values = table.particles[name]
        if len(values) != total:
            raise DataError(f"{where}: column {PARTICLE_PREFIX}{name} has {len(values)} values, expected {total}")
        finite = np.isfinite(values)
        if not finite.all():
            jet = int(np.searchsorted(table.offsets, np.flatnonzero(~finite)[0], side="right") - 1)
            raise DataError(
                f"{where}: column {PARTICLE_PREFIX}{name} has non-finite values (NaN/inf), first in "
                f"jet {jet} (jet_id {int(table.jets['jet_id'][jet])})"
            )
    for name in ("jet_energy", "jet_pt", "jet_eta", "jet_phi"):
        if not np.isfinite(table.jets[name]).all():
            raise DataError(f"{where}: column {name} has non-finite values (NaN/inf)")


def to_arrow(table: JetTable):
    import pyarrow as pa

    offsets = pa.array(table.offsets, type=pa.int64())
    cols = {k: pa.array(table.jets[k].astype(JET_DTYPES[k])) for k in JET_COLUMNS}
    for name in PARTICLE_NAMES:
        values = pa.array(np.asarray(table.particles[name], dtype=np.float32))
        cols[PARTICLE_PREFIX + name] = pa.LargeListArray.from_arrays(offsets, values)
    return pa.table(cols)


PARQUET_OPTIONS = dict(
    compression="zstd",
    use_dictionary=False,
    # byte-stream-split float lists compress ~30% better than dictionary+zstd and write faster
    column_encoding={PARTICLE_PREFIX + n: "BYTE_STREAM_SPLIT" for n in PARTICLE_NAMES},
)


class ShardWriter:
    """Stream JetTables into one shard, atomically: ``with ShardWriter(path) as w: w.write(table)``.

    Each table is validated and appended as row group(s); the file appears under ``path`` only when the block
    ends without error (memory stays at one table). ``metadata`` as in :func:`write_shard`.
    """

    def __init__(self, path: str | Path, *, metadata: dict | None = None, row_group_size: int = 50_000):
        self.path, self.metadata, self.row_group_size = Path(path), metadata, row_group_size
        self.n_jets = 0

    def __enter__(self) -> ShardWriter:
        import json

        import pyarrow.parquet as pq

        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        schema = to_arrow(empty_table()).schema
        if self.metadata:
            schema = schema.with_metadata({"jetscale": json.dumps(self.metadata, sort_keys=True)})
        self._writer = pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS)
        self._schema = schema
        return self

    def write(self, table: JetTable) -> None:
        validate_table(table, str(self.path))
        if len(table):
            self._writer.write_table(
                to_arrow(table).replace_schema_metadata(self._schema.metadata), row_group_size=self.row_group_size
            )
            self.n_jets += len(table)

    def __exit__(self, *exc) -> bool:
        self._writer.close()
        return bool(self._atomic.__exit__(*exc))


def write_rolling(tables, out_dir: str | Path, jets_per_shard: int, *, metadata: dict | None = None) -> list[Path]:
    """Stream JetTables into ``out_dir/shard-NNNN.parquet``, starting a new shard once one holds ``jets_per_shard``."""
    out_dir, paths, writer = Path(out_dir), [], None
    try:
        for table in tables:
            if writer is None:
                writer = ShardWriter(out_dir / shard_name(len(paths)), metadata=metadata).__enter__()
                paths.append(writer.path)
            writer.write(table)
            if writer.n_jets >= jets_per_shard:
                writer, done = None, writer
                done.__exit__(None, None, None)
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc), exc, exc.__traceback__)
        raise
    if writer is not None:
        writer.__exit__(None, None, None)
    return paths


def write_shard(
    table: JetTable, path: str | Path, *, row_group_size: int = 50_000, metadata: dict | None = None
) -> Path:
    """Validate ``table`` and write it as a zstd parquet shard at ``path`` atomically.

    ``metadata`` (JSON-able provenance: generator settings, ingest mapping, zero-filled features) is stored in
    the parquet schema metadata under ``jetscale``; read it back with :func:`shard_metadata`.
    """
    with ShardWriter(path, metadata=metadata, row_group_size=row_group_size) as writer:
        writer.write(table)
    return Path(path)


def read_shard(path: str | Path, *, columns: list[str] | None = None, validate: bool = True) -> JetTable:
    """Read a shard; ``columns`` may restrict to jet columns only (then ``particles`` is empty).

    Raises DataError naming the file for a missing/corrupt file, missing columns or bad values.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(not_a_file(path, "shard"))
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    names = set(pf.schema_arrow.names)
    wanted = list(columns) if columns is not None else list(JET_COLUMNS) + [PARTICLE_PREFIX + n for n in PARTICLE_NAMES]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; a shard needs {list(JET_COLUMNS)} and "
            f"{PARTICLE_PREFIX}<name> for {list(PARTICLE_NAMES)}"
        )
    try:
        arrow = pf.read(columns=wanted)
    except Exception as exc:
        raise DataError(f"{path}: corrupt parquet data ({exc})") from None
    jets = {c: arrow.column(c).to_numpy().astype(JET_DTYPES[c]) for c in wanted if c in JET_DTYPES}
    parts = {}
    for c in wanted:
        if c.startswith(PARTICLE_PREFIX):
            col = arrow.column(c).combine_chunks()
            if "n_particles" in jets and not np.array_equal(
                col.value_lengths().to_numpy(zero_copy_only=False), jets["n_particles"]
            ):
                raise DataError(f"{path}: column {c} list lengths disagree with n_particles")
            parts[c[len(PARTICLE_PREFIX) :]] = np.asarray(
                col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32
            )
    table = JetTable(jets, parts, str(path))
    if validate and columns is None:
        validate_table(table, str(path))
    return table


def shard_metadata(path: str | Path) -> dict:
    """The provenance dict stored by :func:`write_shard` ({} if none)."""
    import json

    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise DataError(not_a_file(path, "shard"))
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as exc:
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    return json.loads(meta[b"jetscale"]) if b"jetscale" in meta else {}


def shard_labels(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(label, n_particles) of every jet in a shard, reading only those columns."""
    t = read_shard(path, columns=["label", "n_particles"])
    return t.jets["label"], t.jets["n_particles"]

"""Ingest user jet files (ROOT via uproot, or parquet) into shards through a mapping YAML.

A mapping (see ``mappings/jetclass.yaml``) names, for each Table-1 feature and four-vector component, the
jagged branch that holds it (``particles``), which features to compute from the four-vectors (``derive``), which
to fill with 0 (``fill_zero``), the per-jet branches (``jet``) and how the file's labels become the config's
classes (``labels``: ``onehot: {branch: class}`` or ``branch: NAME`` + ``values: {int: class}``).
Every feature must be covered exactly once. Files are checked (readable, tree and every mapped branch present)
before any shard is written; each shard is validated (no NaN/inf, no empty jets) and written atomically.

The unlabelled pretraining pool (:mod:`jetscale.data.pool_store`) reads files with ``labels=False``: the
mapping's label section is not needed, and its branches are neither required nor read.
"""

from __future__ import annotations

import glob
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from .. import paths
from ..errors import DataError
from ..io import not_a_file, write_json
from .features import energy_order, jet_kinematics, particle_features
from .manifest import MANIFEST, describe, manifest, repeats
from .schema import FEATURE_NAMES, VECTOR_NAMES
from .store import PARTICLE_NAMES, JetTable, ShardWriter, validate_table

DERIVABLE = ("deta", "dphi", "log_pt", "log_e", "log_pt_rel", "log_e_rel", "delta_r")
JET_KEYS = ("jet_pt", "jet_eta", "jet_phi", "jet_energy")


def load_mapping(name_or_path: str | Path, *, labels: bool = True) -> dict:
    """A shipped mapping by name (``jetclass``) or a mapping YAML path, checked for completeness (without
    ``labels``, its label section is not needed)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():  # (a directory named like a shipped mapping is not one)
        if not path.is_file():
            raise DataError(not_a_file(path, "mapping file"))
        text, where = path.read_text(), str(path)
    else:
        res = resources.files("jetscale.data").joinpath(f"mappings/{name_or_path}.yaml")
        if not res.is_file():
            shipped = sorted(
                p.name[:-5]
                for p in resources.files("jetscale.data").joinpath("mappings").iterdir()
                if p.name.endswith(".yaml")
            )
            raise DataError(f"mapping {name_or_path!r}: not a file and not a shipped mapping; shipped: {shipped}")
        text, where = res.read_text(), f"mapping {name_or_path!r}"
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(f"{where}: not valid YAML: {exc}") from None
    check_mapping(mapping, where, labels=labels)
    mapping["_where"] = where
    return mapping


def check_mapping(mapping: dict, where: str, *, labels: bool = True) -> None:
    if not isinstance(mapping, dict):
        raise DataError(f"{where}: a mapping must be a YAML mapping")
    particles = mapping.get("particles") or {}
    derive, zero = list(mapping.get("derive") or []), list(mapping.get("fill_zero") or [])
    for name in list(particles) + derive + zero:
        if name not in PARTICLE_NAMES:
            raise DataError(f"{where}: unknown feature {name!r}; features are {list(PARTICLE_NAMES)}")
    for name in derive:
        if name not in DERIVABLE:
            raise DataError(f"{where}: derive: {name!r} cannot be derived; derivable: {list(DERIVABLE)}")
    for name in VECTOR_NAMES:
        if name not in particles:
            raise DataError(f"{where}: particles.{name}: the four-vector component must come from a branch")
    for name in FEATURE_NAMES:
        sources = (name in particles) + (name in derive) + (name in zero)
        if sources != 1:
            raise DataError(
                f"{where}: feature {name!r} must appear in exactly one of particles/derive/fill_zero (found {sources})"
            )
    for key in mapping.get("jet") or {}:
        if key not in JET_KEYS:
            raise DataError(f"{where}: jet.{key}: unknown jet column; allowed: {list(JET_KEYS)}")
    if not labels:
        return
    spec = mapping.get("labels") or {}
    if not (isinstance(spec.get("onehot"), dict) or ("branch" in spec and isinstance(spec.get("values"), dict))):
        raise DataError(
            f"{where}: labels: give either onehot: {{branch: class}} or branch: NAME with values: {{integer: class}}"
        )


def mapping_classes(mapping: dict) -> list[str]:
    """Class names the mapping produces, in mapping order (the class list when no config is given)."""
    labels = mapping["labels"]
    names = list(labels["onehot"].values()) if "onehot" in labels else list(labels["values"].values())
    return list(dict.fromkeys(n for n in names if n is not None))


def needed_branches(mapping: dict, *, labels: bool = True) -> list[str]:
    label_branches = []
    if labels:
        spec = mapping["labels"]
        label_branches = list(spec["onehot"]) if "onehot" in spec else [spec["branch"]]
    return list(
        dict.fromkeys(list(mapping["particles"].values()) + list((mapping.get("jet") or {}).values()) + label_branches)
    )


def resolve_inputs(patterns) -> list[Path]:
    """Expand globs (sorted); a pattern that matches nothing, or a file reached twice (listed twice, matched by
    two patterns, or through a link), is an error naming it."""
    out = []
    for pattern in patterns:
        hits = sorted(glob.glob(str(pattern))) if any(c in str(pattern) for c in "*?[") else [str(pattern)]
        if not hits:
            raise DataError(f"{pattern}: no input file matches")
        out.extend(Path(h) for h in hits)
    repeated = repeats(out)
    if repeated:
        first, again = repeated[0]
        raise DataError(
            f"{again}: the same file as {first} (listed twice, matched by two patterns, or a link); "
            "each file may be read once (its jets would be in training and test alike)"
        )
    return out


def jet_id_base(sha256: str) -> int:
    """The jet-id base of a file of content ``sha256``: ``jet_id = base + entry``. A jet's id follows from its
    file's content and its entry, so the same jets read twice (a copied file) carry the same ids."""
    return (int(sha256[:8], 16) & 0x7FFF_FFFF) << 32


def file_format(path: Path, mapping: dict) -> str:
    fmt = mapping.get("format", "auto")
    if fmt != "auto":
        return fmt
    if path.suffix == ".root":
        return "root"
    if path.suffix in (".parquet", ".pq"):
        return "parquet"
    raise DataError(f"{path}: cannot tell the format from the suffix (.root or .parquet); set format in the mapping")


def check_input(path: Path, mapping: dict, *, labels: bool = True) -> None:
    """Cheap structural check: the file opens and holds every branch the mapping names (label branches only
    with ``labels``)."""
    if not path.is_file():
        raise DataError(not_a_file(path, "input file"))
    fmt = file_format(path, mapping)
    try:
        if fmt == "root":
            import uproot

            with uproot.open(path) as f:
                tree_name = mapping.get("tree", "tree")
                if tree_name not in f:
                    raise DataError(f"{path}: no tree {tree_name!r} (has {sorted(f.keys(cycle=False))})")
                names = set(f[tree_name].keys())
        else:
            import pyarrow.parquet as pq

            names = set(pq.ParquetFile(path).schema_arrow.names)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read as {fmt} ({type(exc).__name__}: {exc})") from None
    missing = [b for b in needed_branches(mapping, labels=labels) if b not in names]
    if missing:
        raise DataError(
            f"{path}: branch(es) {missing} named by {mapping.get('_where', 'the mapping')} are missing from the file"
        )


def count_entries(path: Path, mapping: dict) -> int:
    """Jets (entries) in a file, from its metadata alone (no branch is read)."""
    try:
        if file_format(path, mapping) == "root":
            import uproot

            with uproot.open(path) as f:
                return int(f[mapping.get("tree", "tree")].num_entries)
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read the number of entries ({type(exc).__name__}: {exc})") from None


def iter_branches(path: Path, mapping: dict, step: int = 100_000, *, labels: bool = True):
    """Yield (first entry, {branch: awkward array}) in chunks of ``step`` jets, reading only the needed branches
    (without ``labels``, never the label branches)."""
    branches = needed_branches(mapping, labels=labels)
    try:
        if file_format(path, mapping) == "root":
            import uproot

            with uproot.open(path) as f:
                tree = f[mapping.get("tree", "tree")]
                for start in range(0, max(tree.num_entries, 1), step):
                    arrays = tree.arrays(branches, entry_start=start, entry_stop=start + step, library="ak")
                    yield start, {b: arrays[b] for b in branches}
        else:
            import awkward as ak
            import pyarrow.parquet as pq

            start = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=step, columns=branches):
                arrays = ak.from_arrow(batch)
                yield start, {b: arrays[b] for b in branches}
                start += len(arrays)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read branches ({type(exc).__name__}: {exc})") from None


def convert(
    arrays: dict, mapping: dict, classes: list[str] | None, where: str, first_entry: int = 0, id_base: int = 0
) -> tuple[JetTable, int]:
    """Branches of entries ``first_entry``... -> JetTable (energy-ordered particles) and the number of dropped jets.

    ``event_id`` is the entry number in the file and ``jet_id = id_base + event_id``. ``classes=None``: unlabelled
    jets (the pretraining pool): no label branch is read, every jet is kept and ``label`` is -1.
    """
    import awkward as ak

    if classes is None:
        n_jets = len(arrays[next(iter(mapping["particles"].values()))])
        labels, keep = np.full(n_jets, -1, np.int64), np.ones(n_jets, bool)
    else:
        labels, keep = file_labels(arrays, mapping, classes, where)
    particles, counts = {}, None
    for name, branch in mapping["particles"].items():
        arr = arrays[branch]
        if arr.ndim != 2:
            raise DataError(f"{where}: branch {branch!r} (for {name}) is not a per-particle (jagged) branch")
        n = ak.to_numpy(ak.num(arr, axis=1))
        if counts is None:
            counts = n
        elif not np.array_equal(n, counts):
            raise DataError(
                f"{where}: branch {branch!r} has different particle counts from the other particle branches"
            )
        particles[name] = _numbers(ak.flatten(arr), branch, where)
    table = JetTable({"n_particles": counts.astype(np.int64)}, particles)
    table = table.take(np.flatnonzero(keep))
    counts, particles = table.counts, table.particles
    if len(counts) and counts.min() == 0:
        bad = first_entry + int(np.flatnonzero(keep)[np.flatnonzero(counts == 0)[0]])
        raise DataError(f"{where}: jet (entry {bad}) has no particles")
    perm = energy_order(counts, particles["e"])
    particles = {k: v[perm] for k, v in particles.items()}
    jet = jet_kinematics(counts, particles["px"], particles["py"], particles["pz"], particles["e"])
    for key, branch in (mapping.get("jet") or {}).items():
        jet[key] = _numbers(arrays[branch], branch, where)[keep]
    derived = particle_features(
        counts,
        particles["px"],
        particles["py"],
        particles["pz"],
        particles["e"],
        jet,
        {n: np.zeros(len(particles["e"])) for n in FEATURE_NAMES[7:]},
    )
    for name in mapping.get("derive") or []:
        particles[name] = derived[name]
    for name in mapping.get("fill_zero") or []:
        particles[name] = np.zeros(len(particles["e"]))
    n = len(counts)
    entry = first_entry + np.flatnonzero(keep).astype(np.int64)
    jets = {
        "jet_id": id_base + entry,
        "label": labels[keep],
        "event_id": entry,
        "jet_energy": jet["jet_energy"],
        "jet_pt": jet["jet_pt"],
        "jet_eta": jet["jet_eta"],
        "jet_phi": jet["jet_phi"],
        "match_angle": np.full(n, np.nan),
        "n_particles": counts,
    }
    table = JetTable(jets, {k: np.asarray(particles[k], dtype=np.float32) for k in PARTICLE_NAMES}, where)
    validate_table(table, where)
    return table, int((~keep).sum())


def _numbers(values, branch: str, where: str) -> np.ndarray:
    """A branch's values as float64; a branch of strings (or other non-numbers) is a DataError naming it."""
    import awkward as ak

    try:
        return ak.to_numpy(values).astype(np.float64)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: branch {branch!r} does not hold numbers ({exc})") from None


def file_labels(arrays: dict, mapping: dict, classes: list[str], where: str) -> tuple[np.ndarray, np.ndarray]:
    """(label index into ``classes`` (-1 = not wanted), keep mask) per jet."""

    spec = mapping["labels"]
    index = {c: i for i, c in enumerate(classes)}
    if "onehot" in spec:
        branches = list(spec["onehot"])
        onehot = np.stack([_numbers(arrays[b], b, where) for b in branches], axis=1)
        hot = (onehot > 0.5).sum(axis=1)
        if (hot != 1).any():
            row = int(np.flatnonzero(hot != 1)[0])
            raise DataError(
                f"{where}: entry {row} has {int(hot[row])} of the one-hot label branches {branches} set "
                "(need exactly one)"
            )
        lut = np.array([index.get(spec["onehot"][b], -1) for b in branches])
        labels = lut[onehot.argmax(axis=1)]
    else:
        numbers = _numbers(arrays[spec["branch"]], spec["branch"], where)
        odd = ~np.isfinite(numbers) | (numbers != np.round(numbers)) | (np.abs(numbers) > 2**53)
        if odd.any():  # checked before the cast, which would turn 1e30 into -9223372036854775808
            row = int(np.flatnonzero(odd)[0])
            raise DataError(
                f"{where}: label branch {spec['branch']!r} holds {float(numbers[row])!r} (entry {row}), "
                "not an integer label"
            )
        raw = numbers.astype(np.int64)
        values = {int(k): v for k, v in spec["values"].items()}
        unknown = sorted(set(np.unique(raw).tolist()) - set(values))
        if unknown:
            raise DataError(
                f"{where}: label branch {spec['branch']!r} has values {unknown} not in the mapping's values"
            )
        labels = np.array([index.get(values[int(v)], -1) for v in raw], dtype=np.int64) if len(raw) else raw
    return labels.astype(np.int64), labels >= 0


def _ingest_file(
    path: Path, i: int, sha: str, mapping: dict, classes: list[str], out_dir: Path, zero: list, step: int, study: dict
) -> Path:
    meta = {
        "source": "ingest",
        "input": str(path),
        "source_id": f"sha256:{sha}",
        **study,
        "mapping": mapping.get("_where"),
        "classes": classes,
        "filled_zero": zero,
        "derived": list(mapping.get("derive") or []),
    }
    dropped = 0
    with ShardWriter(out_dir / paths.shard_name(i), metadata=meta) as writer:
        for start, arrays in iter_branches(path, mapping, step):
            table, n_dropped = convert(arrays, mapping, classes, str(path), start, jet_id_base(sha))
            writer.write(table)
            dropped += n_dropped
    if writer.n_jets == 0:
        writer.path.unlink(missing_ok=True)
        found = f"{dropped} jets of other classes only" if dropped else "no entries"
        raise DataError(f"{path}: no jets of the classes {classes} (the file has {found})")
    print(
        f"{path}: {writer.n_jets} jets -> {writer.path}"
        + (f" ({dropped} jets of other classes dropped)" if dropped else "")
        + (f"; filled with 0: {zero}" if zero else ""),
        file=sys.stderr,
    )
    return writer.path


def ingest_files(
    paths,
    mapping: str | dict,
    out_dir,
    *,
    classes: list[str] | None = None,
    step: int = 100_000,
    data_fingerprint: str | None = None,
) -> list[Path]:
    """Convert ``paths`` to ``out_dir/shard-NNNN.parquet`` (one shard per input file).

    Files are read ``step`` jets at a time (memory ~ one chunk). ``classes`` (the config's list) defines label indices;
    jets of file classes not in it are dropped, and a class
    in it that the mapping cannot produce is an error. Without ``classes`` the mapping's class order is used.
    A file reached twice, or two files of the same content, are refused before any work. Each shard records its
    file's SHA-256 (``source_id``) and the study's ``data_fingerprint``, which ``jetscale split`` checks.
    """
    mapping = load_mapping(mapping) if not isinstance(mapping, dict) else mapping
    produced = mapping_classes(mapping)
    classes = list(classes) if classes is not None else produced
    absent = [c for c in classes if c not in produced]
    if absent:
        raise DataError(
            f"{mapping.get('_where', 'mapping')}: config classes {absent} are not produced by the mapping's "
            f"labels (it produces {produced})"
        )
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("ingest: no input files")
    repeated = repeats(paths)
    if repeated:
        first, again = repeated[0]
        raise DataError(f"{again}: the same file as {first} (listed twice or a link); each file may be read once")
    for path in paths:  # fail before any work is done
        check_input(path, mapping)
    described = [describe(p) for p in paths]
    by_content: dict[str, str] = {}
    for d in described:
        if d["sha256"] in by_content:
            raise DataError(
                f"{d['path']}: the same content as {by_content[d['sha256']]} (SHA-256 {d['sha256'][:12]}...); "
                "its jets would be in training and test alike; ingest each file once"
            )
        by_content[d["sha256"]] = d["path"]
    study = {"data_fingerprint": data_fingerprint} if data_fingerprint else {}
    out_dir, written = Path(out_dir), []
    for stale in [*out_dir.glob("shard-*.parquet"), out_dir / MANIFEST]:  # a previous ingest's output
        stale.unlink(missing_ok=True)
    zero = list(mapping.get("fill_zero") or [])
    try:
        for i, path in enumerate(paths):
            sha = described[i]["sha256"]
            written.append(_ingest_file(path, i, sha, mapping, classes, out_dir, zero, step, study))
        # written last: a directory without it holds no complete ingest
        write_json(
            out_dir / MANIFEST, manifest(paths, described=described, mapping=mapping.get("_where"), classes=classes)
        )
    except BaseException:  # no partial output: the shards of earlier files go too
        for shard in written:
            shard.unlink(missing_ok=True)
        raise
    return written

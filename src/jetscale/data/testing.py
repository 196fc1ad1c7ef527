"""Synthetic jets for fast tests and benchmarks (no Pythia needed), seeded; the one place they are made.

* :func:`synthetic_jets` / :func:`write_synthetic_splits`: split arrays and a splits directory in the data
  layer's on-disk format (``<dir>/meta.json``, ``<dir>/{train,val,test}/{features,mask,vectors,labels,jet_id,
  n_particles}.npy``) written directly, with sizes chosen per split. Jets have a class-dependent number of
  particles and class-dependent feature shifts, so a classifier can learn them.
* :func:`synthetic_table` / :func:`build_synthetic_splits`: a JetTable with energy-ordered, finite particles,
  and shards + a splits directory made by the real :func:`jetscale.data.splits.build_splits`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import paths
from .features import energy_order, jet_kinematics, particle_features
from .schema import FEATURE_NAMES, VECTOR_NAMES
from .store import PARTICLE_NAMES, JetTable, write_shard


def synthetic_table(
    n_jets: int, n_classes: int, seed: int = 0, *, mean_particles: float = 20.0, first_jet_id: int = 0
) -> JetTable:
    """``n_jets`` jets with labels cycling over ``n_classes``; multiplicity and d0 grow with the label."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_jets) % n_classes
    counts = np.maximum(1, rng.poisson(mean_particles + labels, n_jets)).astype(np.int64)
    total = int(counts.sum())
    px, py = rng.normal(0, 2, total), rng.normal(0, 2, total)
    pz = rng.normal(0, 2, total) + 3.0
    e = np.sqrt(px**2 + py**2 + pz**2 + 0.0195)
    perm = energy_order(counts, e)
    px, py, pz, e = px[perm], py[perm], pz[perm], e[perm]
    jet = jet_kinematics(counts, px, py, pz, e)
    charge = rng.choice([-1.0, 0.0, 1.0], total)
    label_of = np.repeat(labels, counts)
    track = {name: np.zeros(total) for name in FEATURE_NAMES[7:]}
    track["charge"] = charge
    track["d0_err"] = np.where(charge != 0, 0.01, 0.0)
    track["z0_err"] = track["d0_err"]
    track["d0"] = np.where(charge != 0, rng.normal(0, 0.01 * (1 + label_of)), 0.0)
    track["z0"] = np.where(charge != 0, rng.normal(0, 0.01), 0.0)
    track["is_charged_pion"] = (charge != 0).astype(float)
    track["is_photon"] = (charge == 0).astype(float)
    feats = particle_features(counts, px, py, pz, e, jet, track)
    parts = {**feats, "px": px, "py": py, "pz": pz, "e": e}
    jet_id = first_jet_id + np.arange(n_jets, dtype=np.int64)
    jets = {
        "jet_id": jet_id,
        "label": labels.astype(np.int64),
        "event_id": jet_id // 2,
        "jet_energy": jet["jet_energy"],
        "jet_pt": jet["jet_pt"],
        "jet_eta": jet["jet_eta"],
        "jet_phi": jet["jet_phi"],
        "match_angle": np.zeros(n_jets),
        "n_particles": counts,
    }
    return JetTable(jets, {k: np.asarray(parts[k], np.float32) for k in PARTICLE_NAMES})


def build_synthetic_splits(out_dir, classes, *, jets_per_class: int = 60, n_particles: int = 16) -> Path:
    """Two shards under ``out_dir/shards`` and a splits directory ``out_dir/splits`` (5 validation and 10 test
    jets per class, seed 0); returns the splits path."""
    out_dir = Path(out_dir)
    n_classes, n_shards, seed = len(classes), 2, 0
    per_shard = jets_per_class * n_classes // n_shards
    shards = [
        write_shard(
            synthetic_table(per_shard, n_classes, seed + i, first_jet_id=i * 10**9),
            out_dir / "shards" / paths.shard_name(i),
        )
        for i in range(n_shards)
    ]
    from .splits import build_splits

    build_splits(
        shards,
        out_dir / "splits",
        classes=list(classes),
        val_per_class=5,
        test_per_class=10,
        n_particles=n_particles,
        seed=seed,
        data_fingerprint="synthetic",
    )
    return out_dir / "splits"


def synthetic_jets(n: int, n_classes: int, n_particles: int = 64, seed: int = 0, mean_particles: float = 24.0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    counts = np.clip(rng.poisson(mean_particles * (0.7 + 0.6 * labels / max(1, n_classes - 1))), 2, n_particles)
    mask = np.arange(n_particles)[None, :] < counts[:, None]
    F = len(FEATURE_NAMES)
    shift = np.random.default_rng(1234).normal(size=(n_classes, F)).astype(np.float32)
    features = rng.normal(size=(n, n_particles, F)).astype(np.float32) * 0.8 + shift[labels][:, None, :]
    energy = np.sort(rng.exponential(4.0, size=(n, n_particles)).astype(np.float32) + 0.2, axis=1)[:, ::-1]
    theta = 1.2 + 0.1 * rng.normal(size=(n, n_particles))
    phi = 0.3 + 0.1 * rng.normal(size=(n, n_particles))
    vectors = np.stack(
        [energy * np.sin(theta) * np.cos(phi), energy * np.sin(theta) * np.sin(phi), energy * np.cos(theta), energy],
        axis=-1,
    ).astype(np.float32)
    features = np.where(mask[:, :, None], features, 0).astype(np.float32)
    vectors = np.where(mask[:, :, None], vectors, 0).astype(np.float32)
    return {
        "features": features,
        "mask": mask,
        "vectors": vectors,
        "labels": labels.astype(np.int64),
        "n_particles": counts.astype(np.int64),
    }


def write_synthetic_splits(
    directory: str | Path, classes: list[str], sizes: dict[str, int] | None = None, n_particles: int = 64, seed: int = 0
) -> Path:
    sizes = sizes or {"train": 220, "val": 110, "test": 110}
    directory = Path(directory)
    first_id = 0
    for i, (split, n) in enumerate(sizes.items()):
        jets = synthetic_jets(n, len(classes), n_particles, seed=seed + i)
        jets["jet_id"] = np.arange(first_id, first_id + n, dtype=np.int64)
        first_id += n
        folder = directory / split
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in jets.items():
            np.save(folder / f"{name}.npy", arr)
    meta = {
        "classes": list(classes),
        "features": list(FEATURE_NAMES),
        "vectors": list(VECTOR_NAMES),
        "n_particles": n_particles,
        "sizes": dict(sizes),
    }
    paths.split_meta(directory).write_text(json.dumps(meta, indent=1))
    return directory

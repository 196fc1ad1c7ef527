"""Tiny synthetic splits in the data layer's on-disk format, for tests and benchmarks (no generator needed).

Jets have a class-dependent number of particles and class-dependent feature shifts, so a classifier can learn
them. Layout (``jetscale.data.splits``): ``<dir>/meta.json`` and
``<dir>/{train,val,test}/{features,mask,vectors,labels,jet_id,n_particles}.npy``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.schema import FEATURE_NAMES, VECTOR_NAMES


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
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))
    return directory

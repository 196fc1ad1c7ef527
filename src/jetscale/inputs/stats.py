"""Per-feature statistics of a training subset, computed once and recorded next to the splits.

For the nested training subset of ``n_train`` jets (the first n_train rows of the train split) this records,
for every known feature (Table 1 and the derived ones), the 16%, 50% and 84% quantiles of its raw values over
real particles. Quantiles use numpy's ``inverted_cdf`` method, so each one is a data point and every monotone
transform chain maps them onto the quantiles of the transformed values (see :mod:`jetscale.inputs.transforms`):
one file serves every declared spec. Paper-scale subsets use their first :data:`MAX_STATS_JETS` jets (a
class-balanced prefix itself); deterministic either way.

File: ``<results>/data/input_stats/n_train~<n>.json`` (beside ``data/splits``)::

    {"n_train": n, "n_jets": jets used, "n_particles": real particles used, "quantiles": [0.16, 0.5, 0.84],
     "features": {name: [q16, q50, q84], ...}, "data_fingerprint": splits' fingerprint}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import io as jio
from .. import paths
from ..data.schema import FEATURE_NAMES
from ..errors import DataError
from .spec import DERIVED

QUANTILES: tuple[float, ...] = (0.16, 0.5, 0.84)
MAX_STATS_JETS = 100_000
CHUNK_JETS = 16384


def stats_path(splits_dir: str | os.PathLike, n_train: int) -> Path:
    """Where the statistics of the n_train subset of ``splits_dir`` live (a sibling of the splits directory)."""
    return paths.input_stats_path(splits_dir, int(n_train))


def feature_columns(features: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Real-particle values (float32, 1-d) of every known feature from (n, P, 19) features and (n, P) mask."""
    m = np.asarray(mask, dtype=bool)
    rows = np.asarray(features)[m]  # (n_real, 19)
    cols = {name: rows[:, i] for i, name in enumerate(FEATURE_NAMES)}
    for name in DERIVED:
        cols[name] = derive(name, lambda feature: cols[feature])
    return cols


def _significance(value: np.ndarray, error: np.ndarray) -> np.ndarray:
    """value / error; 0 where the error is 0 (neutral particles have no impact parameter)."""
    return np.divide(value, error, out=np.zeros_like(value), where=error > 0)


def _charge_weight(charge: np.ndarray, log_e_rel: np.ndarray) -> np.ndarray:
    """q · (E/E_jet)^0.5 from log_e_rel = ln(E/E_jet)."""
    return charge * np.exp(0.5 * np.minimum(log_e_rel, 0.0))


FORMULAS = {"significance": _significance, "charge_weight": _charge_weight}


def derive(name: str, column) -> np.ndarray:
    """The derived feature ``name`` (float32) from ``column(table1_name)`` arrays (see DERIVED)."""
    formula, inputs = DERIVED[name]
    return FORMULAS[formula](*(np.asarray(column(n), np.float64) for n in inputs)).astype(np.float32)


def compute_stats(split, n_train: int) -> dict:
    """Statistics of the first ``n_train`` jets of a train split (:class:`~jetscale.data.splits.SplitArrays`, or
    any mapping with ``features`` and ``mask``)."""
    n_jets = min(int(n_train), MAX_STATS_JETS)
    if n_jets < 1:
        raise DataError(f"input statistics need at least one training jet, got n_train = {n_train}")
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_jets, CHUNK_JETS):
        rows = slice(start, min(n_jets, start + CHUNK_JETS))
        for name, col in feature_columns(split["features"][rows], split["mask"][rows]).items():
            parts.setdefault(name, []).append(col)
    columns = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    n_real = len(next(iter(columns.values())))
    if n_real == 0:
        raise DataError(f"the first {n_jets} training jets have no particles: no input statistics")
    return {
        "n_train": int(n_train),
        "n_jets": n_jets,
        "n_particles": int(n_real),
        "quantiles": list(QUANTILES),
        "features": {
            name: [float(q) for q in np.quantile(col, QUANTILES, method="inverted_cdf")]
            for name, col in columns.items()
        },
        "data_fingerprint": getattr(split, "meta", {}).get("data_fingerprint"),
    }


def write_stats(splits_dir: str | os.PathLike, n_train: int, out: str | os.PathLike | None = None) -> dict:
    """Compute and atomically write the statistics of the n_train subset; returns the record."""
    from ..data.splits import load_split

    record = compute_stats(load_split(splits_dir, "train", n=int(n_train)), int(n_train))
    jio.write_json(Path(out) if out else stats_path(splits_dir, n_train), record)
    return record


def load_stats(splits_dir: str | os.PathLike, n_train: int) -> tuple[dict, str]:
    """The recorded statistics of the n_train subset (computed here when not recorded); returns (record, source).

    ``source`` is the file's path, or "computed" when no file was recorded (a cell trained by hand before the
    workflow's ``input_stats`` step ran): the numbers are the same, since both come from :func:`compute_stats`.
    A file recorded for other data (another fingerprint) is refused.
    """
    from ..data.splits import load_split

    split = load_split(splits_dir, "train", n=int(n_train))
    path = stats_path(splits_dir, n_train)
    if not path.is_file():
        return compute_stats(split, int(n_train)), "computed"
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); delete it to recompute") from None
    if record.get("n_train") != int(n_train) or not set(FEATURE_NAMES) <= set(record.get("features", {})):
        raise DataError(f"{path}: not the input statistics of n_train = {n_train}; delete it to recompute")
    fingerprint = split.meta.get("data_fingerprint")
    if record.get("data_fingerprint") != fingerprint:
        raise DataError(
            f"{path}: recorded for data {record.get('data_fingerprint')}, but the splits are {fingerprint}; "
            "delete it to recompute"
        )
    return record, str(path)

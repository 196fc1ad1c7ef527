"""Apply a resolved input spec to split rows: (n, P, 19) Table-1 features → (n, P, F) model features.

:func:`resolve` turns a canonical spec (:mod:`jetscale.inputs.spec`) and the subset's statistics
(:mod:`jetscale.inputs.stats`) into fixed per-feature centres and scales; :meth:`InputTransform.apply` is a pure
per-particle function of those numbers, so a split prepared up front and one prepared batch by batch give
identical values (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.schema import FEATURE_NAMES
from .spec import DERIVED, is_raw, needs_statistics
from .stats import derive
from .transforms import apply_steps


def _scalar(steps, value: float) -> float:
    return float(apply_steps(steps, np.array([value], dtype=np.float64))[0])


def resolve(features: list[dict], stats: dict | None = None) -> list[dict]:
    """Canonical spec + statistics → per feature ``{name, transform, standardise, centre, scale}`` (floats).

    ``auto``: centre = f(q50), scale = (f(q84) - f(q16)) / 2 of the transform f; a feature constant on its
    central 68% (a particle-ID flag) gets scale 1.
    """
    if needs_statistics(features) and stats is None:
        raise ValueError("an 'auto' standardisation needs the training subset's statistics")
    out = []
    for feat in features:
        std = feat["standardise"]
        if std == "auto":
            q16, q50, q84 = (_scalar(feat["transform"], q) for q in stats["features"][feat["name"]])
            half_width = 0.5 * (q84 - q16)
            centre, scale = q50, half_width if np.isfinite(half_width) and half_width > 0 else 1.0
        elif std == "none":
            centre, scale = 0.0, 1.0
        else:
            centre, scale = std["centre"], std["scale"]
        out.append({**feat, "centre": float(centre), "scale": float(scale)})
    return out


@dataclass(frozen=True)
class InputTransform:
    """A resolved spec, ready to apply; ``raw`` ones pass features through untouched."""

    features: tuple[dict, ...]

    @classmethod
    def from_spec(cls, features: list[dict], stats: dict | None = None) -> InputTransform:
        return cls(tuple(resolve(features, stats)))

    @property
    def names(self) -> list[str]:
        return [f["name"] for f in self.features]

    @property
    def raw(self) -> bool:
        return is_raw(list(self.features))

    @property
    def n_features(self) -> int:
        return len(self.features)

    def apply(self, features: np.ndarray) -> np.ndarray:
        """(n, P, 19) float32 Table-1 features → (n, P, F) float32 model features (padded slots included)."""
        if self.raw:
            return np.asarray(features, dtype=np.float32)
        x = np.asarray(features)
        out = np.empty(x.shape[:-1] + (len(self.features),), dtype=np.float32)
        for i, feat in enumerate(self.features):
            out[..., i] = self.column(x, feat)
        return out

    @staticmethod
    def column(x: np.ndarray, feat: dict) -> np.ndarray:
        name = feat["name"]
        if name in DERIVED:
            base = derive(name, lambda feature: x[..., FEATURE_NAMES.index(feature)])
        else:
            base = x[..., FEATURE_NAMES.index(name)]
        y = apply_steps(feat["transform"], base)
        if feat["centre"] != 0.0 or feat["scale"] != 1.0:
            y = (y - feat["centre"]) / feat["scale"]
        return y.astype(np.float32)

    def record(self) -> list[dict]:
        """The resolved spec as stored in a run's metrics.json."""
        return [dict(f) for f in self.features]

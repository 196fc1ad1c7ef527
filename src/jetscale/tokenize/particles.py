"""Padded particle tensors for ParticleNet and ParT.

Splits store particles as (n, P, F) rows (energy order, padded, ``mask`` True for real particles). The models
take channels-first tensors:

* ``x``       (n, F, P) float32: the model's input features (the 19 Table-1 features, or as prepared by
  ``jetscale.inputs``), zero on padded slots;
* ``points``  (n, 2, P) float32: (Δη, Δφ) to the jet axis, the coordinates of ParticleNet's first k-NN;
* ``vectors`` (n, 4, P) float32: (px, py, pz, E) in GeV, for ParT's pair features;
* ``mask``    (n, 1, P) float32: 1 for real particles.

``pair_features`` (torch) builds ParT's four interaction features from the four-vectors on the fly (an
(n, 4, P, P) array for a whole split would not fit in memory).
"""

from __future__ import annotations

import numpy as np

from ..data.schema import FEATURE_NAMES

POINT_FEATURES = ("deta", "dphi")


def particle_arrays(
    features: np.ndarray, mask: np.ndarray, vectors: np.ndarray | None = None, model_features: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """(n, P, 19) features, (n, P) mask, (n, P, 4) vectors -> channels-first padded arrays (see module doc).

    ``model_features`` (n, P, F), when given, are the prepared inputs for ``x`` (``jetscale.inputs``); the
    k-NN points stay the raw (Δη, Δφ) of ``features`` either way.
    """
    m = np.asarray(mask, dtype=bool)
    raw = np.asarray(features, dtype=np.float32)
    cols = [FEATURE_NAMES.index(name) for name in POINT_FEATURES]
    points = np.where(m[:, :, None], raw[:, :, cols], 0.0).transpose(0, 2, 1)
    x_in = raw if model_features is None else np.asarray(model_features, dtype=np.float32)
    x = np.where(m[:, :, None], x_in, 0.0).transpose(0, 2, 1)
    out = {
        "x": np.ascontiguousarray(x, dtype=np.float32),
        "points": np.ascontiguousarray(points, dtype=np.float32),
        "mask": m[:, None, :].astype(np.float32),
    }
    if vectors is not None:
        v = np.where(m[:, :, None], np.asarray(vectors, dtype=np.float32), 0.0).transpose(0, 2, 1)
        out["vectors"] = np.ascontiguousarray(v, dtype=np.float32)
    return out


def model_inputs(options, features, mask, vectors=None, model_features=None) -> tuple[dict[str, np.ndarray], dict]:
    """The catalog's "particles" input kind: :func:`particle_arrays` and the number of jets (``model_features``:
    the input spec's transformed features, None for the raw Table-1 ones)."""
    return particle_arrays(features, mask, vectors, model_features), {"n_jets": int(len(mask))}


def pair_features_for(vectors, i, j, eps: float = 1e-8):
    """ParT interaction features for the particle pairs (i[k], j[k]) only.

    ``vectors`` (B, 4, P) torch tensor, ``i``/``j`` (n_pairs,) index tensors -> (B, n_pairs, 4): ln Δ, ln kT,
    ln z, ln m² (definitions as in :func:`pair_features`), computed without any (P, P) intermediate.
    """
    import torch

    px, py, pz, e = vectors.unbind(dim=1)  # (B, P) each
    pt = torch.sqrt((px * px + py * py).clamp(min=eps))
    rap = 0.5 * torch.log1p(2 * pz / (e - pz).clamp(min=1e-20))
    phi = torch.atan2(py, px)
    dphi = torch.remainder(phi[:, i] - phi[:, j] + torch.pi, 2 * torch.pi) - torch.pi
    delta = torch.sqrt((rap[:, i] - rap[:, j]).square() + dphi.square())
    pti, ptj = pt[:, i], pt[:, j]
    s = vectors[:, :, i] + vectors[:, :, j]  # (B, 4, n_pairs)
    return _interaction_logs(delta, pti, ptj, s, eps)


def pair_features_at(vectors, b, i, j, eps: float = 1e-8):
    """ParT interaction features of the listed pairs only: particles ``i[k]`` and ``j[k]`` of jet ``b[k]``.

    ``vectors`` (B, 4, P) torch tensor, ``b``/``i``/``j`` (n,) index tensors -> (n, 4): ln Δ, ln kT, ln z,
    ln m², elementwise the same values as :func:`pair_features_for` at those pairs (so a model computes them
    for its real pairs only, not for every padded pair of the batch).
    """
    import torch

    px, py, pz, e = vectors.unbind(dim=1)  # (B, P) each
    pt = torch.sqrt((px * px + py * py).clamp(min=eps))
    rap = 0.5 * torch.log1p(2 * pz / (e - pz).clamp(min=1e-20))
    phi = torch.atan2(py, px)
    dphi = torch.remainder(phi[b, i] - phi[b, j] + torch.pi, 2 * torch.pi) - torch.pi
    delta = torch.sqrt((rap[b, i] - rap[b, j]).square() + dphi.square())
    pti, ptj = pt[b, i], pt[b, j]
    s = vectors[b, :, i] + vectors[b, :, j]  # (n, 4)
    return _interaction_logs(delta, pti, ptj, s, eps)


def _interaction_logs(delta, pti, ptj, s, eps: float):
    """(..., 4): ln Δ, ln kT, ln z, ln m² of pairs with separation ``delta``, transverse momenta ``pti``/``ptj``
    and summed four-vector ``s`` (its components on axis 1: px, py, pz, E)."""
    import torch

    ptmin = torch.minimum(pti, ptj)
    m2 = s[:, 3].square() - s[:, 0].square() - s[:, 1].square() - s[:, 2].square()
    return torch.stack(
        [
            torch.log(delta.clamp(min=eps)),
            torch.log((ptmin * delta).clamp(min=eps)),
            torch.log((ptmin / (pti + ptj).clamp(min=eps)).clamp(min=eps)),
            torch.log(m2.clamp(min=eps)),
        ],
        dim=-1,
    )


def pair_features(vectors, eps: float = 1e-8):
    """ParT interaction features for every particle pair.

    ``vectors`` (B, 4, P) torch tensor of (px, py, pz, E) -> (B, 4, P, P): ln Δ, ln kT, ln z, ln m², with
    Δ = sqrt(Δy² + Δφ²) (rapidity y, azimuth φ), kT = min(pT_i, pT_j)·Δ, z = min(pT_i, pT_j)/(pT_i + pT_j),
    m² = (p_i + p_j)². Logs are clamped at ``eps``.
    """
    import torch

    px, py, pz, e = vectors.unbind(dim=1)  # (B, P) each
    pt = torch.sqrt((px * px + py * py).clamp(min=eps))
    rap = 0.5 * torch.log1p(2 * pz / (e - pz).clamp(min=1e-20))
    phi = torch.atan2(py, px)
    dphi = torch.remainder(phi[:, :, None] - phi[:, None, :] + torch.pi, 2 * torch.pi) - torch.pi
    delta = torch.sqrt((rap[:, :, None] - rap[:, None, :]).square() + dphi.square())
    ptmin = torch.minimum(pt[:, :, None], pt[:, None, :])
    ln_delta = torch.log(delta.clamp(min=eps))
    ln_kt = torch.log((ptmin * delta).clamp(min=eps))
    ln_z = torch.log((ptmin / (pt[:, :, None] + pt[:, None, :]).clamp(min=eps)).clamp(min=eps))
    s = vectors[:, :, :, None] + vectors[:, :, None, :]  # (B, 4, P, P)
    m2 = s[:, 3].square() - s[:, 0].square() - s[:, 1].square() - s[:, 2].square()
    ln_m2 = torch.log(m2.clamp(min=eps))
    return torch.stack([ln_delta, ln_kt, ln_z, ln_m2], dim=1)

"""Token quality and generation quality (numpy + scipy only).

* :func:`resolution`: per-feature distribution of reco − true over real particles (bias, std, IQR): how much
  a token loses.
* :func:`codebook_usage`: fraction of the K codes used, and the perplexity exp(H) of the code frequencies
  (K for a uniform codebook, 1 when every particle gets the same code).
* :func:`feature_w1` / :func:`observable_w1`: Wasserstein-1 distances between two sets of jets, per particle
  feature (over all real particles) and per jet-level observable (:func:`jet_observables`: multiplicity and,
  where the features allow, the jet mass and scalar pT sum of massless particles at (log pT, Δη, Δφ); a
  longitudinal boost and a rotation in φ leave that mass unchanged, so the jet-axis frame is fine).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance


def resolution(true: np.ndarray, reco: np.ndarray, mask: np.ndarray, names) -> dict[str, dict[str, float]]:
    """``true``/``reco`` (n, N, F), ``mask`` (n, N) → {feature: {bias, std, iqr}} of reco − true."""
    m = np.asarray(mask, dtype=bool)
    diff = (np.asarray(reco, np.float64) - np.asarray(true, np.float64))[m]
    out = {}
    for j, name in enumerate(names):
        d = diff[:, j]
        q25, q75 = np.percentile(d, [25, 75]) if len(d) else (0.0, 0.0)
        out[name] = {
            "bias": float(d.mean()) if len(d) else 0.0,
            "std": float(d.std()) if len(d) else 0.0,
            "iqr": float(q75 - q25),
        }
    return out


def codebook_usage(codes: np.ndarray, codebook_size: int) -> dict[str, float]:
    """Usage of a codebook by ``codes`` (any shape; entries < 0 are padding and ignored)."""
    c = np.asarray(codes).reshape(-1)
    c = c[c >= 0]
    if len(c) and c.max() >= codebook_size:
        raise ValueError(f"code {int(c.max())} out of range for a codebook of {codebook_size}")
    counts = np.bincount(c, minlength=codebook_size).astype(np.float64)
    total = counts.sum()
    p = counts[counts > 0] / max(total, 1.0)
    entropy = float(-(p * np.log(p)).sum()) if total else 0.0
    used = int((counts > 0).sum())
    return {
        "codes_used": used,
        "fraction_used": used / codebook_size,
        "perplexity": float(np.exp(entropy)) if total else 0.0,
        "n_particles": int(total),
    }


def feature_w1(a: np.ndarray, a_mask: np.ndarray, b: np.ndarray, b_mask: np.ndarray, names) -> dict[str, float]:
    """W1 per feature between the real particles of two jet sets ((n, N, F) + (n, N) masks)."""
    pa, pb = np.asarray(a)[np.asarray(a_mask, bool)], np.asarray(b)[np.asarray(b_mask, bool)]
    if not len(pa) or not len(pb):
        raise ValueError("feature_w1: a jet set without particles")
    return {name: float(wasserstein_distance(pa[:, j], pb[:, j])) for j, name in enumerate(names)}


def jet_observables(feats: np.ndarray, mask: np.ndarray, names) -> dict[str, np.ndarray]:
    """Per-jet observables of (n, N, F) features: multiplicity always; mass and log Σ pT given log_pt/deta/dphi."""
    m = np.asarray(mask, dtype=bool)
    out = {"multiplicity": m.sum(1).astype(np.float64)}
    names = list(names)
    if {"log_pt", "deta", "dphi"} <= set(names):
        f = np.asarray(feats, np.float64)
        pt = np.where(m, np.exp(np.clip(f[..., names.index("log_pt")], -30, 30)), 0.0)
        eta, phi = f[..., names.index("deta")], f[..., names.index("dphi")]
        px, py = (pt * np.cos(phi)).sum(1), (pt * np.sin(phi)).sum(1)
        pz, e = (pt * np.sinh(eta)).sum(1), (pt * np.cosh(eta)).sum(1)
        out["mass"] = np.sqrt(np.clip(e**2 - px**2 - py**2 - pz**2, 0.0, None))
        out["log_sum_pt"] = np.log(np.maximum(pt.sum(1), 1e-30))
    return out


def observable_w1(a: np.ndarray, a_mask: np.ndarray, b: np.ndarray, b_mask: np.ndarray, names) -> dict[str, float]:
    oa, ob = jet_observables(a, a_mask, names), jet_observables(b, b_mask, names)
    return {key: float(wasserstein_distance(oa[key], ob[key])) for key in oa}

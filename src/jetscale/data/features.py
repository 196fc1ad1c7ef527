"""Table-1 per-particle features and per-jet kinematics from flat, jet-grouped particle arrays.

Inputs are flat arrays (one entry per particle) grouped by jet: ``counts[j]`` particles of jet ``j`` follow those
of jet ``j-1``. Angles use the pseudorapidity η and azimuth φ of the particle and of the jet axis (the E-scheme
sum of the jet's constituents). Energies and momenta in GeV, impact parameters in mm.
"""

from __future__ import annotations

import numpy as np

from .schema import FEATURE_NAMES


def jet_kinematics(counts, px, py, pz, e) -> dict[str, np.ndarray]:
    """Per-jet E-scheme sums: jet_px/py/pz/energy plus jet_pt, jet_eta, jet_phi (arrays of length n_jets)."""
    jet_of = np.repeat(np.arange(len(counts)), counts)
    sums = {
        name: np.bincount(jet_of, weights=arr, minlength=len(counts))
        for name, arr in (("px", px), ("py", py), ("pz", pz), ("energy", e))
    }
    pt = np.hypot(sums["px"], sums["py"])
    return {
        "jet_px": sums["px"],
        "jet_py": sums["py"],
        "jet_pz": sums["pz"],
        "jet_energy": sums["energy"],
        "jet_pt": pt,
        "jet_eta": pseudorapidity(pt, sums["pz"]),
        "jet_phi": np.arctan2(sums["py"], sums["px"]),
    }


def pseudorapidity(pt, pz):
    return np.arcsinh(pz / np.maximum(pt, 1e-12))


def wrap_phi(dphi):
    """Map an angle difference into [-π, π)."""
    return (dphi + np.pi) % (2.0 * np.pi) - np.pi


def energy_order(counts, e) -> np.ndarray:
    """Permutation of flat particles that sorts each jet's particles by decreasing energy (jets stay in order)."""
    jet_of = np.repeat(np.arange(len(counts)), counts)
    return np.lexsort((-e, jet_of))


def particle_features(counts, px, py, pz, e, jet: dict, track: dict) -> dict[str, np.ndarray]:
    """The 19 Table-1 features (float32, FEATURE_NAMES order) for jet-grouped flat particles.

    ``jet`` holds per-jet jet_pt, jet_eta, jet_phi, jet_energy (see :func:`jet_kinematics`); ``track`` holds the
    per-particle d0, d0_err, z0, z0_err, charge and the is_* particle-ID flags.
    """
    jet_of = np.repeat(np.arange(len(counts)), counts)
    pt = np.hypot(px, py)
    deta = pseudorapidity(pt, pz) - jet["jet_eta"][jet_of]
    dphi = wrap_phi(np.arctan2(py, px) - jet["jet_phi"][jet_of])
    out = {
        "deta": deta,
        "dphi": dphi,
        "log_pt": np.log(pt),
        "log_e": np.log(e),
        "log_pt_rel": np.log(pt / jet["jet_pt"][jet_of]),
        "log_e_rel": np.log(e / jet["jet_energy"][jet_of]),
        "delta_r": np.hypot(deta, dphi),
        **{name: track[name] for name in FEATURE_NAMES[7:]},
    }
    return {name: np.asarray(out[name], dtype=np.float32) for name in FEATURE_NAMES}

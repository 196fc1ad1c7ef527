"""CEPC-like parametric detector acting on flat arrays of final-state particles (one entry per particle).

Every number comes from the config's ``data.generate.detector`` block (see :data:`DEFAULT_DETECTOR`):
tracks get a smeared 1/pT, and impact parameters from the true production vertex through an exact helix
(:mod:`jetscale.data.helix`) smeared by the impact-parameter resolution; photons and neutral hadrons get a
smeared energy; acceptance |cos θ| and thresholds are applied to measured quantities; particle ID comes from the
PDG id with an optional K± <-> π± mis-identification probability.
Units: GeV, mm, tesla. Resolutions use ``a ⊕ b / (p sin^{3/2} θ)`` (tracks) and ``a/√E ⊕ b`` (calorimeter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .helix import helix_impact

DEFAULT_DETECTOR: dict = {
    "b_field": 3.0,
    "track_pt_min": 0.1,
    "cos_theta_max": 0.99,
    "sigma_inv_pt": [2.0e-5, 1.0e-3],
    "sigma_ip": [0.005, 0.010],
    "photon_resolution": [0.17, 0.01],
    "neutral_hadron_resolution": [0.60, 0.01],
    "photon_e_min": 0.1,
    "neutral_hadron_e_min": 0.5,
    "kaon_pion_misid": 0.0,
}

PID_CODES = {"is_electron": 11, "is_muon": 13, "is_charged_kaon": 321, "is_charged_pion": 211, "is_proton": 2212}


@dataclass
class Measured:
    """Detector-level particles that passed acceptance and thresholds (all arrays have one entry per particle)."""

    keep: np.ndarray  # bool, over the *input* particles: which ones were measured
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    charge: np.ndarray
    d0: np.ndarray
    d0_err: np.ndarray
    z0: np.ndarray
    z0_err: np.ndarray
    pid: dict[str, np.ndarray]  # is_* flags (float32 0/1), Table-1 names


def detector_settings(cfg_detector: dict | None) -> dict:
    """The detector block with defaults filled in."""
    return {**DEFAULT_DETECTOR, **(cfg_detector or {})}


def quadrature(a, b):
    return np.hypot(a, b)


def measure(pid, px, py, pz, e, vx, vy, vz, charge, det: dict, rng: np.random.Generator) -> Measured:
    """Apply the detector to true final-state particles (flat float64 arrays, vertex in mm)."""
    det = detector_settings(det)
    n = len(pid)
    p = np.sqrt(px * px + py * py + pz * pz)
    pt = np.hypot(px, py)
    cos_theta = np.divide(pz, p, out=np.ones(n), where=p > 0)
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta * cos_theta, 0.0, 1.0))
    charged = charge != 0
    photon = pid == 22
    neutral_hadron = ~charged & ~photon

    # Tracks: Gaussian smearing of 1/pT at fixed direction; energy from the true mass.
    ms_term = 1.0 / np.maximum(p * sin_theta**1.5, 1e-12)
    a, b = det["sigma_inv_pt"]
    inv_pt = 1.0 / np.maximum(pt, 1e-12)
    inv_pt_meas = np.abs(inv_pt + rng.standard_normal(n) * quadrature(a, b * ms_term))
    track_scale = inv_pt / np.maximum(inv_pt_meas, 1e-12)
    # Calorimeter: Gaussian smearing of E, the four-vector scaled by E'/E.
    a_g, b_g = det["photon_resolution"]
    a_h, b_h = det["neutral_hadron_resolution"]
    sqrt_e = np.sqrt(np.maximum(e, 1e-12))
    rel = np.where(photon, quadrature(a_g / sqrt_e, b_g), quadrature(a_h / sqrt_e, b_h))
    calo_scale = np.maximum(1.0 + rng.standard_normal(n) * rel, 0.0)

    scale = np.where(charged, track_scale, calo_scale)
    mpx, mpy, mpz = px * scale, py * scale, pz * scale
    mass2 = np.maximum(e * e - p * p, 0.0)
    me = np.where(charged, np.sqrt(p * p * scale * scale + mass2), e * scale)

    keep = np.abs(cos_theta) < det["cos_theta_max"]
    keep &= np.where(charged, pt * scale > det["track_pt_min"], True)
    keep &= np.where(photon, me > det["photon_e_min"], True)
    keep &= np.where(neutral_hadron, me > det["neutral_hadron_e_min"], True)
    keep &= me > 0

    d0, z0 = helix_impact(vx, vy, vz, px, py, pz, charge, det["b_field"])
    a_ip, b_ip = det["sigma_ip"]
    ip_err = np.where(charged, quadrature(a_ip, b_ip * ms_term), 0.0)
    d0 = d0 + rng.standard_normal(n) * ip_err
    z0 = z0 + rng.standard_normal(n) * ip_err

    flags = identify(pid, charged, photon, det["kaon_pion_misid"], rng)
    sel = keep
    return Measured(
        keep=keep,
        px=mpx[sel],
        py=mpy[sel],
        pz=mpz[sel],
        e=me[sel],
        charge=charge[sel].astype(np.float64),
        d0=d0[sel],
        d0_err=ip_err[sel],
        z0=z0[sel],
        z0_err=ip_err[sel],
        pid={name: flag[sel] for name, flag in flags.items()},
    )


def identify(pid, charged, photon, misid: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Table-1 particle-ID flags from PDG ids, with K± <-> π± swapped with probability ``misid``."""
    apid = np.abs(pid)
    flags = {name: apid == code for name, code in PID_CODES.items()}
    swap = rng.random(len(pid)) < misid if misid > 0 else np.zeros(len(pid), dtype=bool)
    kaon, pion = flags["is_charged_kaon"], flags["is_charged_pion"]
    flags["is_charged_kaon"] = np.where(swap, pion, kaon)
    flags["is_charged_pion"] = np.where(swap, kaon, pion)
    flags["is_neutral_hadron"] = ~charged & ~photon
    flags["is_photon"] = photon
    return {name: flag.astype(np.float32) for name, flag in flags.items()}

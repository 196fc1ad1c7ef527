"""CEPC-like parametric detector acting on flat arrays of final-state particles (one entry per particle).

Every number comes from the config's ``data.generate.detector`` block; its defaults and their sources live in the
config schema (``schemas/config.schema.yaml``), read here by :func:`default_detector`. What happens to a particle:

* charged, born inside the tracker and found (tracking efficiency vs pT): a **track** with smeared 1/pT, impact
  parameters from the true production vertex through an exact helix (:mod:`jetscale.data.helix`) smeared by a
  resolution that grows with the radius of the track's first measured layer (tracks born beyond the vertex
  detector extrapolate further to the beam line);
* charged but not a track (lost, or born too close to the tracker's end): a calorimeter cluster (e± as a photon,
  hadrons as a neutral hadron; muons leave none) or dropped (``untracked_charged``);
* photons and neutral hadrons: clusters with smeared energy and direction.

Acceptance |cos θ| and thresholds apply to measured quantities. Charged-hadron ID is truth (PDG id) or the
most likely π/K/p from dN/dx and time of flight (:func:`identify_hadrons`).
Units: GeV, mm, ns, tesla. Resolutions: ``a ⊕ b / (p sin^{3/2} θ)`` (tracks) and ``a/√E ⊕ b`` (calorimeter).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import numpy as np

from .helix import CURVATURE_CONSTANT, helix_impact

PID_CODES = {"is_electron": 11, "is_muon": 13, "is_charged_kaon": 321, "is_charged_pion": 211, "is_proton": 2212}
HADRON_HYPOTHESES = {"is_charged_pion": 0.13957039, "is_charged_kaon": 0.493677, "is_proton": 0.93827209}  # GeV
SPEED_OF_LIGHT = 299.792458  # mm / ns


@functools.lru_cache(maxsize=1)
def _schema_defaults() -> dict:
    from ..config import schema

    props = schema()["properties"]["data"]["properties"]["generate"]["properties"]["detector"]["properties"]
    return {name: spec["default"] for name, spec in props.items()}


def default_detector() -> dict:
    """The detector defaults (a copy), from the config schema: the one place they are written down."""
    return copy.deepcopy(_schema_defaults())


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
    return {**default_detector(), **(cfg_detector or {})}


def quadrature(a, b):
    return np.hypot(a, b)


def tracking_efficiency(pt: np.ndarray, table) -> np.ndarray:
    """Piecewise-constant efficiency: ``table`` = [[pT_min, eff], ...] by increasing pT_min; 0 below the first."""
    edges = np.array([row[0] for row in table], dtype=np.float64)
    effs = np.concatenate([[0.0], [row[1] for row in table]])
    return effs[np.searchsorted(edges, pt, side="right")]


def first_layer_radius(r_prod: np.ndarray, layers) -> np.ndarray:
    """Radius of the first measuring layer a track born at ``r_prod`` crosses (mm).

    The first of ``layers`` at or beyond ``r_prod``; beyond the last one the tracker is gaseous and measures
    continuously, so the first hit is where the track starts.
    """
    radii = np.sort(np.asarray(layers, dtype=np.float64))
    i = np.searchsorted(radii, r_prod, side="left")
    return np.where(i < len(radii), radii[np.minimum(i, len(radii) - 1)], r_prod)


def ip_resolution_scale(vx, vy, layers) -> np.ndarray:
    """Factor on σ(d0), σ(z0) for tracks born at (vx, vy): r_first / r_1 (>= 1).

    Both terms of the impact-parameter resolution are set by the extrapolation from the innermost hits to the beam
    line: the multiple-scattering kink and the hit errors are projected over that distance, which grows linearly
    with the radius of the first measured layer.
    """
    r_first = first_layer_radius(np.hypot(vx, vy), layers)
    return np.maximum(r_first / min(layers), 1.0)


def inside_tracker(vx, vy, vz, det: dict) -> np.ndarray:
    """Charged particles born here leave enough hits to be tracks (more than track_min_length before the end)."""
    margin = det["track_min_length"]
    return (np.hypot(vx, vy) < det["tracker_radius"] - margin) & (np.abs(vz) < det["tracker_half_length"] - margin)


def smear_direction(px, py, pz, sigma_eta: float, sigma_phi: float, rng: np.random.Generator, n: int):
    """Rotate momenta by Gaussian shifts in pseudorapidity and azimuth at fixed |p|."""
    p = np.sqrt(px * px + py * py + pz * pz)
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros(n), where=pt > 0)) + rng.standard_normal(n) * sigma_eta
    phi = np.arctan2(py, px) + rng.standard_normal(n) * sigma_phi
    new_pt = p / np.cosh(eta)
    return new_pt * np.cos(phi), new_pt * np.sin(phi), new_pt * np.sinh(eta)


def measure(pid, px, py, pz, e, vx, vy, vz, charge, det: dict, rng: np.random.Generator) -> Measured:
    """Apply the detector to true final-state particles (flat float64 arrays, vertex in mm)."""
    det = detector_settings(det)
    n = len(pid)
    apid = np.abs(pid)
    p = np.sqrt(px * px + py * py + pz * pz)
    pt = np.hypot(px, py)
    cos_theta = np.divide(pz, p, out=np.ones(n), where=p > 0)
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta * cos_theta, 0.0, 1.0))
    charged = charge != 0

    # Which charged particles are tracks: born inside the tracker, and found.
    found = rng.random(n) < tracking_efficiency(pt, det["tracking_efficiency"])
    track = charged & found & inside_tracker(vx, vy, vz, det)
    untracked = charged & ~track
    cluster_kept = ~untracked if det["untracked_charged"] == "drop" else ~(untracked & (apid == 13))
    photon = (pid == 22) | (untracked & (apid == 11))  # an electron without its track is an EM cluster
    neutral_hadron = ~track & ~photon

    # Tracks: Gaussian smearing of 1/pT at fixed direction; energy from the true mass.
    ms_term = 1.0 / np.maximum(p * sin_theta**1.5, 1e-12)
    a, b = det["sigma_inv_pt"]
    inv_pt = 1.0 / np.maximum(pt, 1e-12)
    inv_pt_meas = np.abs(inv_pt + rng.standard_normal(n) * quadrature(a, b * ms_term))
    track_scale = inv_pt / np.maximum(inv_pt_meas, 1e-12)
    # Calorimeter: Gaussian smearing of E, the four-vector scaled by E'/E, the direction smeared.
    a_g, b_g = det["photon_resolution"]
    a_h, b_h = det["neutral_hadron_resolution"]
    sqrt_e = np.sqrt(np.maximum(e, 1e-12))
    rel = np.where(photon, quadrature(a_g / sqrt_e, b_g), quadrature(a_h / sqrt_e, b_h))
    calo_scale = np.maximum(1.0 + rng.standard_normal(n) * rel, 0.0)

    scale = np.where(track, track_scale, calo_scale)
    mpx, mpy, mpz = px * scale, py * scale, pz * scale
    mass2 = np.maximum(e * e - p * p, 0.0)
    me = np.where(track, np.sqrt(p * p * scale * scale + mass2), e * scale)
    cluster = ~track
    for kind, key in ((photon, "photon_angle_resolution"), (neutral_hadron, "neutral_hadron_angle_resolution")):
        sel = np.flatnonzero(cluster & kind)
        if len(sel) and any(det[key]):
            mpx[sel], mpy[sel], mpz[sel] = smear_direction(mpx[sel], mpy[sel], mpz[sel], *det[key], rng, len(sel))

    mp = np.sqrt(mpx * mpx + mpy * mpy + mpz * mpz)
    keep = np.abs(np.divide(mpz, mp, out=np.ones(n), where=mp > 0)) < det["cos_theta_max"]
    keep &= cluster_kept
    keep &= np.where(track, pt * scale > det["track_pt_min"], True)
    keep &= np.where(photon, me > det["photon_e_min"], True)
    keep &= np.where(neutral_hadron, me > det["neutral_hadron_e_min"], True)
    keep &= me > 0

    d0, z0 = helix_impact(vx, vy, vz, px, py, pz, np.where(track, charge, 0.0), det["b_field"])
    a_ip, b_ip = det["sigma_ip"]
    ip_scale = ip_resolution_scale(vx, vy, det["ip_layer_radii"])
    ip_err = np.where(track, quadrature(a_ip, b_ip * ms_term) * ip_scale, 0.0)
    d0 = d0 + rng.standard_normal(n) * ip_err
    z0 = z0 + rng.standard_normal(n) * ip_err

    flags = identify(pid, track, photon, det["kaon_pion_misid"], rng)
    if det["pid"] == "dedx_tof":
        hadron = track & ~np.isin(apid, (11, 13))
        sel = np.flatnonzero(hadron & keep)
        mass = np.sqrt(mass2[sel])
        chosen = identify_hadrons(mpx[sel], mpy[sel], mpz[sel], mass, charge[sel], det, rng)
        for name in HADRON_HYPOTHESES:
            flags[name][sel] = (chosen == name).astype(np.float32)
    sel = keep
    return Measured(
        keep=keep,
        px=mpx[sel],
        py=mpy[sel],
        pz=mpz[sel],
        e=me[sel],
        charge=np.where(track, charge, 0.0)[sel].astype(np.float64),
        d0=d0[sel],
        d0_err=ip_err[sel],
        z0=z0[sel],
        z0_err=ip_err[sel],
        pid={name: flag[sel] for name, flag in flags.items()},
    )


def identify(pid, track, photon, misid: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Table-1 particle-ID flags from PDG ids (tracks only), with K± <-> π± swapped with probability ``misid``."""
    apid = np.abs(pid)
    flags = {name: (apid == code) & track for name, code in PID_CODES.items()}
    swap = rng.random(len(pid)) < misid if misid > 0 else np.zeros(len(pid), dtype=bool)
    kaon, pion = flags["is_charged_kaon"], flags["is_charged_pion"]
    flags["is_charged_kaon"] = np.where(swap, pion, kaon)
    flags["is_charged_pion"] = np.where(swap, kaon, pion)
    flags["is_neutral_hadron"] = ~track & ~photon
    flags["is_photon"] = photon
    return {name: flag.astype(np.float32) for name, flag in flags.items()}


def ionisation(beta_gamma: np.ndarray) -> np.ndarray:
    """Relative ionisation (cluster count per length) vs βγ: a Bethe-Bloch shape with a Fermi plateau.

    ``(ln(A x_eff²) - β²) / β²`` with A = 2 m_e c² / I for a helium-isobutane gas (I ≈ 45 eV) and the density
    effect as a saturation ``x_eff² = x² / (1 + x²/x_p²)``; x_p = 65 puts the plateau at ≈ 1.5x the minimum
    ionisation (typical for He-based gases). Normalised to 1 at the minimum (βγ ≈ 3.5). Approximate.
    """
    x2 = beta_gamma * beta_gamma
    beta2 = x2 / (1.0 + x2)
    x_eff2 = x2 / (1.0 + x2 / 65.0**2)
    return (np.log(2.27e4 * x_eff2) - beta2) / beta2 / _MIN_IONISATION


_MIN_IONISATION = float((np.log(2.27e4 * 12.25 / (1 + 12.25 / 65.0**2)) - 12.25 / 13.25) / (12.25 / 13.25))


def flight_length(px, py, pz, charge, det: dict) -> np.ndarray:
    """Helix path length (mm) from the beam line to the tracker's outer surface (barrel or endcap); NaN if never.

    Displacement of the production vertex is neglected (the parent's flight time is small at these momenta).
    """
    pt = np.hypot(px, py)
    radius = pt / (CURVATURE_CONSTANT * det["b_field"] * np.maximum(np.abs(charge), 1e-12))
    r_out, z_out = det["tracker_radius"], det["tracker_half_length"]
    with np.errstate(invalid="ignore", divide="ignore"):
        s_barrel = 2.0 * radius * np.arcsin(r_out / (2.0 * radius))  # NaN where the helix curls inside (2R < r)
        s_endcap = z_out * pt / np.abs(pz)
        s_t = np.fmin(s_barrel, s_endcap)  # transverse arc length to the first surface hit
        return s_t * np.sqrt(1.0 + (pz / pt) ** 2)


def identify_hadrons(px, py, pz, mass, charge, det: dict, rng: np.random.Generator) -> np.ndarray:
    """Most likely of π/K/p per track from a smeared dN/dx and time of flight (names of HADRON_HYPOTHESES).

    Measurements use the particle's true mass; each hypothesis predicts them from the measured momentum. dN/dx has
    relative resolution ``dndx_resolution``; the time of flight to the tracker's outer surface ``tof_resolution``
    (ns), only for tracks that reach it. Gaussian likelihoods, equal priors.
    """
    n = len(px)
    p = np.sqrt(px * px + py * py + pz * pz)
    sigma_rel, sigma_t = det["dndx_resolution"], det["tof_resolution"]
    dndx = ionisation(p / mass) * (1.0 + rng.standard_normal(n) * sigma_rel)
    length = flight_length(px, py, pz, charge, det)
    has_tof = np.isfinite(length)
    t = np.where(has_tof, length, 0.0) / SPEED_OF_LIGHT * np.sqrt(1.0 + (mass / p) ** 2)
    t = t + rng.standard_normal(n) * sigma_t
    chi2 = []
    for m_h in HADRON_HYPOTHESES.values():
        expect = ionisation(p / m_h)
        c = ((dndx - expect) / (sigma_rel * expect)) ** 2 + 2.0 * np.log(expect)  # -2 ln L up to a constant
        t_h = np.where(has_tof, length, 0.0) / SPEED_OF_LIGHT * np.sqrt(1.0 + (m_h / p) ** 2)
        chi2.append(c + np.where(has_tof, ((t - t_h) / sigma_t) ** 2, 0.0))
    names = np.array(list(HADRON_HYPOTHESES))
    return names[np.argmin(np.stack(chi2), axis=0)]

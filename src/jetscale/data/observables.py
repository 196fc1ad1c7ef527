"""Hand-made jet observables from a split's padded particle arrays: the inputs of the ``bdt`` baseline.

One row per jet, one column per name in :data:`OBSERVABLES` (float32). They are the quantities a physicist would
cut on to tell b from c from light jets and a quark from its antiquark:

* multiplicities (constituents before the padding cap, charged, photons, neutral hadrons, kaons, leptons,
  displaced tracks at |d0|/σ > 3 and > 5), jet mass and energy, energy fractions and the energy-weighted width;
* charge: the pT-weighted jet charge Q_κ = Σ q_i pT_i^κ / pT_jet^κ at κ = 0.3, 0.5, 0.7, 1; the charge of the
  leading (highest-energy) particle and of the leading charged particle, kaon, lepton (e, μ) and displaced track
  (0 where the jet has none); charge sums of kaons, leptons and displaced tracks;
* flight: the three largest transverse (|d0|/σ(d0)) and the largest longitudinal (|z0|/σ(z0)) impact-parameter
  significances of the jet's tracks, and the invariant mass of its displaced tracks (a secondary-vertex mass
  proxy: b hadrons ≈ 2-5 GeV, charm below 2 GeV).

Only what the split stores is used (``features``: Table-1 features in ``FEATURE_NAMES`` order, energy ordered
and zero padded; ``mask``; ``vectors`` px, py, pz, e; ``n_particles``), so the observables describe exactly the
particles a network of the same cell sees. A track is a charged particle with a measured σ(d0) > 0.
"""

from __future__ import annotations

import numpy as np

from .schema import FEATURE_NAMES

KAPPAS: tuple[float, ...] = (0.3, 0.5, 0.7, 1.0)
DISPLACED_SIGNIFICANCE = 3.0  # |d0|/σ(d0) above which a track counts as displaced
TOP_IP = 3  # the largest transverse impact-parameter significances kept

OBSERVABLES: tuple[str, ...] = (
    "n_particles",
    "n_charged",
    "n_photons",
    "n_neutral_hadrons",
    "n_kaons",
    "n_leptons",
    "n_displaced",
    "n_displaced_5sigma",
    "jet_mass",
    "jet_energy",
    "charged_energy_fraction",
    "photon_energy_fraction",
    "neutral_hadron_energy_fraction",
    "jet_width",
    *(f"jet_charge_k{k:g}" for k in KAPPAS),
    "leading_charge",
    "leading_energy_fraction",
    "leading_charged_charge",
    "leading_charged_energy_fraction",
    "leading_kaon_charge",
    "leading_lepton_charge",
    "leading_lepton_energy_fraction",
    "leading_displaced_charge",
    "kaon_charge_sum",
    "lepton_charge_sum",
    "displaced_charge_sum",
    *(f"d0_significance_{i + 1}" for i in range(TOP_IP)),
    "z0_significance_1",
    "displaced_mass",
)

_F = {name: i for i, name in enumerate(FEATURE_NAMES)}
CHUNK = 8192  # jets per block: bounds the temporary (chunk, P) arrays


def jet_observables(features, mask, vectors, n_particles) -> np.ndarray:
    """(n, len(OBSERVABLES)) float32 for the jets of split arrays (read in blocks, so memory maps stay cheap)."""
    n = len(mask)
    out = np.empty((n, len(OBSERVABLES)), dtype=np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        block = _block(
            np.asarray(features[start:stop], dtype=np.float64),
            np.asarray(mask[start:stop], dtype=bool),
            np.asarray(vectors[start:stop], dtype=np.float64),
            np.asarray(n_particles[start:stop], dtype=np.float64),
        )
        out[start:stop] = np.stack([block[name] for name in OBSERVABLES], axis=1)
    return out


def split_observables(split) -> np.ndarray:
    """:func:`jet_observables` of a :class:`~jetscale.data.splits.SplitArrays`."""
    return jet_observables(split["features"], split["mask"], split["vectors"], split["n_particles"])


def _first(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Per jet, ``values`` at the first (highest-energy) particle where ``where`` holds; 0 where none does."""
    idx = np.argmax(where, axis=1)
    picked = np.take_along_axis(values, idx[:, None], axis=1)[:, 0]
    return np.where(where.any(axis=1), picked, 0.0)


def _mass(vectors: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Invariant mass of the particles selected by ``where`` (0 for none)."""
    p = (vectors * where[..., None]).sum(axis=1)
    m2 = p[:, 3] ** 2 - p[:, 0] ** 2 - p[:, 1] ** 2 - p[:, 2] ** 2
    return np.sqrt(np.maximum(m2, 0.0))


def _block(x: np.ndarray, mask: np.ndarray, vectors: np.ndarray, n_true: np.ndarray) -> dict[str, np.ndarray]:
    f = {name: x[..., i] * mask for name, i in _F.items()}
    energy = vectors[..., 3] * mask
    pt = np.hypot(vectors[..., 0], vectors[..., 1]) * mask
    charge = np.rint(f["charge"])
    charged = mask & (charge != 0)
    track = charged & (f["d0_err"] > 0)
    sig_d0 = np.where(track, np.abs(f["d0"]) / np.where(track, f["d0_err"], 1.0), 0.0)
    sig_z0 = np.where(track & (f["z0_err"] > 0), np.abs(f["z0"]) / np.where(f["z0_err"] > 0, f["z0_err"], 1.0), 0.0)
    displaced = track & (sig_d0 > DISPLACED_SIGNIFICANCE)
    kaon = mask & (f["is_charged_kaon"] > 0.5)
    lepton = mask & ((f["is_electron"] > 0.5) | (f["is_muon"] > 0.5))
    photon = mask & (f["is_photon"] > 0.5)
    neutral_hadron = mask & (f["is_neutral_hadron"] > 0.5)

    jet = (vectors * mask[..., None]).sum(axis=1)
    jet_energy = jet[:, 3]
    safe_energy = np.where(jet_energy > 0, jet_energy, 1.0)
    jet_pt = np.hypot(jet[:, 0], jet[:, 1])
    safe_pt = np.where(jet_pt > 0, jet_pt, 1.0)
    fraction = energy / safe_energy[:, None]
    out = {
        "n_particles": n_true,
        "n_charged": charged.sum(1),
        "n_photons": photon.sum(1),
        "n_neutral_hadrons": neutral_hadron.sum(1),
        "n_kaons": kaon.sum(1),
        "n_leptons": lepton.sum(1),
        "n_displaced": displaced.sum(1),
        "n_displaced_5sigma": (track & (sig_d0 > 5.0)).sum(1),
        "jet_mass": _mass(vectors, mask),
        "jet_energy": jet_energy,
        "charged_energy_fraction": (fraction * charged).sum(1),
        "photon_energy_fraction": (fraction * photon).sum(1),
        "neutral_hadron_energy_fraction": (fraction * neutral_hadron).sum(1),
        "jet_width": (fraction * f["delta_r"]).sum(1),
        "leading_charge": _first(charge, mask),
        "leading_energy_fraction": _first(fraction, mask),
        "leading_charged_charge": _first(charge, charged),
        "leading_charged_energy_fraction": _first(fraction, charged),
        "leading_kaon_charge": _first(charge, kaon),
        "leading_lepton_charge": _first(charge, lepton),
        "leading_lepton_energy_fraction": _first(fraction, lepton),
        "leading_displaced_charge": _first(charge, displaced),
        "kaon_charge_sum": (charge * kaon).sum(1),
        "lepton_charge_sum": (charge * lepton).sum(1),
        "displaced_charge_sum": (charge * displaced).sum(1),
        "z0_significance_1": sig_z0.max(axis=1, initial=0.0),
        "displaced_mass": _mass(vectors, displaced),
    }
    for kappa in KAPPAS:
        out[f"jet_charge_k{kappa:g}"] = (charge * pt**kappa).sum(1) / safe_pt**kappa
    top = -np.sort(-sig_d0, axis=1)[:, :TOP_IP]
    if top.shape[1] < TOP_IP:  # fewer particle slots than TOP_IP
        top = np.pad(top, ((0, 0), (0, TOP_IP - top.shape[1])))
    for i in range(TOP_IP):
        out[f"d0_significance_{i + 1}"] = top[:, i]
    return out

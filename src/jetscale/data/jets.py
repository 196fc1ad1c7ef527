"""Exclusive-2 jet clustering (Durham ee_kt, or generalised ee_genkt) and truth labelling by the Higgs daughters.

``data.generate.clustering`` picks the algorithm: ``ee_kt`` (Durham, the full-simulation JoI reference) or
``ee_genkt`` with radius R and power p (the CEPC 4th-concept Delphes card: R = 2.5, p = 1). Both are forced to
exactly two jets per event.

Events are awkward arrays ``n_events * var * {px, py, pz, E}`` of detector-level particles. Outputs are flat:
one entry per jet (two per event, event-major) and, for constituents, indices into the event's particle list.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np

_JET_DEFS: dict = {}


def clustering_settings(cfg_clustering: dict | None) -> dict:
    """The clustering block with the config schema's defaults filled in."""
    from ..config import schema

    props = schema()["properties"]["data"]["properties"]["generate"]["properties"]["clustering"]["properties"]
    out = {**{k: v["default"] for k, v in props.items()}, **(cfg_clustering or {})}
    if out["algorithm"] not in ("ee_kt", "ee_genkt"):
        raise ValueError(f"data.generate.clustering.algorithm: unknown algorithm {out['algorithm']!r}")
    return out


def clustering_description(cfg_clustering: dict | None) -> str:
    c = clustering_settings(cfg_clustering)
    if c["algorithm"] == "ee_kt":
        return "Durham exclusive-2"
    return f"ee_genkt R={c['radius']:g} p={c['power']:g} exclusive-2"


def jet_definition(cfg_clustering: dict | None = None):
    """The FastJet definition for the clustering settings (cached per setting)."""
    c = clustering_settings(cfg_clustering)
    key = (c["algorithm"],) if c["algorithm"] == "ee_kt" else (c["algorithm"], float(c["radius"]), float(c["power"]))
    if key not in _JET_DEFS:
        import fastjet

        with _quiet_stdout():  # the FastJet banner
            if c["algorithm"] == "ee_kt":
                _JET_DEFS[key] = fastjet.JetDefinition0Param(fastjet.ee_kt_algorithm)
            else:
                _JET_DEFS[key] = fastjet.JetDefinition(fastjet.ee_genkt_algorithm, key[1], key[2])
    return _JET_DEFS[key]


@contextlib.contextmanager
def _quiet_stdout():
    """Silence C-level stdout (FastJet prints its banner there), keeping Python's stdout usable."""
    try:
        fd = os.dup(1)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(fd, 1)
        os.close(fd)


def cluster_two_jets(events, clustering: dict | None = None) -> np.ndarray:
    """Constituent indices per (event, jet) as an awkward ``n_events * 2 * var * int`` array (exclusive 2).

    Every event must have at least two particles.
    """
    import fastjet

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="dcut and exclusive jets")
        with _quiet_stdout():
            cs = fastjet.ClusterSequence(events, jet_definition(clustering))
            return cs.exclusive_jets_constituent_index(2)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def match_partons(jet_p3: np.ndarray, parton_p3: np.ndarray, parton_id: np.ndarray):
    """Assign the two partons of each event to its two jets by the permutation with the smaller summed angle.

    Shapes: ``jet_p3``, ``parton_p3`` (n_events, 2, 3); ``parton_id`` (n_events, 2).
    Returns (matched parton id, match angle in rad), each (n_events, 2).
    """
    j, p = unit(jet_p3), unit(parton_p3)
    cos = np.einsum("eik,ejk->eij", j, p).clip(-1.0, 1.0)
    ang = np.arccos(cos)  # ang[e, jet, parton]
    straight = ang[:, 0, 0] + ang[:, 1, 1] <= ang[:, 0, 1] + ang[:, 1, 0]
    order = np.where(straight[:, None], [0, 1], [1, 0])
    ids = np.take_along_axis(parton_id, order, axis=1)
    angles = np.take_along_axis(ang, order[:, :, None], axis=2)[:, :, 0]
    return ids, angles

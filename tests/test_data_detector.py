"""Detector options do what they say, on real Pythia 8 events (a few hundred per test module, seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from jetscale.config import load_config, schema
from jetscale.data import detector as det
from jetscale.data.generate import (
    NEUTRINOS,
    ChargeTable,
    flatten_record,
    generate_events,
    make_pythia,
)
from jetscale.data.store import JetTable
from jetscale.settings import data_fingerprint

pytestmark = pytest.mark.xdist_group("data")


@pytest.fixture(scope="module", autouse=True)
def _no_progress_bar():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JETSCALE_NO_PROGRESS", "1")
        yield


def true_final_state(mode: str, n_events: int, seed: int, process: str = "zh_nunu") -> dict:
    """Visible final-state particles (flat arrays, vertex in mm) of ``n_events`` Pythia events."""
    pythia = make_pythia(mode, seed, process=process)
    truth = flatten_record(pythia.nextBatch(n_events, errorMode="skip"))
    fs = (truth["status"] > 0) & ~np.isin(np.abs(truth["id"]), NEUTRINOS)
    out = {k: truth[k][fs] for k in ("id", "px", "py", "pz", "e", "vx", "vy", "vz", "event")}
    out["charge"] = ChargeTable(pythia.particleData)(out["id"])
    return out


def run_detector(particles: dict, seed: int = 0, **options) -> det.Measured:
    cols = ("id", "px", "py", "pz", "e", "vx", "vy", "vz", "charge")
    return det.measure(*(particles[c] for c in cols[:-1]), particles["charge"], options, np.random.default_rng(seed))


@pytest.fixture(scope="module")
def b_events() -> dict:
    return true_final_state("b", 400, seed=11)


@pytest.fixture(scope="module")
def measured(b_events) -> det.Measured:
    return run_detector(b_events)


def tracks_of(measured: det.Measured) -> np.ndarray:
    """Over the input particles: True where the particle became a track."""
    is_track = np.zeros(len(measured.keep), bool)
    is_track[np.flatnonzero(measured.keep)] = measured.charge != 0
    return is_track


def test_defaults_come_from_the_schema_and_enter_the_data_fingerprint():
    props = schema()["properties"]["data"]["properties"]["generate"]["properties"]["detector"]["properties"]
    assert det.detector_settings(None) == {k: v["default"] for k, v in props.items()}
    base = {
        "study": "s",
        "classes": ["b", "bbar"],
        "data": {"source": "generate", "generate": {"jets_per_class": 2000}},
        "grid": {"axes": {"model": ["particlenet"], "width": [16], "n_train": [100], "compute": [100], "seed": [0]}},
    }
    plain = load_config(base)
    assert plain["data"]["generate"]["detector"] == det.default_detector()  # defaults are filled in, so hashed
    assert plain["data"]["generate"]["process"] == "zh_nunu"
    assert plain["data"]["generate"]["clustering"]["algorithm"] == "ee_kt"
    explicit = dict(
        base, data={"source": "generate", "generate": {"jets_per_class": 2000, "detector": {"pid": "truth"}}}
    )
    assert data_fingerprint(load_config(explicit)) == data_fingerprint(plain)
    changes = [
        {"detector": {"pid": "dedx_tof"}},
        {"detector": {"tracking_efficiency": [[0.1, 1.0]]}},
        {"detector": {"ip_layer_radii": [16]}},
        {"detector": {"untracked_charged": "drop"}},
        {"detector": {"photon_angle_resolution": [0.0, 0.0]}},
        {"process": "nunu_h"},
        {"clustering": {"algorithm": "ee_genkt"}},
    ]
    prints = {data_fingerprint(plain)}
    for change in changes:
        cfg = dict(base, data={"source": "generate", "generate": {"jets_per_class": 2000, **change}})
        prints.add(data_fingerprint(load_config(cfg)))
    assert len(prints) == len(changes) + 1


def test_bad_detector_option_names_the_key():
    from jetscale.errors import ConfigError

    cfg = {
        "study": "s",
        "classes": ["b", "bbar"],
        "data": {"source": "generate", "generate": {"jets_per_class": 2000, "detector": {"pid": "magic"}}},
        "grid": {"axes": {"model": ["particlenet"], "width": [16], "n_train": [100], "compute": [100], "seed": [0]}},
    }
    with pytest.raises(ConfigError, match=r"data\.generate\.detector\.pid: 'magic' is not allowed"):
        load_config(cfg)


def test_tracking_efficiency_matches_the_card(b_events, measured):
    p = b_events
    pt = np.hypot(p["px"], p["py"])
    cos = p["pz"] / np.sqrt(p["px"] ** 2 + p["py"] ** 2 + p["pz"] ** 2)
    born_inside = det.inside_tracker(p["vx"], p["vy"], p["vz"], det.default_detector())
    candidates = (p["charge"] != 0) & born_inside & (np.abs(cos) < 0.98) & (np.abs(p["id"]) != 13)
    is_track = tracks_of(measured)
    low = candidates & (pt > 0.13) & (pt < 0.45)  # away from the 0.1 and 0.5 GeV edges (1/pT is smeared)
    high = candidates & (pt > 0.6)
    assert low.sum() > 1500 and high.sum() > 4000, (low.sum(), high.sum())
    assert abs(is_track[low].mean() - 0.90) < 0.02, is_track[low].mean()
    assert abs(is_track[high].mean() - 0.997) < 0.003, is_track[high].mean()
    everything = run_detector(b_events, tracking_efficiency=[[0.0, 1.0]])
    assert tracks_of(everything)[low].mean() > 0.999


def test_lost_tracks_become_clusters_or_are_dropped(b_events, measured):
    charged = b_events["charge"] != 0
    lost = charged & measured.keep & ~tracks_of(measured)
    assert lost.sum() > 50
    kept = np.flatnonzero(measured.keep)
    row = np.searchsorted(kept, np.flatnonzero(lost))
    assert not measured.d0_err[row].any() and not measured.d0[row].any()
    flags = measured.pid
    assert (flags["is_neutral_hadron"][row] + flags["is_photon"][row] == 1).all()
    dropped = run_detector(b_events, untracked_charged="drop")
    assert not (charged & dropped.keep & ~tracks_of(dropped)).any()


def test_impact_parameter_resolution_grows_with_production_radius(b_events, measured):
    layers = det.default_detector()["ip_layer_radii"]
    r = np.array([0.0, 10.0, 16.0, 17.0, 30.0, 60.0, 61.0, 500.0, 590.0, 900.0])
    scale = det.ip_resolution_scale(r, np.zeros_like(r), layers)
    assert scale.tolist() == pytest.approx([1, 1, 1, 18 / 16, 37 / 16, 60 / 16, 120 / 16, 570 / 16, 600 / 16, 900 / 16])
    # On generated tracks: σ(d0) relative to the prompt-track formula, binned in production radius.
    is_track = tracks_of(measured)
    kept = np.flatnonzero(measured.keep)
    rows = np.searchsorted(kept, np.flatnonzero(is_track))
    p = b_events
    idx = np.flatnonzero(is_track)
    mom = np.sqrt(p["px"] ** 2 + p["py"] ** 2 + p["pz"] ** 2)[idx]
    sin = np.hypot(p["px"], p["py"])[idx] / mom
    nominal = np.hypot(0.005, 0.010 / (mom * sin**1.5))
    ratio = measured.d0_err[rows] / nominal
    r_prod = np.hypot(p["vx"], p["vy"])[idx]
    bins = [(0, 10), (40, 55), (150, 250), (700, 1500)]
    medians = [np.median(ratio[(r_prod >= lo) & (r_prod < hi)]) for lo, hi in bins]
    assert medians[0] == pytest.approx(1.0)
    assert np.all(np.diff(medians) > 0) and medians[2] > 10 and medians[3] > 40, medians
    np.testing.assert_array_equal(measured.z0_err, measured.d0_err)
    # One layer beyond everything: every track gets the prompt resolution again (the old behaviour).
    flat = run_detector(b_events, ip_layer_radii=[1e9])
    flat_rows = np.searchsorted(np.flatnonzero(flat.keep), np.flatnonzero(tracks_of(flat)))
    flat_idx = np.flatnonzero(tracks_of(flat))
    mom = np.sqrt(p["px"] ** 2 + p["py"] ** 2 + p["pz"] ** 2)[flat_idx]
    sin = np.hypot(p["px"], p["py"])[flat_idx] / mom
    np.testing.assert_allclose(flat.d0_err[flat_rows], np.hypot(0.005, 0.010 / (mom * sin**1.5)), rtol=1e-9)


def test_tracks_born_beyond_the_tracker_are_not_tracks(b_events, measured):
    p = b_events
    r_prod = np.hypot(p["vx"], p["vy"])
    beyond = (p["charge"] != 0) & (r_prod > 1700)
    assert beyond.sum() >= 3, beyond.sum()  # decays in flight between the tracker and the calorimeter
    assert r_prod.max() <= 2250 + 1e-6  # Pythia decays nothing beyond the calorimeter's front
    assert not tracks_of(measured)[beyond].any()
    hadrons = beyond & measured.keep & ~np.isin(np.abs(p["id"]), (11, 13))
    kept = np.flatnonzero(measured.keep)
    assert (measured.pid["is_neutral_hadron"][np.searchsorted(kept, np.flatnonzero(hadrons))] == 1).all()
    inside = (p["charge"] != 0) & (r_prod > 600) & (r_prod < 1500) & (np.hypot(p["px"], p["py"]) > 1)
    assert tracks_of(measured)[inside].mean() > 0.95  # drift-chamber-only tracks are still tracks


def test_photon_and_neutral_hadron_directions_are_smeared(b_events, measured):
    p = b_events
    kept = np.flatnonzero(measured.keep)
    true_eta = np.arcsinh(p["pz"] / np.hypot(p["px"], p["py"]))[kept]
    true_phi = np.arctan2(p["py"], p["px"])[kept]
    eta = np.arcsinh(measured.pz / np.hypot(measured.px, measured.py))
    dphi = (np.arctan2(measured.py, measured.px) - true_phi + np.pi) % (2 * np.pi) - np.pi
    for flag, sigma in (("is_photon", 0.0058), ("is_neutral_hadron", 0.0058)):
        sel = (measured.pid[flag] == 1) & (np.abs(p["id"][kept]) != 11)
        assert sel.sum() > 500
        assert np.std(eta[sel] - true_eta[sel]) == pytest.approx(sigma, rel=0.1)
        assert np.std(dphi[sel]) == pytest.approx(0.0076, rel=0.1)
    tracks = measured.charge != 0
    assert np.abs(eta[tracks] - true_eta[tracks]).max() < 1e-9  # tracks keep their direction
    sharp = run_detector(b_events, photon_angle_resolution=[0.0, 0.0], neutral_hadron_angle_resolution=[0.0, 0.0])
    sharp_eta = np.arcsinh(sharp.pz / np.hypot(sharp.px, sharp.py))
    assert np.abs(sharp_eta - np.arcsinh(p["pz"] / np.hypot(p["px"], p["py"]))[sharp.keep]).max() < 1e-9


def test_process_selection_zh_only_has_a_z_in_every_event():
    import awkward as ak

    def z_fraction(process):
        pythia = make_pythia("b", 21, process=process)
        events = pythia.nextBatch(400, errorMode="skip")
        return float(np.mean(ak.to_numpy(ak.any(events.prt.id == 23, axis=1))))

    assert z_fraction("zh_nunu") == 1.0
    assert 0.75 < z_fraction("nunu_h") < 0.95  # WW fusion (no Z) is ~14% of nu nubar H at 240 GeV


def test_pid_model_changes_kaon_pion_id_only_where_expected(b_events, measured):
    p = b_events
    kept = np.flatnonzero(measured.keep)
    apid = np.abs(p["id"][kept])
    tracks = measured.charge != 0
    # Truth ID (the default): flags are exactly the PDG ids.
    for name, code in det.PID_CODES.items():
        np.testing.assert_array_equal(measured.pid[name] == 1, tracks & (apid == code), err_msg=name)
    model = run_detector(b_events, pid="dedx_tof")
    np.testing.assert_array_equal(model.keep, measured.keep)
    mom = np.sqrt(model.px**2 + model.py**2 + model.pz**2)
    kaon = tracks & (apid == 321)
    pion = tracks & (apid == 211)

    def kaon_as_pion(lo, hi):
        sel = kaon & (mom > lo) & (mom < hi)
        return model.pid["is_charged_pion"][sel].mean(), sel.sum()

    low, n_low = kaon_as_pion(1.0, 3.0)  # time of flight separates K/π cleanly here
    high, n_high = kaon_as_pion(12.0, 60.0)  # only dN/dx, near the plateau: real confusion
    assert n_low > 200 and n_high > 100
    assert low < 0.03 and high > 0.05, (low, high)
    assert model.pid["is_charged_kaon"][pion & (mom > 1) & (mom < 3)].mean() < 0.03
    for name in ("is_electron", "is_muon"):  # leptons keep truth ID
        np.testing.assert_array_equal(model.pid[name], measured.pid[name])
    one_flag = model.pid["is_charged_pion"] + model.pid["is_charged_kaon"] + model.pid["is_proton"]
    assert (one_flag[tracks & ~np.isin(apid, (11, 13))] == 1).all()


@pytest.mark.parametrize("clustering", [{"algorithm": "ee_kt"}, {"algorithm": "ee_genkt", "radius": 2.5, "power": 1}])
def test_clustering_options_give_exactly_two_jets(clustering):
    jets = JetTable.concat(list(generate_events(60, seed=3, classes=["b", "bbar"], clustering=clustering)))
    _, per_event = np.unique(jets.jets["event_id"], return_counts=True)
    assert len(per_event) > 50 and (per_event == 2).all()
    assert (jets.jets["n_particles"] > 0).all()


def test_ee_genkt_and_durham_jets_differ():
    kt = JetTable.concat(list(generate_events(40, seed=4, classes=["g"])))
    genkt = JetTable.concat(list(generate_events(40, seed=4, classes=["g"], clustering={"algorithm": "ee_genkt"})))
    assert len(kt) == len(genkt)
    assert not np.array_equal(kt.jets["n_particles"], genkt.jets["n_particles"])

"""Built-in generator: determinism, shard format, and physics sanity on a few thousand Pythia events."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from jetscale.data.generate import DEFAULT_CLASSES, generate_events, generate_shard
from jetscale.data.schema import FEATURE_NAMES, JET_COLUMNS, PARTICLE_PREFIX, VECTOR_NAMES
from jetscale.data.splits import pad
from jetscale.data.store import JetTable, read_shard, write_shard
from jetscale.data.summary import class_statistics

pytestmark = pytest.mark.xdist_group("data")
CLASSES = list(DEFAULT_CLASSES)
EVENTS_PER_MODE = 500


@pytest.fixture(scope="module", autouse=True)
def _no_progress_bar():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JETSCALE_NO_PROGRESS", "1")
        yield


@pytest.fixture(scope="module")
def jets() -> JetTable:
    """3000 events (500 per Higgs decay mode): ~6000 labelled jets."""
    return JetTable.concat(list(generate_events(EVENTS_PER_MODE, seed=2026, classes=CLASSES, workers=1)))


@pytest.fixture(scope="module")
def stats(jets):
    dense = pad(jets, 160)
    return class_statistics(dense["features"], dense["mask"], jets.jets["label"], CLASSES)


def _tables_equal(a: JetTable, b: JetTable) -> None:
    for k in JET_COLUMNS:
        np.testing.assert_array_equal(a.jets[k], b.jets[k], err_msg=k)
    for k in a.particles:
        np.testing.assert_array_equal(a.particles[k], b.particles[k], err_msg=k)


def test_generation_is_deterministic_for_a_seed_and_any_worker_count():
    kw = dict(classes=["b", "bbar", "g"], chunk=60)
    one = JetTable.concat(list(generate_events(120, seed=5, workers=1, **kw)))
    two = JetTable.concat(list(generate_events(120, seed=5, workers=2, **kw)))
    _tables_equal(one, two)
    other = JetTable.concat(list(generate_events(120, seed=6, workers=1, **kw)))
    assert not np.array_equal(one.particles["e"][:50], other.particles["e"][:50])


def test_jets_are_labelled_and_energy_ordered(jets):
    counts = np.bincount(jets.jets["label"], minlength=len(CLASSES))
    assert counts[:10].min() >= 0.97 * EVENTS_PER_MODE and counts[10] >= 1.9 * EVENTS_PER_MODE
    e = jets.particles["e"]
    first = jets.offsets[:-1]
    same_jet = np.ones(len(e) - 1, bool)
    same_jet[first[1:] - 1] = False
    assert (np.diff(e)[same_jet] <= 0).all()
    assert np.median(jets.jets["match_angle"]) < 0.1
    for name in FEATURE_NAMES + VECTOR_NAMES:
        assert np.isfinite(jets.particles[name]).all(), name
    neutral = jets.particles["charge"] == 0
    assert not jets.particles["d0"][neutral].any() and not jets.particles["d0_err"][neutral].any()


def test_b_jets_have_several_times_more_displaced_tracks(stats):
    b = np.mean([stats[c]["displaced"].mean() for c in ("b", "bbar")])
    light = np.mean([stats[c]["displaced"].mean() for c in ("u", "ubar", "d", "dbar")])
    assert b > 3 * light, (b, light)
    assert 4.0 < b < 7.0 and 0.6 < light < 1.8


def test_strange_jets_carry_more_charged_kaons(stats):
    s = np.mean([stats[c]["kaon_share"] for c in ("s", "sbar")])
    light = np.mean([stats[c]["kaon_share"] for c in ("u", "ubar", "d", "dbar")])
    assert s > light + 0.015, (s, light)


def test_leading_charge_follows_quark_charge(stats):
    for name in ("b", "bbar", "s", "sbar", "u", "ubar", "d", "dbar"):
        assert stats[name]["charge_agreement"] > 0.55, name


def test_light_quark_dijet_mass_peaks_near_higgs_mass(jets):
    j = jets.jets
    events, inverse, n = np.unique(j["event_id"], return_inverse=True, return_counts=True)
    px, py = j["jet_pt"] * np.cos(j["jet_phi"]), j["jet_pt"] * np.sin(j["jet_phi"])
    pz = j["jet_pt"] * np.sinh(j["jet_eta"])
    total = [np.bincount(inverse, weights=v) for v in (j["jet_energy"], px, py, pz)]
    mass = np.sqrt(np.maximum(total[0] ** 2 - total[1] ** 2 - total[2] ** 2 - total[3] ** 2, 0))
    light = (np.bincount(inverse, weights=(j["label"] >= 6) & (j["label"] <= 9)) == 2) & (n == 2)
    hist, edges = np.histogram(mass[light], bins=np.arange(90, 150, 2.5))
    peak = edges[hist.argmax()] + 1.25
    assert 118 < peak < 130, peak
    assert 120 < np.median(mass[light]) < 128


def test_shard_round_trip_and_row_format(jets, tmp_path):
    path = write_shard(jets, tmp_path / "shard-0000.parquet")
    meta = pq.ParquetFile(path)
    names = meta.schema_arrow.names
    assert names == list(JET_COLUMNS) + [PARTICLE_PREFIX + n for n in FEATURE_NAMES + VECTOR_NAMES]
    assert meta.metadata.row_group(0).column(0).compression == "ZSTD"
    assert meta.metadata.num_rows == len(jets)
    _tables_equal(jets, read_shard(path))
    assert not list(tmp_path.glob(".*.tmp"))


def test_config_shard_has_exact_jets_per_class():
    cfg = {
        "classes": ["b", "bbar", "g"],
        "data": {"generate": {"jets_per_class": 61, "n_shards": 2, "seed": 9, "sqrt_s": 240.0}},
    }
    shard0, shard1 = generate_shard(cfg, 0), generate_shard(cfg, 1)
    assert np.bincount(shard0.jets["label"]).tolist() == [31, 31, 31]
    assert np.bincount(shard1.jets["label"]).tolist() == [30, 30, 30]
    assert not set(shard0.jets["jet_id"]) & set(shard1.jets["jet_id"])
    _tables_equal(shard0, generate_shard(cfg, 0))


def test_generator_config_errors_name_the_key():
    from jetscale.errors import ConfigError

    gen = {"jets_per_class": 4, "n_shards": 2, "seed": 1, "sqrt_s": 240.0}
    with pytest.raises(ConfigError, match=r"classes: \['QCD'\] cannot be generated"):
        generate_shard({"classes": ["b", "QCD"], "data": {"generate": gen}}, 0)
    with pytest.raises(ConfigError, match=r"--shard 2: must be in \[0, 2\)"):
        generate_shard({"classes": ["b"], "data": {"generate": gen}}, 2)
    with pytest.raises(ConfigError, match="data.source is 'ingest'"):
        generate_shard({"classes": ["b"], "data": {"source": "ingest"}}, 0)

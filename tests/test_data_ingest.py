"""Ingest: a JetClass-schema ROOT file round trip, parquet input, and every bad input as a clear DataError."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from jetscale.data.ingest import ingest_files, load_mapping
from jetscale.data.schema import FEATURE_NAMES
from jetscale.data.store import read_shard, shard_metadata
from jetscale.errors import DataError

JETCLASS_LABELS = [
    "label_QCD",
    "label_Hbb",
    "label_Hcc",
    "label_Hgg",
    "label_H4q",
    "label_Hqql",
    "label_Zqq",
    "label_Wqq",
    "label_Tbqq",
    "label_Tbl",
]
CLASSES = ["QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl"]


def jetclass_arrays(n_jets=40, seed=0, *, nan=False, empty=False):
    """Branches of the JetClass schema: part_* jagged float32, jet_* and one-hot label_* scalars."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(3, 30, n_jets)
    if empty:
        counts[5] = 0
    total = int(counts.sum())
    px, py = rng.normal(0, 5, total), rng.normal(0, 5, total)
    pz = rng.normal(0, 5, total) + 20
    e = np.sqrt(px**2 + py**2 + pz**2)
    charge = rng.choice([-1.0, 0.0, 1.0], total)
    part = {
        "part_px": px,
        "part_py": py,
        "part_pz": pz,
        "part_energy": e,
        "part_deta": rng.normal(0, 0.2, total),
        "part_dphi": rng.normal(0, 0.2, total),
        "part_d0val": rng.normal(0, 0.1, total) * (charge != 0),
        "part_d0err": 0.02 * (charge != 0),
        "part_dzval": rng.normal(0, 0.1, total) * (charge != 0),
        "part_dzerr": 0.02 * (charge != 0),
        "part_charge": charge,
        "part_isElectron": np.zeros(total),
        "part_isMuon": np.zeros(total),
        "part_isChargedHadron": (charge != 0) * 1.0,
        "part_isNeutralHadron": np.zeros(total),
        "part_isPhoton": (charge == 0) * 1.0,
    }
    if nan:
        part["part_d0val"][7] = np.nan
    arrays = {k: ak.unflatten(v.astype(np.float32), counts) for k, v in part.items()}
    jet_e = np.add.reduceat(e, np.r_[0, np.cumsum(counts)[:-1]]) if not empty else np.full(n_jets, 100.0)
    arrays.update(
        {
            "jet_pt": rng.uniform(500, 1000, n_jets),
            "jet_eta": rng.normal(0, 1, n_jets),
            "jet_phi": rng.uniform(-3, 3, n_jets),
            "jet_energy": jet_e,
        }
    )
    labels = np.arange(n_jets) % len(JETCLASS_LABELS)
    for i, name in enumerate(JETCLASS_LABELS):
        arrays[name] = (labels == i).astype(np.float32)
    return arrays, labels, counts


def write_root(path, arrays):
    with uproot.recreate(path) as f:
        f["tree"] = arrays
    return path


@pytest.fixture
def root_file(tmp_path):
    arrays, labels, counts = jetclass_arrays()
    return write_root(tmp_path / "jetclass.root", arrays), arrays, labels, counts


def test_jetclass_root_round_trip(root_file, tmp_path):
    path, arrays, labels, counts = root_file
    [shard] = ingest_files([path], "jetclass", tmp_path / "out", classes=CLASSES)
    table = read_shard(shard)
    np.testing.assert_array_equal(table.jets["label"], labels)
    np.testing.assert_array_equal(table.counts, counts)
    np.testing.assert_allclose(table.jets["jet_pt"], arrays["jet_pt"])
    # particles are energy-ordered; each jet keeps its particles (compare sorted energies per jet)
    e_in = ak.sort(arrays["part_energy"], axis=1, ascending=False)
    np.testing.assert_allclose(table.particles["e"], ak.to_numpy(ak.flatten(e_in)), rtol=1e-6)
    order = np.argsort(-ak.to_numpy(ak.flatten(arrays["part_energy"][:1]))).tolist()
    np.testing.assert_allclose(
        table.particles["d0"][: counts[0]], ak.to_numpy(arrays["part_d0val"][0])[order], rtol=1e-6
    )
    pt = np.hypot(table.particles["px"], table.particles["py"])
    np.testing.assert_allclose(table.particles["log_pt"], np.log(pt), rtol=1e-5)
    assert not table.particles["is_charged_kaon"].any() and not table.particles["is_proton"].any()
    np.testing.assert_array_equal(table.particles["is_charged_pion"], table.particles["charge"] != 0)
    assert np.isnan(table.jets["match_angle"]).all()
    meta = shard_metadata(shard)
    assert meta["source"] == "ingest" and meta["filled_zero"] == ["is_charged_kaon", "is_proton"]


def test_chunked_reading_gives_the_same_shard(root_file, tmp_path):
    path = root_file[0]
    [whole] = ingest_files([path], "jetclass", tmp_path / "a", classes=CLASSES)
    [chunked] = ingest_files([path], "jetclass", tmp_path / "b", classes=CLASSES, step=7)
    a, b = read_shard(whole), read_shard(chunked)
    for k in a.jets:
        np.testing.assert_array_equal(a.jets[k], b.jets[k])
    for k in a.particles:
        np.testing.assert_array_equal(a.particles[k], b.particles[k])


def test_parquet_input_and_class_subset(root_file, tmp_path):
    _, arrays, labels, _ = root_file
    pq_path = tmp_path / "jets.parquet"
    ak.to_parquet(ak.zip(arrays, depth_limit=1), pq_path)
    [shard] = ingest_files([pq_path], "jetclass", tmp_path / "out", classes=["Hcc", "Hbb"])
    table = read_shard(shard)
    expected = [{2: 0, 1: 1}[lab] for lab in labels if lab in (1, 2)]
    np.testing.assert_array_equal(table.jets["label"], expected)


def test_integer_label_mapping(tmp_path):
    arrays, labels, _ = jetclass_arrays(20)
    arrays = {k: v for k, v in arrays.items() if not k.startswith("label_")}
    arrays["label"] = labels.astype(np.int32)
    path = write_root(tmp_path / "int.root", arrays)
    mapping = {k: v for k, v in load_mapping("jetclass").items() if k != "_where"}
    mapping["labels"] = {"branch": "label", "values": {i: name for i, name in enumerate(CLASSES)}}
    mpath = tmp_path / "int.yaml"
    mpath.write_text(yaml.safe_dump(mapping))
    [shard] = ingest_files([path], str(mpath), tmp_path / "out")
    np.testing.assert_array_equal(read_shard(shard).jets["label"], labels)


def test_missing_and_corrupt_files_fail_naming_the_file(root_file, tmp_path):
    path = root_file[0]
    with pytest.raises(DataError, match="nothere.root: input file not found"):
        ingest_files([path, tmp_path / "nothere.root"], "jetclass", tmp_path / "out", classes=CLASSES)
    assert not (tmp_path / "out").exists()  # checked before any shard is written
    bad = tmp_path / "corrupt.root"
    bad.write_bytes(b"root" + b"\x00" * 100)
    with pytest.raises(DataError, match="corrupt.root: (cannot read|no tree)"):
        ingest_files([bad], "jetclass", tmp_path / "out", classes=CLASSES)
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated.root: cannot read"):
        ingest_files([truncated], "jetclass", tmp_path / "out", classes=CLASSES)
    badpq = tmp_path / "corrupt.parquet"
    badpq.write_bytes(b"PAR1garbage")
    with pytest.raises(DataError, match="corrupt.parquet: cannot read"):
        ingest_files([badpq], "jetclass", tmp_path / "out", classes=CLASSES)
    with pytest.raises(DataError, match="shard not found"):
        read_shard(tmp_path / "none.parquet")
    with pytest.raises(DataError, match="corrupt.parquet: not a readable parquet"):
        read_shard(badpq)


def test_branch_named_by_mapping_but_missing(tmp_path):
    arrays, _, _ = jetclass_arrays()
    del arrays["part_d0val"]
    path = write_root(tmp_path / "nod0.root", arrays)
    with pytest.raises(DataError, match=r"nod0.root: branch\(es\) \['part_d0val'\]"):
        ingest_files([path], "jetclass", tmp_path / "out", classes=CLASSES)


def test_nan_features_and_empty_jets_rejected_without_output(tmp_path):
    nan_path = write_root(tmp_path / "nan.root", jetclass_arrays(nan=True)[0])
    with pytest.raises(DataError, match="nan.root: column part_d0 has non-finite"):
        ingest_files([nan_path], "jetclass", tmp_path / "out", classes=CLASSES)
    empty_path = write_root(tmp_path / "empty.root", jetclass_arrays(empty=True)[0])
    with pytest.raises(DataError, match=r"empty.root: jet \(entry 5\) has no particles"):
        ingest_files([empty_path], "jetclass", tmp_path / "out", classes=CLASSES)
    assert not list((tmp_path / "out").glob("*.parquet")) if (tmp_path / "out").exists() else True


def test_bad_mapping_and_classes(root_file, tmp_path):
    with pytest.raises(DataError, match="not a shipped mapping"):
        load_mapping("cms-open-data")
    with pytest.raises(DataError, match=r"config classes \['b'\] are not produced"):
        ingest_files([root_file[0]], "jetclass", tmp_path / "out", classes=["Hbb", "b"])
    bad = {k: v for k, v in load_mapping("jetclass").items() if k != "_where"}
    bad["fill_zero"] = ["is_charged_kaon"]  # is_proton now covered nowhere
    mpath = tmp_path / "bad.yaml"
    mpath.write_text(yaml.safe_dump(bad))
    with pytest.raises(DataError, match="'is_proton' must appear in exactly one"):
        load_mapping(mpath)


def test_mapping_covers_every_feature():
    mapping = load_mapping("jetclass")
    covered = set(mapping["particles"]) | set(mapping["derive"]) | set(mapping["fill_zero"])
    assert set(FEATURE_NAMES) <= covered

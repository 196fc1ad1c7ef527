"""Ingest: what was read is recorded (manifest: files, sizes, SHA-256) and a changed data set is refused naming
the change; bad inputs give a DataError naming file and branch and leave no partial output; corrupt split files
name the file; n_shards is bounded (issue 10, items 3, 6, 7)."""

from __future__ import annotations

import copy
import json
import os

import awkward as ak
import numpy as np
import pytest

from jetscale.config import load_config
from jetscale.data.ingest import ingest_files
from jetscale.data.manifest import changes
from jetscale.data.splits import load_split
from jetscale.data.testing import write_synthetic_splits
from jetscale.errors import ConfigError, DataError
from jetscale.workflow import StudyPlan
from test_data_ingest import CLASSES, jetclass_arrays, write_root


def root_files(directory, n=2, n_jets=40):
    directory.mkdir(exist_ok=True)
    return [write_root(directory / f"part{i}.root", jetclass_arrays(n_jets=n_jets, seed=i)[0]) for i in range(n)]


def test_ingest_records_what_it_read(tmp_path):
    files = root_files(tmp_path / "in")
    ingest_files(files, "jetclass", tmp_path / "out", classes=CLASSES)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == [str(f) for f in files]
    assert [f["size"] for f in manifest["files"]] == [f.stat().st_size for f in files]
    assert all(len(f["sha256"]) == 64 for f in manifest["files"]) and len(manifest["fingerprint"]) == 16
    assert changes(manifest, files) == []
    assert changes(manifest, files[:1]) == [f"file {files[1]} no longer matched"]


def ingest_config(tmp_path, pattern):
    raw = {
        "study": "ingest",
        "results": str(tmp_path / "results"),
        "classes": CLASSES,
        "data": {"source": "ingest", "ingest": {"paths": [pattern]}, "val_per_class": 1, "test_per_class": 1},
        "grid": {"axes": {"model": ["particlenet"], "width": [16], "n_train": [20], "compute": [64], "seed": [0]}},
    }
    return load_config(raw)


def test_a_changed_ingest_data_set_is_refused_naming_the_change(tmp_path):
    files = root_files(tmp_path / "in")
    cfg = ingest_config(tmp_path, str(tmp_path / "in" / "part*.root"))
    plan = StudyPlan(cfg)
    plan.on_start()
    ingest_files(plan.ingest_inputs, "jetclass", tmp_path / "results" / "data" / "ingested", classes=CLASSES)
    StudyPlan(cfg)  # unchanged: fine

    new = write_root(tmp_path / "in" / "part9.root", jetclass_arrays(n_jets=40, seed=9)[0])
    with pytest.raises(ConfigError, match=f"the input files differ .*new file {new}"):
        StudyPlan(cfg)
    new.unlink()

    arrays = jetclass_arrays(n_jets=40, seed=0)[0]
    arrays["jet_pt"] = arrays["jet_pt"] * 1.001  # same size on disk, other content
    stat = files[0].stat()
    write_root(files[0], arrays)
    assert files[0].stat().st_size == stat.st_size
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    with pytest.raises(ConfigError, match=f"file {files[0]} changed content"):
        StudyPlan(cfg)


def test_bad_ingest_inputs_name_file_and_branch_and_leave_nothing(tmp_path):
    good = root_files(tmp_path / "in", n=1)[0]
    out = tmp_path / "out"
    out.mkdir()
    (out / "shard-0007.parquet").write_bytes(b"stale")  # from an earlier, larger ingest

    arrays = jetclass_arrays(n_jets=40)[0]
    arrays["jet_pt"] = np.array([f"x{i}" for i in range(40)])
    strings = tmp_path / "strings.parquet"
    ak.to_parquet(ak.Array(arrays), strings)
    with pytest.raises(DataError, match=f"{strings}: branch 'jet_pt' does not hold numbers"):
        ingest_files([good, strings], "jetclass", out, classes=CLASSES)
    assert list(out.iterdir()) == []  # neither the stale shard nor the first file's shard stays behind

    empty = write_root(tmp_path / "empty.root", {k: v[:0] for k, v in jetclass_arrays(n_jets=40)[0].items()})
    with pytest.raises(DataError, match=f"{empty}: no jets of the classes .* no entries"):
        ingest_files([good, empty], "jetclass", out, classes=CLASSES)
    assert list(out.iterdir()) == []


def test_corrupt_split_files_name_the_file(tmp_path):
    splits = write_synthetic_splits(tmp_path / "s", CLASSES, {"train": 20, "val": 10, "test": 10}, n_particles=8)
    features = splits / "train" / "features.npy"
    features.write_bytes(features.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"{features}: unreadable split array"):
        load_split(splits, "train")
    (splits / "meta.json").write_text("{broken")
    with pytest.raises(DataError, match=f"{splits / 'meta.json'}: unreadable splits metadata"):
        load_split(splits, "val")


@pytest.mark.parametrize(
    "n_shards,problem", [(10**12, "must be at most 10000|less than or equal|10000"), (50, "would leave shards empty")]
)
def test_n_shards_is_bounded(default_config_dict, tmp_path, n_shards, problem):
    raw = copy.deepcopy(default_config_dict)
    raw["results"] = str(tmp_path)
    raw["data"]["generate"].update({"n_shards": n_shards, "jets_per_class": 40})
    raw["data"].update({"val_per_class": 5, "test_per_class": 5})
    raw["grid"]["axes"]["n_train"] = [100]
    with pytest.raises(ConfigError, match=f"data.generate.n_shards: .*({problem})"):
        load_config(raw)

"""A file read twice puts the same jets into training and test: inputs resolve to unique real files, every jet's
id follows from its file's content and entry, and `split` refuses repeated shards and other studies' shards."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from jetscale.data.ingest import ingest_files, jet_id_base, resolve_inputs
from jetscale.data.manifest import sha256
from jetscale.data.pool import expand_globs
from jetscale.data.splits import build_splits
from jetscale.data.store import read_shard, shard_metadata, write_shard
from jetscale.data.testing import synthetic_table
from jetscale.errors import ConfigError, DataError
from test_data_ingest import CLASSES, jetclass_arrays, write_root

SPLIT = {"val_per_class": 1, "test_per_class": 1, "n_particles": 8}


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    return [write_root(d / f"good{i}.root", jetclass_arrays(60, seed=i)[0]) for i in range(2)]


def test_a_file_listed_twice_or_linked_is_refused(inputs, tmp_path):
    d = inputs[0].parent
    with pytest.raises(DataError, match=r"good0.root: the same file as .*good0.root"):
        resolve_inputs([d / "good0.root", d / "good*.root"])
    os.symlink(inputs[0], d / "link.root")
    with pytest.raises(DataError, match=r"link.root: the same file as .*good0.root"):
        resolve_inputs([d / "good0.root", d / "link.root"])
    with pytest.raises(ConfigError, match=r"data.ingest.paths: '.*good0.root' is the same file as"):
        expand_globs([str(d / "good0.root"), str(d / "good*.root")], "data.ingest.paths")
    with pytest.raises(DataError, match="the same file as"):
        ingest_files([inputs[0], d / "link.root"], "jetclass", tmp_path / "out", classes=CLASSES)
    assert resolve_inputs([d / "good*.root"]) == inputs


def test_a_copied_file_is_refused_before_any_shard(inputs, tmp_path):
    shutil.copy(inputs[0], inputs[0].parent / "copy.root")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"copy.root: the same content as .*good0.root"):
        ingest_files([*inputs, inputs[0].parent / "copy.root"], "jetclass", out, classes=CLASSES)
    assert not list(out.glob("*.parquet"))


def test_jet_ids_follow_from_file_content_and_entry(inputs, tmp_path):
    a = ingest_files(inputs, "jetclass", tmp_path / "a", classes=CLASSES, data_fingerprint="f" * 16)
    b = ingest_files(inputs[::-1], "jetclass", tmp_path / "b", classes=CLASSES)
    ids_a = {int(i) for s in a for i in read_shard(s).jets["jet_id"]}
    ids_b = {int(i) for s in b for i in read_shard(s).jets["jet_id"]}
    assert ids_a == ids_b and len(ids_a) == 120  # the order of the files does not change a jet's id
    table = read_shard(a[0])
    np.testing.assert_array_equal(table.jets["jet_id"], jet_id_base(sha256(inputs[0])) + table.jets["event_id"])
    meta = shard_metadata(a[0])
    assert meta["source_id"] == f"sha256:{sha256(inputs[0])}" and meta["data_fingerprint"] == "f" * 16


def test_split_refuses_a_shard_given_twice_or_through_a_link(inputs, tmp_path):
    shards = ingest_files(inputs, "jetclass", tmp_path / "sh", classes=CLASSES, data_fingerprint="f" * 16)
    args = dict(classes=CLASSES, **SPLIT, study_fingerprint="f" * 16)
    with pytest.raises(DataError, match=r"shard-0000.parquet: the same shard as"):
        build_splits([shards[0], shards[1], shards[0]], tmp_path / "s", **args)
    os.symlink(shards[0], tmp_path / "link.parquet")
    with pytest.raises(DataError, match=r"link.parquet: the same shard as"):
        build_splits([*shards, tmp_path / "link.parquet"], tmp_path / "s", **args)
    shutil.copy(shards[0], tmp_path / "copy.parquet")
    with pytest.raises(DataError, match=r"copy.parquet: the same source as .*shard-0000.parquet \(sha256:"):
        build_splits([*shards, tmp_path / "copy.parquet"], tmp_path / "s", **args)
    assert not (tmp_path / "s").exists()
    build_splits(shards, tmp_path / "s", **args)  # each shard once: fine


def test_split_refuses_another_studys_shards(inputs, tmp_path):
    shards = ingest_files(inputs, "jetclass", tmp_path / "sh", classes=CLASSES, data_fingerprint="f" * 16)
    with pytest.raises(DataError, match=r"written for another data configuration \(data fingerprint ffff"):
        build_splits(shards, tmp_path / "s", classes=CLASSES, **SPLIT, study_fingerprint="0" * 16)
    other = ingest_files(inputs, "jetclass", tmp_path / "o", classes=CLASSES[::-1])
    with pytest.raises(DataError, match=r"its labels index the classes \['Tbl'"):
        build_splits(other, tmp_path / "s", classes=CLASSES, **SPLIT)


def test_split_refuses_shards_sharing_jets(tmp_path):
    """Shards without provenance (written by hand) are still checked: a jet_id in two shards is refused."""
    a = write_shard(synthetic_table(40, 2, seed=0), tmp_path / "a.parquet")
    b = write_shard(synthetic_table(40, 2, seed=1, first_jet_id=30), tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"jet_id 30 is in .*a.parquet and .*b.parquet \(10 repeated"):
        build_splits([a, b], tmp_path / "s", classes=["x", "y"], **SPLIT)

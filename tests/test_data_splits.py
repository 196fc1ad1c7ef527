"""Splits: nested, class-balanced train prefixes; fixed val/test; padded memmaps; clear errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jetscale.data.splits import SPLITS, build_splits, interleave, load_split, plan_splits
from jetscale.data.store import read_shard, write_shard
from jetscale.data.testing import synthetic_table
from jetscale.errors import DataError

CLASSES = ["b", "bbar", "c", "cbar", "s", "sbar", "u", "ubar", "d", "dbar", "g"]


@pytest.fixture
def shards(tmp_path):
    n = len(CLASSES)
    # unbalanced: the second shard has extra jets of the first classes
    return [
        write_shard(synthetic_table(60 * n, n, seed=1, first_jet_id=0), tmp_path / "s0.parquet"),
        write_shard(synthetic_table(30 * n + 7, n, seed=2, first_jet_id=10**9), tmp_path / "s1.parquet"),
    ]


def build(shards, out, **kw):
    args = dict(classes=CLASSES, val_per_class=10, test_per_class=20, n_particles=24, seed=3, data_fingerprint="fp")
    return build_splits(shards, out, **{**args, **kw})


def test_every_train_prefix_is_class_balanced_and_nested(shards, tmp_path):
    meta = build(shards, tmp_path / "splits")
    n_classes = len(CLASSES)
    assert meta["sizes"] == {"train": 60 * n_classes, "val": 10 * n_classes, "test": 20 * n_classes}
    train = load_split(tmp_path / "splits", "train")
    labels = np.asarray(train.labels)
    for n in range(1, len(labels) + 1, 7):
        counts = np.bincount(labels[:n], minlength=n_classes)
        assert counts.max() - counts.min() <= 1, n
    small = load_split(tmp_path / "splits", "train", n=110)
    assert set(small) == {"features", "mask", "vectors", "labels", "jet_id", "n_particles"}
    assert small["labels"] is small.labels and small.n_jets == 110 and small.meta["classes"] == CLASSES
    np.testing.assert_array_equal(small.jet_id, train.jet_id[:110])
    ids = {s: set(np.asarray(load_split(tmp_path / "splits", s).jet_id).tolist()) for s in SPLITS}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    for s in ("val", "test"):
        assert np.bincount(load_split(tmp_path / "splits", s).labels).min() == meta["sizes_per_class"][s]


def test_val_test_fixed_and_pool_order_deterministic(shards, tmp_path):
    build(shards, tmp_path / "a")
    build(shards, tmp_path / "b")
    for s in SPLITS:
        np.testing.assert_array_equal(load_split(tmp_path / "a", s).jet_id, load_split(tmp_path / "b", s).jet_id)


def test_arrays_are_padded_energy_ordered_and_match_shards(shards, tmp_path):
    meta = build(shards, tmp_path / "splits")
    split = load_split(tmp_path / "splits", "val")
    assert isinstance(split.features, np.memmap)
    n, cap = split.n_jets, meta["n_particles"]
    assert split.features.shape == (n, cap, 19) and split.features.dtype == np.float32
    assert split.vectors.shape == (n, cap, 4) and split.mask.shape == (n, cap) and split.mask.dtype == bool
    assert split.labels.dtype == np.int64 and split.jet_id.dtype == np.int64
    source = read_shard(shards[0])
    row = {int(j): i for i, j in enumerate(source.jets["jet_id"])}
    k = next(i for i, j in enumerate(split.jet_id) if int(j) in row)
    jet = source.take([row[int(split.jet_id[k])]])
    m = min(cap, int(jet.counts[0]))
    assert split.mask[k].sum() == m and split.mask[k, :m].all()
    assert split.n_particles[k] == jet.counts[0]
    np.testing.assert_array_equal(split.mask.sum(axis=1), np.minimum(split.n_particles, cap))
    np.testing.assert_array_equal(split.vectors[k, :m, 3], jet.particles["e"][:m])
    np.testing.assert_array_equal(split.features[k, :m, 0], jet.particles["deta"][:m])
    assert not split.features[k, m:].any()
    assert (np.diff(split.vectors[k, :m, 3]) <= 0).all()
    # truncation is counted (synthetic jets have ~20-30 particles, cap 24)
    n_parts = np.concatenate([read_shard(s).counts for s in shards])
    assert 0 < meta["truncated_jets"]["train"] and meta["truncated_fraction"] <= (n_parts > cap).mean() + 0.1
    assert json.loads((tmp_path / "splits" / "meta.json").read_text())["data_fingerprint"] == "fp"


def test_n_train_larger_than_pool_is_a_clear_error(shards, tmp_path):
    with pytest.raises(DataError, match="n_train = 10000 is larger than the training pool of 660 jets"):
        build(shards, tmp_path / "splits", n_train_max=10000)
    assert not (tmp_path / "splits").exists()
    build(shards, tmp_path / "splits")
    with pytest.raises(DataError, match="asked for the first 700 jets but the split has 660"):
        load_split(tmp_path / "splits", "train", n=700)


def test_too_few_jets_for_val_and_test(shards, tmp_path):
    with pytest.raises(DataError, match="has 90 jets, not more than val_per_class"):
        build(shards, tmp_path / "splits", val_per_class=50, test_per_class=40)


def test_rebuild_replaces_directory_atomically(shards, tmp_path):
    build(shards, tmp_path / "splits")
    build(shards, tmp_path / "splits", n_particles=8)
    assert load_split(tmp_path / "splits", "test").features.shape[1] == 8
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_bad_shard_inputs(shards, tmp_path):
    with pytest.raises(DataError, match="missing.parquet: shard not found"):
        build([shards[0], tmp_path / "missing.parquet"], tmp_path / "splits")
    table = synthetic_table(50, len(CLASSES), seed=4)
    table.particles["log_pt"][3] = np.inf
    with pytest.raises(DataError, match="column part_log_pt has non-finite"):
        write_shard(table, tmp_path / "inf.parquet")
    assert not (tmp_path / "inf.parquet").exists()
    import pyarrow.parquet as pq

    from jetscale.data.store import to_arrow

    nan = synthetic_table(50, len(CLASSES), seed=5, first_jet_id=2 * 10**9)  # other jets than s0.parquet
    nan.particles["d0"][10] = np.nan
    pq.write_table(to_arrow(nan), tmp_path / "nan.parquet")  # bypasses write_shard's validation
    with pytest.raises(DataError, match="nan.parquet: column part_d0 has non-finite values"):
        build([shards[0], tmp_path / "nan.parquet"], tmp_path / "splits")
    assert not (tmp_path / "splits").exists() and not list(tmp_path.glob(".splits*"))
    labels = synthetic_table(50, len(CLASSES) + 2, seed=4)
    write_shard(labels, tmp_path / "labels.parquet")
    with pytest.raises(DataError, match=r"labels must be in \[0, 11\)"):
        build([tmp_path / "labels.parquet"], tmp_path / "splits")


def test_interleave_rounds_hold_one_of_each_class():
    rng = np.random.default_rng(0)
    groups = np.arange(4 * 5).reshape(4, 5)
    out = interleave(groups, rng)
    assert sorted(out.tolist()) == list(range(20))
    assert all(sorted(out[i * 4 : (i + 1) * 4] // 5) == [0, 1, 2, 3] for i in range(5))
    plan = plan_splits(np.repeat(np.arange(3), 10), ["a", "b", "c"], 2, 3, seed=1)
    assert [len(plan[s]) for s in SPLITS] == [15, 6, 9]


def test_a_failing_shard_write_leaves_no_file(tmp_path):
    from jetscale.data.store import ShardWriter

    good = synthetic_table(30, len(CLASSES), seed=1)
    bad = synthetic_table(30, len(CLASSES), seed=2)
    bad.particles["e"][0] = np.nan
    with pytest.raises(DataError, match="part_e has non-finite"):
        with ShardWriter(tmp_path / "shard-0000.parquet") as writer:
            writer.write(good)
            writer.write(bad)
    assert list(tmp_path.iterdir()) == []


def many_shards(tmp_path, n_shards: int = 8, per_shard: int = 11 * 12) -> list:
    n = len(CLASSES)
    return [
        write_shard(synthetic_table(per_shard, n, seed=10 + i, first_jet_id=i * 10**6), tmp_path / f"m{i}.parquet")
        for i in range(n_shards)
    ]


def test_split_files_equal_the_padded_pool_byte_for_byte(tmp_path):
    """Every .npy is exactly ``np.save`` of the pool's jets in plan order, padded: what the writer always wrote."""
    import io

    from jetscale.data.splits import ARRAYS, pad
    from jetscale.data.store import JetTable

    shards = many_shards(tmp_path, n_shards=5, per_shard=11 * 9 + 3)
    meta = build(shards, tmp_path / "splits", val_per_class=3, test_per_class=4, n_particles=24)
    pool = JetTable.concat([read_shard(s) for s in shards])
    plan = plan_splits(pool.jets["label"], CLASSES, 3, 4, seed=3)
    for split in SPLITS:
        jets = pool.take(plan[split])
        arrays = {**pad(jets, meta["n_particles"]), "labels": jets.jets["label"], "jet_id": jets.jets["jet_id"]}
        arrays["n_particles"] = jets.counts
        for name in ARRAYS:
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(arrays[name], dtype=load_split(tmp_path / "splits", split)[name].dtype))
            written = (tmp_path / "splits" / split / f"{name}.npy").read_bytes()
            assert written == buffer.getvalue(), (split, name)


def mapped_kb(under: str) -> int:
    """Resident kB of this process's memory maps of files whose path contains ``under`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header: range perms offset dev inode [path]
            inside = len(head) > 5 and under in head[5]
        elif inside and head and head[0] == "Rss:":
            total += int(head[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
def test_the_writer_keeps_about_one_shards_pages_mapped(tmp_path, monkeypatch):
    """The shuffled pool puts a shard's jets all over the outputs: the written pages must be released shard by
    shard, not stay mapped (and dirty) until the end. Sampled at every shard read and every flush or close of a
    map."""
    import mmap

    import jetscale.data.splits as splits

    n_particles, per_shard = 128, 11 * 12
    shards = many_shards(tmp_path, n_shards=8, per_shard=per_shard)
    peak = [0]

    def sample() -> None:
        peak[0] = max(peak[0], mapped_kb(".splits.tmp-"))

    class Sampled(mmap.mmap):  # np.memmap and the writer's own maps: sampled when flushed or closed
        def flush(self, *args):
            sample()
            return super().flush(*args)

        def __exit__(self, *args):
            sample()
            return super().__exit__(*args)

    real_read = splits.read_shard
    monkeypatch.setattr(splits, "read_shard", lambda *a, **k: (sample(), real_read(*a, **k))[1])
    monkeypatch.setattr(mmap, "mmap", Sampled)
    build(shards, tmp_path / "splits", val_per_class=3, test_per_class=4, n_particles=n_particles)
    # one shard's rows of the widest array, each on at most its own pages plus one (the row is not page-aligned)
    row = n_particles * 19 * 4
    bound_kb = per_shard * (row // 4096 + 2) * 4
    total_kb = sum(f.stat().st_size for f in (tmp_path / "splits").rglob("*.npy")) // 1024
    assert total_kb > 4 * bound_kb  # the test can tell one shard from all of them
    assert 0 < peak[0] <= bound_kb, (peak[0], bound_kb, total_kb)

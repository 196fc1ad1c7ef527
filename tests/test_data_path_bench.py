"""benchmarks/data_path.py still runs: tiling a shard, splitting the pool, statistics, the data path, evaluate."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from jetscale.data.splits import load_split
from jetscale.data.store import JetTable, read_shard, write_shard
from jetscale.data.testing import synthetic_table

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["b", "c", "g"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("data_path_bench", REPO / "benchmarks" / "data_path.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pool(bench, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pool")
    seed = write_shard(synthetic_table(30, len(CLASSES), seed=3), tmp / "seed.parquet")
    shards = bench.tile_shards(seed, 720, tmp / "shards", jets_per_shard=256)
    meta = bench.split_pool(shards, tmp / "splits", CLASSES, n_particles=16)
    return seed, shards, tmp / "splits", meta


def test_tiled_pool_repeats_the_seed_jets_with_fresh_ids(pool):
    seed, shards, _, _ = pool
    assert len(shards) == 3  # 256 + 256 + 208
    tiled = JetTable.concat([read_shard(s) for s in shards])
    np.testing.assert_array_equal(tiled.jets["jet_id"], np.arange(720))
    original = read_shard(seed)
    first = tiled.take(np.arange(30))  # one shuffled copy of the seed's 30 jets ...
    np.testing.assert_array_equal(np.sort(first.jets["jet_energy"]), np.sort(original.jets["jet_energy"]))
    again = tiled.take(np.arange(690, 720))  # ... repeated, particle by particle
    np.testing.assert_array_equal(again.jets["label"], first.jets["label"])
    np.testing.assert_array_equal(again.particles["d0"], first.particles["d0"])


def test_split_of_the_pool_has_the_paper_fractions(pool):
    _, _, splits, meta = pool
    per_class = 720 // len(CLASSES)  # 24 copies of a seed with 10 jets of each class
    assert meta["sizes"]["val"] == len(CLASSES) * round(0.01 * per_class)
    assert meta["sizes"]["test"] == len(CLASSES) * round(0.05 * per_class)
    assert sum(meta["sizes"].values()) == len(CLASSES) * per_class
    assert load_split(splits, "train").features.shape[1:] == (16, 19)


@pytest.mark.parametrize("kind", ["particles", "bytes"])
def test_data_path_batches_the_training_split(bench, pool, kind):
    splits = pool[2]
    bench.stage("input-stats", {"splits": str(splits)})  # statistics recorded, as the workflow does
    auto = bench.data_path(splits, kind, batch_size=32, n_batches=3)
    lazy = bench.data_path(splits, kind, batch_size=32, n_batches=3, mode="lazy")
    assert (auto["mode"], lazy["mode"]) == ("eager", "lazy")  # a tiny split is prepared up front
    for r in (auto, lazy):
        assert r["n_train"] == load_split(splits, "train").n_jets and r["jets_per_s"] > 0
        assert r["mean_trimmed_length"] == lazy["mean_trimmed_length"]  # the same batches either way


def test_stages_report_time_and_memory(bench, pool):
    splits = str(pool[2])
    r = bench.stage("evaluate", {"splits": splits, "classes": CLASSES})
    assert r["n_test"] == load_split(splits, "test").n_jets and 0 <= r["accuracy"] <= 1
    assert r["wall_s"] > 0 and r["peak_anon_mb"] > 0


@pytest.mark.parametrize("kind", ["particles", "bytes"])
def test_data_path_on_a_device_gathers_there_and_checks_the_batches(bench, pool, kind):
    """--device cpu: the device-resident gather (what a GPU gets), its first batches checked against the host's."""
    splits = pool[2]
    bench.stage("input-stats", {"splits": str(splits)})
    host = bench.data_path(splits, kind, batch_size=32, n_batches=3)
    resident = bench.data_path(splits, kind, batch_size=32, n_batches=3, device="cpu")
    lazy = bench.data_path(splits, kind, batch_size=32, n_batches=3, mode="lazy", device="cpu")
    assert (resident["mode"], lazy["mode"]) == ("eager, on cpu", "lazy")
    assert resident["checked_batches"] == lazy["checked_batches"] == 3
    assert resident["mean_trimmed_length"] == lazy["mean_trimmed_length"] == host["mean_trimmed_length"]


def test_a_batch_that_differs_from_the_host_path_stops_the_benchmark(bench, pool):
    from jetscale.train.inputs import load_split_inputs
    from jetscale.train.runner import Sampler

    inputs = load_split_inputs(pool[2], "train", "particlenet", {}, resident=True)
    sampler = Sampler(inputs.n, 0)
    first = inputs.tensors(sampler.batch(0, 8), "cpu")
    assert bench.check_batches(inputs, sampler, 8, "cpu", first) == 3
    first["x"] = first["x"] + 1
    with pytest.raises(SystemExit, match="batch 0, x: .* differs from the host path"):
        bench.check_batches(inputs, sampler, 8, "cpu", first)


def test_the_split_stage_against_another_tree_compares_its_files(bench, pool):
    """--against: the other tree's split stage runs beside this one's; its files are compared byte for byte."""
    from types import SimpleNamespace

    _, shards, splits, _ = pool
    a = SimpleNamespace(against="this-tree", against_tree=REPO, n_particles=16)
    r = bench.split_against(a, shards[0].parent, splits, CLASSES)
    assert r["identical_files"] is True and r["tree"] == "this-tree" and r["peak_file_mb"] >= 0
    assert not (splits.parent / "splits-against").exists()

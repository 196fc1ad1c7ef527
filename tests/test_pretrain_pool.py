"""pretraining.pool: the unlabelled pool from other files (issue 12). Ingested through the mapping without labels
(files without label branches, or with garbage ones, work; labels are never read), padded like the labelled
splits; a backbone pretrains on its first n_pretrain jets, and a changed pool file changes its settings hash."""

from __future__ import annotations

import copy
import json
import os

import awkward as ak
import numpy as np
import pytest
import torch
import yaml

import jetscale.data.ingest as ingest
import jetscale.pretrain.loop as loop
from jetscale.config import load_config
from jetscale.data.ingest import ingest_files
from jetscale.data.pool_store import ingest_pool, load_pool
from jetscale.data.splits import pad
from jetscale.data.store import read_shard
from jetscale.data.testing import write_synthetic_splits
from jetscale.errors import ConfigError, DataError
from jetscale.pretrain import plan
from jetscale.settings import settings_hash
from study_helpers import snakemake
from test_data_ingest import CLASSES, JETCLASS_LABELS, jetclass_arrays, write_root
from test_data_splits import mapped_kb
from test_pretrain_loop import BID, small_config

P = 8  # data.n_particles of small_config
KEY = plan.parse_backbone_id(BID)


def pool_files(directory):
    """Two pool files: a ROOT file without label branches, a parquet file whose one-hot labels are garbage (none
    set: reading them would be an error)."""
    directory.mkdir(parents=True, exist_ok=True)
    a, _, _ = jetclass_arrays(n_jets=30, seed=11)
    b, _, _ = jetclass_arrays(n_jets=25, seed=12)
    for name in JETCLASS_LABELS:
        del a[name]
        b[name] = np.zeros(25, np.float32)
    write_root(directory / "pool0.root", a)
    ak.to_parquet(ak.zip(b, depth_limit=1), directory / "pool1.parquet")
    return [directory / "pool0.root", directory / "pool1.parquet"], [a, b]


def pool_config(tmp_path, *, pool_glob=None) -> dict:
    """small_config as an ingest study (one labelled file) with pretraining.pool."""
    raw = copy.deepcopy(small_config())
    labelled = tmp_path / "labelled" / "jets.root"
    labelled.parent.mkdir(parents=True, exist_ok=True)
    write_root(labelled, jetclass_arrays(n_jets=20, seed=3)[0])
    raw["results"] = str(tmp_path / "results")
    raw["data"].update(source="ingest", ingest={"paths": [str(labelled)], "mapping": "jetclass"})
    raw["pretraining"]["pool"] = {"paths": [pool_glob or str(tmp_path / "pool" / "pool*")]}
    return load_config(raw)


@pytest.fixture
def never_read_labels(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the pool read labels")

    monkeypatch.setattr(ingest, "file_labels", refuse)


def test_pool_holds_the_files_particles_padded_like_the_labelled_splits(tmp_path, never_read_labels):
    files, arrays = pool_files(tmp_path / "pool")
    record = ingest_pool(files, "jetclass", tmp_path / "out", n_particles=P, step=7)
    assert record["n_jets"] == 55 and [f["path"] for f in record["files"]] == [str(f) for f in files]
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in record["files"])
    pool, _ = load_pool(tmp_path / "out", 55)
    assert set(pool) == {"features", "mask", "vectors"}
    # the files' own particles, energy-ordered and cut at P, jets in file order
    expected = []
    for branches in arrays:
        for j in range(len(branches["part_energy"])):
            vec = np.stack([ak.to_numpy(branches[f"part_{c}"][j]) for c in ("px", "py", "pz", "energy")], axis=1)
            expected.append(vec[np.argsort(-vec[:, 3], kind="stable")][:P])
    for row, vec in enumerate(expected):
        assert pool["mask"][row].sum() == len(vec) and pool["mask"][row, : len(vec)].all()
        np.testing.assert_array_equal(pool["vectors"][row, : len(vec)], vec)
    assert record["truncated_jets"] == sum(len(b) > P for a in arrays for b in a["part_energy"]) > 0


def test_a_mapping_without_a_label_section_serves_the_pool_not_the_labelled_ingest(tmp_path, never_read_labels):
    files, _ = pool_files(tmp_path / "pool")
    mapping = yaml.safe_load(ingest.resources.files("jetscale.data").joinpath("mappings/jetclass.yaml").read_text())
    del mapping["labels"]
    path = tmp_path / "unlabelled.yaml"
    path.write_text(yaml.safe_dump(mapping))
    record = ingest_pool(files, str(path), tmp_path / "out", n_particles=P)
    assert record["n_jets"] == 55 and record["mapping"] == str(path)
    with pytest.raises(DataError, match="labels: give either onehot"):
        ingest.load_mapping(path)


def test_pool_features_equal_the_labelled_ingest_of_the_same_jets(tmp_path, monkeypatch):
    arrays, _, _ = jetclass_arrays(n_jets=30, seed=5)
    path = write_root(tmp_path / "jets.root", arrays)
    [shard] = ingest_files([path], "jetclass", tmp_path / "shards", classes=CLASSES)
    labelled = pad(read_shard(shard), P)
    monkeypatch.setattr(ingest, "file_labels", lambda *a, **k: pytest.fail("the pool read labels"))
    ingest_pool([path], "jetclass", tmp_path / "pool", n_particles=P)
    pool, _ = load_pool(tmp_path / "pool", 30)
    for name in pool:
        np.testing.assert_array_equal(pool[name], labelled[name])


def test_the_pool_is_converted_in_chunks_sized_to_a_jobs_memory(tmp_path, monkeypatch):
    """By default a chunk holds as many jets as pad to CHUNK_BYTES (100k jets at 128 slots peaked at 5 GB private,
    over the rule's 2-4 GB request): ~22k at the paper's 128 slots, twice as many at 64."""
    from jetscale.data import pool_store

    per_jet = 128 * (23 * 4 + 1)  # features 19 + vectors 4 float32 per slot, the mask
    assert pool_store.chunk_jets(128) == pool_store.CHUNK_BYTES // per_jet
    assert pool_store.chunk_jets(64) == 2 * pool_store.chunk_jets(128)
    assert pool_store.chunk_jets(10**7) == 1000  # never below a thousand jets
    steps, real = [], pool_store.iter_branches
    monkeypatch.setattr(
        pool_store, "iter_branches", lambda path, spec, step, **kw: steps.append(step) or real(path, spec, step, **kw)
    )
    files, _ = pool_files(tmp_path / "pool")
    ingest_pool(files, "jetclass", tmp_path / "out", n_particles=P)
    assert steps and set(steps) == {pool_store.chunk_jets(P)}


def padded_pool(files, n_particles: int) -> dict[str, np.ndarray]:
    """The pool's arrays built whole in memory: every file read at once, padded, concatenated in file order."""
    spec = ingest.load_mapping("jetclass", labels=False)
    dense = []
    for path in files:
        for start, branches in ingest.iter_branches(path, spec, 10**6, labels=False):
            dense.append(pad(ingest.convert(branches, spec, None, str(path), start)[0], n_particles))
    return {name: np.concatenate([d[name] for d in dense]) for name in dense[0]}


def test_pool_files_equal_np_save_of_the_padded_jets(tmp_path):
    """Every .npy is exactly ``np.save`` of the padded jets in file order: what the map-per-file writer wrote."""
    import io

    files, _ = pool_files(tmp_path / "pool")
    ingest_pool(files, "jetclass", tmp_path / "out", n_particles=P, step=7)
    for name, array in padded_pool(files, P).items():
        buffer = io.BytesIO()
        np.save(buffer, array)
        assert (tmp_path / "out" / f"{name}.npy").read_bytes() == buffer.getvalue(), name


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
def test_the_pool_writer_keeps_no_more_than_a_chunk_of_the_output_mapped(tmp_path, monkeypatch):
    """Pages already written must not stay mapped (and dirty) in the writer until the end: sampled before every
    chunk is padded, the output's mapped pages stay within one chunk's."""
    import jetscale.data.pool_store as pool_store

    n_particles, step = 128, 7
    files, _ = pool_files(tmp_path / "pool")
    peak = [0]
    real_pad = pool_store.pad

    def sampled_pad(*args, **kwargs):
        peak[0] = max(peak[0], mapped_kb(".out.tmp-"))
        return real_pad(*args, **kwargs)

    monkeypatch.setattr(pool_store, "pad", sampled_pad)
    ingest_pool(files, "jetclass", tmp_path / "out", n_particles=n_particles, step=step)
    bound_kb = step * (n_particles * 19 * 4 // 4096 + 2) * 4  # one chunk's rows of the widest array
    total_kb = sum(f.stat().st_size for f in (tmp_path / "out").glob("*.npy")) // 1024
    assert total_kb > 4 * bound_kb  # the test can tell one chunk from all of them
    assert peak[0] <= bound_kb, (peak[0], bound_kb, total_kb)


def test_backbone_pretrains_on_the_pool_files(tmp_path, monkeypatch, never_read_labels):
    torch.set_num_threads(1)
    files, _ = pool_files(tmp_path / "pool")
    cfg = pool_config(tmp_path)
    cfg["pretraining"]["compute"] = {"epochs": 0.1, "min_samples": 8, "max_samples": 8}
    pool_dir = tmp_path / "results" / "data" / "pool"
    ingest_pool(files, "jetclass", pool_dir, n_particles=P)
    splits = write_synthetic_splits(tmp_path / "splits", cfg["classes"], {"train": 66, "val": 33, "test": 33}, P)
    for split in ("train", "val", "test"):
        (splits / split / "labels.npy").unlink()
    seen = []
    real = loop.prepare_inputs

    def spy(model, options, features, mask, vectors, transform):
        seen.append(np.array(vectors))
        return real(model, options, features, mask, vectors, transform)

    monkeypatch.setattr(loop, "prepare_inputs", spy)
    record = loop.pretrain_backbone(cfg, BID, splits, tmp_path / "bb", pool_dir=pool_dir)
    pool, _ = load_pool(pool_dir, 55)
    np.testing.assert_array_equal(seen[0], pool["vectors"][:40])  # the pool's first n_pretrain jets
    assert not np.isin(seen[0][:, 0, 3], np.load(splits / "train" / "vectors.npy")[:, 0, 3]).any()
    source = json.loads((tmp_path / "bb" / "pretrain.json").read_text())["pool"]
    assert source == json.loads(json.dumps(record["pool"]))
    assert source["source"] == "pretraining.pool" and source["rows"] == "first n_pretrain"
    assert source["pool_size"] == 55 and source["n_jets"] == 40
    assert [f["path"] for f in source["files"]] == [str(f) for f in files]
    assert record["settings"]["pool"] == {"mapping": "jetclass", "fingerprint": source["fingerprint"]}
    with pytest.raises(DataError, match="n_pretrain 60 exceeds the 55 jets of the pretraining pool"):
        load_pool(pool_dir, 60)


def test_a_changed_pool_file_changes_the_backbone_hash_only_with_a_pool(tmp_path):
    files, _ = pool_files(tmp_path / "pool")
    cfg = pool_config(tmp_path)
    with_pool = settings_hash(plan.backbone_settings(cfg, KEY))
    without = copy.deepcopy(cfg)
    del without["pretraining"]["pool"]
    assert "pool" not in plan.backbone_settings(without, KEY)  # pool-less backbones keep their hashes
    assert plan.backbone_settings(without, KEY) == plan.backbone_settings(small_config(), KEY)
    assert settings_hash(plan.backbone_settings(without, KEY)) != with_pool
    # the ingested manifest is reused while the files are unchanged
    record = ingest_pool(files, "jetclass", tmp_path / "results" / "data" / "pool", n_particles=P)
    assert plan.backbone_settings(cfg, KEY)["pool"]["fingerprint"] == record["fingerprint"]
    assert settings_hash(plan.backbone_settings(cfg, KEY)) == with_pool
    arrays, _, _ = jetclass_arrays(n_jets=30, seed=99)
    write_root(files[0], arrays)  # same path, other jets
    changed = settings_hash(plan.backbone_settings(cfg, KEY))
    assert changed != with_pool
    with pytest.raises(DataError, match="ingested with fingerprint"):
        loop.unlabelled_pool(plan.backbone_settings(cfg, KEY), None, tmp_path / "results" / "data" / "pool")


def test_bad_pool_configs_name_the_key(tmp_path):
    cfg = pool_config(tmp_path)
    raw = copy.deepcopy(cfg)
    raw["data"]["source"] = "generate"
    with pytest.raises(ConfigError, match="pretraining.pool: other files as the pretraining pool need data.source"):
        load_config(raw)
    with pytest.raises(ConfigError, match=r"pretraining.pool.paths: '.*pool\*' matches no file"):
        plan.backbone_settings(cfg, KEY)
    shared = pool_config(tmp_path, pool_glob=str(tmp_path / "labelled" / "*.root"))
    with pytest.raises(ConfigError, match="also match data.ingest.paths"):
        plan.backbone_settings(shared, KEY)
    raw = copy.deepcopy(cfg)
    raw["pretraining"]["pool"] = {"mapping": "jetclass"}
    with pytest.raises(ConfigError, match="paths"):
        load_config(raw)
    with pytest.raises(DataError, match="no pool manifest.json"):
        load_pool(tmp_path / "nothing", 1)


def test_dry_run_ingests_the_pool_once_for_every_pretraining_job(tmp_path):
    pool_files(tmp_path / "pool")
    raw = copy.deepcopy(pool_config(tmp_path))
    raw.update(study="pool-dag", results="results-pool")
    raw["grid"]["axes"].update(pretrain=["none", "next_patch"], n_pretrain=[20, 40], finetune=["full"])
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = snakemake(tmp_path, config, "-n", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    blocks = out.stdout.split("\nrule ")
    assert sum(b.startswith("ingest_pool:") for b in blocks) == 1
    pretrain = [b for b in blocks if b.startswith("pretrain:")]
    assert len(pretrain) == 2 and all("results-pool/data/pool" in b.split("output:")[0] for b in pretrain)

"""Data command line: generate (standalone and per config shard), split, data-summary, and error reporting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from jetscale.cli import main
from jetscale.data.splits import load_split
from jetscale.data.store import read_shard, shard_metadata
from jetscale.data.summary import class_statistics
from jetscale.data.testing import build_synthetic_splits

pytestmark = pytest.mark.xdist_group("data")
CLASSES = ["b", "bbar", "c", "cbar", "s", "sbar", "u", "ubar", "d", "dbar", "g"]


@pytest.fixture(autouse=True)
def _no_progress_bar(monkeypatch):
    monkeypatch.setenv("JETSCALE_NO_PROGRESS", "1")


def small_config(tmp_path, **data) -> str:
    cfg = {
        "study": "data-cli",
        "results": str(tmp_path / "results"),
        "classes": CLASSES,
        "data": {
            "source": "generate",
            "generate": {"jets_per_class": 24, "n_shards": 2, "seed": 4},
            "n_particles": 32,
            "val_per_class": 3,
            "test_per_class": 5,
            **data,
        },
        "grid": {
            "axes": {"model": ["particlenet"], "width": [16], "n_train": [22, 88], "compute": ["auto"], "seed": [0]}
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_generate_shards_then_split_from_config(tmp_path, capsys):
    config = small_config(tmp_path)
    shards = [str(tmp_path / f"shards/shard-{i:04d}.parquet") for i in range(2)]
    for i, shard in enumerate(shards):
        assert main(["generate", "--config", config, "--shard", f"{i:04d}", "--out", shard]) == 0
        assert np.bincount(read_shard(shard).jets["label"]).tolist() == [12] * 11
        assert shard_metadata(shard)["seed"] == 4 and shard_metadata(shard)["detector"]["b_field"] == 3.0
    assert main(["split", "--config", config, "--shards", *shards, "--out", str(tmp_path / "splits")]) == 0
    err = capsys.readouterr().err
    assert "train 176 jets" in err and "truncates" in err
    meta = json.loads((tmp_path / "splits" / "meta.json").read_text())
    assert meta["sizes"] == {"train": 176, "val": 33, "test": 55} and len(meta["data_fingerprint"]) == 16
    assert meta["source"] == ["generate"] and meta["filled_zero"] == []
    assert load_split(tmp_path / "splits", "train", 88).features.shape == (88, 32, 19)


def test_split_rejects_n_train_beyond_pool(tmp_path, capsys):
    build_synthetic_splits(tmp_path, CLASSES, jets_per_class=20)
    config = small_config(tmp_path, val_per_class=5, test_per_class=10)
    rc = main(["split", "--config", config, "--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "s2")])
    assert rc == 2
    assert "n_train = 88 is larger than the training pool of 55 jets" in capsys.readouterr().err


def test_standalone_generate_writes_rolling_shards(tmp_path):
    out = tmp_path / "gen"
    assert (
        main(
            [
                "generate",
                "--events-per-class",
                "40",
                "--seed",
                "3",
                "--workers",
                "1",
                "--classes",
                "u",
                "ubar",
                "g",
                "--jets-per-shard",
                "50",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    shards = sorted(out.glob("shard-*.parquet"))
    assert len(shards) == 2  # one task per decay mode, a new shard once 50 jets are written
    labels = np.concatenate([read_shard(s).jets["label"] for s in shards])
    assert set(labels.tolist()) == {0, 1, 2} and len(labels) >= 150
    assert shard_metadata(shards[0])["events_per_mode"] == 40


def test_data_summary_figure(tmp_path):
    splits = build_synthetic_splits(tmp_path, CLASSES, jets_per_class=30)
    out = tmp_path / "fig" / "summary.png"
    assert main(["data-summary", "--splits", str(splits), "--out", str(out)]) == 0
    assert out.stat().st_size > 20_000 and out.with_suffix(".pdf").stat().st_size > 5_000


def test_summary_statistics_order_classes_like_the_synthetic_truth(tmp_path):
    splits = build_synthetic_splits(tmp_path, CLASSES, jets_per_class=40, n_particles=64)
    arrays = load_split(splits, "train")
    stats = class_statistics(arrays.features, arrays.mask, arrays.labels, CLASSES)
    # synthetic jets: multiplicity and |d0| grow with the label index
    assert stats["g"]["multiplicity"].mean() > stats["b"]["multiplicity"].mean() + 5
    assert stats["g"]["displaced"].mean() > stats["b"]["displaced"].mean()

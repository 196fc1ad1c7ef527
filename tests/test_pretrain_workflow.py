"""A real tiny Snakemake run: one `pretrain` job feeds every fine-tuning cell that names its backbone."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import yaml

from jetscale.data.testing import write_synthetic_splits
from study_helpers import snakemake
from test_pretrain_finetune import raw_config

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]
BID = "method~next_patch/model~bbt_neutron/width~16/n_pretrain~40"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Synthetic splits stand in for generated data (older placeholder shards, so the data rules have nothing to do)."""
    workdir = tmp_path_factory.mktemp("pretrain-study")
    raw = raw_config()
    raw.update(study="pretrain-tiny", results="results-pt")
    raw["grid"]["axes"].update(pretrain=["none", "next_patch"], n_pretrain=[40], finetune=["full", "frozen", "catchup"])
    raw["data"]["generate"]["n_shards"] = 1
    raw["grid"]["axes"]["n_train"] = [11, 22]
    raw["grid"]["per_model"] = {"particlenet": {"width": [8], "n_train": [22]}}
    raw["fits"] = {"bootstrap": 5, "min_points": 3}
    config = workdir / "study.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    root = workdir / "results-pt"
    shard = root / "data" / "shards" / "shard-0000.parquet"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"placeholder")
    os.utime(shard, (1e9, 1e9))
    write_synthetic_splits(
        root / "data" / "splits", raw["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=8
    )
    return workdir, config, root


def test_pretrain_runs_once_for_every_cell_that_names_it(study):
    workdir, config, root = study
    cells = [
        f"runs/model~bbt_neutron/width~16/n_train~22/compute~64/seed~0/pretrain~next_patch/n_pretrain~40/finetune~{m}"
        "/metrics.json"
        for m in ("full", "frozen", "catchup")
    ]
    targets = [f"{root.name}/{c}" for c in cells]
    out = snakemake(workdir, config, "--cores", "1", *targets)
    assert out.returncode == 0, out.stderr[-4000:]
    log = out.stderr + out.stdout
    assert log.count("rule pretrain:") == 1 and log.count("rule train:") == 3 and "rule finetune:" not in log
    backbone = root / "pretrain" / BID / "backbone.pt"
    assert not backbone.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)  # protected
    record = json.loads((root / "pretrain" / BID / "pretrain.json").read_text())
    assert record["samples_seen"] == 16 and record["train_flops"] > 0
    for c in cells:
        metrics = json.loads((root / c).read_text())
        assert metrics["backbone_id"] == BID and metrics["cell"]["pretrain"] == "next_patch"
    again = snakemake(workdir, config, "--cores", "1", *targets)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_the_study_ends_with_the_transfer_section(study):
    workdir, config, root = study
    out = snakemake(workdir, config, "--cores", "1")
    assert out.returncode == 0, out.stderr[-4000:]
    log = out.stderr + out.stdout
    assert "rule pretrain:" not in log  # the backbone of the first test is reused
    report = (root / "report.html").read_text()
    assert "Pretraining and transfer" in report and "Effective data transferred" in report
    for name in ("transfer_dt", "transfer_curves", "pretrain_loss"):
        assert (root / "figures" / f"{name}.png").is_file() and f"id='{name}'" in report
    import pandas as pd

    transfer = pd.read_csv(root / "fits" / "transfer" / "transfer.csv")
    assert set(transfer["finetune"]) == {"full", "frozen", "catchup"} and set(transfer["n"]) == {11, 22}
    assert set(transfer["metric"]) == {"log_loss", "accuracy"}
    for row in transfer.to_dict("records"):  # a finite number, a bound, or undefined with a reason; never two
        if row["status"] == "ok":
            assert np.isfinite(row["d_t"]) and pd.isna(row["bound"])
        elif row["status"] == "undefined":  # the from-scratch curve does not rise beyond its seed scatter
            assert pd.isna(row["d_t"]) and pd.isna(row["bound_value"]) and "seed scatter" in str(row["reason"])
        else:
            assert row["status"] in ("beyond", "below") and pd.isna(row["d_t"]) and np.isfinite(row["bound_value"])
    pretrain = pd.read_csv(root / "tables" / "pretrain.csv")
    assert list(pretrain["backbone_id"]) == [BID]

"""`jetscale status` on a results directory with finished, failed, running, interrupted and missing cells."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from jetscale.cli import main
from jetscale.config import load_config
from jetscale.grid import cell_id, cells
from jetscale.settings import resolve_settings, settings_hash
from jetscale.status import budget_samples, read_slurm_queue, study_status
from tiny_config import default_raw_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def study(tmp_path):
    per_model = {"particlenet": {"width": [16]}, "part": {"width": [16]}}
    raw = default_raw_config(
        tmp_path / "results", per_model=per_model, model=["particlenet", "part"], n_train=[100, 1000], seed=[0, 1]
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(path)
    root = Path(cfg["results"])
    by_id = {cell_id(cfg, c): c for c in cells(cfg)}
    ids = list(by_id)
    assert len(ids) == 8

    def finished(cid, wall, samples, shash=None):
        run = root / "runs" / cid
        run.mkdir(parents=True)
        shash = shash or settings_hash(resolve_settings(cfg, by_id[cid]))
        doc = {"settings_hash": shash, "wall_time_s": wall, "samples_seen": samples}
        (run / "metrics.json").write_text(json.dumps(doc))
        return run

    # particlenet: 2 finished (one evaluated), 1 failed by NaN, 1 failed with a traceback in its log
    finished(ids[0], 60.0, 6000)
    (finished(ids[1], 120.0, 12000) / "eval.json").write_text("{}")
    (root / "runs" / ids[2]).mkdir(parents=True)
    (root / "runs" / ids[2] / "failure.json").write_text(json.dumps({"reason": "non-finite loss at step 12"}))
    logs = root / "logs" / "train"
    (logs / ids[3]).parent.mkdir(parents=True, exist_ok=True)
    (logs / f"{ids[3]}.log").write_text("train 10%|#  |\r train 20%|## |\nRuntimeError: CUDA out of memory\n")
    # part: 1 finished with old settings, 1 running (fresh log + train_log), 1 interrupted (old), 1 not started
    finished(ids[4], 30.0, 6000, shash="0" * 16)
    for cid, age in ((ids[5], 5.0), (ids[6], 7200.0)):
        run = root / "runs" / cid
        run.mkdir(parents=True)
        (run / "train_log.csv").write_text("step,samples,loss,lr,throughput,val_loss\n10,320,2.3,1e-4,100,\n")
        (logs / f"{cid}.log").parent.mkdir(parents=True, exist_ok=True)
        (logs / f"{cid}.log").write_text("train 5%|\r")
        past = time.time() - age
        for p in (run / "train_log.csv", run, logs / f"{cid}.log"):
            os.utime(p, (past, past))
    return path, cfg, ids


def _snapshot(root: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_states_errors_and_estimate(study):
    _, cfg, ids = study
    doc = study_status(cfg)
    state = {r["cell_id"]: r for r in doc["cells"]}
    assert [state[c]["state"] for c in ids] == [
        "finished",
        "finished",
        "failed",
        "failed",
        "pending",
        "running",
        "pending",
        "pending",
    ]
    assert state[ids[2]]["error"] == "non-finite loss at step 12"
    assert state[ids[3]]["error"] == "RuntimeError: CUDA out of memory"
    assert state[ids[4]]["detail"] == "finished with other settings: will retrain"
    assert state[ids[6]]["detail"].startswith("interrupted at 320 samples")
    assert doc["models"]["particlenet"] == {
        "finished": 2,
        "running": 0,
        "failed": 2,
        "pending": 0,
        "evaluated": 1,
        "mean_cell_s": 90.0,
        "max_cell_s": 120.0,
    }
    assert doc["totals"] == {"finished": 2, "running": 1, "failed": 2, "pending": 3}
    # no part cell has finished with its current settings: no rate, so no estimate for part's cells
    est = doc["estimate"]
    assert est["cell_seconds_left"] == 0.0 and len(est["cells_without_estimate"]) == 4


def test_estimate_uses_measured_seconds_per_sample(study):
    _, cfg, ids = study
    rows = study_status(cfg)["cells"]
    pn = [r for r in rows if r["model"] == "particlenet"]
    assert pn[0]["budget_samples"] == budget_samples(resolve_settings(cfg, cells(cfg)[0]))
    # make one particlenet cell pending again (failure removed) -> 180 s / 18000 samples = 0.01 s per sample
    root = Path(cfg["results"])
    (root / "runs" / ids[2] / "failure.json").unlink()
    doc = study_status(cfg)
    pending = next(r for r in doc["cells"] if r["cell_id"] == ids[2])
    assert pending["state"] == "pending"
    assert doc["estimate"]["cell_seconds_left"] == pytest.approx(0.01 * pending["budget_samples"])


def test_budget_matches_the_training_loop():
    from jetscale.train.stopping import plan_for

    cfg = load_config(REPO / "config.yaml")
    for cell in cells(cfg)[:12]:
        settings = resolve_settings(cfg, cell)
        assert budget_samples(settings) == plan_for(settings, 32).max_samples


def test_cli_reads_only(study, capsys):
    path, cfg, ids = study
    root = Path(cfg["results"])
    before = _snapshot(root)
    assert main(["status", "--config", str(path), "--cells"]) == 0
    text = capsys.readouterr().out
    assert "particlenet" in text and f"FAILED {ids[3]}: RuntimeError: CUDA out of memory" in text
    assert "time left:" in text and f"running   {ids[5]}" in text
    assert main(["status", "--config", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["failed"] == 2
    assert _snapshot(root) == before


def test_slurm_queue_maps_job_comments_to_cells(study, tmp_path, monkeypatch):
    _, cfg, ids = study
    fake = tmp_path / "bin"
    fake.mkdir()
    comment = "rule_train_wildcards_" + ids[7].replace("/", "_")
    (fake / "squeue").write_text(f"#!/bin/sh\necho 'PENDING|{comment}'\necho 'RUNNING|rule_collect'\n")
    (fake / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    queue, problem = read_slurm_queue(cfg)
    assert problem is None and queue == {ids[7]: "pending"}
    doc = study_status(cfg, queue=queue)
    row = next(r for r in doc["cells"] if r["cell_id"] == ids[7])
    assert row["state"] == "running" and row["detail"] == "slurm pending"

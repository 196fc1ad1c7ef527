"""Against the real local Slurm cluster (scripts/slurm-cluster.sh): sbatch, the partition check, the slurm
profile, and a submitit training job that is interrupted, requeued and resumes from its checkpoint.

Skipped with the reason when Slurm is not installed/up (see slurm_helpers.slurm_cluster). ~1.5 min in all.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time

import pytest

from jetscale.errors import ConfigError
from slurm_helpers import PROFILE, env_with_venv, sacct_states, slurm_cluster, snakemake_slurm  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

TOY = "jetscale.launch.toy:toy_train_cell"


def test_sbatch_job_runs_and_is_accounted(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    proc = subprocess.run(["sbatch", "--parsable", "--wait", "-p", slurm_cluster["partition"], "-t", "2",
                           "--mem", "100", "-o", str(out), "--wrap", "echo job=$SLURM_JOB_ID"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    assert out.read_text().strip() == f"job={job_id}"
    deadline = time.time() + 30  # slurmdbd records the end a moment after sbatch --wait returns
    while sacct_states([job_id]).get(job_id) != "COMPLETED" and time.time() < deadline:
        time.sleep(1)
    assert sacct_states([job_id]).get(job_id) == "COMPLETED"


def test_check_partition(slurm_cluster):
    from jetscale.launch.slurm import check_partition, partitions

    assert slurm_cluster["partition"] in partitions()
    assert check_partition(slurm_cluster["partition"]) == slurm_cluster["partition"]
    assert check_partition(None) == slurm_cluster["partition"]
    with pytest.raises(ConfigError, match=r"partition 'no-such-partition' does not exist.*known partitions: "):
        check_partition("no-such-partition")


def test_submitit_job_interrupted_resumes_from_checkpoint(slurm_cluster, tmp_path):
    """Preempt a running training-like job: it checkpoints, is requeued (same Slurm job) and finishes with the
    same result as an uninterrupted run (1 + 2 + ... + 12 = 78)."""
    from jetscale.launch.submit import make_executor, submit_cells, wait

    executor = make_executor(tmp_path / "submitit", cluster="slurm", partition=slurm_cluster["partition"],
                             timeout_min=5, mem_gb=0.5, signal_delay_s=60)
    cfg = {"results": str(tmp_path / "results"), "toy": {"steps": 12, "step_s": 1.0, "checkpoint_every": 100}}
    (job,) = submit_cells(executor, cfg, ["cell~toy"], fn=TOY)
    log = tmp_path / "results" / "runs" / "cell~toy" / "steps.log"
    deadline = time.time() + 60
    while not (log.exists() and "start" in log.read_text()):
        assert time.time() < deadline, "job did not start within 60 s"
        time.sleep(0.5)
    time.sleep(4)
    job._interrupt()  # what submitit does on preemption: SIGTERM, then USR2
    (result,) = wait([job])
    assert result["steps"] == 12 and result["total"] == 78
    assert len(result["resumed_at"]) == 1 and 0 < result["resumed_at"][0] < 12  # resumed, not restarted
    text = log.read_text()
    assert text.count("start cell=cell~toy") == 2 and "restart=1" in text and f"job={job.job_id}" in text
    assert json.loads((log.parent / "metrics.json").read_text())["total"] == 78


TOY_SNAKEFILE = textwrap.dedent("""
    onstart:
        from jetscale.launch.slurm import check_workflow_partitions
        check_workflow_partitions(workflow)

    rule all:
        input: expand("results/runs/{cell}/metrics.json", cell=["a", "b"])

    rule train:
        output: "results/runs/{cell}/metrics.json"
        resources: runtime=5, mem_mb=200
        shell: "python -m jetscale.launch.toy --cell {wildcards.cell} --out results/runs/{wildcards.cell}"
               " --steps 2 --step-s 0.5"
    """)


def test_snakemake_slurm_profile_submits_jobs(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    proc = snakemake_slurm(tmp_path, snakefile=tmp_path / "Snakefile", timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = [json.loads((tmp_path / f"results/runs/{c}/metrics.json").read_text())["slurm_job_id"] for c in "ab"]
    assert all(ids) and ids[0] != ids[1]
    assert set(sacct_states(ids).values()) == {"COMPLETED"}


def test_unknown_partition_fails_before_any_submission(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    proc = snakemake_slurm(tmp_path, "--set-resources", "train:slurm_partition=no-such-partition",
                           snakefile=tmp_path / "Snakefile", timeout=120)
    assert proc.returncode != 0
    assert "partition 'no-such-partition' does not exist" in proc.stderr
    assert "debug" in proc.stderr  # names the partitions that exist
    assert "Submitted job" not in proc.stderr
    assert not (tmp_path / "results").exists()
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    assert set(after.split()) <= set(before.split())

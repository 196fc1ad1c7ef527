"""Helpers for tests against the real local Slurm cluster (scripts/slurm-cluster.sh).

    from slurm_helpers import snakemake_slurm  # the slurm_cluster fixture is registered in conftest.py

    @pytest.mark.slurm
    @pytest.mark.xdist_group("slurm")
    def test_study_on_slurm(slurm_cluster, tmp_path):
        proc = snakemake_slurm(tmp_path, "--configfile", str(config))
        assert proc.returncode == 0, proc.stderr[-3000:]

`slurm_cluster` makes sure the cluster is up (starting installed-but-stopped daemons, ~3-20 s) or skips with the
reason. It never installs packages (that is `scripts/test.sh`'s job). With JETSCALE_REQUIRE_SLURM=1 (CI on a
machine that must have Slurm) a missing cluster is an error instead of a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_config import TINY_TRAINING, tiny_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLUSTER_SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
PROFILE = REPO / "workflow" / "profiles" / "slurm"


def env_with_venv() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


def cluster_unavailable_reason() -> str | None:
    """None when the local cluster is up (after starting it if its daemons are installed); else why not."""
    if shutil.which("sinfo") is None or not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()):
        return "Slurm is not installed (run `bash scripts/slurm-cluster.sh start` as root, or scripts/test.sh)"
    status = subprocess.run(["bash", str(CLUSTER_SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    if status.returncode == 0:
        return None
    if os.geteuid() != 0:
        return f"local Slurm cluster is down and starting it needs root: {status.stdout.strip()}"
    start = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True, timeout=300)
    if start.returncode != 0:
        return f"scripts/slurm-cluster.sh start failed: {(start.stderr or start.stdout).strip()[-500:]}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> dict:
    """The local cluster is up: returns {"partition": its default partition}; skips (or fails) otherwise."""
    reason = cluster_unavailable_reason()
    if reason:
        if os.environ.get("JETSCALE_REQUIRE_SLURM") == "1":
            pytest.fail(f"JETSCALE_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    from jetscale.launch.slurm import default_partition

    return {"partition": default_partition()}


def snakemake_slurm(
    workdir: Path, *args: str, snakefile: Path | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """`snakemake --profile slurm` on the repository's Snakefile (or ``snakefile``), run in ``workdir``."""
    return subprocess.run(
        [
            str(BIN / "snakemake"),
            "--profile",
            str(PROFILE),
            "-s",
            str(snakefile or REPO / "Snakefile"),
            "--directory",
            str(workdir),
            *args,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env_with_venv(),
    )


def sacct_states(job_ids) -> dict[str, str]:
    """Slurm job id -> final state from accounting (COMPLETED, FAILED, TIMEOUT, ...)."""
    ids = ",".join(str(j) for j in job_ids)
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", ids, "-o", "JobID,State"], capture_output=True, text=True, timeout=30
    ).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def tiny_training_config(compute: int = 8000) -> tuple[dict, str]:
    """A validated config with one tiny ParticleNet cell (~12 s of CPU training) and that cell's id.

    Pair with ``jetscale.data.testing.write_synthetic_splits(dir, cfg["classes"], {"train": 66, "val": 33,
    "test": 33}, n_particles=16)``.
    """
    training = {**TINY_TRAINING, "eval_every_samples": 2000, "threads": 1, "device": "cpu"}
    cfg = tiny_config(compute=compute, training=training)
    return cfg, f"model~particlenet/width~8/n_train~44/compute~{compute}/seed~0"

"""Facts about the Slurm cluster we are on, from its command-line tools (``sinfo``).

The check that matters: a profile or launcher asking for a partition that does not exist must fail *before*
anything is submitted, with the partitions that do exist in the message. Snakemake wiring (common.smk)::

    onstart:
        from jetscale.launch.slurm import check_workflow_partitions
        check_workflow_partitions(workflow)   # no-op unless the executor is slurm
"""

from __future__ import annotations

import shutil
import subprocess

from ..errors import ConfigError, JetscaleError


class SlurmUnavailable(JetscaleError):
    """The Slurm client tools are missing or the controller does not answer."""


def _sinfo(*args: str, timeout: float = 30) -> str:
    if shutil.which("sinfo") is None:
        raise SlurmUnavailable(
            "`sinfo` not found: this machine is not a Slurm client "
            "(for a local test cluster run `bash scripts/slurm-cluster.sh start`)"
        )
    try:
        proc = subprocess.run(["sinfo", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SlurmUnavailable(f"`sinfo` did not answer within {timeout:.0f} s (is slurmctld up?)") from exc
    if proc.returncode != 0:
        raise SlurmUnavailable(f"`sinfo {' '.join(args)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def available() -> bool:
    """True when ``sinfo`` exists and the controller answers."""
    try:
        _sinfo("-h", "-o", "%P", timeout=10)
    except SlurmUnavailable:
        return False
    return True


def partitions() -> dict[str, dict]:
    """Partition name -> {"default": bool, "available": "up"|..., "timelimit": str, "nodes": int}."""
    out: dict[str, dict] = {}
    for line in _sinfo("-h", "-a", "-o", "%P|%a|%l|%D").splitlines():
        name, avail, limit, nodes = (line.strip().split("|") + ["", "", "", "0"])[:4]
        if not name:
            continue
        default = name.endswith("*")
        name = name.rstrip("*")
        entry = out.setdefault(name, {"default": False, "available": avail, "timelimit": limit, "nodes": 0})
        entry["default"] |= default
        entry["nodes"] += int(nodes) if nodes.isdigit() else 0
    return out


def default_partition() -> str | None:
    return next((name for name, p in partitions().items() if p["default"]), None)


def check_partition(name: str | None) -> str:
    """Return the partition jobs will go to; raise ConfigError when ``name`` does not exist or is not up.

    ``name=None`` (or "") means the cluster's default partition, which must then exist.
    """
    parts = partitions()
    known = ", ".join(f"{p}{' (default)' if v['default'] else ''}" for p, v in sorted(parts.items())) or "none"
    if not name:
        default = next((p for p, v in parts.items() if v["default"]), None)
        if default is None:
            raise ConfigError(
                f"no Slurm partition given and the cluster has no default partition; known partitions: {known}"
            )
        name = default
    if name not in parts:
        raise ConfigError(
            f"Slurm partition '{name}' does not exist on this cluster; known partitions: {known} "
            f"(set slurm_partition in the profile's default-resources, or --partition)"
        )
    if parts[name]["available"] not in ("up", ""):
        raise ConfigError(f"Slurm partition '{name}' is {parts[name]['available']}, not up")
    return name


def requested_partitions(workflow) -> set[str]:
    """The ``slurm_partition`` values of every job Snakemake is about to run (default + rule + set-resources)."""
    wanted: set[str] = set()
    for job in workflow.dag.needrun_jobs():
        jobs = job.jobs if hasattr(job, "jobs") and job.is_group() else [job]
        for j in jobs:
            if getattr(j, "is_local", False):
                continue
            value = j.resources.get("slurm_partition")
            wanted.add(str(value) if value else "")
    return wanted


def check_workflow_partitions(workflow) -> None:
    """Snakemake ``onstart`` hook: raise ConfigError before any sbatch when a job asks for a missing partition.

    Does nothing unless Snakemake runs with the slurm executor (``--profile slurm``).
    """
    plugin = getattr(workflow, "executor_plugin", None)
    if plugin is None or getattr(plugin, "name", None) != "slurm":
        return
    for name in sorted(requested_partitions(workflow)):
        check_partition(name or None)

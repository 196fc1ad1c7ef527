"""What a job asks its executor for: threads, memory, runtime, GPUs (config ``resources:``), and the number
of data-parallel processes of a training cell. Used by the Snakemake plan and by ``jetscale train``."""

from __future__ import annotations

from .config_view import training_view

# What a job asks for where the config's resources section names nothing (the schema gives no default here: a
# stage's entry falls back to resources.default, then to these)
BUILTIN = {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpus": 0}


def stage_resources(cfg: dict, stage: str) -> dict:
    """threads, mem_mb, runtime (minutes), gpus (+ slurm_partition) of a stage: built-ins < default < stage."""
    res = dict(BUILTIN)
    res.update(cfg.get("resources", {}).get("default", {}))
    if stage != "default":
        res.update(cfg.get("resources", {}).get(stage, {}))
    res.pop("widths", None)
    return res


def train_resources(cfg: dict, cell: dict) -> dict:
    """A training cell's resources: default < resources.train.<model> < its widths.<width>."""
    res = stage_resources(cfg, "default")
    per_model = dict(cfg.get("resources", {}).get("train", {}).get(cell["model"], {}))
    per_width = per_model.pop("widths", {}).get(str(cell["width"]), {})
    res.update(per_model)
    res.update(per_width)
    # every data-parallel rank runs training.threads torch threads: reserve the cores for all of them
    res["threads"] = max(int(res["threads"]), _processes(cfg, res) * int(training_view(cfg["training"]).threads))
    return res


def _processes(cfg: dict, res: dict) -> int:
    processes = training_view(cfg["training"]).processes
    return max(1, int(res.get("gpus", 0))) if processes == "auto" else int(processes)


def train_processes(cfg: dict, cell: dict) -> int:
    """Data-parallel processes for a cell: ``training.processes``, where 'auto' is one per requested GPU."""
    return _processes(cfg, train_resources(cfg, cell))

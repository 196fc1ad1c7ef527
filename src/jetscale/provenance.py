"""Where a result came from: the code's git revision, the hardware and the library versions.

Every record a run writes (``metrics.json``, ``pretrain.json``) takes these from here, so they are spelled once.
"""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

from .paths import REPO_ROOT


def git_revision() -> str | None:
    """The checkout's commit, with ``-dirty`` when tracked files differ from it; None outside a git checkout."""
    root = str(REPO_ROOT)
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def hardware(device, threads: int, engine, ranks) -> dict[str, Any]:
    """The machine a run used and how it used it (engine, precision, processes, threads)."""
    import torch

    info = {
        "device": device.type,
        "engine": engine.name,
        "precision": "bf16" if engine.bf16 else "fp32",
        "compiled": engine.compiled,
        "processes": ranks.world,
        "threads": threads,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def versions(engine_name: str = "torch") -> dict[str, str]:
    """Python, torch, numpy (+ CUDA when built with it) and the installed jetscale, pandas, pyarrow, deepspeed."""
    from importlib import metadata

    import numpy as np
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    if torch.version.cuda:
        out["cuda"] = torch.version.cuda
    for pkg in ("jetscale", "pandas", "pyarrow") + (("deepspeed",) if engine_name == "deepspeed" else ()):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out

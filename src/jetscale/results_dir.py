"""Who may write into a results directory: a safe location, one study (``study.json``), one writer at a time.

A results directory is created, filled and (by Snakemake, for ``directory()`` outputs) partly deleted by the
pipeline, so it must never be a directory that holds anything else: not ``/``, not the repository or a parent
of it, not the working directory or a parent of it, and no ``..`` detours. Its name is also spelled in shell
commands, so it keeps to a documented safe pattern (``RESULTS_PATTERN``, in the config schema too).
"""

from __future__ import annotations

import os
from pathlib import Path

# letters, digits and _ . / + - only, not starting with '-' (no spaces, quotes, $, `, ; ...); also in the schema
RESULTS_PATTERN = r"^[A-Za-z0-9_./+][A-Za-z0-9_./+-]*$"
REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout (an installed package: its site-packages parent)


def location_problem(results: str, cwd: str | os.PathLike | None = None) -> str | None:
    """Why ``results`` may not be a results directory, or None when it may."""
    path = Path(results)
    if ".." in path.parts:
        return f"{results!r} contains '..'; name the directory without going up"
    cwd = Path(cwd or os.getcwd()).resolve()
    resolved = (cwd / path).resolve()
    if resolved == Path(resolved.anchor):
        return f"{results!r} is the file-system root"
    protected = {"the repository": REPO_ROOT, "the working directory": cwd}
    for what, where in protected.items():
        if resolved == where or resolved in where.parents:
            return f"{results!r} resolves to {resolved}, which is {what} or a parent of it; use a subdirectory"
    return None

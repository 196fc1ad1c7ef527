"""Who may write into a results directory: a safe location, one study (``study.json``), one writer at a time.

A results directory is created, filled and (by Snakemake, for ``directory()`` outputs) partly deleted by the
pipeline, so it must never be a directory that holds anything else: not ``/``, not the repository or a parent
of it, not the working directory or a parent of it, and no ``..`` detours. Its name is also spelled in shell
commands, so it keeps to a documented safe pattern. Both rules are :func:`jetscale.paths.location_problem` and
``paths.RESULTS_PATTERN`` (in the config schema too), which config validation applies.
"""

from __future__ import annotations

import os
from pathlib import Path

from .paths import STUDY_STAMP

LOCK = ".jetscale/lock"


def stamp(cfg: dict) -> dict:
    from .settings import data_fingerprint

    return {"study": cfg["study"], "data_fingerprint": data_fingerprint(cfg)}


def check_owner(cfg: dict) -> None:
    """Refuse a results dir whose ``study.json`` names another study or data configuration (every command that
    writes into a results dir calls this; a directory without a stamp belongs to nobody yet)."""
    import json

    from .errors import ConfigError
    from .paths import results_root

    root = results_root(cfg)
    path = root / STUDY_STAMP
    if not path.exists():
        return
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable study stamp ({exc}); fix or remove it") from None
    want = stamp(cfg)
    for key in ("study", "data_fingerprint"):
        if not isinstance(found, dict) or found.get(key) != want[key]:
            raise ConfigError(
                f"results: {str(root)!r} was written by a different configuration ({key} "
                f"{found.get(key) if isinstance(found, dict) else None!r}, this config has {want[key]!r}). "
                f"Point `results:` at a new directory, or remove {path} (and {root / 'data'}) to regenerate the "
                "data for this config."
            )


def hold_lock(path: str | os.PathLike, holder: str):
    """Take an exclusive lock on ``path``, held until the returned file is closed (or the process ends);
    raise :class:`~jetscale.errors.JetscaleError` naming the process that holds it."""
    import fcntl

    from .errors import JetscaleError
    from .io import open_nofollow, refuse_link

    path = Path(path)
    refuse_link(path.parent)  # the lock's directory (results/.jetscale) may not lead elsewhere either
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)  # a link at the lock's name is refused, never truncated
    handle = os.fdopen(fd, "r+")  # held open on purpose: the lock lives as long as the file
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        who = handle.read().strip() or "another process"
        handle.close()
        raise JetscaleError(f"{path}: locked by {who}; wait for it to finish (or stop it) and rerun") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{holder} (pid {os.getpid()})\n")
    handle.flush()
    return handle


def load_study_config(path: str | os.PathLike) -> dict:
    """``load_config`` for a command that writes into the results dir: also checks that the dir is this study's."""
    from .config import load_config

    cfg = load_config(path)
    check_owner(cfg)
    return cfg

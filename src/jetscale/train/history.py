"""Archive of finished runs: ``runs/<cell>/history/<entry>/`` (a retrain never destroys a finished result).

Snakemake deletes a job's outputs before rerunning it, so every finished run is archived as a whole, by hard
links (copies where links fail): ``metrics.json``, ``predictions.parquet``, ``train_log.csv``, ``checkpoint.pt``,
and ``eval.json`` once the evaluation has run. Files are replaced by atomic renames, so a link keeps the
archived content even after the run directory is rewritten. Entries are never overwritten: the first finished
run of a settings hash is ``history/<hash>/``, later ones (a retrain on changed data, say) ``<hash>.2``, ...
Nothing is written through a symbolic link: ``history``, an entry or a file name in it that is a link is
refused, naming it, and a copy (where hard links fail) never follows nor replaces an existing name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import paths
from ..io import open_nofollow, refuse_link

RUN_FILES = (paths.METRICS, paths.PREDICTIONS, paths.TRAIN_LOG, paths.CHECKPOINT, paths.FITTED_MODEL)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _link(src: Path, dest: Path) -> None:
    refuse_link(dest)
    try:
        os.link(src, dest)
    except FileExistsError:
        raise
    except OSError:  # another file system: a copy, created anew (O_EXCL: never through a link at dest)
        with open(src, "rb") as fin, os.fdopen(open_nofollow(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as fout:
            shutil.copyfileobj(fin, fout)
        shutil.copystat(src, dest)


def entry_of(run_dir: str | os.PathLike) -> Path | None:
    """The history entry that archives the run's current ``metrics.json`` (None when there is none)."""
    run_dir = Path(run_dir)
    history = run_dir / "history"
    refuse_link(history)
    if not (run_dir / paths.METRICS).is_file() or not history.is_dir():
        return None
    for entry in sorted(history.iterdir()):
        refuse_link(entry)
        if _same_file(entry / paths.METRICS, run_dir / paths.METRICS):
            return entry
    return None


def archive(run_dir: str | os.PathLike, shash: str) -> Path:
    """Archive the finished run in ``run_dir`` under a new history entry; return the entry."""
    run_dir = Path(run_dir)
    existing = entry_of(run_dir)
    if existing is not None:  # already archived (e.g. the same call repeated)
        return existing
    history = run_dir / "history"
    history.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        entry = history / (shash if n == 1 else f"{shash}.{n}")
        try:
            entry.mkdir()  # atomic claim: two writers never share an entry
            break
        except FileExistsError:
            n += 1
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            _link(run_dir / name, entry / name)
    return entry


def archive_evaluation(run_dir: str | os.PathLike) -> Path | None:
    """Add ``eval.json`` to the history entry of the run's current result (where there is one)."""
    run_dir = Path(run_dir)
    entry = entry_of(run_dir)
    if entry is not None and (run_dir / paths.EVAL).is_file():
        target = entry / paths.EVAL
        refuse_link(target)  # a dangling link would otherwise be created through
        if target.exists():  # an entry is never overwritten: keep the first evaluation beside it
            if _same_file(run_dir / paths.EVAL, target):
                return entry
            target = entry / f"eval.{len(list(entry.glob('eval*.json'))) + 1}.json"
        _link(run_dir / paths.EVAL, target)
    return entry

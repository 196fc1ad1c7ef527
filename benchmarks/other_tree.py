"""Another commit of this repository, checked out beside it, for the benchmarks' side-by-side ``--against REV``."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: the benchmarks' one home for it


@contextlib.contextmanager
def other_tree(rev: str | None, where: Path) -> Iterator[Path | None]:
    """Commit ``rev`` checked out at ``where`` (a detached git worktree) for the block, then removed; None for
    no ``rev``. A commit that cannot be checked out ends the benchmark with one line."""
    if rev is None:
        yield None
        return
    git = ["git", "-C", str(ROOT), "worktree"]
    done = subprocess.run([*git, "add", "--detach", str(where), rev], capture_output=True, text=True)
    if done.returncode:
        reason = (done.stderr.strip().splitlines() or ["git worktree add failed"])[-1]
        raise SystemExit(f"--against {rev}: cannot check it out ({reason})")
    try:
        yield where
    finally:
        subprocess.run([*git, "remove", "--force", str(where)], capture_output=True)

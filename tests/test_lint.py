"""The Python sources pass ruff's lint and format checks (configured in pyproject.toml, line length 120)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
CHECKED = ["src", "tests", "benchmarks"]


def test_ruff_lint(repo_root):
    out = subprocess.run([str(BIN / "ruff"), "check", *CHECKED], cwd=repo_root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format(repo_root):
    out = subprocess.run(
        [str(BIN / "ruff"), "format", "--check", *CHECKED], cwd=repo_root, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr

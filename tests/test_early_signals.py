"""A SIGTERM in the first seconds of `jetscale train` (while torch imports) is a stop request: exit 75, not 143
(issue 10, item 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def catches_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & SIGTERM_BIT)
    return False


def torch_loaded(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc")
def test_sigterm_before_torch_is_imported_exits_75(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "jetscale.cli", "train", "--config", str(repo / "config.yaml"), "--no-progress"]
    cmd += ["--cell", "model~particlenet/width~16/n_train~100/compute~auto/seed~0", "--out", str(tmp_path / "run")]
    cmd += ["--splits", str(tmp_path / "no-splits")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not catches_sigterm(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert proc.poll() is None, proc.communicate()
    assert not torch_loaded(proc.pid), "SIGTERM is handled only once torch is loaded"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "stopped by SIGTERM before training started" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "metrics.json").exists()

"""Killing `jetscale report` leaves no process-pool worker behind: its fit workers end with their parent, for
SIGKILL and SIGTERM of the parent and for Ctrl-C (SIGINT to the whole process group), with real kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import os, sys, time
from jetscale.fit.study import parallel_map

def job(i):
    open(os.path.join(sys.argv[1], str(os.getpid())), "w").close()
    time.sleep(120)
    return i

parallel_map(job, list(range(6)))
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


# Ctrl-C signals the whole process group: once (of several CI runs) the parent did not exit within 30 s (its
# workers got the SIGINT too and the pool waited for their lost tasks): a known race, not yet fixed.
CTRL_C = pytest.param(
    "ctrl-c",
    marks=pytest.mark.xfail(raises=subprocess.TimeoutExpired, strict=False, reason="Pool/SIGINT race, see above"),
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", CTRL_C])
def test_pool_workers_die_with_the_killed_parent(tmp_path, how):
    script = tmp_path / "fits.py"
    script.write_text(SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "JETSCALE_FIT_WORKERS": "2", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    parent = subprocess.Popen(
        [sys.executable, str(script), str(pids)], env=env, start_new_session=True, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2 and all(map(_alive, workers))
        if how == "ctrl-c":
            os.killpg(parent.pid, signal.SIGINT)
        else:
            parent.send_signal(getattr(signal, how))
        parent.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, workers)), f"orphaned workers after {how}: {workers}"
    finally:
        for pid in [parent.pid, *(int(p.name) for p in pids.iterdir())]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        parent.wait()


FINALIZER_SCRIPT = """
import gc, os, sys
from jetscale.fit.study import parallel_map

class Native:  # stands for a native object (an onnxruntime session) whose finalizer must run where it was made
    def __del__(self):
        with open(sys.argv[1], "a") as f:
            f.write(f"{os.getpid()}\\n")

def job(i):
    gc.collect()  # a worker's collection, as any allocation-heavy job (a figure) triggers
    return i

gc.disable()  # no collection but the explicit ones: the test does not depend on allocation counts
cycle = [Native()]
cycle.append(cycle)  # garbage only a collection finds
del cycle
print(os.getpid(), parallel_map(job, list(range(4))))
"""


def test_forked_workers_never_finalize_what_they_inherit(tmp_path):
    """A worker that collected the parent's cyclic garbage ran its finalizers in a process without the parent's
    threads: with an onnxruntime session among them it hung for good (the suite's report test, after an export
    test in the same process). The parent collects before forking; the workers find nothing of its to finalize."""
    marks = tmp_path / "finalized"
    env = {**os.environ, "JETSCALE_FIT_WORKERS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", FINALIZER_SCRIPT, str(marks)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    parent = out.stdout.split()[0]
    assert "[0, 1, 2, 3]" in out.stdout
    assert marks.read_text().split() == [parent]  # finalized once, in the parent

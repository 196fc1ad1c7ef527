"""benchmarks/train_throughput.py's split of a training step into a cost per step and a cost per jet."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "train_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_throughput_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_cost_is_the_line_through_the_step_times(bench):
    per_step, per_jet = bench.step_cost([2, 8, 32, 128], [6.0 + 0.25 * b for b in (2, 8, 32, 128)])
    assert per_step == pytest.approx(6.0) and per_jet == pytest.approx(0.25)
    # noisy times: the least-squares line, not the two end points
    per_step, per_jet = bench.step_cost([1, 2, 3], [1.0, 3.0, 2.0])
    assert per_step == pytest.approx(1.0) and per_jet == pytest.approx(0.5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cost-split", "32"], "at least two positive batch sizes"),
        (["--cost-split", "2,x"], "batch sizes such as"),
        (["--cost-split", "2,8", "--against", "HEAD"], "leave out --against"),
    ],
)
def test_cost_split_refuses_bad_arguments_in_one_line(args, message):
    res = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr


def tiny_run(tmp_path, *args: str) -> list[str]:
    """The script's output lines for a real (tiny) run: a width-8 ParT, synthetic jets, 2 timed steps."""
    res = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--synthetic", "--widths", "part=8", "--steps", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.splitlines()


def test_cost_split_measures_each_batch_size(tmp_path):
    """One model, two batch sizes, each in its own process."""
    row = next(line for line in tiny_run(tmp_path, "--cost-split", "2,6") if line.startswith("part "))
    cells = row.split()  # model, width, device, ms@2, ms@6, ms/step, ms/jet, share, jets/s (timings: not compared)
    assert cells[:3] == ["part", "8", "cpu"] and len(cells) == 9
    assert float(cells[3]) > 0 and float(cells[4]) > 0
    assert cells[8] == "-" or int(cells[8]) > 0


def test_precision_is_measured_against_the_default_in_one_run(tmp_path):
    """--precision bf16 alongside the default (fp32 on CPU) run of the same tree, one ratio."""
    lines = tiny_run(tmp_path, "--precision", "bf16")
    assert "precision bf16" in lines[0]
    rows = [line.split() for line in lines if line.startswith("part ")]
    assert [r[3] for r in rows] == ["bf16", "eager"]  # the variant first, then the plain run its ratio is against
    assert rows[1][-2].endswith("x,") and float(rows[1][-2].rstrip("x,")) > 0  # train, scoring ratios

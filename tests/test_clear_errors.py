"""Bad input is one line naming the problem, never a traceback, and nothing wrong is accepted silently (the
rest of the probes in docs/probes.md)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pandas as pd
import pytest

from jetscale.cli import main, one_line
from jetscale.errors import DataError
from jetscale.evaluate.collect import implausible
from jetscale.evaluate.metrics import metrics_from_predictions
from jetscale.io import not_a_file, read_json
from jetscale.paths import location_problem
from jetscale.terminal import printable

CLASSES = ["b", "bbar", "c"]
PAIRS = {"b": ["b", "bbar"]}


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import jetscale.status as status

    def boom(args):
        raise KeyError("metrics")

    monkeypatch.setattr(status, "_status", boom)
    assert main(["status"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "KeyError: 'metrics'" in err and "--debug" in err
    with pytest.raises(KeyError):
        main(["status", "--debug"])
    monkeypatch.setenv("JETSCALE_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["status"])


def test_file_system_errors_name_the_file_and_the_cause():
    assert one_line(OSError(errno.ENOSPC, "No space left on device", "r/runs.csv")) == (
        "r/runs.csv: No space left on device (the disk is full)"
    )
    assert "read-only" in one_line(OSError(errno.EROFS, "Read-only file system", "r/x"))
    assert "255 bytes" in one_line(OSError(errno.ENAMETOOLONG, "File name too long", "r/" + "a" * 300))


def test_a_fifo_a_directory_or_a_device_is_not_called_missing(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    assert "a FIFO (named pipe), not a regular file" in not_a_file(tmp_path / "fifo", "input file")
    assert "this is a directory" in not_a_file(tmp_path, "input file")
    assert "a character device" in not_a_file("/dev/zero", "input file")
    assert not_a_file(tmp_path / "nope", "input file").endswith("input file not found")
    assert main(["ingest", "--input", "/dev/zero", "--out", str(tmp_path / "o")]) == 2


def test_malformed_json_names_the_file(tmp_path):
    for text, expected in (("{oops", "is not valid JSON"), ("[1, 2]", "must be a JSON object, not a list")):
        path = tmp_path / "metrics.json"
        path.write_text(text)
        with pytest.raises(DataError, match=f"metrics.json: metrics file {expected}"):
            read_json(path, "metrics file")


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda f: f.assign(score_b=np.nan), "not probabilities in"),
        (lambda f: f.assign(score_b=-0.5), "not probabilities in"),
        (lambda f: f.assign(score_b=np.inf), "not probabilities in"),
        (lambda f: f.assign(score_b=0.9), "must sum to 1"),
        (lambda f: f.iloc[:0], "no predictions"),
        (lambda f: f.assign(label=1e30), r"found 1e\+30"),
        (lambda f: f.assign(label=2.5), "must be integers"),
    ],
)
def test_bad_predictions_are_refused(change, expected):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 20)
    frame = pd.DataFrame(
        {"label": rng.integers(0, 3, 20), "score_b": p[:, 0], "score_bbar": p[:, 1], "score_c": p[:, 2]}
    )
    metrics_from_predictions(frame, CLASSES, PAIRS)  # the good table passes
    with pytest.raises(ValueError, match=expected):
        metrics_from_predictions(change(frame), CLASSES, PAIRS)


def test_bad_confusion_tables_are_refused(tmp_path):
    for cell, expected in (("many", "counts must be numbers"), ("1e300", "beyond what can be counted exactly")):
        path = tmp_path / "conf.csv"
        path.write_text(f"t,b,bbar,c\nb,{cell},1,1\nbbar,1,1,1\nc,1,1,1\n")
        from jetscale.evaluate.cli import read_confusion_csv

        with pytest.raises(DataError, match=expected):
            read_confusion_csv(path, CLASSES)


def test_implausible_collected_values():
    row = {"flavor": "", "error": np.nan}
    assert implausible([{**row, "metric": "accuracy", "value": 1e300}]).startswith("implausible accuracy = 1e+300")
    assert "log_loss = -3.0" in implausible([{**row, "metric": "log_loss", "value": -3.0}])
    assert (
        implausible([{**row, "metric": "log_loss", "value": 2.3}, {**row, "metric": "val_loss", "value": np.nan}])
        is None
    )


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--cell", "x", "--splits", "s", "--out", "o", "--threads", "-3"], "--threads: -3 is out of range"),
        (
            ["train", "--cell", "x", "--splits", "s", "--out", "o", "--processes", "100000"],
            "--processes: 100000 is out",
        ),
        (["forecast", "--csv", "t.csv", "--x", "n", "--y", "v", "--target", "nan"], "--target: nan is not allowed"),
        (["fit", "--csv", "t.csv", "--x", "n", "--y", "v", "--bootstrap", "1000000000"], "--bootstrap: 1000000000 is"),
        (["launch", "--all", "--mem-gb", "-4"], "--mem-gb: -4 is not allowed"),
        (["launch", "--all", "--cpus", "-1"], "--cpus: -1 is out of range"),
        (["forecast", "--csv", "t.csv", "--x", "n", "--y", "v", "--target", "1", "--seed", str(2**32)], "--seed"),
    ],
)
def test_arguments_out_of_range_are_refused_before_any_work(argv, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and expected in capsys.readouterr().err


def test_results_in_a_system_directory_is_refused():
    assert "inside the system directory /etc" in location_problem("/etc/jetscale")
    assert location_problem("/tmp/jetscale-results") is None


def test_terminal_escapes_are_shown_not_obeyed():
    assert printable("boom\x1b[2J\x1b[31mfine\r\x07") == "boom\\x1b[2J\\x1b[31mfine\\x0d\\x07"
    assert printable("tab\tand\nnewline") == "tab\tand\nnewline"

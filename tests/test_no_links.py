"""No file disclosure and no writes through links: the report embeds only regular PNG/SVG files inside the
results directory, and locks, atomic writes and the run history refuse a symbolic link, naming it."""

from __future__ import annotations

import os

import pytest

from jetscale.errors import JetscaleError
from jetscale.io import write_json, write_text
from jetscale.report.html import _embed
from jetscale.results_dir import hold_lock
from jetscale.train.history import archive, archive_evaluation

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
SECRET = b"api_key=hunter2-very-secret"


@pytest.fixture
def root(tmp_path):
    (tmp_path / "results" / "data").mkdir(parents=True)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return tmp_path / "results"


def test_report_embeds_no_linked_outside_or_non_image_file(root, tmp_path):
    summary = root / "data" / "summary.png"
    os.symlink(tmp_path / "secret.txt", summary)
    with pytest.raises(JetscaleError, match=r"summary.png: a symbolic link"):
        _embed(summary, root)
    with pytest.raises(JetscaleError, match=r"secret.txt: outside the results directory"):
        _embed(tmp_path / "secret.txt", root)
    os.unlink(summary)
    os.symlink(tmp_path, root / "data" / "dir")  # a linked directory on the way
    (tmp_path / "inner.png").write_bytes(PNG)
    with pytest.raises(JetscaleError, match=r"data/dir: a symbolic link"):
        _embed(root / "data" / "dir" / "inner.png", root)
    summary.write_bytes(SECRET)  # a regular file inside, but not an image
    with pytest.raises(JetscaleError, match=r"summary.png: not a PNG or SVG image"):
        _embed(summary, root)
    summary.write_bytes(PNG)
    assert 'src="data:image/png;base64,' in _embed(summary, root)
    svg = root / "data" / "f.svg"
    svg.write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    assert 'src="data:image/svg+xml;base64,' in _embed(svg, root)


def test_report_command_refuses_a_data_summary_outside_the_results_dir(tmp_path, capsys):
    from jetscale.cli import main
    from jetscale.config import load_config
    from jetscale.evaluate.synthetic import write_synthetic_study
    from test_report import study_config

    config = study_config(tmp_path, models=["particlenet"], sizes=[100, 300, 1000, 3000], seeds=(0,), bootstrap=5)
    cfg = load_config(config)
    written = write_synthetic_study(cfg, jets_per_class=20)
    for cid in written:
        assert main(["evaluate", "--config", str(config), "--run", f"{cfg['results']}/runs/{cid}"]) == 0
    assert main(["collect", "--config", str(config)]) == 0
    (tmp_path / "secret.txt").write_bytes(SECRET)
    capsys.readouterr()
    assert main(["report", "--config", str(config), "--data-summary", str(tmp_path / "secret.txt")]) != 0
    assert "secret.txt: outside the results directory" in capsys.readouterr().err
    summary = tmp_path / "results" / "data" / "summary.png"
    summary.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path / "secret.txt", summary)
    assert main(["report", "--config", str(config)]) != 0
    assert "summary.png: a symbolic link" in capsys.readouterr().err
    report = tmp_path / "results" / "report.html"
    assert not report.exists() or b"aHVudGVy" not in report.read_bytes()  # base64 of the secret's "hunter"


def test_locks_never_follow_a_link(root, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (root / ".jetscale").mkdir()
    os.symlink(victim, root / ".jetscale" / "lock")
    with pytest.raises(JetscaleError, match=r"\.jetscale/lock: a symbolic link"):
        hold_lock(root / ".jetscale" / "lock", "test")
    run = root / "runs" / "cell"
    run.mkdir(parents=True)
    os.symlink(victim, run / ".train.lock")
    with pytest.raises(JetscaleError, match=r"\.train.lock: a symbolic link"):
        hold_lock(run / ".train.lock", "test")
    os.symlink(tmp_path, root / "linked")  # a lock directory that leads elsewhere
    with pytest.raises(JetscaleError, match=r"linked: a symbolic link"):
        hold_lock(root / "linked" / "lock", "test")
    assert victim.read_text() == "precious\n" and not (tmp_path / "lock").exists()
    with hold_lock(run / "ok.lock", "test"):  # a plain lock still works
        assert "pid" in (run / "ok.lock").read_text()


def test_atomic_writes_refuse_a_link_at_the_name(root, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, root / "eval.json")
    with pytest.raises(JetscaleError, match=r"eval.json: a symbolic link"):
        write_json(root / "eval.json", {"a": 1})
    os.symlink(tmp_path / "nowhere.txt", root / "dangling.txt")
    with pytest.raises(JetscaleError, match=r"dangling.txt: a symbolic link"):
        write_text(root / "dangling.txt", "x")
    assert victim.read_text() == "precious\n" and not (tmp_path / "nowhere.txt").exists()


def test_history_never_writes_through_a_link(root, tmp_path):
    run = root / "runs" / "cell"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"a": 1}')
    entry = archive(run, "abc")
    (run / "eval.json").write_text('{"e": 1}')
    outside = tmp_path / "outside.json"
    os.symlink(outside, entry / "eval.json")  # dangling: its target would be created outside results/
    with pytest.raises(JetscaleError, match=r"history/abc/eval.json: a symbolic link"):
        archive_evaluation(run)
    assert not outside.exists()
    os.unlink(entry / "eval.json")
    os.rename(entry, tmp_path / "moved")
    os.symlink(tmp_path / "moved", entry)  # an entry that leads elsewhere
    with pytest.raises(JetscaleError, match=r"history/abc: a symbolic link"):
        archive_evaluation(run)
    assert not (tmp_path / "moved" / "eval.json").exists()

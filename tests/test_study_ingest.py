"""End to end for an ingest study: tiny JetClass-schema ROOT files written here, through Snakemake to
report.html with the shipped `jetclass` mapping (10 classes, no quark pairs); then a new file matching the
glob is refused, naming it, instead of silently reusing the old models (issue 10, items 3 and 4)."""

from __future__ import annotations

import json

import pytest
import yaml

from study_helpers import snakemake
from test_data_ingest import CLASSES, jetclass_arrays, write_root

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def ingest_study(workdir):
    inputs = workdir / "jetclass"
    inputs.mkdir()
    for i in range(2):
        arrays, _, _ = jetclass_arrays(n_jets=300, seed=i)
        write_root(inputs / f"part{i}.root", arrays)
    cfg = {
        "study": "ingest-tiny",
        "results": "results-ingest",
        "classes": CLASSES,
        "flavor_pairs": {},
        "data": {
            "source": "ingest",
            "ingest": {"paths": [str(inputs / "part*.root")], "mapping": "jetclass"},
            "n_particles": 32,
            "val_per_class": 10,
            "test_per_class": 10,
        },
        "grid": {
            "axes": {"model": ["particlenet"], "width": [16], "n_train": [100, 200, 400], "compute": [256], "seed": [0]}
        },
        "training": {"batch_size": 64, "eval_every_samples": 128},
        "fits": {"bootstrap": 5, "min_points": 3},
    }
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, inputs


def test_ingest_study_reaches_the_report_and_refuses_a_changed_data_set(tmp_path):
    config, inputs = ingest_study(tmp_path)
    out = snakemake(tmp_path, config, "--cores", "2")
    assert out.returncode == 0, out.stderr[-4000:]
    root = tmp_path / "results-ingest"
    assert (root / "report.html").stat().st_size > 0 and (root / "data" / "summary.png").stat().st_size > 5000
    manifest = json.loads((root / "data" / "ingested" / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == [str(inputs / f"part{i}.root") for i in range(2)]
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in manifest["files"])
    meta = json.loads((root / "data" / "splits" / "meta.json").read_text())
    assert meta["data_fingerprint"].endswith("+" + manifest["fingerprint"])
    assert "Nothing to be done" in snakemake(tmp_path, config, "-n").stdout

    arrays, _, _ = jetclass_arrays(n_jets=300, seed=7)
    write_root(inputs / "part2.root", arrays)  # a new file matching the glob: a different data set
    again = snakemake(tmp_path, config, "-n")
    assert again.returncode != 0
    text = again.stdout + again.stderr
    assert "data.ingest.paths: the input files differ" in text and f"new file {inputs / 'part2.root'}" in text

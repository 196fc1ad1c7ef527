"""End to end: a tiny real study through Snakemake (generate -> split -> train -> evaluate -> fit -> report),
then what users do next: rerun (nothing to do), add an axis (only new cells), change a default (only the
affected cells)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import yaml

from study_helpers import planned_cells, snakemake, tiny_study

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    config = tiny_study(workdir)
    out = snakemake(workdir, config, "--cores", "2")
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir, config


def test_study_builds_every_output(finished_study):
    workdir, config = finished_study
    cfg = yaml.safe_load(config.read_text())
    root = workdir / cfg["results"]
    runs = sorted(p for p in root.glob("runs/**/metrics.json") if "history" not in p.parts)
    assert len(runs) == 6
    # every finished run is also archived under history/<settings hash>/ (never lost on a retrain)
    assert all(any((m.parent / "history").glob("*/metrics.json")) for m in runs)
    for metrics in runs:
        for name in ("predictions.parquet", "train_log.csv", "eval.json"):
            assert (metrics.parent / name).stat().st_size > 0
    table = pd.read_csv(root / "tables" / "runs.csv")
    assert table["cell_id"].nunique() == 6
    assert {"model", "width", "n_train", "compute", "seed", "metric", "value"} <= set(table.columns)
    assert (root / "fits" / "fit_summary.csv").stat().st_size > 0
    html = (root / "report.html").read_text()
    assert "<img" in html or "data:image" in html
    figures = list((root / "figures").glob("*.png"))
    assert figures and all(f.stat().st_size > 5000 for f in figures)
    assert (root / "data" / "summary.png").stat().st_size > 5000


def test_rerun_has_nothing_to_do(finished_study):
    workdir, config = finished_study
    out = snakemake(workdir, config, "-n")
    assert out.returncode == 0, out.stderr
    assert "Nothing to be done" in out.stdout + out.stderr


def _variant(workdir, config, mutate):
    cfg = yaml.safe_load(config.read_text())
    new = copy.deepcopy(cfg)
    mutate(new)
    path = workdir / "variant.yaml"
    path.write_text(yaml.safe_dump(new, sort_keys=False))
    return path


def test_added_axis_plans_only_new_cells(finished_study):
    workdir, config = finished_study
    variant = _variant(
        workdir,
        config,
        lambda c: c["grid"].update(
            extra_axes={"lr": {"values": [1.0e-3, 3.0e-3], "default": 1.0e-3, "sets": "training.lr"}}
        ),
    )
    out = snakemake(workdir, variant, "-n")
    assert out.returncode == 0, out.stderr
    planned = planned_cells(out.stdout)
    assert len(planned) == 6 and all(c.endswith("/lr~0.003") for c in planned)


def test_new_seed_plans_only_new_cells(finished_study):
    workdir, config = finished_study
    variant = _variant(workdir, config, lambda c: c["grid"]["axes"].update(seed=[0, 1]))
    planned = planned_cells(snakemake(workdir, variant, "-n").stdout)
    assert len(planned) == 6 and all(c.endswith("seed~1") for c in planned)


def test_changed_default_reruns_only_affected_cells(finished_study):
    workdir, config = finished_study
    variant = _variant(workdir, config, lambda c: c["models"]["bbt_neutron"]["tokenizer"].update(max_bytes=256))
    planned = planned_cells(snakemake(workdir, variant, "-n").stdout)
    assert planned == {
        "model~bbt_neutron/width~32/n_train~200/compute~600/seed~0",
        "model~bbt_neutron/width~32/n_train~1000/compute~600/seed~0",
    }
    variant = _variant(workdir, config, lambda c: c["training"].update(weight_decay=0.05))
    assert len(planned_cells(snakemake(workdir, variant, "-n").stdout)) == 6

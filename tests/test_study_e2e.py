"""End to end: a tiny real study through Snakemake (generate -> split -> train -> evaluate -> fit -> report),
then what users do next: rerun (nothing to do), add an axis (only new cells), change a default (only the
affected cells)."""

from __future__ import annotations

import copy
import re
import shutil

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


def _tuned(cfg, lrs=(1.0e-3, 3.0e-3), by="val_loss", n_train=None):
    """lr as a tuning axis of ParticleNet (whose default lr is 1e-3); BBT-Neutron keeps one value: not tuned."""
    cfg["grid"]["extra_axes"] = {"lr": {"values": list(lrs), "default": 1.0e-3, "sets": "training.lr"}}
    cfg["grid"]["per_model"]["bbt_neutron"]["lr"] = [1.0e-3]
    cfg["grid"]["tune"] = {"lr": {"by": by}}
    if n_train:
        cfg["grid"]["per_model"]["particlenet"] = {"n_train": n_train}


def _pn(n, lr=None):
    return f"model~particlenet/width~16/n_train~{n}/compute~600/seed~0" + (f"/lr~{lr}" if lr else "")


def test_tuned_series_resumes_and_extends(finished_study, tmp_path):
    workdir, config = finished_study
    # declaring lr a tuning axis over the finished study plans only the new lr value's cells
    planned = planned_cells(snakemake(workdir, _variant(workdir, config, _tuned), "-n").stdout)
    assert planned == {_pn(n, "0.003") for n in (200, 400, 800, 1000)}
    # run it in a copy (the module's other tests keep the finished study as it is)
    work = tmp_path / "tuned"
    shutil.copytree(workdir, work, symlinks=True)
    out = snakemake(work, _variant(work, config, _tuned), "--cores", "2")
    assert out.returncode == 0, out.stderr[-4000:]
    root = work / yaml.safe_load(config.read_text())["results"]
    tuning = pd.read_csv(root / "tables" / "tuning.csv")
    assert set(tuning["model"]) == {"particlenet"} and len(tuning) == 8
    assert tuning.groupby("n_train")["chosen"].sum().eq(1).all() and tuning["by"].eq("val_loss").all()
    runs = pd.read_csv(root / "tables" / "runs.csv")
    assert runs.loc[runs["model"] == "bbt_neutron", "chosen"].all()  # untuned: kept
    assert runs[runs["chosen"]].groupby(["model", "n_train"])["cell_id"].nunique().eq(1).all()
    assert (root / "fits" / "tuning_trends.csv").is_file() and "Per-cell tuning" in (root / "report.html").read_text()
    # extending the tuned series (a new n_train, a new lr) plans only the new cells
    extended = _variant(work, config, lambda c: _tuned(c, (3.0e-4, 1.0e-3, 3.0e-3), n_train=[200, 400, 600, 800, 1000]))
    planned = planned_cells(snakemake(work, extended, "-n").stdout)
    assert planned == {_pn(n, "0.0003") for n in (200, 400, 800, 1000)} | {
        _pn(600),
        _pn(600, "0.003"),
        _pn(600, "0.0003"),
    }
    # choosing by another validation metric trains nothing but re-collects (fits and report follow)
    out = snakemake(work, _variant(work, config, lambda c: _tuned(c, by="val_accuracy")), "-n")
    assert out.returncode == 0, out.stderr
    assert planned_cells(out.stdout) == set()
    assert re.search(r"^(local)?rule collect:", out.stdout, re.M) and re.search(
        r"^(local)?rule report:", out.stdout, re.M
    )


def _planned_rules(stdout: str) -> dict[str, int]:
    """Jobs per rule in a dry run's job-stats table (the 'all' target left out)."""
    counts, inside = {}, False
    for line in stdout.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            inside = True
        elif inside and parts[:1] == ["total"]:
            break
        elif inside and len(parts) == 2 and parts[1].isdigit() and parts[0] != "all":
            counts[parts[0]] = int(parts[1])
    return counts


def test_changed_analysis_setting_reruns_the_stages_that_read_it(finished_study):
    """flavor_pairs, fits: and report: are read after training: a change reruns evaluate/collect/fit/report as
    needed (never training), instead of leaving the old numbers in eval.json and the report."""
    workdir, config = finished_study
    variant = _variant(workdir, config, lambda c: c["flavor_pairs"].pop("d"))
    assert _planned_rules(snakemake(workdir, variant, "-n").stdout) == {
        "evaluate": 6,
        "collect": 1,
        "fit": 1,
        "report": 1,
    }
    variant = _variant(workdir, config, lambda c: c["fits"].update(bootstrap=12))
    assert _planned_rules(snakemake(workdir, variant, "-n").stdout) == {"fit": 1, "report": 1}
    variant = _variant(workdir, config, lambda c: c.update(report={"confusion_n_train": 200}))
    assert _planned_rules(snakemake(workdir, variant, "-n").stdout) == {"report": 1}

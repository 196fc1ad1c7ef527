"""End to end on a synthetic study (3 models × 6 sizes × 2 seeds): run dirs -> evaluate -> collect -> fit -> report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from jetscale.cli import main
from jetscale.config import load_config
from jetscale.evaluate.collect import tidy_columns
from jetscale.evaluate.synthetic import write_synthetic_study
from jetscale.grid import cell_ids
from tiny_config import default_raw_config

REPO = Path(__file__).resolve().parents[1]
# one xdist worker builds the shared synthetic study once (scripts/test.sh runs with --dist loadgroup)
pytestmark = pytest.mark.xdist_group("report_e2e")
MODELS = ["particlenet", "part", "bbt_neutron"]
SIZES = [100, 300, 1000, 3000, 10000, 30000]


def study_config(tmp_path: Path, *, models=MODELS, sizes=SIZES, seeds=(0, 1), bootstrap=20) -> Path:
    raw = default_raw_config(tmp_path / "results", model=list(models), n_train=list(sizes), seed=list(seeds))
    # each model's width only: every model at every size and seed
    raw["grid"]["per_model"] = {m: {"width": v["width"]} for m, v in raw["grid"]["per_model"].items() if m in models}
    raw["grid"]["extra_axes"] = {}
    raw["data"]["generate"]["jets_per_class"] = max(raw["data"]["generate"]["jets_per_class"], 5000)
    raw["fits"] = {
        "metrics": ["tag_efficiency", "charge_flip"],
        "forms": ["powerlaw", "scurve", "bnsl"],
        "bootstrap": bootstrap,
        "min_points": 4,
        "targets": [
            {"metric": "tag_efficiency", "flavor": "b", "value": 0.9},
            {"metric": "tag_efficiency", "flavor": "b", "value": 1.5},  # beyond ε = 1: never reached
            {"metric": "log_loss", "value": 1.0},
        ],
    }
    raw["report"] = {"confusion_n_train": "max", "color_by": "model", "facet_by": None, "style": "CMS"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def evaluate_all(config: Path, ids) -> None:
    root = Path(load_config(config)["results"])
    for cid in ids:
        assert main(["evaluate", "--config", str(config), "--run", str(root / "runs" / cid)]) == 0


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    config = study_config(tmp)
    cfg = load_config(config)
    ids = write_synthetic_study(cfg, jets_per_class=120)
    assert len(ids) == 3 * 6 * 2
    evaluate_all(config, ids)
    assert main(["collect", "--config", str(config)]) == 0
    assert main(["fit", "--config", str(config)]) == 0
    assert main(["report", "--config", str(config)]) == 0
    return config, cfg, Path(cfg["results"])


def test_eval_json_has_metrics_and_auc(study):
    _, cfg, root = study
    doc = json.loads(next((root / "runs").rglob("eval.json")).read_text())
    for key in ("classes", "n_jets", "accuracy", "log_loss", "confusion", "flavors", "auc"):
        assert key in doc
    assert doc["n_jets"] == 120 * 11 and len(doc["confusion"]) == 11


def test_runs_table_is_tidy_and_complete(study):
    _, cfg, root = study
    table = pd.read_csv(root / "tables" / "runs.csv", keep_default_na=False)
    assert list(table.columns) == tidy_columns(cfg)
    assert table["cell_id"].nunique() == 36
    flavored = table[table["metric"] == "tag_efficiency"]
    assert sorted(flavored["flavor"].unique()) == sorted(cfg["flavor_pairs"])
    assert (table[table["metric"] == "accuracy"]["flavor"] == "").all()
    assert pd.read_csv(root / "tables" / "missing.csv").empty


def test_collect_is_deterministic(study):
    config, _, root = study
    first = (root / "tables" / "runs.csv").read_bytes()
    assert main(["collect", "--config", str(config)]) == 0
    assert (root / "tables" / "runs.csv").read_bytes() == first


def test_fit_records_and_summary(study):
    _, cfg, root = study
    summary = pd.read_csv(root / "fits" / "fit_summary.csv")
    scaling = summary[summary["kind"] == "scaling"]
    assert len(scaling[["metric", "flavor", "series"]].drop_duplicates()) == 2 * 5 * 3
    assert set(scaling["form"]) == {"powerlaw", "scurve", "bnsl"}
    assert {"loss_vs_data", "chinchilla", "loss_vs_compute"} <= set(summary["kind"])
    # three architectures at one width each: no L(N, D) and no loss-vs-params fit, and the record says why
    assert "loss_vs_params" not in set(summary["kind"])
    (joint,) = summary[summary["kind"] == "chinchilla"].to_dict("records")
    assert joint["status"] == "not applicable" and "at least 3 widths" in joint["message"]
    # bnsl has 6 parameters and only 6 distinct sizes: not applicable, a recorded non-fit, not a crash
    bnsl = scaling[scaling["form"] == "bnsl"]
    assert not bnsl["converged"].any() and (bnsl["status"] == "not applicable").all()
    assert set(summary["status"]) <= {"ok", "unconstrained", "failed", "not applicable"}
    # no ok fit outside its metric's range: error-type floors of efficiencies and charge-flip rates in [0, 1]
    for _, row in scaling[scaling["status"] == "ok"].iterrows():
        fit_doc = json.loads((root / "fits" / row["file"]).read_text())
        params = fit_doc["fits"][row["form"]]["params"]
        for name in ("y_inf", "floor", "ceiling"):
            if name in params:
                assert 0.0 <= params[name] <= 1.0, (row["file"], row["form"], params)
    # n_c appears only with a threshold verdict
    with_nc = summary[summary["n_c"].notna()]
    assert (with_nc["verdict"] == "threshold").all() and (with_nc["form"] == "scurve").all()
    doc = json.loads(next((root / "fits").glob("scaling__charge_flip__*part*.json")).read_text())
    assert set(doc["fits"]["powerlaw"]) == {
        "form",
        "params",
        "stderr",
        "ci95",
        "aic",
        "bic",
        "n_points",
        "converged",
        "status",
        "message",
    }


def test_mirage_forecasts_and_backtests(study):
    _, _, root = study
    runs = pd.read_csv(root / "tables" / "runs.csv", keep_default_na=False, na_values=[""])
    assert {"tag_log_loss", "charge_log_loss", "tag_auc", "charge_auc"} <= set(runs["metric"])
    summary = pd.read_csv(root / "fits" / "fit_summary.csv", keep_default_na=False, na_values=[""])
    scaling = summary[summary["kind"] == "scaling"]
    thresholds = scaling[(scaling["verdict"] == "threshold") & (scaling["form"] == "scurve")]
    assert len(thresholds) >= 1
    # every threshold on a thresholded metric got a mirage verdict, and only those
    assert thresholds["mirage"].isin(["emergent", "metric artefact", "undetermined"]).all()
    assert scaling[scaling["verdict"] != "threshold"]["mirage"].isna().all()
    assert summary[summary["kind"] == "mirage"]["mirage"].notna().all()
    # the synthetic ParT charge separation c(n) itself jumps at n_c = 2000: the charge log-loss jumps with it
    part = thresholds[(thresholds["metric"] == "charge_flip") & thresholds["series"].str.contains("part")]
    assert (part["mirage"] == "emergent").any(), part
    docs = [json.loads(p.read_text()) for p in (root / "fits").glob("mirage__*.json")]
    assert len(docs) == len(thresholds) and all(d["kind"] == "mirage" for d in docs)

    forecasts = pd.read_csv(root / "fits" / "forecasts.csv", keep_default_na=False, na_values=[""])
    assert len(forecasts) == 3 * 3  # 3 targets x 3 models
    never = forecasts[forecasts["target"] == 1.5]
    assert (~never["reachable"].astype(bool)).all() and never["n_train"].isna().all()
    reached = forecasts[forecasts["reachable"].astype(bool)]
    assert len(reached) >= 1 and (reached["train_flops"] > 0).all()
    assert (reached["n_train_lo"].fillna(0) <= reached["n_train"]).all()

    backtests = pd.read_csv(root / "fits" / "backtests.csv", keep_default_na=False, na_values=[""])
    series = summary[summary["kind"].isin(["scaling", "loss_vs_data"])][["kind", "metric", "flavor", "series"]]
    assert len(backtests) == len(series.drop_duplicates())  # one held-out size (30k) per series
    assert (backtests["x"] == 30000).all() and set(backtests["form"]) <= {"powerlaw", "scurve"}
    html = (root / "report.html").read_text()
    for heading in ("Mirage check", "Forecasts", "Backtests", "Coverage:"):
        assert heading in html


EXPECTED_FIGURES = [
    "confusion",
    "flavor_metrics",
    "scaling_tag_efficiency",
    "scaling_charge_flip",
    "mirage",
    "loss_scaling",
]


def test_figures_and_report_exist(study):
    _, _, root = study
    for name in EXPECTED_FIGURES:
        for ext, min_size in (("png", 20_000), ("pdf", 5_000)):
            path = root / "figures" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > min_size, path
    html = (root / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(EXPECTED_FIGURES)
    assert "snakemake --report" in html and "Fit summary" in html


def test_refit_regenerates_from_tables_only(study):
    config, _, root = study
    runs_before = {p: p.stat().st_mtime_ns for p in (root / "runs").rglob("*") if p.is_file()}
    assert main(["report", "--config", str(config), "--refit"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").rglob("*") if p.is_file()} == runs_before


def test_missing_and_failed_cells_are_listed(tmp_path, capsys):
    config = study_config(tmp_path, models=["particlenet"], sizes=[100, 300, 1000, 3000, 10000], seeds=(0,))
    cfg = load_config(config)
    ids = cell_ids(cfg)
    written = write_synthetic_study(cfg, jets_per_class=20, skip=(ids[0],), fail=(ids[1],))
    evaluate_all(config, written[1:])  # ids[2] trained but not evaluated
    stale = Path(cfg["results"]) / "runs" / ids[3] / "eval.json"
    stale.write_text(stale.read_text().replace('"settings_hash": "0000000000000000"', '"settings_hash": "old"'))
    assert main(["collect", "--config", str(config)]) == 0
    missing = pd.read_csv(Path(cfg["results"]) / "tables" / "missing.csv")
    assert missing["cell_id"].tolist() == ids[:4]
    reasons = missing["reason"].tolist()
    assert "not trained" in reasons[0] and "failed: non-finite loss" in reasons[1]
    assert "not evaluated" in reasons[2] and "stale eval.json" in reasons[3]
    assert "4 of 5 cells missing" in capsys.readouterr().err
    # too few cells for any fit: the fits and the report still build
    assert main(["report", "--config", str(config), "--refit"]) == 0
    summary = pd.read_csv(Path(cfg["results"]) / "fits" / "fit_summary.csv")
    assert not summary["converged"].any()
    assert (Path(cfg["results"]) / "report.html").is_file()


def test_snakemake_captions_mirror_report_captions():
    from jetscale.report.captions import CAPTIONS

    for name, text in CAPTIONS.items():
        rst = (REPO / "workflow" / "report" / f"{name}.rst").read_text()
        assert " ".join(rst.split()) == " ".join(text.split()), name


def test_fit_curves_are_not_drawn_outside_the_metric_range():
    """An extrapolated curve that leaves [0, 1] (an efficiency below zero at small n) is cut, not drawn."""
    from jetscale.report.scaling_figures import within_range

    cut = within_range([-0.2, 0.3, 1.4], [0.0, 1.0])
    assert np.isnan(cut[0]) and cut[1] == 0.3 and np.isnan(cut[2])
    assert list(within_range([5.0, 0.1], [0.0, None])) == [5.0, 0.1] and list(within_range([-1.0], None)) == [-1.0]


def test_charge_flip_panels_show_points_above_chance():
    """The 0-0.6 frame widens for a point above it (BBT-Neutron's f_c 0.68 at 100 jets was drawn off the axes)."""
    from jetscale.report.scaling_figures import charge_flip_ylim

    assert charge_flip_ylim(0.4) == (-0.02, 0.62)
    low, high = charge_flip_ylim(0.71)
    assert low == -0.02 and high > 0.71 and charge_flip_ylim(1.3)[1] == 1.02

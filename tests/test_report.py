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


# ------------------------------------------------------------------ marker shapes: one per model, every figure
NETWORKS = {"particlenet": (16, 25_303), "part": (16, 17_163), "bbt_neutron": (32, 111_307)}


def scaling_rows(models=tuple(NETWORKS), *, capped=("part",)) -> pd.DataFrame:
    """Seed means-ready rows of tag efficiency and charge-flip (b, c) and test log-loss for the networks and the
    bdt baseline at every size; the models in ``capped`` stopped at their sample cap at the largest size."""
    rows = []
    for model in [*models, "bdt"]:
        width, n_params = NETWORKS.get(model, (None, np.nan))
        for n_train in SIZES:
            for seed in (0, 1):
                base = {
                    "model": model, "width": width, "compute": "auto" if width else None, "n_train": n_train,
                    "seed": seed, "n_params": float(n_params), "train_flops": 1e9 * n_params * n_train,
                    "stopped_by": "budget" if model in capped and n_train == SIZES[-1] else "converged",
                }  # fmt: skip
                x = np.log10(n_train) / 5 + 0.01 * seed
                for flavor in ("b", "c"):
                    rows.append({**base, "metric": "tag_efficiency", "flavor": flavor, "value": x, "error": 0.01})
                    rows.append(
                        {**base, "metric": "charge_flip", "flavor": flavor, "value": 0.5 - x / 3, "error": 0.01}
                    )
                rows.append({**base, "metric": "log_loss", "flavor": "", "value": 2.6 - x, "error": np.nan})
    return pd.DataFrame(rows)


def drawn_figures(tmp_path, monkeypatch, runs: pd.DataFrame, **report) -> dict:
    """name -> matplotlib figure of the scaling and loss figures drawn from ``runs`` (saving nothing); the config
    lists the default study's models."""
    import matplotlib

    from jetscale.report.figures import Figures

    matplotlib.use("Agg")
    raw = default_raw_config(tmp_path / "results")
    raw["report"].update(report)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(path)
    drawn = {}
    monkeypatch.setattr(Figures, "save", lambda self, fig, name: drawn.setdefault(name, fig) and [])
    figures = Figures(cfg, {"runs": runs}, [], tmp_path / "results" / "figures")
    figures.scaling()
    figures.loss_scaling()
    return drawn


def point_shapes(fig) -> dict[str, set[str]]:
    """series label -> the marker shapes of its points (error-bar containers) over every panel of ``fig``."""
    out: dict[str, set[str]] = {}
    for ax in fig.axes:
        for container in ax.containers:
            out.setdefault(container.get_label(), set()).add(container.lines[0].get_marker())
    return out


def loss_legend_shapes(fig) -> dict[str, str]:
    """model -> its marker shape, from the legend of the loss figure's loss-vs-parameters panel."""
    legend = fig.axes[0].get_legend()
    return {t.get_text(): h.get_marker() for t, h in zip(legend.get_texts(), legend.legend_handles)}


def hollow_shapes(fig) -> set[tuple[str, str]]:
    """(marker, edge colour) of every hollow point (white face) drawn over the panels of a scaling figure."""
    import matplotlib

    out = set()
    for ax in fig.axes:
        for line in ax.lines:
            if len(line.get_xdata()) and line.get_linestyle() == "None" and line.get_markerfacecolor() == "white":
                out.add((line.get_marker(), matplotlib.colors.to_hex(line.get_markeredgecolor())))
    return out


def legend_markers(fig) -> set[tuple[str, str, bool]]:
    """(marker, colour, hollow) of every marker drawn in the scaling figure's legend."""
    import matplotlib
    from matplotlib.lines import Line2D

    legend = next(iter([*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]))
    return {
        (line.get_marker(), matplotlib.colors.to_hex(line.get_markeredgecolor()), line.get_markerfacecolor() == "white")
        for line in legend.findobj(Line2D)
        if line.get_marker() not in ("None", "", None)
    }


def test_scaling_figures_give_each_model_the_shape_it_has_in_the_loss_figure(tmp_path, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    drawn = drawn_figures(tmp_path, monkeypatch, scaling_rows())
    model_shapes = loss_legend_shapes(drawn["loss_scaling"])
    assert set(model_shapes) == set(NETWORKS) and len(set(model_shapes.values())) == len(NETWORKS)
    for name in ("scaling_tag_efficiency", "scaling_charge_flip"):
        shapes = point_shapes(drawn[name])
        by_model = {label.split(",")[0].removesuffix(" (baseline)"): s for label, s in shapes.items()}
        assert all(len(s) == 1 for s in by_model.values()), (name, shapes)  # one shape per model on every panel
        assert {m: next(iter(s)) for m, s in by_model.items() if m in NETWORKS} == model_shapes, name
        assert by_model["bdt"] == {"s"}  # the baseline keeps its grey squares
        colours = {
            label.split(",")[0]: matplotlib.colors.to_hex(c.lines[0].get_color())
            for ax in drawn[name].axes
            for c in ax.containers
            for label in [c.get_label()]
        }
        shown = legend_markers(drawn[name])
        for model, shape in model_shapes.items():  # the legend shows each model's shape (in its colour, filled)
            assert (shape, colours[model], False) in shown, (model, shown)
    plt.close("all")


def test_a_model_keeps_its_shape_whichever_models_a_figure_draws(tmp_path, monkeypatch):
    """Faceted by model, each figure draws one network: it is drawn with its own shape, not the first shape."""
    import matplotlib.pyplot as plt

    drawn = drawn_figures(tmp_path, monkeypatch, scaling_rows(), facet_by="model")
    model_shapes = loss_legend_shapes(drawn["loss_scaling"])
    for model, shape in model_shapes.items():
        shapes = point_shapes(drawn[f"scaling_tag_efficiency_model-{model}"])
        assert list(shapes.values()) == [{shape}], (model, shapes)
    plt.close("all")

    # a study whose runs lack ParticleNet still draws ParT and BBT-Neutron with their shapes of the full study
    fewer = drawn_figures(tmp_path / "fewer", monkeypatch, scaling_rows(("part", "bbt_neutron")))
    assert loss_legend_shapes(fewer["loss_scaling"]) == {m: model_shapes[m] for m in ("part", "bbt_neutron")}
    shapes = point_shapes(fewer["scaling_charge_flip"])
    assert shapes["part, width=16"] == {model_shapes["part"]}
    assert shapes["bbt_neutron, width=32"] == {model_shapes["bbt_neutron"]}
    plt.close("all")


def test_a_point_stopped_at_the_sample_cap_is_its_models_shape_hollow(tmp_path, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    drawn = drawn_figures(tmp_path, monkeypatch, scaling_rows(capped=("part", "bbt_neutron")))
    model_shapes = loss_legend_shapes(drawn["loss_scaling"])
    fig = drawn["scaling_tag_efficiency"]
    colours = {}
    for ax in fig.axes:
        for container in ax.containers:
            colours[container.get_label().split(",")[0]] = matplotlib.colors.to_hex(container.lines[0].get_color())
    hollow = hollow_shapes(fig)
    assert hollow == {(model_shapes[m], colours[m]) for m in ("part", "bbt_neutron")}
    # the legend shows the hollow shape of each model concerned
    assert {(m, c) for m, c, open_ in legend_markers(fig) if open_} == hollow
    plt.close("all")


def test_no_model_shape_is_a_reference_or_baseline_shape():
    from jetscale.report.figure_style import (
        BASELINE_STYLE,
        MODEL_MARKERS,
        N_C_MARKER,
        REFERENCE_STYLE,
        model_markers,
    )

    reserved = {BASELINE_STYLE["marker"], N_C_MARKER} | {s["marker"]["marker"] for s in REFERENCE_STYLE.values()}
    assert {"s", "D", "*"} <= reserved
    assert not reserved & set(MODEL_MARKERS) and len(set(MODEL_MARKERS)) == len(MODEL_MARKERS)
    shapes = model_markers(["particlenet", "part", "bbt_neutron", "part", None])
    assert list(shapes) == ["particlenet", "part", "bbt_neutron"] and len(set(shapes.values())) == 3
    assert not reserved & set(shapes.values())

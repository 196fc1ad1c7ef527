"""Series labels and fit file names print whole axis values as integers and leave out an axis a series lacks
(the bdt baseline's width); the mirage figure's axes carry the catalog's human labels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from jetscale.config import load_config
from jetscale.evaluate.collect import tidy_columns
from jetscale.fit.forms import powerlaw, scurve
from jetscale.grid import axis_text, series_label
from jetscale.report.figure_style import metric_label
from tiny_config import default_raw_config

SIZES = (100, 300, 1000, 2000, 3000, 10000, 30000)
WIDTHS = {"particlenet": 16, "part": 8, "bdt": None}  # two widths: width is a varying axis; bdt has none


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (16.0, "16"),
        (np.float64(32.0), "32"),
        (np.int64(8), "8"),
        (16, "16"),
        (3e-3, "0.003"),
        (1.5e-4, "0.00015"),
        (0.25, "0.25"),
        ("auto", "auto"),
        (True, "True"),
    ],
)
def test_axis_values_print_whole_numbers_as_integers_and_others_faithfully(value, text):
    assert axis_text(value) == text


def test_a_series_label_leaves_out_an_absent_axis():
    axes = ["model", "width", "lr"]
    assert series_label({"model": "particlenet", "width": 16.0, "lr": 3e-3}, axes) == "particlenet, width=16, lr=0.003"
    for missing in (None, math.nan, np.float64("nan")):
        assert series_label({"model": "bdt", "width": missing, "lr": 3e-3}, axes) == "bdt, lr=0.003"
    assert series_label({"model": "part", "width": 8.0}, ["width"]) == "width=8"
    assert series_label({}, axes) == "all" and series_label({}, axes, empty="study") == "study"


def test_metric_labels_name_the_flavor_and_the_fitted_quantity():
    assert metric_label("charge_flip", "b", error=True) == "Charge-flip rate $f_{b}$"
    assert metric_label("tag_efficiency", "c", error=True) == r"1 − flavor-tag efficiency $\varepsilon_{c}$"
    assert metric_label("tag_efficiency", "c") == r"Flavor-tag efficiency $\varepsilon_{c}$"
    assert metric_label("charge_log_loss", "b", error=True) == "Charge log-loss (b) [nats]"
    assert metric_label("tag_log_loss", "c", error=True) == r"Tag log-loss $-\ln(p_{c} + p_{\bar{c}})$ [nats]"
    assert metric_label("charge_auc", "s", error=True) == "1 − charge AUC (s)"
    assert metric_label("accuracy", "", error=True) == "1 − accuracy"
    assert metric_label("charge_flip") == "Charge-flip rate $f_q$"  # no flavor: the generic label
    assert metric_label("my_metric", "b") == "my_metric (b)"


# ----------------------------------------------------------------------------- a study with a bdt series
def _rows(model: str, n: int, seed: int) -> list[dict]:
    """One cell's rows: charge_flip (ParT: a sharp threshold at 2000 jets, the others smooth), its continuous
    counterparts and the test log-loss."""
    rng = np.random.default_rng([seed, n, len(model)])
    width = WIDTHS[model]
    if model == "part":
        flip, closs = scurve(n, 0.08, 0.46, 2000.0, 4.0), scurve(n, 0.2, 0.69, 2000.0, 4.0)
    else:
        flip, closs = powerlaw(n, 0.1, 1.5, 0.3), powerlaw(n, 0.3, 1.2, 0.3)
    network = width is not None
    cell = {
        "cell_id": f"model~{model}" + (f"/width~{width}" if network else "") + f"/n_train~{n}/seed~{seed}",
        "model": model,
        "width": width,
        "n_train": n,
        "compute": "auto" if network else None,
        "seed": seed,
        "n_params": 1000.0 * width**2 if network else None,
        "flops_per_jet": 1e6 * width if network else None,
        "train_flops": 1e6 * width * n * 30 if network else None,
        "samples_seen": 30 * n if network else None,
        "stopped_by": "converged",
        "wall_time_s": 1.0,
        "hardware": "cpu",
    }
    values = {
        ("charge_flip", "b"): flip,
        ("charge_log_loss", "b"): closs,
        ("charge_auc", "b"): 1.0 - flip,
        ("log_loss", ""): powerlaw(n, 0.5, 3.0, 0.25),
    }
    return [
        {**cell, "metric": metric, "flavor": flavor, "value": value * (1 + 0.004 * rng.normal()), "error": None}
        for (metric, flavor), value in values.items()
    ]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A runs table of particlenet (width 16), ParT (width 8) and the bdt baseline (no width), fitted."""
    from jetscale.fit.study import run_study_fits

    tmp = tmp_path_factory.mktemp("labels")
    raw = default_raw_config(tmp / "results", model=list(WIDTHS), n_train=list(SIZES), seed=[0, 1])
    raw["grid"]["per_model"] = {m: {"width": [w]} for m, w in WIDTHS.items() if w is not None}
    raw["fits"].update({"metrics": ["charge_flip"], "forms": ["powerlaw", "scurve"], "bootstrap": 30, "targets": []})
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(config)
    rows = [row for model in WIDTHS for n in SIZES for seed in (0, 1) for row in _rows(model, n, seed)]
    table = tmp / "results" / "tables" / "runs.csv"
    table.parent.mkdir(parents=True)
    pd.DataFrame(rows, columns=tidy_columns(cfg)).to_csv(table, index=False)
    summary = run_study_fits(cfg)
    return cfg, summary.parent


def test_fit_file_names_and_labels_print_integer_widths_and_no_nan(study):
    _, fits = study
    names = sorted(p.name for p in fits.glob("*.json"))
    assert "scaling__charge_flip__b__particlenet_width=16.json" in names
    assert "scaling__charge_flip__b__part_width=8.json" in names
    assert "scaling__charge_flip__b__bdt.json" in names  # the baseline has no width: none in its name
    assert "loss_vs_data__bdt.json" in names and "loss_vs_data__particlenet_width=16.json" in names
    assert "mirage__charge_flip__b__part_width=8.json" in names  # ParT's threshold got its mirage check
    assert not [n for n in names if "nan" in n.lower() or ".0." in n or ".0_" in n], names
    summary = pd.read_csv(fits / "fit_summary.csv", keep_default_na=False)
    assert {"particlenet, width=16", "part, width=8", "bdt"} <= set(summary["series"])
    assert not summary["series"].str.contains(r"nan|\.0\b").any()
    for path in ("forecasts.csv", "backtests.csv"):
        text = (fits / path).read_text()
        assert "width=nan" not in text and "width=16.0" not in text


def test_mirage_figure_axes_carry_the_human_labels(study, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from jetscale.fit.study import load_fit_docs
    from jetscale.report.figures import Figures
    from jetscale.report.outlook import mirage_figure
    from jetscale.report.tables import load_tables

    cfg, fits = study
    figs = Figures(cfg, load_tables(cfg), load_fit_docs(cfg, fits), tmp_path)
    drawn = []
    monkeypatch.setattr(figs, "save", lambda fig, name: drawn.append(fig) or [tmp_path / f"{name}.png"])
    assert mirage_figure(figs) == [tmp_path / "mirage.png"]
    (fig,) = drawn
    left, right = fig.axes[0], fig.axes[1]
    assert left.get_ylabel() == "Charge-flip rate $f_{b}$"
    assert right.get_ylabel() == "Charge log-loss (b) [nats]"
    assert left.get_title().startswith("part, width=8: ") and left.get_xlabel() == "Training jets $n_{train}$"
    plt.close(fig)

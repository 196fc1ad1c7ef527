"""The form and metric catalogs: names everywhere come from them, and a toy form and a toy metric, registered in
one place each, run through config validation, table-mode fit, study fits, figures and the report."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from jetscale import metric_catalog
from jetscale.cli import build_parser, main
from jetscale.config import load_config, schema
from jetscale.evaluate.collect import tidy_columns
from jetscale.fit import forms
from jetscale.fit.solver import LOSSES
from tiny_config import default_raw_config


# --------------------------------------------------------------------------------- a toy form, one "file"
def loglinear(x, a, b):
    """y = a − b·log10 x: a straight line on a log axis (no floor)."""
    return a - b * np.log10(np.asarray(x, dtype=float))


TOY_FORM = forms.FormSpec(
    "loglinear",
    ("a", "b"),
    loglinear,
    "log-linear",
    style=(0, (3, 1)),
    exponent="b",
    bounds=lambda domain, x: {"b": (0.0, math.inf) if domain.falling else (-math.inf, math.inf)},
    starts=lambda x, y: [[float(np.max(y)), 0.0], [float(np.mean(y)), 0.1]],
    summary="toy: a line in log10 x",
)
TOY_METRIC = metric_catalog.MetricSpec(
    "toy_score", metric_catalog.GLOBAL, True, (0.0, 1.0), "Toy score", chance=0.1, summary="toy"
)


@pytest.fixture
def toys(monkeypatch):
    monkeypatch.setitem(forms.FORMS, TOY_FORM.name, TOY_FORM)
    monkeypatch.setitem(metric_catalog.METRICS, TOY_METRIC.name, TOY_METRIC)


def _choices(parser, command: str, option: str) -> list:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if option in a.option_strings)
    return list(action.choices)


# -------------------------------------------------------------------------------- names from the catalogs
def test_schema_and_cli_choices_follow_the_catalogs():
    fits = schema()["properties"]["fits"]["properties"]
    # no hand-written enum of metrics or forms to drift: config checks names against the catalogs
    assert "enum" not in fits["metrics"]["items"] and "enum" not in fits["forms"]["items"]
    assert fits["loss"]["enum"] == list(LOSSES)
    assert set(fits["forms"]["default"]) <= set(forms.names(1))
    assert set(fits["metrics"]["default"]) <= set(metric_catalog.names())
    parser = build_parser()
    assert _choices(parser, "fit", "--form") == forms.names()
    assert _choices(parser, "forecast", "--form") == forms.names(1)
    assert _choices(parser, "backtest", "--form") == forms.names(1)
    for command in ("fit", "forecast", "backtest"):
        assert _choices(parser, command, "--metric") == metric_catalog.names()


def test_each_form_declares_what_the_fits_need():
    for spec in forms.FORMS.values():
        for name in (spec.exponent, spec.floor, *spec.scales):
            assert name is None or name in spec.params
    assert forms.SMOOTH in forms.FORMS and forms.THRESHOLD in forms.FORMS
    assert forms.get(forms.THRESHOLD).scales == ("n_c",) and forms.get(forms.SMOOTH).scales == ("A",)
    with pytest.raises(ValueError, match="unknown form 'cubic'"):
        forms.get("cubic")


def test_higher_is_better_is_declared_once():
    from jetscale.fit.study import error_domain, error_quantity, to_error

    assert error_quantity("tag_efficiency") == "1 - tag_efficiency" and error_quantity("charge_flip") == "charge_flip"
    assert to_error("accuracy", [0.75]).tolist() == [0.25]
    assert error_domain("log_loss").lo == 0.0 and math.isinf(error_domain("log_loss").hi)
    assert (error_domain("charge_flip").lo, error_domain("charge_flip").hi) == (0.0, 1.0)
    assert metric_catalog.get("charge_flip").chance == 0.5


def test_config_accepts_registered_and_refuses_unknown_names(toys):
    raw = default_raw_config()
    raw["fits"].update(metrics=["toy_score"], forms=["powerlaw", "loglinear"])
    raw["fits"]["targets"] = [{"metric": "toy_score", "value": 0.8, "form": "loglinear"}]
    cfg = load_config(raw)
    assert cfg["fits"]["forms"] == ["powerlaw", "loglinear"]
    raw["fits"]["targets"] = [{"metric": "toy_score", "value": 0.8, "flavor": "b"}]
    with pytest.raises(Exception, match="toy_score is not a per-flavor metric"):
        load_config(raw)


# ------------------------------------------------------------------------------- through fit and report
SIZES = [100, 300, 1000, 3000, 10000, 30000]


def _runs_table(cfg: dict, path: Path) -> None:
    """A hand-made runs.csv: one model, six sizes, two seeds; the toy score improves log-linearly."""
    rng = np.random.default_rng(0)
    columns = tidy_columns(cfg)
    rows = []
    for n in SIZES:
        for seed in (0, 1):
            cell = {"model": "particlenet", "width": 16, "n_train": n, "compute": "auto", "seed": seed}
            base = {c: cell.get(c, "") for c in columns}
            base.update(cell_id=f"c{n}_{seed}", n_params=1000, flops_per_jet=1e6, train_flops=1e6 * n * 10)
            base.update(samples_seen=10 * n, wall_time_s=1.0, hardware="cpu")
            score = 0.2 + 0.1 * math.log10(n) + rng.normal(0, 0.005)
            loss = 0.5 + 2.0 * n**-0.4 + rng.normal(0, 0.003)
            rows.append({**base, "metric": "toy_score", "flavor": "", "value": score, "error": 0.004})
            rows.append({**base, "metric": "log_loss", "flavor": "", "value": loss, "error": ""})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)


def test_a_registered_toy_form_and_metric_run_through_fit_and_report(toys, tmp_path, capsys):
    raw = default_raw_config(
        tmp_path / "results", per_model={}, model=["particlenet"], width=[16], n_train=SIZES, seed=[0, 1]
    )
    raw["grid"]["extra_axes"] = {}
    raw["fits"] = {"metrics": ["toy_score"], "forms": ["powerlaw", "loglinear"], "bootstrap": 20, "min_points": 4}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(config)
    root = Path(cfg["results"])
    _runs_table(cfg, root / "tables" / "runs.csv")

    assert main(["report", "--config", str(config), "--refit"]) == 0
    capsys.readouterr()
    summary = pd.read_csv(root / "fits" / "fit_summary.csv", keep_default_na=False, na_values=[""])
    toy = summary[(summary["metric"] == "toy_score") & (summary["form"] == "loglinear")]
    assert len(toy) == 1 and toy["status"].iloc[0] == "ok", toy["message"].iloc[0]
    assert toy["exponent"].iloc[0] == pytest.approx(0.1, rel=0.1)  # 1 − score falls by 0.1 per decade
    doc = json.loads((root / "fits" / toy["file"].iloc[0]).read_text())
    assert doc["y"] == "1 - toy_score" and doc["domain"] == [0.0, 1.0]
    assert (root / "figures" / "scaling_toy_score.png").is_file()
    assert "toy_score" in (root / "report.html").read_text()

    # table mode: the toy form by name, held to the toy metric's range
    csv = tmp_path / "curve.csv"
    pd.DataFrame({"n": SIZES, "score": [0.2 + 0.1 * math.log10(n) for n in SIZES]}).to_csv(csv, index=False)
    args = ["fit", "--csv", str(csv), "--x", "n", "--y", "score", "--form", "loglinear", "--metric", "toy_score"]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["form"] == "loglinear" and record["params"]["b"] == pytest.approx(-0.1, rel=1e-6)

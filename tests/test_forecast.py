"""Forecast and backtest recover known answers on synthetic power laws and S-curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from jetscale.cli import main
from jetscale.fit.backtest import backtest, split_holdout
from jetscale.fit.forecast import crossing, forecast
from jetscale.fit.forms import Domain, bnsl, powerlaw, scurve

SIZES = np.repeat([100, 300, 1000, 3000, 10000, 30000, 100000], 3).astype(float)  # 3 seeds per size
PL = {"y_inf": 0.04, "A": 3.0, "alpha": 0.45}
SC = {"floor": 0.05, "ceiling": 0.45, "n_c": 2500.0, "k": 2.5}


def _pl_data(seed=0, noise=0.002):
    return powerlaw(SIZES, *PL.values()) + np.random.default_rng(seed).normal(0, noise, SIZES.size)


def test_crossing_inverts_each_form_exactly():
    for form, params, func in (("powerlaw", PL, powerlaw), ("scurve", SC, scurve)):
        for x_true in (50.0, 2000.0, 3e6):
            target = float(func(x_true, *params.values()))
            x, why = crossing(form, params, target)
            assert x == pytest.approx(x_true, rel=1e-9) and why == ""
    b = {"a": 0.01, "b": 2.0, "c0": 0.1, "c1": 0.6, "d1": 3000.0, "f1": 0.3}
    target = float(bnsl(4.0e4, *b.values()))
    x, _ = crossing("bnsl", b, target, (100, 1e5))
    assert x == pytest.approx(4.0e4, rel=1e-6)


def test_powerlaw_forecast_recovers_the_true_crossing():
    y = _pl_data()
    for target in (0.06, 0.045):  # inside the measured range, and a 15x extrapolation
        x_true = (PL["A"] / (target - PL["y_inf"])) ** (1 / PL["alpha"])
        out = forecast("powerlaw", SIZES, y, target, bootstrap=100)
        assert out["reachable"] is True
        assert out["x"] == pytest.approx(x_true, rel=0.3)
        assert out["x_lo"] < x_true < out["x_hi"], out
        assert out["replicates"] >= 50 and out["fit"]["form"] == "powerlaw"
    assert out["extrapolated"] is True


def test_target_below_the_floor_is_unreachable_with_reason():
    out = forecast("powerlaw", SIZES, _pl_data(), 0.03, bootstrap=50)
    assert out["reachable"] is False and out["x"] is None and out["x_hi"] is None
    assert "asymptote y_inf" in out["reason"] and "never reaches 0.03" in out["reason"]
    assert out["replicates_reaching"] == 0.0
    ys = scurve(SIZES, *SC.values()) + np.random.default_rng(4).normal(0, 0.01, SIZES.size)
    out = forecast("scurve", SIZES, ys, 0.02, bootstrap=50)
    assert out["reachable"] is False and "floor" in out["reason"]


def test_scurve_forecast_recovers_the_true_crossing():
    ys = scurve(SIZES, *SC.values()) + np.random.default_rng(1).normal(0, 0.01, SIZES.size)
    s = (0.15 - SC["floor"]) / (SC["ceiling"] - SC["floor"])
    x_true = SC["n_c"] * 10 ** (-math.log(s / (1 - s)) / (math.log(10) * SC["k"]))
    out = forecast("scurve", SIZES, ys, 0.15, bootstrap=100)
    assert out["reachable"] and out["x"] == pytest.approx(x_true, rel=0.1)
    assert out["x_lo"] < x_true < out["x_hi"]


def test_forecast_without_bootstrap_has_no_interval_and_a_bad_fit_says_why():
    out = forecast("powerlaw", SIZES, _pl_data(), 0.06, bootstrap=0)
    assert out["reachable"] and out["x_lo"] is None and "no interval" in out["reason"]
    flat = forecast("powerlaw", SIZES, np.full(SIZES.size, 0.2), 0.1, bootstrap=10)
    assert flat["reachable"] is False and flat["reason"].startswith("no fit: flat data")


def test_split_holdout_takes_the_largest_distinct_x():
    train, held = split_holdout(SIZES, 2)
    assert set(SIZES[held]) == {30000.0, 100000.0} and held.sum() == 6 and train.sum() == 15


def test_backtest_powerlaw_predicts_held_out_points():
    y = _pl_data(seed=3)
    out = backtest("powerlaw", SIZES, y, 2, bootstrap=100)
    assert [p["x"] for p in out["points"]] == [30000.0, 100000.0]
    for p in out["points"]:
        truth = float(powerlaw(p["x"], *PL.values()))
        assert p["n_seeds"] == 3
        assert p["observed"] == pytest.approx(y[SIZES == p["x"]].mean())
        assert p["predicted"] == pytest.approx(truth, abs=0.004)
        assert p["lo"] < p["predicted"] < p["hi"] and p["covered"] == (p["lo"] <= p["observed"] <= p["hi"])
    assert out["x_train_max"] == 10000.0 and out["n_train_points"] == 15
    assert out["coverage"] == out["n_covered"] / 2


def test_backtest_scurve_beyond_the_transition():
    ys = scurve(SIZES, *SC.values()) + np.random.default_rng(1).normal(0, 0.01, SIZES.size)
    out = backtest("scurve", SIZES, ys, 1, bootstrap=100)
    (p,) = out["points"]
    assert p["predicted"] == pytest.approx(SC["floor"], abs=0.01) and p["covered"] is True


def test_backtest_a_wrong_form_is_caught():
    """A power law fitted before a new regime (a drop at the held-out size) predicts its floor; not covered."""
    x = np.repeat([100, 300, 1000, 3000, 10000, 30000, 100000], 3).astype(float)
    y = powerlaw(x, 0.1, 3.0, 0.5) + np.random.default_rng(5).normal(0, 0.003, x.size)
    y[x == 100000] -= 0.06
    out = backtest("powerlaw", x, y, 1, bootstrap=100, domain=Domain(0.0, 1.0, falling=True))
    assert out["fit"]["status"] == "ok", out["fit"]["message"]
    assert out["points"][0]["covered"] is False and out["coverage"] == 0.0


def test_backtest_does_not_predict_from_an_unconstrained_fit():
    """A power law forced through a late S-curve drop is degenerate (its floor pinned at 0): no prediction."""
    x = np.repeat([100, 300, 1000, 3000, 10000, 30000, 100000], 3).astype(float)
    y = scurve(x, 0.05, 0.45, 30000.0, 3.0) + np.random.default_rng(5).normal(0, 0.005, x.size)
    out = backtest("powerlaw", x, y, 1, bootstrap=100, domain=Domain(0.0, 1.0, falling=True))
    assert out["fit"]["status"] == "unconstrained" and "pinned" in out["fit"]["message"]
    assert out["points"][0]["predicted"] is None and out["coverage"] is None
    assert "not used for a backtest" in out["message"]


def test_backtest_with_too_few_training_points_reports_the_fit_failure():
    out = backtest("powerlaw", SIZES[:12], _pl_data()[:12], 2, bootstrap=10)
    assert out["fit"]["converged"] is False and "too few points" in out["message"]
    assert all(p["predicted"] is None and p["covered"] is None for p in out["points"])


def test_cli_forecast_and_backtest(tmp_path, capsys):
    path = tmp_path / "curve.csv"
    pd.DataFrame({"n": SIZES, "err": _pl_data()}).to_csv(path, index=False)
    assert (
        main(["forecast", "--csv", str(path), "--x", "n", "--y", "err", "--target", "0.03", "--bootstrap", "20"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["reachable"] is False and "never reaches" in out["reason"] and out["fit"]["form"] == "powerlaw"
    args = ["backtest", "--csv", str(path), "--x", "n", "--y", "err", "--holdout", "2", "--bootstrap", "20"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [set(p) >= {"x", "observed", "predicted", "lo", "hi", "covered"} for p in out["points"]] == [True, True]
    assert main(["forecast", "--csv", str(path), "--x", "n", "--y", "nope", "--target", "1"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err

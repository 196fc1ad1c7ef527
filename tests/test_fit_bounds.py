"""Fits held to physical ranges: degenerate series are reported unconstrained (never 'ok' with parameters outside
the metric's range), clean series are still recovered, and only ok fits forecast, backtest or count as
thresholds. Also: the robust choices (Huber loss in log space, monotone filter), BNSL's break, D_T's domain."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from jetscale.cli import main
from jetscale.fit.compare import fit_and_compare
from jetscale.fit.fitting import fit
from jetscale.fit.forecast import forecast
from jetscale.fit.forms import Domain, bnsl, powerlaw, scurve
from jetscale.fit.monotone import monotone_filter
from jetscale.fit.solver import Objective
from jetscale.fit.transfer import effective_data_transferred, format_transfer

SIZES = np.repeat([100, 300, 1000, 3000, 10000, 30000], 2).astype(float)  # the default study: 6 sizes x 2 seeds
UNIT = Domain(0.0, 1.0, falling=True)  # 1 − ε, f_q
NATS = Domain(0.0, math.inf, falling=True)  # log-loss


def _noise(scale, seed=0, size=SIZES.size):
    return np.random.default_rng(seed).normal(0, scale, size)


# ------------------------------------------------------------------------------------ degenerate series
def test_nearly_flat_loss_is_unconstrained_with_a_physical_floor():
    """BBT-Neutron at chance: log-loss ≈ ln 11 with a sliver of trend. Unbounded, the power law ran to
    y_inf = −69,121 nats with α = 7.6e-7 and was called ok."""
    y = math.log(11) - 0.01 * np.log(SIZES) + _noise(0.002)
    free = fit("powerlaw", SIZES, y, bootstrap=30)
    assert free.status == "unconstrained"  # even without a range, the exponent sits on its lower bound
    bounded = fit("powerlaw", SIZES, y, bootstrap=30, domain=NATS)
    assert bounded.status == "unconstrained", bounded.message
    assert bounded.params["y_inf"] >= 0.0 and bounded.params["alpha"] > 0
    assert "pinned at a bound" in bounded.message
    flat = fit("powerlaw", SIZES, math.log(11) + _noise(0.005, 1), domain=NATS)
    assert flat.status == "unconstrained" and flat.message.startswith("flat data")


def test_flat_charge_flip_rate_is_unconstrained_and_no_verdict():
    y = 0.5 + _noise(0.02, 2)  # no charge information at any size
    fits, comparison = fit_and_compare(SIZES, y, ("powerlaw", "scurve", "bnsl"), bootstrap=30, domain=UNIT)
    assert fits["powerlaw"].status == "unconstrained" and fits["scurve"].status == "unconstrained"
    assert fits["bnsl"].status == "not applicable"  # 6 parameters, 6 sizes
    assert comparison["verdict"] == "unconstrained" and comparison["n_c"] is None
    out = forecast("powerlaw", SIZES, y, 0.3, bootstrap=20, domain=UNIT)
    assert out["x"] is None and not out["reachable"] and "flat data" in out["reason"]


def test_runaway_ceiling_is_held_to_the_range():
    """Only the bottom of an S-curve measured: unbounded, the ceiling runs far above an error rate's 1."""
    y = scurve(SIZES, 0.1, 3.0, 30.0, 1.0) + _noise(0.005, 3)
    assert y.max() < 1
    free = fit("scurve", SIZES, y)
    assert free.params["ceiling"] > 2  # the problem the bounds solve
    bounded = fit("scurve", SIZES, y, bootstrap=30, domain=UNIT)
    assert bounded.params["ceiling"] <= 1.0 and bounded.status == "unconstrained"
    assert "ceiling" in bounded.message


def test_the_unconstrained_rules():
    from jetscale.fit import forms
    from jetscale.fit.fitting import Fit
    from jetscale.fit.status import judge

    sc = forms.get("scurve")
    params = {"floor": 0.1, "ceiling": 0.5, "n_c": 3000.0, "k": 1.0}
    ci = {"floor": (0.05, 0.15), "ceiling": (0.45, 0.55), "n_c": (1000.0, 9000.0), "k": (0.5, 2.0)}
    assert judge(Fit("scurve", params=dict(params), ci95=dict(ci), converged=True), sc, UNIT) == ("ok", "")
    wide = Fit("scurve", params=dict(params), ci95={**ci, "n_c": (50.0, 9000.0)}, converged=True)
    status, why = judge(wide, sc, UNIT)
    assert status == "unconstrained" and "n_c" in why and "2 decades" in why
    # a singular optimum stays unconstrained even where a bootstrap (every replicate on the same step) agrees
    singular = Fit("scurve", params=dict(params), ci95=dict(ci), converged=True, message="covariance not finite: x")
    assert judge(singular, sc, UNIT) == ("unconstrained", "covariance not finite")
    crossing = Fit("scurve", params=dict(params), ci95={**ci, "floor": (0.0, 0.15)}, converged=True)
    status, why = judge(crossing, sc, UNIT)
    assert status == "unconstrained" and "floor" in why and "[0, 1]" in why
    # bootstrap replicates stop within rounding of the bound, not on it (the default study: 3e-18, 1e-15, 7e-26)
    for end in (3.2e-18, 7.2e-26, 1e-9):
        near = Fit("scurve", params=dict(params), ci95={**ci, "floor": (end, 0.15)}, converged=True)
        status, why = judge(near, sc, UNIT)
        assert status == "unconstrained" and "floor" in why, end
    top = Fit("scurve", params=dict(params), ci95={**ci, "floor": (0.05, 1 - 1e-16)}, converged=True)
    assert judge(top, sc, UNIT)[0] == "unconstrained"
    small = Fit("scurve", params=dict(params), ci95={**ci, "floor": (1e-4, 0.15)}, converged=True)
    assert judge(small, sc, UNIT) == ("ok", "")  # a small floor well off the bound is a measured one
    pl = forms.get("powerlaw")
    amp = Fit(
        "powerlaw", params={"y_inf": 0.1, "A": 2.0, "alpha": 0.3}, stderr={"y_inf": 0.01, "A": 1.5, "alpha": 0.05}
    )
    amp.converged = True
    status, why = judge(amp, pl, UNIT)  # without a bootstrap: ±1.96 σ reaches A ≤ 0
    assert status == "unconstrained" and "A" in why
    failed = Fit("powerlaw", message="too few points: 3 distinct x value(s) < 4 needed for 3 parameters")
    assert judge(failed, pl, UNIT)[0] == "failed"


# ------------------------------------------------------------------------------------- clean series
@pytest.mark.parametrize("seed", [0, 1])
def test_clean_power_law_is_recovered_and_ok(seed):
    y = powerlaw(SIZES, 0.04, 3.0, 0.45) + _noise(0.002, seed)
    result = fit("powerlaw", SIZES, y, bootstrap=60, domain=UNIT)
    assert result.status == "ok", result.message
    assert result.params["alpha"] == pytest.approx(0.45, rel=0.1)
    assert result.params["y_inf"] == pytest.approx(0.04, abs=0.005)


def test_clean_s_curve_is_recovered_ok_and_a_threshold():
    y = scurve(SIZES, 0.05, 0.45, 1500.0, 2.0) + _noise(0.005, 5)
    fits, comparison = fit_and_compare(SIZES, y, bootstrap=60, domain=UNIT)
    assert fits["scurve"].status == "ok", fits["scurve"].message
    assert fits["scurve"].params["n_c"] == pytest.approx(1500, rel=0.15)
    assert comparison["verdict"] == "threshold"


def test_bnsl_converges_on_a_break_and_is_not_applicable_without_one():
    x = np.repeat(np.geomspace(100, 1e5, 10), 2)
    truth = (0.05, 1.0, 0.05, 0.6, 3000.0, 0.3)
    broken = fit("bnsl", x, bnsl(x, *truth) + _noise(0.002, 6, x.size), bootstrap=20, domain=UNIT)
    assert broken.status == "ok", broken.message
    assert broken.params["d1"] == pytest.approx(3000, rel=0.3) and broken.params["a"] == pytest.approx(0.05, abs=0.01)
    smooth = fit("bnsl", x, powerlaw(x, 0.05, 2.0, 0.4) + _noise(0.002, 7, x.size), domain=UNIT)
    assert smooth.status == "not applicable" and "no break" in smooth.message


def test_only_ok_fits_forecast():
    y = powerlaw(SIZES, 0.04, 3.0, 0.45) + _noise(0.002, 8)
    out = forecast("powerlaw", SIZES, y, 0.06, bootstrap=30, domain=UNIT)
    assert out["reachable"] and out["fit"]["status"] == "ok"
    runaway = scurve(SIZES, 0.1, 3.0, 30.0, 1.0) + _noise(0.005, 3)
    refused = forecast("scurve", SIZES, runaway, 0.2, bootstrap=20, domain=UNIT)
    assert refused["x"] is None and "unconstrained, not used for forecasts" in refused["reason"]


# --------------------------------------------------------------------------------------- robust choices
def test_huber_in_log_space_resists_a_diverged_seed():
    y = powerlaw(SIZES, 0.02, 3.0, 0.5) * np.exp(_noise(0.01, 9))
    y[-1] = 0.4  # one seed at the largest size diverged
    squares = fit("powerlaw", SIZES, y, domain=UNIT)
    huber = fit("powerlaw", SIZES, y, domain=UNIT, objective=Objective("huber_log", 0.05))
    assert abs(huber.params["alpha"] - 0.5) < 0.1 < abs(squares.params["alpha"] - 0.5)
    with pytest.raises(ValueError, match="unknown fit loss"):
        Objective("cauchy")


def test_monotone_filter_drops_sizes_worse_than_a_smaller_one():
    x = np.repeat([100.0, 300.0, 1000.0, 3000.0], 2)
    y = np.array([0.5, 0.5, 0.4, 0.42, 0.45, 0.47, 0.3, 0.3])
    keep, dropped = monotone_filter(x, y)
    assert dropped == [1000.0] and keep.tolist() == [True, True, True, True, False, False, True, True]


# ---------------------------------------------------------------------------------------------- D_T domain
def test_transfer_is_undefined_against_a_flat_from_scratch_curve():
    n = np.repeat([100.0, 300.0, 1000.0, 3000.0], 2)
    flat = np.array([0.10, 0.12, 0.12, 0.10, 0.11, 0.13, 0.12, 0.11])  # accuracy at chance from scratch
    rows = effective_data_transferred(n, flat, [100.0, 100.0], [0.13, 0.14], higher_is_better=True, bootstrap=20)
    assert all(r["status"] == "undefined" and r["d_t"] is None and r["multiplier"] is None for r in rows)
    assert "seed scatter" in rows[0]["reason"] and format_transfer(rows[0]).startswith("undefined")
    rising = 0.1 + 0.1 * np.log10(n / 100) + np.tile([0.01, -0.01], 4)
    rows = effective_data_transferred(n, rising, [100.0, 100.0], [0.2, 0.21], higher_is_better=True, bootstrap=20)
    assert rows[0]["status"] == "ok" and rows[0]["multiplier"] > 1


# ---------------------------------------------------------------------------------------------- table mode
def test_table_mode_metric_sets_the_range(tmp_path, capsys):
    path = tmp_path / "loss.csv"
    pd.DataFrame({"n": SIZES, "loss": math.log(11) - 0.01 * np.log(SIZES) + _noise(0.002)}).to_csv(path, index=False)
    base = ["fit", "--csv", str(path), "--x", "n", "--y", "loss", "--form", "powerlaw"]
    assert main(base) == 0
    free = json.loads(capsys.readouterr().out)
    assert free["params"]["y_inf"] < 0  # no range: the asymptote runs below zero nats
    assert main([*base, "--metric", "log_loss"]) == 0
    held = json.loads(capsys.readouterr().out)
    assert held["params"]["y_inf"] >= 0 and held["status"] == "unconstrained"
    with pytest.raises(SystemExit):  # argparse refuses a metric the catalog does not know
        main([*base, "--metric", "nope"])


# ------------------------------------------------------------------------------------ L(N, D) per architecture
def _loss_table(widths_of: dict) -> pd.DataFrame:
    from jetscale.fit.forms import chinchilla

    rows = []
    for model, widths in widths_of.items():
        for width in widths:
            n_params = 1000.0 * width**2
            for n in (100, 300, 1000, 3000, 10000, 30000):
                for seed in (0, 1):
                    value = chinchilla(n_params, n, 400.0, 300.0, 0.3, 0.35, 0.4) * (1 + 0.003 * (seed - 0.5))
                    rows.append(
                        {
                            "cell_id": f"{model}{width}_{n}_{seed}",
                            "model": model,
                            "width": width,
                            "n_train": n,
                            "seed": seed,
                            "n_params": n_params,
                            "train_flops": n_params * n * 30,
                            "metric": "log_loss",
                            "flavor": "",
                            "value": value,
                        }
                    )
    return pd.DataFrame(rows)


def test_joint_law_only_within_one_architecture_with_three_widths():
    from jetscale.fit.study import _run_job, loss_jobs

    opts = {"bootstrap": 0, "min_points": 4}
    docs = [
        _run_job(j)
        for j in loss_jobs(_loss_table({"a": [8, 16, 32, 64], "b": [16]}), ["model", "width"], ["model", "width"], opts)
    ]
    joint = [d for d in docs if d["kind"] == "chinchilla"]
    assert [d["series"] for d in joint] == [{"model": "a"}]  # b has one width: no law of its own, not mixed in
    rec = joint[0]["fits"]["chinchilla"]
    assert rec["status"] == "ok" and rec["params"]["alpha"] == pytest.approx(0.35, abs=0.05)
    params = [d for d in docs if d["kind"] == "loss_vs_params"]
    assert len(params) == 6 and all(d["series"]["model"] == "a" for d in params)
    docs = [
        _run_job(j)
        for j in loss_jobs(_loss_table({"a": [16], "b": [16], "c": [32]}), ["model", "width"], ["model"], opts)
    ]
    (joint,) = [d for d in docs if d["kind"] == "chinchilla"]
    assert joint["fits"]["chinchilla"]["status"] == "not applicable"
    assert (
        "at least 3 widths" in joint["fits"]["chinchilla"]["message"]
        and "a: 1 size" in joint["fits"]["chinchilla"]["message"]
    )
    assert not [d for d in docs if d["kind"] == "loss_vs_params"]


def test_a_transition_beyond_the_measured_sizes_is_unconstrained():
    """An S-curve whose midpoint lies past the largest size is located by its last point alone (the drop a
    physicist questions): it is drawn dotted, never a threshold."""
    y = scurve(SIZES, 0.05, 0.45, 60000.0, 2.0) + _noise(0.005, 12)
    fits, comparison = fit_and_compare(SIZES, y, bootstrap=30, domain=UNIT)
    sc = fits["scurve"]
    assert sc.status == "unconstrained" and "not observed" in sc.message, sc.message
    assert comparison["verdict"] != "threshold" and comparison["n_c"] is None
    inside = fit("scurve", SIZES, scurve(SIZES, 0.05, 0.45, 2000.0, 2.0) + _noise(0.005, 12), domain=UNIT)
    assert "not observed" not in inside.message


def test_a_step_between_two_sizes_is_unconstrained():
    """A jump between two neighbouring sizes with no point on the way (the default study's BBT-Neutron c-jet
    f_q) fits any n_c between them and any steeper k: not a measurement."""
    y = np.where(SIZES < 2000, 0.6, 0.4) + _noise(0.005, 13)
    sc = fit("scurve", SIZES, y, bootstrap=30, domain=UNIT)
    assert sc.status == "unconstrained" and "step" in sc.message, sc.message
    smooth = fit("scurve", SIZES, scurve(SIZES, 0.05, 0.45, 1500.0, 2.0) + _noise(0.005, 13), domain=UNIT)
    assert smooth.status == "ok" and "step" not in smooth.message, smooth.message


def test_a_step_with_one_size_on_it_is_unconstrained():
    """A step that happens to hold one size on its transition (the default study's ParT u-jet ε: n_c 292,
    k 18.8 ± 4.7e17, between the sizes 100 and 300) is no better measured: that size's value is reproduced by any
    steeper k with n_c moved to match. A transition as wide as the sizes' spacing is a measurement."""
    y = scurve(SIZES, 0.6, 0.4, 950.0, 40.0) + _noise(0.005, 14)
    sc = fit("scurve", SIZES, y, bootstrap=30, domain=UNIT)
    assert sc.status == "unconstrained" and "step" in sc.message, (sc.message, sc.params)
    wide = fit("scurve", SIZES, scurve(SIZES, 0.6, 0.4, 1500.0, 3.5) + _noise(0.005, 14), domain=UNIT)
    assert wide.status == "ok" and "step" not in wide.message, wide.message


def test_transition_width_is_the_10_to_90_percent_span():
    from jetscale.fit.forms import transition_resolved, transition_width

    width = transition_width(1000.0, 3.0)
    edges = np.array([1000.0 / np.sqrt(width), 1000.0 * np.sqrt(width)])
    np.testing.assert_allclose(scurve(edges, 0.0, 1.0, 1000.0, 3.0), [0.9, 0.1])
    sizes = np.array([100.0, 300.0, 1000.0, 3000.0])
    assert transition_resolved(sizes, 500.0, 5.0) and not transition_resolved(sizes, 500.0, 10.0)
    assert not transition_resolved(sizes, 3000.0, 1.0)  # n_c on the last size: one side unobserved

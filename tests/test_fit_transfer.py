"""Effective data transferred on synthetic curves with known answers (incl. beyond reach and negative transfer)."""

from __future__ import annotations

import numpy as np
import pytest

from jetscale.fit.transfer import (
    effective_data_transferred,
    equivalent_size,
    fit_transfer_law,
    format_transfer,
    isotonic_decreasing,
    scratch_curve,
)

SIZES = np.array([100, 200, 400, 800, 1600, 3200, 6400, 12800])


def error(n):
    return 0.2 + 2.0 * np.asarray(n, dtype=float) ** -0.5


def scratch(noise=0.0, seeds=2):
    rng = np.random.default_rng(0)
    n = np.repeat(SIZES, seeds)
    return n, error(n) + noise * rng.normal(size=len(n))


def test_isotonic_pools_violators():
    np.testing.assert_allclose(isotonic_decreasing([3.0, 2.0, 2.5, 1.0]), [3.0, 2.25, 2.25, 1.0])
    sizes, curve = scratch_curve([1, 1, 10, 10], [2.0, 4.0, 1.0, 1.0])
    assert list(sizes) == [1, 10] and list(curve) == [3.0, 1.0]


def test_equivalent_size_on_the_measured_points_and_between():
    sizes, curve = scratch_curve(SIZES, error(SIZES))
    assert equivalent_size(sizes, curve, float(error(400))) == (400.0, "ok")
    m, status = equivalent_size(sizes, curve, float(error(566)))
    # linear in log10 n between the measured 400 and 800 (a curved power law: a few per cent off, never outside)
    assert status == "ok" and 400 < m < 800 and m == pytest.approx(566, rel=0.05)


def test_known_multiplier_is_recovered():
    """A fine-tuned model that matches from-scratch at 4n has D_T = 3n and multiplier 4."""
    n, y = scratch(noise=0.0)
    tuned_n = np.repeat([100, 200, 400, 800, 3200], 2)
    rows = effective_data_transferred(n, y, tuned_n, error(4 * tuned_n), bootstrap=50)
    for row in rows:
        assert row["status"] == "ok" and row["bound"] is None
        assert row["d_t"] == pytest.approx(3 * row["n"], rel=1e-9)
        assert row["multiplier"] == pytest.approx(4.0, rel=1e-9)
        assert row["ci_low"] <= row["d_t"] <= row["ci_high"]  # noise-free: the interval is the point


def test_bootstrap_interval_covers_the_truth_with_seed_noise():
    n, y = scratch(noise=0.01, seeds=4)
    tuned_n = np.repeat([400], 4)
    rng = np.random.default_rng(5)
    [row] = effective_data_transferred(n, y, tuned_n, error(1600) + 0.01 * rng.normal(size=4), bootstrap=300)
    assert row["ci_low"] < 1200 < row["ci_high"]
    assert row["ci_high"] - row["ci_low"] > 50  # the noise shows up as a real interval


def test_beyond_reach_is_a_lower_bound_never_infinity():
    n, y = scratch()
    best = error(SIZES[-1])
    tuned_n = np.array([1000, 1000, 3000, 3000])
    rows = effective_data_transferred(n, y, tuned_n, np.full(4, best - 0.05), bootstrap=20)
    for row in rows:
        assert row["d_t"] is None and row["multiplier"] is None and row["status"] == "beyond"
        assert row["bound"] == "lower" and row["bound_value"] == SIZES[-1] - row["n"]
        assert row["ci_high"] is None and row["ci_high_beyond"] and row["frac_beyond"] == 1.0
        assert format_transfer(row) == f"> {SIZES[-1] - row['n']:.3g}"
        assert all(v is None or np.isfinite(v) for v in row.values() if isinstance(v, float))


def test_pretraining_that_hurts_gives_negative_transfer_or_an_upper_bound():
    n, y = scratch()
    rows = effective_data_transferred(n, y, [1600, 1600], error([800, 800]), bootstrap=0)
    assert rows[0]["d_t"] == pytest.approx(-800, rel=0.01) and rows[0]["multiplier"] == pytest.approx(0.5, rel=0.01)
    [worse] = effective_data_transferred(n, y, [1000], [error(50)], bootstrap=0)
    assert worse["bound"] == "upper" and worse["bound_value"] == 100 - 1000 and worse["d_t"] is None


def test_higher_is_better_metrics_read_the_same_way():
    n, y = scratch()
    [row] = effective_data_transferred(n, 1 - y, [400], [1 - error(1600)], higher_is_better=True, bootstrap=0)
    assert row["d_t"] == pytest.approx(1200, rel=1e-9) and row["y_tuned"] == pytest.approx(1 - error(1600))


def test_transfer_law_recovers_k_alpha_beta():
    n = np.tile([100, 300, 1000, 3000], 3).astype(float)
    N = np.repeat([1e4, 1e5, 1e6], 4)
    d = 5.0 * n**0.7 * N**0.3
    law = fit_transfer_law(n, d, N)
    assert law["converged"] and law["form"] == "k*n^alpha*N^beta"
    assert law["params"]["k"] == pytest.approx(5.0, rel=1e-6)
    assert law["params"]["alpha"] == pytest.approx(0.7) and law["params"]["beta"] == pytest.approx(0.3)


def test_transfer_law_skips_bounds_and_says_when_there_is_too_little():
    law = fit_transfer_law([100, 300, 1000, 3000], [50.0, None, -20.0, 900.0])
    assert not law["converged"] and law["n_points"] == 2 and law["n_excluded"] == 2 and "need 3" in law["message"]
    single_N = fit_transfer_law([100, 300, 1000], [10.0, 20.0, 40.0], [1e4, 1e4, 1e4])
    assert single_N["converged"] and single_N["form"] == "k*n^alpha" and "beta" not in single_N["params"]


def test_a_single_scratch_size_is_an_error():
    with pytest.raises(ValueError, match="at least two"):
        effective_data_transferred([100, 100], [0.5, 0.6], [100], [0.4])

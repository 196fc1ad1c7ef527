"""The mirage check on synthetic pairs (threshold in both metrics vs only in the thresholded one), and the
per-flavor continuous metrics it reads."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from jetscale.evaluate.metrics import flavor_continuous
from jetscale.fit.compare import fit_and_compare
from jetscale.fit.forms import powerlaw, scurve
from jetscale.fit.mirage import ARTEFACT, EMERGENT, UNDETERMINED, classify
from jetscale.fit.outlook import compute_at, mirage_doc

SIZES = np.repeat([100, 300, 1000, 3000, 10000, 30000, 100000], 3).astype(float)


def _noisy(values, seed, sigma):
    return values + np.random.default_rng(seed).normal(0, sigma, values.size)


@pytest.fixture(scope="module")
def thresholded():
    """A charge-flip-like rate with a sharp step at n_c = 3000 (what the argmax metric shows)."""
    _, comp = fit_and_compare(SIZES, _noisy(scurve(SIZES, 0.05, 0.45, 3000.0, 3.0), 0, 0.01), bootstrap=60)
    assert comp["verdict"] == "threshold"
    return comp


def test_threshold_in_both_is_emergent(thresholded):
    loss = _noisy(scurve(SIZES, 0.15, 0.69, 3000.0, 2.5), 1, 0.01)  # the log-loss drops at the same n
    _, comp = fit_and_compare(SIZES, loss, bootstrap=60)
    out = classify(thresholded, comp)
    assert out["verdict"] == EMERGENT and out["continuous_verdict"] == "threshold"


def test_threshold_only_in_the_thresholded_metric_is_an_artefact(thresholded):
    loss = _noisy(powerlaw(SIZES, 0.1, 4.0, 0.35), 2, 0.005)  # the log-loss improves smoothly
    _, comp = fit_and_compare(SIZES, loss, bootstrap=60)
    out = classify(thresholded, comp)
    assert out["verdict"] == ARTEFACT and "smoothly" in out["reason"]


def test_threshold_elsewhere_or_missing_counterpart_is_undetermined(thresholded):
    late = _noisy(scurve(SIZES, 0.15, 0.69, 40000.0, 3.0), 3, 0.005)
    _, comp = fit_and_compare(SIZES, late, bootstrap=60)
    assert comp["verdict"] == "threshold"
    out = classify(thresholded, comp)
    assert out["verdict"] == UNDETERMINED and "another n_c" in out["reason"]
    missing = classify(thresholded, None)
    assert missing["verdict"] == UNDETERMINED and "re-run jetscale evaluate" in missing["reason"]
    assert classify({"verdict": "power law"}, comp)["verdict"] is None


def test_mirage_doc_from_a_study_job(thresholded):
    opts = {"bootstrap": 40, "min_points": 4}
    job = {
        "index": 3,
        "metric": "charge_flip",
        "flavor": "b",
        "label": "part",
        "series": {"model": "part"},
        "comparison": thresholded,
        "points": {
            "charge_log_loss": (SIZES, _noisy(powerlaw(SIZES, 0.1, 4.0, 0.35), 2, 0.005)),
            "charge_auc": (SIZES, _noisy(powerlaw(SIZES, 0.02, 2.0, 0.4), 4, 0.002)),
        },
        "names": ("charge_log_loss", "charge_auc"),
        "quantities": ["charge_log_loss", "1 - charge_auc"],
        "opts": opts,
    }
    doc = mirage_doc(job)
    assert doc["kind"] == "mirage" and doc["_index"] == 3 and doc["thresholded_metric"] == "charge_flip"
    assert doc["mirage"]["verdict"] == ARTEFACT and doc["auc"]["comparison"]["verdict"] == "power law"
    assert set(doc["fits"]) == {"powerlaw", "scurve"} and doc["_file"] == "mirage__charge_flip__b__part.json"


def test_flavor_continuous_metrics_decompose_the_log_loss():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    z = rng.normal(size=(600, 3))
    z[np.arange(600), labels] += 1.5
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    out = flavor_continuous(labels, p, 0, 1)
    per_row = [-np.log(p[labels == k, k]).mean() for k in (0, 1)]
    assert out["tag_log_loss"] + out["charge_log_loss"] == pytest.approx(0.5 * sum(per_row), rel=1e-12)
    # perfect charge knowledge: charge log-loss 0, charge AUC 1; no knowledge (p_q = p_qbar): AUC 0.5, ln 2
    sharp = p.copy()
    sharp[:, :2] = 0.0
    sharp[labels == 0, 0] = sharp[labels == 1, 1] = 0.6
    sharp[labels == 2, 0] = 0.1
    blind = p.copy()
    blind[:, 0] = blind[:, 1] = (p[:, 0] + p[:, 1]) / 2
    s, b = flavor_continuous(labels, sharp, 0, 1), flavor_continuous(labels, blind, 0, 1)
    assert s["charge_log_loss"] == pytest.approx(0.0, abs=1e-12) and s["charge_auc"] == 1.0
    assert b["charge_log_loss"] == pytest.approx(math.log(2)) and b["charge_auc"] == 0.5
    assert out["tag_auc"] > 0.8 and 0 < out["tag_log_loss_err"] < 0.1
    assert math.isnan(flavor_continuous(labels[labels != 1], p[labels != 1], 0, 1)["charge_auc"])


def test_compute_at_interpolates_and_extends_in_log_log():
    n = np.array([100, 100, 1000, 10000], dtype=float)
    flops = 5.0 * n  # compute proportional to training jets
    assert compute_at(n, flops, 3000.0) == pytest.approx(15000.0)
    assert compute_at(n, flops, 1e6) == pytest.approx(5e6)
    capped = np.minimum(flops, 5.0 * 1000)  # a sample cap: compute flat beyond 1000 jets
    assert compute_at(n, capped, 1e6) == pytest.approx(5000.0)
    assert compute_at(n, flops, None) is None and compute_at(pd.Series([], dtype=float), [], 10.0) is None

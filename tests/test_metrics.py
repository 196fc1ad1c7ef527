"""Metrics on hand-computed confusion matrices, the empty-class case, AUC/log-loss, and the metrics/evaluate CLIs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from jetscale.cli import main
from jetscale.evaluate.metrics import (
    JOI_CLASSES,
    JOI_FLAVOR_PAIRS,
    average_ranks,
    confusion_counts,
    flavor_metrics,
    log_loss,
    metrics_from_counts,
    metrics_from_predictions,
    one_vs_rest_auc,
)

TOY_CLASSES = ["b", "bbar", "g"]
TOY_PAIRS = {"b": ["b", "bbar"]}
# rows = truth (b: 10 jets, bbar: 5 jets, g: 4 jets), columns = prediction
TOY_COUNTS = np.array([[8, 2, 0], [1, 3, 1], [0, 0, 4]])


def test_hand_computed_flavor_metrics():
    doc = metrics_from_counts(TOY_COUNTS, TOY_CLASSES, TOY_PAIRS)
    assert doc["n_jets"] == 19
    assert doc["accuracy"] == pytest.approx(15 / 19)
    np.testing.assert_allclose(doc["confusion"], [[0.8, 0.2, 0.0], [0.2, 0.6, 0.2], [0.0, 0.0, 1.0]])
    b = doc["flavors"]["b"]
    # B = .8 + .2 + .2 + .6 = 1.8
    assert b["tag_efficiency"] == pytest.approx(0.9)
    assert b["charge_flip"] == pytest.approx(0.4 / 1.8)
    # binomial: row b has all 10 jets inside the pair (p=1, no error); row bbar 4 of 5 (p=.8)
    assert b["tag_efficiency_err"] == pytest.approx(0.5 * math.sqrt(0.8 * 0.2 / 5))
    assert b["charge_flip_err"] > 0


def test_flavor_errors_match_monte_carlo():
    """The delta-method errors agree with the spread of multinomial pseudo-experiments (within 5 %)."""
    rng = np.random.default_rng(7)
    probs = np.array([[0.7, 0.1, 0.2], [0.15, 0.6, 0.25], [0.1, 0.1, 0.8]])
    n = 4000
    counts = (probs * n).round().astype(int)
    predicted = flavor_metrics(counts, 0, 1)
    eff, flip = [], []
    for _ in range(4000):
        toy = np.stack([rng.multinomial(n, p) for p in probs])
        fm = flavor_metrics(toy, 0, 1)
        eff.append(fm["tag_efficiency"])
        flip.append(fm["charge_flip"])
    assert np.std(eff) == pytest.approx(predicted["tag_efficiency_err"], rel=0.05)
    assert np.std(flip) == pytest.approx(predicted["charge_flip_err"], rel=0.05)


def test_class_without_jets_gives_nan_not_crash():
    counts = np.diag(np.full(11, 50))
    counts[8, 9] = 10  # d -> dbar confusion
    counts[9] = 0  # no dbar jets at all
    doc = metrics_from_counts(counts, JOI_CLASSES, JOI_FLAVOR_PAIRS)
    assert all(math.isnan(v) for v in doc["confusion"][9])
    assert all(math.isnan(v) for v in doc["flavors"]["d"].values())
    assert doc["flavors"]["b"]["tag_efficiency"] == pytest.approx(1.0)
    assert doc["flavors"]["b"]["charge_flip"] == pytest.approx(0.0)
    assert doc["accuracy"] == pytest.approx(500 / 510)


def test_auc_and_log_loss_by_hand():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    auc = one_vs_rest_auc(labels, scores)
    assert auc[1] == pytest.approx(0.75)  # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>both -> 3/4
    assert auc[0] == pytest.approx(0.75)
    loss, err = log_loss(labels, scores)
    assert loss == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    assert err > 0


def test_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    scores = rng.integers(0, 5, (300, 3)).astype(float)  # many ties
    auc = one_vs_rest_auc(labels, scores)
    for k in range(3):
        pos, neg = scores[labels == k, k], scores[labels != k, k]
        diff = pos[:, None] - neg[None, :]
        expected = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
        assert auc[k] == pytest.approx(expected)
    assert math.isnan(one_vs_rest_auc(np.zeros(5, int), np.ones((5, 2)) / 2)[1])  # no positives


def _predictions(classes, n_per_class=30, seed=0, skip_class=None):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(classes)), n_per_class)
    if skip_class is not None:
        labels = labels[labels != skip_class]
    z = rng.normal(size=(labels.size, len(classes)))
    z[np.arange(labels.size), labels] += 2.0
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    df = pd.DataFrame({"jet_id": np.arange(labels.size), "label": labels})
    for k, c in enumerate(classes):
        df[f"score_{c}"] = p[:, k]
    return df


def test_predictions_consistent_with_counts():
    df = _predictions(JOI_CLASSES)
    doc = metrics_from_predictions(df, JOI_CLASSES, JOI_FLAVOR_PAIRS)
    counts = confusion_counts(df["label"], df[[f"score_{c}" for c in JOI_CLASSES]].to_numpy().argmax(1), 11)
    assert doc["counts"] == counts.tolist()
    assert doc["accuracy"] == pytest.approx(np.trace(counts) / counts.sum())
    assert set(doc["auc"]) == set(JOI_CLASSES)


EXACT_KEYS = ["classes", "n_jets", "accuracy", "log_loss", "confusion", "flavors"]
FLAVOR_KEYS = {"tag_efficiency", "tag_efficiency_err", "charge_flip", "charge_flip_err"}


def test_metrics_cli_confusion_csv(tmp_path, capsys):
    counts = np.diag(np.full(11, 20))
    counts[9] = 0  # a class with no jets
    order = list(JOI_CLASSES)[::-1]  # the file may list classes in any order
    table = pd.DataFrame(counts, index=JOI_CLASSES, columns=JOI_CLASSES).loc[order, order]
    table.to_csv(tmp_path / "conf.csv")
    assert main(["metrics", "--confusion", str(tmp_path / "conf.csv")]) == 0
    doc = json.loads(capsys.readouterr().out)  # strict JSON: NaN printed as null
    assert list(doc) == EXACT_KEYS
    assert doc["log_loss"] is None and doc["n_jets"] == 200
    assert list(doc["flavors"]) == ["b", "c", "s", "u", "d"]
    assert all(set(v) == FLAVOR_KEYS for v in doc["flavors"].values())
    assert doc["flavors"]["d"]["tag_efficiency"] is None
    assert doc["confusion"][9] == [None] * 11
    assert doc["confusion"][0][0] == 1.0


def test_metrics_cli_predictions(tmp_path, capsys):
    df = _predictions(JOI_CLASSES, skip_class=3)
    df.to_parquet(tmp_path / "p.parquet")
    assert main(["metrics", "--predictions", str(tmp_path / "p.parquet")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == EXACT_KEYS + ["auc"]
    assert isinstance(doc["log_loss"], float) and doc["auc"]["cbar"] is None
    assert doc["flavors"]["c"]["charge_flip"] is None


def test_metrics_cli_rejects_wrong_classes(tmp_path, capsys):
    pd.DataFrame([[1, 0], [0, 1]], index=["x", "y"], columns=["x", "y"]).to_csv(tmp_path / "bad.csv")
    assert main(["metrics", "--confusion", str(tmp_path / "bad.csv")]) == 2
    assert "do not match the classes" in capsys.readouterr().err


@pytest.mark.parametrize("n", [0, 1, 7, 2200])
def test_average_ranks_are_scipys_rankdata_to_the_bit(n):
    from scipy.stats import rankdata

    rng = np.random.default_rng(n)
    for values in (
        rng.random(n),
        rng.integers(0, 5, n).astype(float),  # many ties
        np.round(rng.random(n), 2) * np.where(rng.random(n) < 0.5, -0.0, 0.0) + rng.integers(0, 3, n),  # ±0 ties
    ):
        np.testing.assert_array_equal(average_ranks(values), rankdata(values))
    if n:
        with_nan = rng.random(n)
        with_nan[n // 2] = np.nan
        assert np.isnan(average_ranks(with_nan)).all() and np.isnan(rankdata(with_nan)).all()

"""Reference validations against published fits (data in ../shared/reference/, a sibling of the repo).

- Chinchilla (Epoch AI re-analysis, arXiv:2404.10102): drop the 5 highest-loss runs, D = FLOP/(6N), sum-Huber
  fit in log space -> the grid estimate A, B, E, alpha, beta within 1 %; bootstrap standard errors (fewer
  replicates than Epoch's 4000, to stay fast) within 30 % of theirs (measured: 0-15 % with 200 replicates).
- BNSL 4-digit addition (arXiv:2210.14891 Fig. 4 left): fitting the 14 'fit' points reproduces the published
  parameters (measured: <= 1.2e-6 relative) and the extrapolation RMSLE on the 3 held-back points (0.01092).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jetscale.fit.fitting import fit
from jetscale.fit.forms import bnsl

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"

pytestmark = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"reference data directory {REFERENCE} is absent (clone shared/ next to the repo)"
)


def _json(name: str) -> dict:
    return json.loads((REFERENCE / name).read_text())


@pytest.fixture(scope="module")
def chinchilla_points():
    df = pd.read_csv(REFERENCE / "epoch_chinchilla_svg_extracted_data.csv")
    df = df[df["loss"] < np.sort(df["loss"].to_numpy())[-5]]  # drop the 5 highest-loss runs
    assert len(df) == 240
    n = df["Model Size"].to_numpy(float)
    return n, df["Training FLOP"].to_numpy(float) / (6 * n), df["loss"].to_numpy(float)


def test_chinchilla_point_estimate_within_one_percent(chinchilla_points):
    n, d, loss = chinchilla_points
    ref = _json("epoch_chinchilla_reference_params.json")["grid_estimate"]
    result = fit("chinchilla", n, loss, d)
    assert result.converged, result.message
    for name in ("A", "B", "E", "alpha", "beta"):
        assert result.params[name] == pytest.approx(ref[name], rel=0.01), name


def test_chinchilla_bootstrap_standard_errors_close_to_epoch(chinchilla_points):
    n, d, loss = chinchilla_points
    ref = _json("epoch_chinchilla_reference_params.json")["bootstrap"]["SE"]
    result = fit("chinchilla", n, loss, d, bootstrap=120, seed=42)
    assert result.stderr is not None, result.message
    for name, se in ref.items():
        assert result.stderr[name] == pytest.approx(se, rel=0.3), name


def test_bnsl_reproduces_published_fit_and_extrapolation():
    ref = _json("bnsl_4digit_addition_reference_params.json")
    df = pd.read_csv(REFERENCE / ref["data_file"])
    train = df[df["split"] == "fit"]
    assert len(train) == 14
    result = fit("bnsl", train["train_dataset_size"], train["test_cross_entropy"])
    assert result.converged, result.message
    for name, value in ref["params"].items():
        assert result.params[name] == pytest.approx(value, rel=1e-3), name
    x, y = df["train_dataset_size"].to_numpy(float), df["test_cross_entropy"].to_numpy(float)
    sle = (np.log(bnsl(x, *result.params.values())) - np.log(y)) ** 2
    held_back = (df["split"] == "extrapolate").to_numpy()
    assert np.sqrt(sle[~held_back].mean()) == pytest.approx(ref["rmsle_train_first14"], abs=5e-5)
    assert np.sqrt(sle[held_back].mean()) == pytest.approx(ref["rmsle_extrapolate_last3"], rel=0.01)

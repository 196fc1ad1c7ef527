"""Per-cell tuning (grid.tune): the choice is made on the seed-mean validation score only, recorded in
tables/tuning.csv and runs.csv, and every fit and figure sees one tuned series; bad tune configs are refused
with one line. Synthetic run directories (no training): validation and test are made to disagree."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from jetscale import paths
from jetscale.cli import main
from jetscale.config import load_config
from jetscale.errors import ConfigError
from jetscale.evaluate.synthetic import synthetic_predictions, write_synthetic_study
from jetscale.evaluate.tuning import choose
from jetscale.fit.study import read_runs_table
from jetscale.grid import cell_id, cells, series_axes
from tiny_config import default_raw_config

REPO = Path(__file__).resolve().parents[1]
LRS = [3.0e-4, 1.0e-3, 3.0e-3]
SIZES = [100, 300, 1000, 3000, 10000]
# Validation (the choice): 3e-3 best at every size but the first; at n=100 the seeds disagree and the seed
# *mean* decides (1e-3: 0.6 and 3.0, mean 1.8; 3e-4: 1.5 and 1.6, mean 1.55 -> 3e-4, though 1e-3 has the best
# single seed). Test (never used): the order is reversed, 3e-4 best, 3e-3 worst.
VAL = {3.0e-4: 1.9, 1.0e-3: 1.8, 3.0e-3: 1.7}
VAL_N100 = {3.0e-4: (1.5, 1.6), 1.0e-3: (0.6, 3.0), 3.0e-3: (2.0, 2.0)}
TEST_SIGNAL = {3.0e-4: 30.0, 1.0e-3: 3.0, 3.0e-3: 0.3}  # × n_train: how good the test predictions are


def tuned_config(tmp_path: Path, **grid) -> dict:
    raw = default_raw_config(tmp_path / "results", per_model={}, model=["particlenet"], n_train=SIZES, seed=[0, 1])
    raw["grid"]["extra_axes"] = {"lr": {"values": LRS, "default": 1.0e-3, "sets": "training.lr"}}
    raw["grid"]["tune"] = {"lr": {"by": "val_loss"}}
    raw["grid"].update(grid)
    raw["data"]["generate"]["jets_per_class"] = 5000
    raw["fits"].update(bootstrap=5, targets=[])
    return raw


def write_study(cfg: dict) -> Path:
    """Run directories whose validation and test scores disagree (VAL*, TEST_SIGNAL); returns the config."""
    write_synthetic_study(cfg, jets_per_class=30)
    root = Path(cfg["results"])
    for cell in cells(cfg):
        run = root / "runs" / cell_id(cfg, cell)
        lr, n, seed = cell["lr"], cell["n_train"], cell["seed"]
        preds = synthetic_predictions(
            cfg["classes"], cfg["flavor_pairs"], "particlenet", int(n * TEST_SIGNAL[lr]), seed, 30
        )
        preds.to_parquet(run / paths.PREDICTIONS, index=False)
        metrics = json.loads((run / paths.METRICS).read_text())
        metrics["val_loss"] = VAL_N100[lr][seed] if n == 100 else VAL[lr] - 0.1 * np.log10(n) + 0.01 * seed
        (run / paths.METRICS).write_text(json.dumps(metrics))
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tuned")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(tuned_config(tmp), sort_keys=False))
    cfg = load_config(config)
    root = write_study(cfg)
    for cid in [cell_id(cfg, c) for c in cells(cfg)]:
        assert main(["evaluate", "--config", str(config), "--run", str(root / "runs" / cid)]) == 0
    assert main(["collect", "--config", str(config)]) == 0
    assert main(["report", "--config", str(config)]) == 0
    return config, cfg, root


def test_choice_is_made_on_validation_never_test(study):
    _, _, root = study
    tuning = pd.read_csv(root / "tables" / "tuning.csv")
    chosen = tuning[tuning["chosen"]].set_index("n_train")
    assert chosen["lr"].to_dict() == {100: 3.0e-4, 300: 3.0e-3, 1000: 3.0e-3, 3000: 3.0e-3, 10000: 3.0e-3}
    # the test set says the opposite: at every n >= 300 the chosen lr has the worst test log-loss
    runs = pd.read_csv(root / "tables" / "runs.csv")
    test = runs[runs["metric"] == "log_loss"].groupby(["n_train", "lr"])["value"].mean()
    for n in SIZES[1:]:
        assert test[n].idxmin() == 3.0e-4 and test[n].idxmax() == 3.0e-3
    # every candidate is listed with its seed-mean validation score; the seed mean decides at n = 100
    assert len(tuning) == len(SIZES) * len(LRS) and set(tuning["n_seeds"]) == {2}
    at100 = tuning[tuning["n_train"] == 100].set_index("lr")["mean"]
    assert at100.to_dict() == pytest.approx({3.0e-4: 1.55, 1.0e-3: 1.8, 3.0e-3: 2.0})
    assert chosen.loc[300, "edge"] == "lr: highest" and chosen.loc[100, "edge"] == "lr: lowest"
    assert set(tuning.columns) >= {"model", "width", "n_train", "compute", "lr", "by", "mean", "chosen"}
    assert "seed" not in tuning.columns and "log_loss" not in tuning.columns


def test_runs_csv_marks_chosen_rows_and_fits_see_one_series(study):
    _, cfg, root = study
    runs = pd.read_csv(root / "tables" / "runs.csv")
    marked = runs[runs["chosen"]][["n_train", "lr"]].drop_duplicates().set_index("n_train")["lr"]
    assert marked.to_dict() == {100: 3.0e-4, 300: 3.0e-3, 1000: 3.0e-3, 3000: 3.0e-3, 10000: 3.0e-3}
    table = read_runs_table(cfg)
    assert table["chosen"].all() and table["cell_id"].nunique() == len(SIZES) * 2
    assert "lr" not in series_axes(cfg, table)
    summary = pd.read_csv(root / "fits" / "fit_summary.csv")
    scaling = summary[summary["kind"] == "scaling"]
    assert not scaling["series"].astype(str).str.contains("lr").any()
    assert scaling.groupby(["metric", "flavor", "form"]).size().max() == 1  # one series, not one per lr


def test_report_shows_the_chosen_lr_against_n_train(study):
    _, _, root = study
    trends = pd.read_csv(root / "fits" / "tuning_trends.csv")
    assert trends["status"].tolist() == ["ok"] and trends["form"].tolist() == ["C n^a"]
    # chosen 3e-4 at n=100, then 3e-3: the lr grows with n
    assert trends["exponent_n"].iloc[0] > 0 and trends["n_points"].iloc[0] == len(SIZES)
    assert trends["n_edge"].iloc[0] == len(SIZES)
    assert (root / "figures" / "tuning_lr.png").stat().st_size > 10_000
    html = (root / "report.html").read_text()
    assert "Per-cell tuning" in html and "tuning_lr" in html and "Choice per cell" in html


def test_width_trend_and_untuned_models():
    """Across two widths the trend has a width exponent; a model given one lr is not tuned, only kept."""
    cfg = load_config(tuned_config(Path("/nonexistent")), where="t")
    rows = []
    for w, shift in ((16, 1.0), (64, 0.25)):
        for n, lr in ((100, 3e-4), (1000, 1e-3), (10000, 3e-3)):
            for cand in LRS:
                for seed in (0, 1):
                    val = abs(np.log(cand / (lr * shift)))
                    rows.append(
                        dict(
                            model="particlenet",
                            width=w,
                            n_train=n,
                            compute="auto",
                            seed=seed,
                            lr=cand,
                            metric="val_loss",
                            flavor="",
                            value=val,
                        )
                    )
    table = pd.DataFrame(rows)
    keep, tuning = choose(cfg, table)
    from jetscale.fit.tuning import tuning_trends

    trend = tuning_trends(tuning, ["lr"], ["model"]).iloc[0]
    assert trend["form"] == "C n^a w^b" and trend["status"] == "ok"
    assert trend["exponent_width"] < 0 and trend["exponent_n"] > 0
    assert keep.sum() == 2 * 3 * 2
    # a second model with one lr only: untuned, every row kept, nothing in tuning.csv
    cfg2 = copy.deepcopy(cfg)
    cfg2["grid"]["axes"]["model"] = ["particlenet", "part"]
    cfg2["grid"]["per_model"] = {"part": {"lr": [1.0e-3]}}
    other = table[table["lr"] == 1e-3].assign(model="part")
    keep2, tuning2 = choose(cfg2, pd.concat([table, other], ignore_index=True))
    assert keep2[len(table) :].all() and set(tuning2["model"]) == {"particlenet"}


def test_a_candidate_without_result_is_listed_and_not_chosen(tmp_path):
    cfg = load_config(tuned_config(tmp_path), where="t")
    rows = [
        dict(
            model="particlenet",
            width=16,
            n_train=100,
            compute="auto",
            seed=s,
            lr=lr,
            metric="val_loss",
            flavor="",
            value=v + s,
        )
        for lr, v in ((1.0e-3, 2.0), (3.0e-3, 1.0))
        for s in (0, 1)
    ]
    rows.append({**rows[0], "lr": 3.0e-4, "seed": 0, "value": float("nan")})  # trained, but no finite score
    keep, tuning = choose(cfg, pd.DataFrame(rows))
    assert tuning["lr"].tolist() == LRS and tuning["n_seeds"].tolist() == [0, 2, 2]
    assert tuning["chosen"].tolist() == [False, False, True] and tuning["n_candidates"].eq(3).all()
    assert keep.tolist() == [False, False, True, True, False]
    # not trained at all: listed from the config all the same
    _, tuning = choose(cfg, pd.DataFrame(rows[:4]))
    assert tuning["lr"].tolist() == LRS and tuning["n_seeds"].tolist() == [0, 2, 2]


BAD = [
    ({"tune": {"lrr": {"by": "val_loss"}}}, "grid.tune.lrr: 'lrr' is not a grid axis"),
    ({"tune": {"lr": {"by": "log_loss"}}}, "grid.tune.lr.by: 'log_loss' is not a validation metric"),
    ({"tune": {"lr": {"by": "test_loss"}}}, "grid.tune.lr.by: 'test_loss' is not a validation metric"),
    ({"tune": {"seed": {"by": "val_loss"}}}, "grid.tune.seed: 'seed' cannot be a tuning axis"),
    ({"tune": {"n_train": {"by": "val_loss"}}}, "grid.tune.n_train: 'n_train' cannot be a tuning axis"),
    ({"tune": {"model": {"by": "val_loss"}}}, "grid.tune.model: 'model' cannot be a tuning axis"),
    ({"tune": {"width": {"by": "val_loss"}}}, "grid.tune.width: the axis has one value for every model"),
    ({"tune": {"lr": {}}}, "grid.tune.lr: 'by' is a required property"),
    ({"tune": {"lr": {"by": "val_loss", "on": 1}}}, "grid.tune.lr: unknown key(s) ['on']"),
    (
        {"extra_axes": {"lr": {"values": LRS, "default": 3.0e-4, "sets": "training.lr"}}},
        "grid.tune.lr: grid.extra_axes.lr.default is 0.0003 but particlenet's cells without the axis run "
        "training.lr = 0.001",
    ),
]


@pytest.mark.parametrize(("grid", "message"), BAD)
def test_bad_tune_configs_are_refused_with_one_line(tmp_path, grid, message):
    raw = tuned_config(tmp_path, **grid)
    with pytest.raises(ConfigError) as err:
        load_config(raw, where="study.yaml")
    text = str(err.value)
    assert text.startswith(f"study.yaml: {message}") and "\n" not in text


@pytest.mark.parametrize("key", ["color_by", "facet_by"])
def test_a_tuned_axis_cannot_be_drawn_as_series(tmp_path, key):
    raw = tuned_config(tmp_path)
    raw["report"][key] = "lr"
    with pytest.raises(ConfigError, match=rf"grid.tune.lr: 'lr' is also report.{key}"):
        load_config(raw, where="study.yaml")


def test_tuning_axes_must_share_one_metric(tmp_path):
    raw = tuned_config(tmp_path)
    raw["grid"]["extra_axes"]["wd"] = {"values": [0.0, 0.01], "default": 0.01, "sets": "training.weight_decay"}
    raw["grid"]["tune"]["wd"] = {"by": "val_accuracy"}
    with pytest.raises(ConfigError, match="grid.tune: the tuning axes select by different metrics"):
        load_config(raw, where="study.yaml")


def test_lr_tuning_study_config_is_valid():
    cfg = load_config(REPO / "config" / "lr-tuning.yaml")
    assert cfg["grid"]["tune"] == {"lr": {"by": "val_loss"}}
    assert cfg["grid"]["axes"]["model"] == ["particlenet"] and len(cfg["grid"]["extra_axes"]["lr"]["values"]) == 3

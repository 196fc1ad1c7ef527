"""The stopping rule: cadence, patience, reduce-on-plateau, caps, and ``stopped_by`` for each way a run ends."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from jetscale.config import load_config
from jetscale.data.testing import write_synthetic_splits
from jetscale.errors import ConfigError
from jetscale.grid import cells
from jetscale.settings import resolve_settings, settings_hash
from jetscale.train import loop
from jetscale.train.checkpoint import TrainingInterrupted
from jetscale.train.stopping import BUDGET, CONVERGED, CosineSchedule, PlateauSchedule, plan_for
from tiny_config import tiny_raw_config

AUTO = "model~particlenet/width~8/n_train~44/compute~auto/seed~0"


def raw_config(stopping: dict | None = None) -> dict:
    raw = tiny_raw_config(compute=["auto", 160], jets_per_class=None)
    raw["training"]["stopping"].update(stopping or {})
    return raw


def settings_for(n_train: int, compute="auto", **stopping) -> dict:
    raw = raw_config(stopping)
    raw["grid"]["axes"].update({"n_train": [n_train], "compute": [compute]})
    raw["data"]["generate"]["jets_per_class"] = 100_000  # a pool for the largest n_train (nothing is generated)
    cfg = load_config(raw)
    return resolve_settings(cfg, cells(cfg)[0])


@dataclass
class Progress:
    evals_since_best: int = 0
    lr_scale: float = 1.0
    stopped_by: str | None = None
    done: bool = False


# ------------------------------------------------------------------------------------------- the plan
def test_cadence_follows_n_train_within_its_floor_and_ceiling():
    rule = {"evals_per_epoch": 2, "min_eval_samples": 1000, "max_eval_samples": 50000}
    assert plan_for(settings_for(100, **rule), 32).eval_every_samples == 1000  # floor: small cells
    assert plan_for(settings_for(30000, **rule), 32).eval_every_samples == 15000  # half an epoch
    assert plan_for(settings_for(1_000_000, **rule), 32).eval_every_samples == 50000  # ceiling


def test_cap_is_the_smaller_of_max_epochs_and_max_samples():
    assert plan_for(settings_for(1000, max_epochs=50, max_samples=10**6), 32).max_samples == 50_000
    plan = plan_for(settings_for(100_000, max_epochs=50, max_samples=10**6), 32)
    assert (plan.max_samples, plan.max_steps) == (10**6, 31250)


def test_numeric_compute_keeps_a_fixed_budget_with_a_cosine_schedule():
    plan = plan_for(settings_for(1000, compute=3200), 32)
    assert (plan.budget, plan.max_samples, plan.max_steps, plan.eval_every_samples) == ("fixed", 3200, 100, 48)
    assert plan.patience is None and isinstance(plan.schedule, CosineSchedule)
    assert plan.schedule.factor(99) < 1e-3  # decays to zero at the known end


def test_each_budget_hashes_only_its_own_keys():
    auto, fixed = settings_for(1000), settings_for(1000, compute=3200)
    assert "stopping" in auto["training"] and "eval_every_samples" not in auto["training"]
    assert "stopping" not in fixed["training"] and fixed["training"]["eval_every_samples"] == 48
    # changing the stopping rule retrains auto cells only
    assert settings_hash(settings_for(1000, compute=3200, patience=3)) == settings_hash(fixed)
    assert settings_hash(settings_for(1000, patience=3)) != settings_hash(auto)


def test_eval_floor_above_ceiling_is_one_clear_error():
    with pytest.raises(ConfigError, match="training.stopping: min_eval_samples .* exceeds max_eval_samples"):
        load_config(raw_config({"min_eval_samples": 5000, "max_eval_samples": 1000}))


def test_plateaus_drop_the_rate_then_the_patience_stops_the_run():
    plan = plan_for(settings_for(1000, patience=5, lr_patience=2, lr_drop=0.5, min_lr_factor=0.2), 32)
    progress, scales = Progress(), []
    for improved in (True, False, False, True, False, False, False, False, False):
        plan.after_evaluation(progress, improved)
        scales.append(progress.lr_scale)
        if progress.done:
            break
    assert scales == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2]  # drops every 2 bad evals, floor 0.2
    assert progress.done and plan.verdict(progress) == CONVERGED
    assert plan.verdict(Progress(evals_since_best=4)) == BUDGET  # still within its patience at the cap


def test_gains_below_min_improvement_keep_the_best_but_do_not_reset_the_patience():
    plan = plan_for(settings_for(1000, patience=3, lr_patience=None, min_improvement=0.01), 32)
    assert plan.is_progress(1.0, float("inf"))  # the first evaluation always counts
    assert plan.is_progress(0.98, 1.0) and not plan.is_progress(0.995, 1.0) and not plan.is_progress(1.2, 1.0)
    progress, best = Progress(), float("inf")
    for val in (2.0, 1.5, 1.49, 1.485, 1.48):  # creeping by < 1% of the best per evaluation
        plan.after_evaluation(progress, plan.is_progress(val, best))
        best = min(best, val)
    assert progress.done and plan.verdict(progress) == CONVERGED
    assert plan_for(settings_for(1000, min_improvement=0.0), 32).is_progress(0.9999, 1.0)  # 0: any lower loss


def test_plateau_schedule_is_a_function_of_step_and_scale():
    schedule = PlateauSchedule(warmup_steps=4, lr_patience=3, lr_drop=0.3, min_lr_factor=0.01)
    assert [schedule.factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert schedule.factor(100, 0.09) == 0.09
    assert schedule.lr_scale_after(0, 0.3) == 0.3 and schedule.lr_scale_after(3, 0.3) == pytest.approx(0.09)


# ------------------------------------------------------------------------------------ whole runs
@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    cfg = load_config(raw_config())
    return write_synthetic_splits(
        tmp_path_factory.mktemp("splits"), cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=16
    )


def train(tmp: Path, splits, cell=AUTO, stop_after_steps=None, **stopping) -> dict:
    cfg = load_config(raw_config(stopping))
    return loop.train_cell(cfg, cell, splits, tmp, progress=False, stop_after_steps=stop_after_steps)


# Random labels: the validation loss stops improving within a few epochs, so a patient-enough cap converges.
CONVERGING = {
    "min_eval_samples": 16,
    "patience": 3,
    "min_improvement": 0.0,  # every lower loss counts: the last three evaluations are all above the best
    "lr_patience": 1,
    "warmup_samples": 16,
    "max_epochs": 200,
}


def test_a_run_whose_validation_loss_stops_improving_converged(splits, tmp_path):
    record = train(tmp_path, splits, **CONVERGING)
    assert record["stopped_by"] == CONVERGED
    assert record["samples_seen"] < record["samples_budget"] == 200 * 44
    log = pd.read_csv(tmp_path / "train_log.csv")
    evals = log.dropna(subset=["val_loss"])
    assert (evals["val_loss"].iloc[-3:] >= record["val_loss"]).all()  # three evaluations without improvement
    assert record["best_step"] < record["steps"]
    assert log["lr"].iloc[-1] < log["lr"].max()  # the plateaus dropped the rate before the stop
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "early_stopped" not in metrics and metrics["stopped_by"] == CONVERGED


def test_a_run_that_reaches_its_cap_still_improving_is_budget_limited(splits, tmp_path):
    record = train(tmp_path, splits, min_eval_samples=16, patience=50, max_epochs=2)
    assert record["stopped_by"] == BUDGET
    assert record["samples_budget"] == 88 and record["steps"] == record["steps_budget"] == 6  # whole batches


def test_a_numeric_compute_runs_its_fixed_budget(splits, tmp_path):
    record = train(tmp_path, splits, cell=AUTO.replace("compute~auto", "compute~160"))
    assert record["stopped_by"] == BUDGET and record["samples_seen"] == 160
    assert record["compute"] == 160


def test_a_run_resumed_across_plateaus_and_the_stop_is_identical(splits, tmp_path):
    """Interrupted after the rate dropped, resumed: the same drops, the same stop, the same weights."""
    straight = train(tmp_path / "straight", splits, **CONVERGING)
    log = pd.read_csv(tmp_path / "straight" / "train_log.csv")
    dropped = int(log.loc[log["lr"] < log["lr"].max(), "step"].iloc[0])
    assert 0 < dropped < straight["steps"]
    with pytest.raises(TrainingInterrupted):
        train(tmp_path / "resumed", splits, stop_after_steps=dropped + 1, **CONVERGING)
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert saved["lr_scale"] < 1.0 and saved["stopped_by"] is None
    resumed = train(tmp_path / "resumed", splits, **CONVERGING)
    for key in ("stopped_by", "steps", "samples_seen", "best_step", "val_loss", "test_loss"):
        assert resumed[key] == straight[key], key
    a, b = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=True)["model"] for r in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = pd.read_csv(tmp_path / "resumed" / "train_log.csv")
    pd.testing.assert_series_equal(log["lr"], again["lr"])
    pd.testing.assert_series_equal(log["val_loss"], again["val_loss"])


# ------------------------------------------------------------------------------ tables and fits
def test_collect_carries_stopped_by_and_fits_can_leave_budget_limited_cells_out():
    from jetscale.evaluate.collect import RUN_COLUMNS
    from jetscale.report.tables import seed_means

    assert "stopped_by" in RUN_COLUMNS
    table = pd.DataFrame(
        {
            "model": ["m"] * 4,
            "n_train": [100, 100, 1000, 1000],
            "seed": [0, 1, 0, 1],
            "metric": ["accuracy"] * 4,
            "flavor": [""] * 4,
            "value": [0.2, 0.3, 0.4, 0.5],
            "error": [0.01] * 4,
            "stopped_by": [CONVERGED, CONVERGED, CONVERGED, BUDGET],
        }
    )
    means = seed_means(table, ["model"], "accuracy")
    assert means["budget_limited"].tolist() == [False, True]  # any budget-limited seed makes the point hollow
    assert seed_means(table.drop(columns="stopped_by"), ["model"], "accuracy")["budget_limited"].tolist() == [
        False,
        False,
    ]


def test_fits_exclude_budget_limited_cells_only_when_asked(tmp_path, monkeypatch):
    from jetscale.fit import study

    raw = raw_config()
    raw["results"] = str(tmp_path / "results")
    seen = {}

    def fake_series_axes(cfg, table):
        seen["stopped_by"] = sorted(set(table["stopped_by"]))
        raise RuntimeError("stop here")

    monkeypatch.setattr(study, "series_axes", fake_series_axes)
    table = tmp_path / "runs.csv"
    pd.DataFrame(
        {"model": ["m", "m"], "n_train": [1, 2], "metric": ["accuracy"] * 2, "flavor": ["", ""], "value": [0.1, 0.2]}
        | {"stopped_by": [CONVERGED, BUDGET]}
    ).to_csv(table, index=False)
    for exclude, expected in ((False, [BUDGET, CONVERGED]), (True, [CONVERGED])):
        cfg = load_config(copy.deepcopy(raw) | {"fits": {"exclude_budget_limited": exclude}})
        with pytest.raises(RuntimeError, match="stop here"):
            study.run_study_fits(cfg, table=table, summary=tmp_path / "fits" / "fit_summary.csv")
        assert seen["stopped_by"] == expected


def test_a_run_that_reaches_the_last_part_of_its_cap_anneals_into_it():
    """Warmup, constant × lr_scale, then a linear decay over the last cap_decay_fraction of the cap's steps to
    min_lr_factor at the cap; no tail without the fraction; the plateau scale multiplies the tail."""
    from jetscale.train.stopping import PlateauSchedule

    sched = PlateauSchedule(
        warmup_steps=10, lr_patience=3, lr_drop=0.3, min_lr_factor=0.01, total_steps=1000, decay_steps=250
    )
    assert sched.factor(4) == pytest.approx(0.5) and sched.factor(500) == 1.0 and sched.factor(750) == 1.0
    assert sched.factor(875) == pytest.approx(0.5) and sched.factor(875, 0.3) == pytest.approx(0.15)
    assert sched.factor(999) == pytest.approx(0.01) and sched.factor(1000) == pytest.approx(0.01)
    flat = PlateauSchedule(warmup_steps=10, lr_patience=3, lr_drop=0.3, min_lr_factor=0.01, total_steps=1000)
    assert flat.factor(999) == 1.0
    planned = plan_for(settings_for(30000, max_samples=64000, cap_decay_fraction=0.25), 32).schedule
    assert planned.total_steps == 2000 and planned.decay_steps == 500

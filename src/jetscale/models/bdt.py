"""The ``bdt`` baseline's fit: one multi-class LightGBM model on jet observables, early-stopped on validation.

Why LightGBM (rather than scikit-learn's HistGradientBoosting or XGBoost): it is the fastest of the three on two
CPU cores for tens of thousands of jets × 11 classes (histogram trees, one tree per class and round), it is
deterministic for a given seed and thread count (``deterministic=True``, column-wise histograms), its wheel is
small and needs only numpy and scipy, and it stops early on a validation set we give it (ours: the study's fixed
validation split), where HistGradientBoosting carves its own out of the training jets.

``fit(options, train, val, *, n_classes, seed, threads) -> Fitted``; ``train``/``val`` are ``(x, y)`` pairs of
an (n, k) float32 observable matrix and int labels. The seed drives bagging and the per-tree observable draw, so
seeds are real replicas (as a network's seeds are).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Fitted:
    booster: Any  # lightgbm.Booster, trimmed to the best round
    rounds: int  # boosting rounds run
    best_round: int  # the round whose validation log-loss was lowest (the model kept)
    stopped_by: str  # "converged" (early stopping) | "budget" (max_rounds reached while still improving)
    val_history: list[float]  # validation multi-class log-loss after each round

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        probs = np.asarray(self.booster.predict(x, num_iteration=self.best_round), dtype=np.float64)
        return probs / probs.sum(axis=1, keepdims=True)

    def record(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "best_round": self.best_round, "stopped_by": self.stopped_by}

    def model_text(self) -> str:
        return self.booster.model_to_string(num_iteration=self.best_round)


def params(options, *, n_classes: int, seed: int, threads: int) -> dict[str, Any]:
    """LightGBM parameters for ``options`` (a BDTOptions)."""
    return {
        "objective": "multiclass",
        "num_class": n_classes,
        "metric": "multi_logloss",
        "learning_rate": options.learning_rate,
        "num_leaves": options.num_leaves,
        "min_child_samples": options.min_child_samples,
        "feature_fraction": options.feature_fraction,
        "bagging_fraction": options.bagging_fraction,
        "bagging_freq": 1 if options.bagging_fraction < 1 else 0,
        "lambda_l2": options.l2,
        "seed": seed,
        "num_threads": threads,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }


def fit(options, train, val, *, n_classes: int, seed: int, threads: int = 1) -> Fitted:
    import lightgbm as lgb

    (x_train, y_train), (x_val, y_val) = train, val
    train_set = lgb.Dataset(x_train, label=y_train, free_raw_data=False)
    val_set = lgb.Dataset(x_val, label=y_val, reference=train_set, free_raw_data=False)
    history: dict = {}
    booster = lgb.train(
        params(options, n_classes=n_classes, seed=seed, threads=threads),
        train_set,
        num_boost_round=options.max_rounds,
        valid_sets=[val_set],
        valid_names=["val"],
        callbacks=[
            lgb.early_stopping(options.early_stopping_rounds, verbose=False),
            lgb.record_evaluation(history),
        ],
    )
    val_history = [float(v) for v in history["val"]["multi_logloss"]]
    rounds = len(val_history)
    best = int(booster.best_iteration) or rounds
    # early stopping fired: patience rounds without a better validation loss (at the cap or before it)
    stopped_by = "converged" if rounds - best >= options.early_stopping_rounds else "budget"
    return Fitted(booster, rounds, best, stopped_by, val_history)

"""A synthetic study: run directories in the training output format, with known scaling behaviour.

Used by the tests and for trying the evaluate → collect → fit → report chain without training anything.
Each cell gets ``metrics.json`` and ``predictions.parquet`` (jet_id, label, score_<class>). Test jets are drawn
per class; logits are Gaussian noise plus a flavor signal on the true class and on its charge partner:
    z[true] += a(n),  z[partner] += a(n)·(1 − c(n))
so a(n) sets the flavor-tag efficiency and c(n) the charge separation (c = 0: charge-flip rate 1/2).
Model "part" gets a sharp S-curve in c(n) around ``N_C_TRUE`` (a threshold); the others grow smoothly. A fitted
model's cells (the ``bdt`` baseline) get null parameter counts, FLOPs and samples, as ``jetscale.train.fitted``
writes them.
"""

from __future__ import annotations

import json

import numpy as np

from .. import paths
from ..grid import cell_id, cells
from ..models.catalog import is_fitted
from ..paths import results_root, run_dir

N_C_TRUE = 2000.0
N_PARAMS = {"particlenet": 36_000, "part": 210_000, "bbt_neutron": 820_000}
FLOPS_PER_JET = {"particlenet": 2.1e7, "part": 1.3e8, "bbt_neutron": 9.0e8}


def signal(model: str, n: float) -> tuple[float, float]:
    """(flavor signal a, charge separation c) of ``model`` after ``n`` training jets."""
    rank = {"particlenet": 0, "part": 1, "bbt_neutron": 2}.get(model, 0)
    a = 1.0 + 3.5 * (1 - (n / 100.0) ** -(0.25 + 0.05 * rank))
    if model == "part":
        c = 0.05 + 0.9 / (1 + (n / N_C_TRUE) ** -4.0)
    else:
        c = 0.8 * (1 - (n / 50.0) ** -(0.15 + 0.05 * rank))
    return a, c


def synthetic_predictions(
    classes: list[str], pairs: dict, model: str, n_train: int, seed: int, jets_per_class: int = 200
):
    import pandas as pd

    rng = np.random.default_rng([seed, n_train, len(model)])
    partner = {}
    for qq, qb in pairs.values():
        partner[classes.index(qq)], partner[classes.index(qb)] = classes.index(qb), classes.index(qq)
    a, c = signal(model, n_train)
    a *= 1 + 0.03 * rng.normal()  # seed-to-seed training variation
    labels = np.repeat(np.arange(len(classes)), jets_per_class)
    z = rng.normal(0.0, 1.0, (labels.size, len(classes)))
    z[np.arange(labels.size), labels] += a
    for k, p in partner.items():
        z[labels == k, p] += a * (1 - c)
    scores = np.exp(z - z.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    df = pd.DataFrame({"jet_id": np.arange(labels.size), "label": labels})
    for k, name in enumerate(classes):
        df[f"score_{name}"] = scores[:, k].astype(np.float32)
    return df


def write_synthetic_study(
    cfg: dict, *, jets_per_class: int = 200, skip: tuple[str, ...] = (), fail: tuple[str, ...] = ()
) -> list[str]:
    """Write every cell's run directory under the config's results root; return the cell ids written."""
    root = results_root(cfg)
    written = []
    for cell in cells(cfg):
        cid = cell_id(cfg, cell)
        if cid in skip:
            continue
        run = run_dir(root, cid)
        run.mkdir(parents=True, exist_ok=True)
        if cid in fail:
            (run / paths.FAILURE).write_text(json.dumps({"reason": "non-finite loss at step 12"}))
            continue
        model, n_train = cell["model"], int(cell["n_train"])
        df = synthetic_predictions(
            list(cfg["classes"]), cfg["flavor_pairs"], model, n_train, int(cell["seed"]), jets_per_class
        )
        df.to_parquet(run / paths.PREDICTIONS, index=False)
        samples = int(np.clip(20 * n_train, 6000, 60000))
        p_true = df[[f"score_{c}" for c in cfg["classes"]]].to_numpy()[np.arange(len(df)), df["label"]]
        loss = float(-np.log(np.clip(p_true, 1e-15, 1)).mean())
        fitted = is_fitted(model)  # the bdt baseline: no parameter count, FLOPs or sample stream (null)
        metrics = {
            "cell": cell,
            "cell_id": cid,
            "n_params": None if fitted else N_PARAMS.get(model, 10_000),
            "flops_per_jet": None if fitted else FLOPS_PER_JET.get(model, 1e7),
            "train_flops": None if fitted else 3 * FLOPS_PER_JET.get(model, 1e7) * samples,
            "samples_seen": None if fitted else samples,
            "wall_time_s": 1.0 + samples * 1e-4,
            "hardware": {"device": "cpu", "threads": 1},
            "val_loss": loss * 1.01,
            "val_accuracy": 0.5,
            "test_loss": loss,
            "test_accuracy": 0.5,
            "settings": {},
            "settings_hash": "0" * 16,
        }
        (run / paths.METRICS).write_text(json.dumps(metrics))
        written.append(cid)
    return written

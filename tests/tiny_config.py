"""The one builder of study configs for the tests: the default ``config.yaml`` (:func:`default_raw_config`), or
shrunk to a few jets and cells (:func:`tiny_raw_config`, :func:`tiny_config`).

Every test module that trains or plans tiny cells builds its config here, naming only what it changes:

    cfg = tiny_config(("bbt_neutron",), width=16, tokenizer={"max_bytes": 256})

Pair a config with ``jetscale.data.testing.write_synthetic_splits(dir, cfg["classes"], {"train": 66, "val": 33,
"test": 33}, n_particles=cfg["data"]["n_particles"])``. The end-to-end Snakemake tests run the study file
``tests/data/tiny_study.yaml`` (:func:`tiny_study_raw`; ``study_helpers.tiny_study`` writes it to a scratch dir).
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

#: short, deterministic fixed-budget training: 16 jets a step, an evaluation every 48 samples, a checkpoint every
#: 3 steps and no early stop
TINY_TRAINING = {
    "batch_size": 16,
    "eval_every_samples": 48,
    "checkpoint_every_steps": 3,
    "early_stopping_patience": None,
}

#: one pretraining pass over 16 jets, 8 a step, its loss scored on 10 jets
TINY_PRETRAINING = {"batch_size": 8, "compute": {"epochs": 1, "min_samples": 16, "max_samples": 16}, "eval_jets": 10}


def default_raw_config(results: str | Path | None = None, *, per_model: dict | None = None, **axes) -> dict:
    """The default ``config.yaml`` as a fresh dict: ``results`` replaces the results directory, ``axes`` are set
    in ``grid.axes`` and ``per_model``, when given, replaces ``grid.per_model``."""
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    if results is not None:
        raw["results"] = str(results)
    raw["grid"]["axes"].update(axes)
    if per_model is not None:
        raw["grid"]["per_model"] = per_model
    return raw


def tiny_study_raw(**overrides) -> dict:
    """``tests/data/tiny_study.yaml`` (the end-to-end Snakemake study) as a fresh dict, top-level ``overrides`` set."""
    raw = yaml.safe_load((REPO / "tests" / "data" / "tiny_study.yaml").read_text())
    raw.update(overrides)
    return raw


def _values(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def tiny_raw_config(
    models=("particlenet",),
    *,
    width=8,
    n_train=44,
    compute=160,
    seed=0,
    n_particles: int = 16,
    jets_per_class: int | None = 40,
    val_per_class: int = 3,
    test_per_class: int = 3,
    per_model: dict | None = None,
    training: dict = TINY_TRAINING,
    tokenizer: dict | None = None,
    model_options: dict | None = None,
    pretraining: dict | None = None,
    **axes,
) -> dict:
    """The default config (unvalidated) with a tiny data set and grid.

    ``width``, ``n_train``, ``compute``, ``seed``: a value or a list of values for that axis; further ``axes``
    (``pretrain=[...]``, ...) are set as given. ``per_model`` replaces ``grid.per_model`` (default: none, so the
    default study's per-model sizes and seeds do not override the axes). ``training`` is merged over the default
    training section (``{}`` keeps it as it is). ``tokenizer`` is merged over BBT-Neutron's tokenizer;
    ``model_options`` replaces whole ``models.<name>`` entries; ``pretraining`` replaces the pretraining section.
    ``jets_per_class=None`` keeps the default generation size (for tests that generate nothing).
    """
    raw = default_raw_config()
    raw["data"].update({"n_particles": n_particles, "val_per_class": val_per_class, "test_per_class": test_per_class})
    if jets_per_class is not None:
        raw["data"]["generate"]["jets_per_class"] = jets_per_class
    raw["grid"]["axes"].update(
        {
            "model": list(models),
            "width": _values(width),
            "n_train": _values(n_train),
            "compute": _values(compute),
            "seed": _values(seed),
        },
        **axes,
    )
    raw["grid"]["per_model"] = dict(per_model or {})
    if tokenizer:
        raw["models"]["bbt_neutron"]["tokenizer"].update(tokenizer)
    for name, options in (model_options or {}).items():
        raw["models"][name] = copy.deepcopy(options)
    raw["training"].update(training)
    if pretraining is not None:
        raw["pretraining"] = copy.deepcopy(pretraining)
    return raw


def tiny_config(*args, **kwargs) -> dict:
    """:func:`tiny_raw_config`, loaded and validated."""
    from jetscale.config import load_config

    return load_config(tiny_raw_config(*args, **kwargs))

"""What determines a run's result: the resolved settings of a training cell and of a pretraining backbone's
fine-tuning, their hash (which decides reuse), and the fingerprint of the data a results directory holds.

Above the config (it reads a validated one) and the grid; below everything that trains, plans or collects.
"""

from __future__ import annotations

import copy
import hashlib
import json

from .config import extra_axis_settings, set_nested, training_settings, uses_pretraining
from .inputs.spec import is_raw, model_inputs
from .models import catalog
from .pretrain.plan import backbone_key, backbone_settings


def resolve_settings(cfg: dict, cell: dict) -> dict:
    """Everything that determines one training run's result, as plain JSON-able data.

    Two runs with equal resolved settings are interchangeable, so this (and its hash) decides reuse. The
    ``training`` section enters whole except its run knobs (schema ``x-run-knob``: threads, device, compile,
    processes, checkpoint cadence; the jets seen and the averaged gradients do not depend on them) and keys
    at a default that reproduces what ran before they existed (schema ``x-hash-omit-default``: precision
    'auto') and keys of the other kind of budget (schema ``x-budget``: ``stopping`` for compute 'auto';
    ``warmup_fraction``, ``eval_every_samples``, ``early_stopping_patience`` for a numeric compute). Model
    options enter as written in the config (defaults live in the model's options dataclass); a fine-tuning
    cell's also hold those of ``pretraining.methods.<method>`` that are the model's own options.
    """
    model = cell["model"]
    model_spec = catalog.get(model)
    if model_spec.fitted:
        return fitted_settings(cfg, cell)
    training = training_settings(cfg, cell)
    model_options = copy.deepcopy(cfg.get("models", {}).get(model, {}))
    finetune = uses_pretraining(cfg) and cell.get("pretrain", "none") != "none"
    if finetune:
        # The classifier has its backbone's architecture: the method's options that are this model's own,
        # merged over models.<model> as the pretraining job merged them (none: settings as before).
        method_options = (cfg.get("pretraining", {}).get("methods") or {}).get(cell["pretrain"]) or {}
        model_options.update(copy.deepcopy(model_spec.own_options(method_options)))
    for keys, value in extra_axis_settings(cfg, cell, "model"):
        set_nested(model_options, keys, value)
    # a model from the user's file: its content, not where it lies, determines the result
    source = {}
    if model_spec.source is not None:
        model_options.pop("source", None)
        source = {"model_source": {"sha256": model_spec.source.sha256}}
    revision = {"model_revision": model_spec.revision} if model_spec.revision > 1 else {}
    # the declared input spec; the split's raw features (what every model saw before specs) add nothing,
    # so those cells keep their hashes
    features = model_inputs(cfg, model)
    inputs = {} if is_raw(features) else {"inputs": features}
    settings = {
        "model": model,
        **revision,
        "width": cell["width"],
        "n_train": cell["n_train"],
        "compute": cell["compute"],
        "seed": cell["seed"],
        "classes": list(cfg["classes"]),
        "n_particles": cfg["data"]["n_particles"],
        "model_options": model_options,
        **source,
        **inputs,
        "training": training,
    }
    if finetune:  # from scratch: no key, hashes unchanged
        settings["pretrain"] = finetune_settings(cfg, cell)
    return settings


def fitted_settings(cfg: dict, cell: dict) -> dict:
    """A fitted model's cell settings (catalog kind "fitted", the bdt baseline): its model, revision, subset,
    seed, classes, padding and options (as written in the config, its ``model.`` axes applied). No width,
    compute or training section: it has none, so retuning the networks' recipe never refits it."""
    model = cell["model"]
    spec = catalog.get(model)
    options = copy.deepcopy(cfg.get("models", {}).get(model) or {})
    for keys, value in extra_axis_settings(cfg, cell, "model"):
        set_nested(options, keys, value)
    return {
        "model": model,
        **({"model_revision": spec.revision} if spec.revision > 1 else {}),
        "kind": spec.kind,
        "n_train": cell["n_train"],
        "seed": cell["seed"],
        "classes": list(cfg["classes"]),
        "n_particles": cfg["data"]["n_particles"],
        "model_options": options,
    }


def settings_hash(settings: dict) -> str:
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def data_fingerprint(cfg: dict) -> str:
    """Hash of everything that determines the data set and splits (a results dir belongs to one)."""
    data = copy.deepcopy(cfg["data"])
    if data["source"] == "generate":
        data.pop("ingest", None)
    else:
        data.pop("generate", None)
    blob = json.dumps({"data": data, "classes": cfg["classes"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def finetune_settings(cfg: dict, cell: dict) -> dict:
    """The part of a fine-tuning cell's settings that says what it loads and how it trains it."""
    key = backbone_key(cell)
    out = {
        "method": key[0],
        "n_pretrain": key[3],
        "mode": cell["finetune"],
        "backbone_hash": settings_hash(backbone_settings(cfg, key)),
    }
    if cell["finetune"] == "catchup":
        ft = cfg["pretraining"]["finetune"]
        out["catchup_steps"], out["catchup_ramp_steps"] = ft["catchup_steps"], ft["catchup_ramp_steps"]
    return out

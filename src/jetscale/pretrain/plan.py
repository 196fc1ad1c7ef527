"""Which backbone a fine-tuning cell names, and the settings that determine a pretraining job (torch-free).

A backbone is identified by ``method~<m>/model~<model>/width~<w>/n_pretrain~<n>`` (its directory under
``results/pretrain/``). Every fine-tuning cell with those values shares it, whatever its n_train, seed or
fine-tuning mode: one pretraining job per backbone. Its settings (and their hash, which decides reuse and is
part of every fine-tuning cell's settings) hold everything that changes the pretrained weights: with
``pretraining.pool``, the pool files' fingerprint too (a changed pool re-pretrains).
"""

from __future__ import annotations

import copy
import re

from ..data.pool import pool_settings
from ..grid import SEP
from ..inputs.spec import is_raw, model_inputs
from ..models import catalog
from . import NONE, method

RUN_KNOBS = ("checkpoint_every_steps",)  # pretraining keys that do not change the weights (not hashed)


def is_finetune(cell: dict) -> bool:
    """A cell of a pretraining method (an extra axis that happens to be called 'pretrain' never is)."""
    from . import METHODS

    value = cell.get("pretrain", NONE)
    return isinstance(value, str) and value in METHODS


def backbone_key(cell: dict) -> tuple[str, str, int, int]:
    """(method, model, width, n_pretrain) of the backbone a fine-tuning cell loads."""
    return (cell["pretrain"], cell["model"], int(cell["width"]), int(cell["n_pretrain"]))


# The backbone id's fields and the pattern of each value: the id format and the regex that matches it (the
# pretrain rule's wildcard constraint) are both built from this one table.
ID_FIELDS = (("method", r"[^/]+"), ("model", r"[^/]+"), ("width", r"\d+"), ("n_pretrain", r"\d+"))
BACKBONE_ID_REGEX = "/".join(f"{name}{SEP}{pattern}" for name, pattern in ID_FIELDS)
_ID_PARSER = re.compile("/".join(f"{name}{SEP}(?P<{name}>{pattern})" for name, pattern in ID_FIELDS))


def backbone_id(key: tuple[str, str, int, int]) -> str:
    return "/".join(f"{name}{SEP}{value}" for (name, _), value in zip(ID_FIELDS, key, strict=True))


def parse_backbone_id(text: str) -> tuple[str, str, int, int]:
    match = _ID_PARSER.fullmatch(text.strip("/"))
    if match is None:
        raise ValueError(f"backbone id {text!r}: expected method~M/model~MODEL/width~W/n_pretrain~N")
    key = (match["method"], match["model"], int(match["width"]), int(match["n_pretrain"]))
    if backbone_id(key) != text.strip("/"):
        raise ValueError(f"backbone id {text!r}: not in canonical form (expected {backbone_id(key)!r})")
    return key


def study_backbones(cfg: dict) -> dict[str, tuple[str, str, int, int]]:
    """backbone id -> key for every backbone a fine-tuning cell of the study names (sorted)."""
    from ..grid import cells

    keys = {backbone_key(c) for c in cells(cfg) if is_finetune(c)}
    scan = cfg.get("pretraining", {}).get("loss_scan") or {}
    methods = {k[0]: k[1] for k in keys if "methods" not in scan or k[0] in scan["methods"]}
    for name, model in methods.items():
        widths = scan.get("width") or sorted({k[2] for k in keys if k[0] == name})
        for width in widths:
            for n in scan.get("n_pretrain") or []:
                keys.add((name, model, int(width), int(n)))
    return {backbone_id(k): k for k in sorted(keys)}


def backbone_settings(cfg: dict, key: tuple[str, str, int, int]) -> dict:
    """Everything that determines the pretrained weights of backbone ``key``, as plain JSON-able data."""
    name, model, width, n_pretrain = key
    spec = method(name)
    if spec.backbone != model:
        raise ValueError(f"pretraining method {name!r} pretrains {spec.backbone!r}, not {model!r}")
    p = copy.deepcopy(cfg["pretraining"])
    for knob in RUN_KNOBS:
        p.pop(knob, None)
    options = p.pop("methods", {}).get(name, {}) or {}
    p.pop("finetune", None)  # fine-tuning settings belong to the cells
    p.pop("loss_scan", None)  # which backbones exist, not how one is trained
    p.pop("pool", None)  # its globs: what they match enters as a fingerprint (below)
    if p.get("lr") is None:
        p["lr"] = catalog.get(model).default_lr
    revision = {"model_revision": catalog.get(model).revision} if catalog.get(model).revision > 1 else {}
    # The backbone sees the inputs its classifier will see (raw: nothing added, so those hashes stay).
    features = model_inputs(cfg, model)
    inputs = {} if is_raw(features) else {"inputs": features}
    pool = pool_settings(cfg)  # None (no key, hashes as before) for the training split's tail
    return {
        "method": name,
        "model": model,
        **revision,
        "width": width,
        "n_pretrain": n_pretrain,
        "classes": list(cfg["classes"]),
        "n_particles": cfg["data"]["n_particles"],
        "model_options": copy.deepcopy(cfg.get("models", {}).get(model, {})),
        "method_options": options,
        **inputs,
        **({"pool": pool} if pool is not None else {}),
        "pretraining": p,
    }

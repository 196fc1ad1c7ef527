"""Pretraining jobs -> tables the fits and the report read (``results/tables/pretrain*.csv``).

``pretrain.csv``: one row per backbone: backbone_id, method, model, width, n_pretrain, final_loss (training,
last log window), final_val_loss (held-out validation jets), n_params, n_backbone_params, flops_per_jet,
train_flops, samples_seen, wall_time_s. ``pretrain_curves.csv``: every logged row of every job
(backbone_id, method, model, width, n_pretrain, step, samples, flops, loss, val_loss): the loss curves.
``pretrain_quality.csv`` (generative backbones, e.g. vq_gpt): one row per backbone × quantity (kind
``feature`` / ``observable``: W1 distance of generated and of tokenized-then-reconstructed jets to held-out
real jets; kind ``codebook``: usage). A backbone without its ``pretrain.json`` is listed in none of them (the
collect step reports it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import paths
from ..io import atomic_path
from ..paths import pretrain_dir, results_root, runs_table

RECORD_COLUMNS = (
    "backbone_id",
    "method",
    "model",
    "width",
    "n_pretrain",
    "final_loss",
    "final_val_loss",
    "n_params",
    "n_backbone_params",
    "flops_per_jet",
    "train_flops",
    "samples_seen",
    "wall_time_s",
)
CURVE_COLUMNS = ("step", "samples", "flops", "loss", "val_loss")
QUALITY_KEYS = ("backbone_id", "method", "model", "width", "n_pretrain")
QUALITY_COLUMNS = (*QUALITY_KEYS, "kind", "name", "generated", "reconstructed")


def pretrain_tables_paths(root: Path) -> tuple[Path, Path]:
    tables = runs_table(root).parent
    return tables / paths.PRETRAIN_TABLE, tables / paths.PRETRAIN_CURVES


def pretrain_quality_path(root: Path) -> Path:
    return runs_table(root).parent / paths.PRETRAIN_QUALITY


def quality_rows(rec: dict) -> list[dict]:
    """Long-format rows of a record's generative ``quality`` (none for a method without one)."""
    q = rec.get("quality") or {}
    if not q:
        return []
    keys = {k: rec[k] for k in QUALITY_KEYS}
    rows = []
    for kind, block in (("feature", "features"), ("observable", "observables")):
        generated = q.get("w1_generated", {}).get(block, {})
        reconstructed = q.get("w1_reconstructed", {}).get(block, {})
        for name, value in generated.items():
            rows.append(
                {**keys, "kind": kind, "name": name, "generated": value, "reconstructed": reconstructed.get(name)}
            )
    for name in ("fraction_used", "perplexity"):
        value = q.get("quality", {}).get("usage", {}).get(name)
        if value is not None:
            rows.append({**keys, "kind": "codebook", "name": name, "generated": None, "reconstructed": value})
    multiplicity = q.get("mean_multiplicity") or {}
    if multiplicity:
        rows.append(
            {
                **keys,
                "kind": "multiplicity",
                "name": "mean particles per jet (real: reconstructed column)",
                "generated": multiplicity.get("generated"),
                "reconstructed": multiplicity.get("real"),
            }
        )
    return rows


def collect_pretraining(cfg: dict, backbone_ids: list[str], *, quiet: bool = False) -> tuple[Path, Path]:
    import pandas as pd

    root = results_root(cfg)
    records, curves, quality = [], [], []
    for bid in backbone_ids:
        folder = pretrain_dir(root, bid)
        path = folder / paths.PRETRAIN_RECORD
        if not path.is_file():
            if not quiet:
                print(f"jetscale collect: backbone {bid}: no pretrain.json (not pretrained yet)", file=sys.stderr)
            continue
        rec = json.loads(path.read_text())
        records.append({k: rec.get(k) for k in RECORD_COLUMNS})
        quality += quality_rows(rec)
        log = folder / paths.PRETRAIN_LOG
        if log.is_file():
            frame = pd.read_csv(log)
            for key in ("backbone_id", "method", "model", "width", "n_pretrain"):
                frame[key] = rec[key]
            curves.append(frame[["backbone_id", "method", "model", "width", "n_pretrain", *CURVE_COLUMNS]])
    rec_path, curve_path = pretrain_tables_paths(root)
    rec_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(rec_path) as tmp:
        pd.DataFrame(records, columns=RECORD_COLUMNS).to_csv(tmp, index=False, lineterminator="\n")
    frame = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=["backbone_id", *CURVE_COLUMNS])
    with atomic_path(curve_path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")
    with atomic_path(pretrain_quality_path(root)) as tmp:
        pd.DataFrame(quality, columns=QUALITY_COLUMNS).to_csv(tmp, index=False, lineterminator="\n")
    return rec_path, curve_path

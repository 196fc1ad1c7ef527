"""`jetscale export`: a trained cell's network for other frameworks."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("export", help="a trained cell's network as ONNX + a JSON sidecar (inputs, statistics)")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--cell", required=True, help="the cell id, e.g. model~bbt_neutron/width~32/...")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", type=Path, help="directory for <model>.onnx and <model>.onnx.json (default: <run>/export)")
    p.add_argument("--splits", type=Path, help="the study's splits (default: <results>/data/splits)")
    p.set_defaults(func=_export)


def _export(args) -> int:
    from ..config import load_config
    from .onnx import export_cell

    cfg = load_config(args.config)
    sidecar = export_cell(cfg, args.cell, args.out, args.splits)
    print(json.dumps({k: sidecar[k] for k in ("file", "cell_id", "settings_hash", "verified")}, indent=1))
    return 0

"""`jetscale pretrain`: one pretraining job (a backbone shared by fine-tuning cells); torch loads lazily."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="pretrain one backbone on unlabelled jets (resumes from its checkpoint)")
    p.add_argument("--config", default="config.yaml", help="study config (YAML)")
    p.add_argument(
        "--backbone", required=True, help="backbone id, e.g. method~mpm/model~part/width~16/n_pretrain~20000"
    )
    p.add_argument("--splits", default="results/data/splits", help="splits directory (labels are not read)")
    p.add_argument("--out", required=True, help="backbone directory (backbone.pt, pretrain.json, ...)")
    p.add_argument("--threads", type=int, default=None, help="override training.threads")
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: preemption
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import signals
    from ..config import load_config
    from ..errors import ConfigError
    from .plan import parse_backbone_id

    cfg = load_config(args.config)
    if args.threads:
        cfg["training"]["threads"] = args.threads
    try:
        parse_backbone_id(args.backbone)
    except ValueError as exc:
        raise ConfigError(f"--backbone: {exc}") from None
    from .loop import pretrain_backbone

    with signals.stop_on_signals():
        try:
            record = pretrain_backbone(
                cfg, args.backbone, args.splits, args.out, stop_after_steps=args.stop_after_steps
            )
        except signals.StopForCheckpoint as exc:
            print(f"jetscale pretrain: {exc}", file=sys.stderr)
            return signals.EXIT_REQUEUE
    keys = ("backbone_id", "final_loss", "final_val_loss", "samples_seen", "train_flops", "wall_time_s")
    print(json.dumps({k: record[k] for k in keys}))
    return 0

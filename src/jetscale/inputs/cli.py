"""`jetscale input-stats`: record the input statistics of one training subset beside the splits."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "input-stats", help="per-feature quantiles of the first n_train training jets (for input standardisation)"
    )
    p.add_argument("--splits", default="results/data/splits", help="splits directory")
    p.add_argument("--n-train", type=int, required=True, help="size of the nested training subset")
    p.add_argument("--out", default=None, help="output JSON (default: <splits>/../input_stats/n_train~N.json)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .stats import stats_path, write_stats

    record = write_stats(args.splits, args.n_train, args.out)
    out = args.out or stats_path(args.splits, args.n_train)
    print(json.dumps({"out": str(out), "n_jets": record["n_jets"], "n_particles": record["n_particles"]}))
    return 0

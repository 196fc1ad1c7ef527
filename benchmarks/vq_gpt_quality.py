"""Token quality and generation quality of a small vq_gpt backbone (OmniJet-alpha) trained from scratch here.

    .venv/bin/python benchmarks/vq_gpt_quality.py [--shards DIR] [--jets 2000] [--codebook 512] ...

Jets: the shards in ``--shards`` (e.g. from ``jetscale generate --events-per-class 250 --out DIR``), padded to
``--n-particles``; without ``--shards``, synthetic jets (``jetscale.data.testing``). The last ``--held`` jets are
never trained on. Prints (JSON): the tokenizer's reconstruction loss first → last step, codebook usage and
per-feature resolution (std, IQR of reco − true) on the held-out jets, the GPT's next-token loss on the
held-out jets before → after training, and Wasserstein-1 distances per feature and per jet observable between
generated and held-out jets, next to those between reconstructed and held-out jets (the tokenization floor).
Labels are never read. One torch thread; wrap in ``flock /tmp/jetscale-cpu.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import glob
import json
import time

import numpy as np
import torch

from jetscale.data.splits import pad
from jetscale.data.store import JetTable, read_shard
from jetscale.data.testing import synthetic_table
from jetscale.models.registry import batch_tensors
from jetscale.pretrain import vq_gpt

FEATURES_SHOWN = ("deta", "dphi", "log_pt", "log_e", "d0", "z0", "charge")


def load(args) -> dict:
    if args.shards:
        table = JetTable.concat([read_shard(p) for p in sorted(glob.glob(f"{args.shards}/*.parquet"))])
    else:
        table = synthetic_table(args.jets, 11, seed=0)
    rows = np.random.default_rng(0).permutation(len(table))[: args.jets]
    dense = pad(table.take(np.sort(rows)), args.n_particles)
    return vq_gpt.prepare_inputs(dense["features"], dense["mask"])


@torch.no_grad()
def held_loss(obj, arrays) -> float:
    obj.eval()
    n = len(arrays["mask"])
    total = sum(
        float(obj.loss(batch_tensors(arrays, slice(s, min(n, s + 256))))[0]) * min(256, n - s) for s in range(0, n, 256)
    )
    obj.train()
    return total / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", help="directory of shard-*.parquet files (default: synthetic jets)")
    ap.add_argument("--jets", type=int, default=2000)
    ap.add_argument("--held", type=int, default=400)
    ap.add_argument("--n-particles", type=int, default=64)
    ap.add_argument("--codebook", type=int, default=512)
    ap.add_argument("--vq-steps", type=int, default=1000)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--gpt-steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--tokenizer", default="mlp", choices=["mlp", "transformer"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    arrays = load(args)
    n = len(arrays["mask"])
    train = {k: v[: n - args.held] for k, v in arrays.items()}
    held = {k: v[n - args.held :] for k, v in arrays.items()}
    options = {
        "codebook_size": args.codebook,
        "vq_steps": args.vq_steps,
        "n_layers": args.layers,
        "tokenizer": args.tokenizer,
        "max_particles": args.n_particles,
    }
    obj = vq_gpt.build("vq_gpt", args.width, train["x"].shape[1], 11, options, seed=0)
    t0 = time.perf_counter()
    stats = vq_gpt.prepare(obj, train, seed=0)
    t_vq = time.perf_counter() - t0
    before = held_loss(obj, held)
    optimizer = torch.optim.AdamW([p for p in obj.parameters() if p.requires_grad], lr=args.lr)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(args.gpt_steps):
        idx = np.sort(rng.choice(len(train["mask"]), args.batch, replace=False))
        loss, _ = obj.loss(batch_tensors(train, idx))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    t_gpt = time.perf_counter() - t0
    after = held_loss(obj, held)
    ev = vq_gpt.evaluate(obj, held, seed=0, n_samples=args.samples)
    res = ev["quality"]["resolution"]
    shown = [f for f in FEATURES_SHOWN if f in res]
    print(
        json.dumps(
            {
                "jets": {"train": n - args.held, "held_out": args.held, "source": args.shards or "synthetic"},
                "tokenizer": {
                    "reco_loss_first_last": [
                        stats["tokenizer"]["first_reco_loss"],
                        stats["tokenizer"]["final_reco_loss"],
                    ],
                    "reseeded_codes": stats["tokenizer"]["reseeded_codes"],
                    "usage_held_out": ev["quality"]["usage"],
                    "resolution_held_out": {f: {k: round(res[f][k], 4) for k in ("std", "iqr")} for f in shown},
                    "wall_s": round(t_vq, 1),
                },
                "gpt": {"held_out_loss_before_after": [round(before, 4), round(after, 4)], "wall_s": round(t_gpt, 1)},
                "w1_generated": {k: round(v, 4) for k, v in ev["w1_generated"]["observables"].items()}
                | {f: round(ev["w1_generated"]["features"][f], 4) for f in shown},
                "w1_reconstructed": {k: round(v, 4) for k, v in ev["w1_reconstructed"]["observables"].items()}
                | {f: round(ev["w1_reconstructed"]["features"][f], 4) for f in shown},
                "mean_multiplicity": ev["mean_multiplicity"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

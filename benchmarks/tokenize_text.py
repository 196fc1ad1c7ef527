"""Text-mode byte tokenization throughput (jets/s): the reference Python loop vs the vectorised encoder.

    python benchmarks/tokenize_text.py                       # 2,000 synthetic jets, precision 4, max_bytes 1024
    python benchmarks/tokenize_text.py --jets 5000 --max-bytes 16384 --repeats 5

Synthetic jets (``jetscale.data.testing``, ~24 of 64 particles, 19 float32 features) go through
``ByteTokenizer._encode_text_reference`` (the original per-particle loop) and ``ByteTokenizer.encode``
(vectorised); the best of ``--repeats`` runs is reported, and the two outputs are checked to be identical.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from jetscale.data.testing import synthetic_jets
from jetscale.tokenize.bytes import ByteTokenizer


def best_time(fn, repeats: int) -> tuple[float, tuple]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jets", type=int, default=2000)
    ap.add_argument("--particles", type=int, default=64)
    ap.add_argument("--precision", type=int, default=4)
    ap.add_argument("--max-bytes", type=int, nargs="+", default=[1024, 16384])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    jets = synthetic_jets(args.jets, 11, n_particles=args.particles, seed=0)
    features, mask = jets["features"], jets["mask"]
    print(
        f"{args.jets} jets, {mask.sum() / args.jets:.1f} particles/jet on average, {features.shape[2]} features, "
        f"precision {args.precision}"
    )
    for max_bytes in args.max_bytes:
        tok = ByteTokenizer(mode="text", precision=args.precision, patch_size=16, max_bytes=max_bytes)
        t_ref, ref = best_time(lambda tok=tok: tok._encode_text_reference(features, mask), args.repeats)
        t_vec, vec = best_time(lambda tok=tok: tok.encode(features, mask), args.repeats)
        same = np.array_equal(ref[0], vec[0]) and np.array_equal(ref[1], vec[1])
        print(
            f"max_bytes={max_bytes:6d} truncated={int(vec[1].sum()):5d}  reference {args.jets / t_ref:10.0f} jets/s  "
            f"vectorised {args.jets / t_vec:10.0f} jets/s  speed-up {t_ref / t_vec:5.1f}x  identical={same}"
        )
        if not same:
            raise SystemExit("vectorised text encoding differs from the reference")


if __name__ == "__main__":
    main()

"""Generator throughput: events/s per core for the full chain vs bare Pythia generation, in the same run.

    .venv/bin/python benchmarks/generate.py [--events 5000] [--modes b c s u d g] [--detector JSON]
        [--process zh_nunu|nunu_h] [--clustering JSON]

For each Higgs decay mode, one process (one core):
  bare Pythia : init + nextBatch (the awkward event record), nothing else
  full chain  : init + nextBatch + detector + Durham jets + truth labels + features + zstd parquet shard
Same seed and event count for both. Prints events/s per core, the overhead ratio (full time / bare time; aim
<= 1.5) and the peak resident memory of this process (resource.getrusage).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

from jetscale.data.generate import (
    DEFAULT_CLASSES,
    EVENTS_PER_BATCH,
    Task,
    clustering_key,
    detector_key,
    make_pythia,
    run_task,
)
from jetscale.data.store import write_shard


def bare_pythia(task: Task) -> float:
    start = time.perf_counter()
    pythia = make_pythia(task.mode, task.seed, task.sqrt_s, task.process, task.decay_volume())
    n_events = task.n_events
    done = 0
    while done < n_events:
        n = min(EVENTS_PER_BATCH, n_events - done)
        pythia.nextBatch(n, errorMode="skip")
        done += n
    return time.perf_counter() - start


def full_chain(task: Task, out_dir: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    table = run_task(task)
    path = write_shard(table, os.path.join(out_dir, f"bench-{task.mode}.parquet"))
    return time.perf_counter() - start, len(table), os.path.getsize(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="events per decay mode (default 5000)")
    parser.add_argument("--modes", nargs="+", default=["b", "c", "s", "u", "d", "g"])
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--detector", default=None, help="JSON object of data.generate.detector overrides")
    parser.add_argument("--process", default="zh_nunu", help="zh_nunu | nunu_h")
    parser.add_argument("--clustering", default=None, help="JSON object of data.generate.clustering")
    args = parser.parse_args()
    detector = detector_key(json.loads(args.detector) if args.detector else None)
    clustering = clustering_key(json.loads(args.clustering) if args.clustering else None)
    os.environ.setdefault("JETSCALE_NO_PROGRESS", "1")
    print(f"{'mode':>4} {'bare ev/s':>10} {'full ev/s':>10} {'ratio':>6} {'jets/s':>8} {'B/jet':>6}")
    tot_bare = tot_full = tot_jets = tot_bytes = 0.0
    with tempfile.TemporaryDirectory() as out_dir:
        for mode in args.modes:
            task = Task(mode, args.events, args.seed, DEFAULT_CLASSES, detector, 240.0, args.process, clustering)
            t_bare = bare_pythia(task)
            t_full, n_jets, size = full_chain(task, out_dir)
            tot_bare, tot_full, tot_jets, tot_bytes = (
                tot_bare + t_bare,
                tot_full + t_full,
                tot_jets + n_jets,
                tot_bytes + size,
            )
            print(
                f"{mode:>4} {args.events / t_bare:10.0f} {args.events / t_full:10.0f} {t_full / t_bare:6.2f} "
                f"{n_jets / t_full:8.0f} {size / n_jets:6.0f}"
            )
    n = args.events * len(args.modes)
    print(
        f"{'all':>4} {n / tot_bare:10.0f} {n / tot_full:10.0f} {tot_full / tot_bare:6.2f} "
        f"{tot_jets / tot_full:8.0f} {tot_bytes / tot_jets:6.0f}"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"events/s per core: bare Pythia {n / tot_bare:.0f}, full chain {n / tot_full:.0f}; "
        f"overhead ratio {tot_full / tot_bare:.2f} (aim <= 1.5); peak RSS {peak_mb:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

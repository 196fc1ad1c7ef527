"""Peak memory of a training run on a large training set: inputs prepared up front vs batch by batch.

    python benchmarks/train_memory.py                      # 100k synthetic jets of 128 particles, ParticleNet
    python benchmarks/train_memory.py --jets 300000 --model bbt_neutron --width 32

Synthetic splits are written to a temporary directory; then, each in a fresh process (ru_maxrss is a
high-water mark; private memory is sampled), ``train_cell`` runs a short budget with the split prepared up front
("eager", what small
splits get) and memory-mapped + prepared per batch ("lazy", what splits above
``jetscale.train.inputs.EAGER_LIMIT_BYTES`` get). Prints peak private memory, peak RSS and wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


class AnonPeak(threading.Thread):
    """Samples RssAnon (private memory) every 20 ms: ru_maxrss also counts the memory-mapped file pages the
    kernel reads ahead into the page cache, which are shared and reclaimable, not the process's own."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_kb, self.running = 0, True

    def run(self):
        while self.running:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            time.sleep(0.02)


def one_run(config: str, cell: str, splits: str, out: str, mode: str) -> dict:
    from jetscale.config import load_config
    from jetscale.train import inputs, loop

    inputs.EAGER_LIMIT_BYTES = 0 if mode == "lazy" else 2**62
    sampler = AnonPeak()
    sampler.start()
    t0 = time.perf_counter()
    record = loop.train_cell(load_config(config), cell, splits, out, progress=False)
    sampler.running = False
    sampler.join()
    return {
        "mode": mode,
        "wall_s": time.perf_counter() - t0,
        "setup_s": record["setup_time_s"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_anon_mb": sampler.peak_kb / 1024,
        "test_loss": record["test_loss"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jets", type=int, default=100_000, help="training jets")
    p.add_argument("--particles", type=int, default=128)
    p.add_argument("--model", default="particlenet")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--samples", type=int, default=2048, help="training samples seen (the budget)")
    p.add_argument("--one", nargs=4, help=argparse.SUPPRESS)  # internal: config cell splits mode
    a = p.parse_args(argv)
    if a.one:
        config, cell, splits, mode = a.one
        print(json.dumps(one_run(config, cell, splits, str(Path(splits).parent / f"run-{mode}"), mode)))
        return 0

    from jetscale.data.testing import write_synthetic_splits

    tmp = Path(tempfile.mkdtemp(prefix="train_memory_"))
    try:
        raw = yaml.safe_load((REPO / "config.yaml").read_text())
        raw["data"].update({"n_particles": a.particles, "val_per_class": 200, "test_per_class": 200})
        raw["data"]["generate"]["jets_per_class"] = -(-a.jets // len(raw["classes"])) + 400
        raw["grid"]["axes"].update(
            {"model": [a.model], "width": [a.width], "n_train": [a.jets], "compute": [a.samples], "seed": [0]}
        )
        raw["grid"].pop("per_model", None)
        raw["training"].update({"eval_every_samples": 10**9, "early_stopping_patience": None})
        config = tmp / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        splits = tmp / "splits"
        t0 = time.perf_counter()
        write_synthetic_splits(
            splits, raw["classes"], {"train": a.jets, "val": 2200, "test": 2200}, n_particles=a.particles
        )
        size = sum(f.stat().st_size for f in (splits / "train").iterdir()) / 2**20
        print(
            f"{a.jets:,} training jets x {a.particles} particles: {size:,.0f} MB on disk "
            f"(written in {time.perf_counter() - t0:.0f} s); {a.model} width {a.width}, {a.samples} samples"
        )
        cell = f"model~{a.model}/width~{a.width}/n_train~{a.jets}/compute~{a.samples}/seed~0"
        for mode in ("eager", "lazy"):
            res = subprocess.run(
                [sys.executable, __file__, "--one", str(config), cell, str(splits), mode],
                capture_output=True,
                text=True,
            )
            if res.returncode:
                print(f"{mode}: failed: {res.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(
                f"{mode:<6} peak private (anonymous) memory {r['peak_anon_mb']:>7,.0f} MB   peak RSS incl. mapped file "
                f"pages {r['peak_rss_mb']:>7,.0f} MB   wall {r['wall_s']:>6.1f} s   setup {r['setup_s']:>5.1f} s"
                f"   test loss {r['test_loss']:.6f}",
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

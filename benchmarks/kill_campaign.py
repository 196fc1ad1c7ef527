"""Kill campaign: N random SIGKILLs of a real small training cell, then compare with an uninterrupted run.

    python benchmarks/kill_campaign.py                 # 20 kills, ParticleNet width 8, 200 steps
    python benchmarks/kill_campaign.py --kills 50 --model bbt_neutron --width 16

A SIGKILL gives the process no chance to checkpoint: whatever survives is the last atomic checkpoint.pt (written
every --checkpoint-every steps). Each attempt runs ``jetscale train`` in a fresh process and is killed after a
uniformly random delay in [0, T / N] s (T: the uninterrupted run) after it has written a new checkpoint, so
every kill lands in training (mid-step, mid-evaluation or mid-save) and each attempt makes some progress;
the cell is rerun until it finishes. Prints how many kills landed, then whether the final weights, metrics.json
(without timing/host keys) and train_log.csv (without the throughput column) equal the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TIMING_KEYS = ("wall_time_s", "setup_time_s", "finished_at", "hardware", "git_revision")


def write_study(tmp: Path, args) -> tuple[Path, Path, str]:
    from jetscale.config import load_config
    from jetscale.data.testing import write_synthetic_splits

    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["results"] = str(tmp / "results")
    raw["data"].update({"n_particles": 16, "val_per_class": 3, "test_per_class": 3})
    raw["grid"]["axes"].update(
        {
            "model": [args.model],
            "width": [args.width],
            "n_train": [args.n_train],
            "compute": [args.compute],
            "seed": [0],
        }
    )
    raw["grid"]["per_model"] = {}
    raw["models"]["bbt_neutron"]["tokenizer"]["max_bytes"] = 256
    raw["training"].update(
        {
            "batch_size": 16,
            "eval_every_samples": 160,
            "checkpoint_every_steps": args.checkpoint_every,
            "early_stopping_patience": None,
            "threads": 1,
        }
    )
    cfg = load_config(raw)
    config = tmp / "study.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    sizes = {"train": args.n_train, "val": 66, "test": 66}
    splits = write_synthetic_splits(tmp / "splits", cfg["classes"], sizes, n_particles=16)
    cell = f"model~{args.model}/width~{args.width}/n_train~{args.n_train}/compute~{args.compute}/seed~0"
    return config, splits, cell


def train_command(config: Path, splits: Path, cell: str, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jetscale.cli",
        "train",
        "--config",
        str(config),
        "--cell",
        cell,
        "--splits",
        str(splits),
        "--out",
        str(out),
        "--no-progress",
    ]


def comparable(out: Path) -> tuple[dict, dict, list[list[str]]]:
    import torch

    weights = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    metrics = json.loads((out / "metrics.json").read_text())
    metrics = {k: v for k, v in metrics.items() if k not in TIMING_KEYS}
    rows = [line.split(",") for line in (out / "train_log.csv").read_text().splitlines()]
    drop = rows[0].index("throughput")
    return weights, metrics, [[c for i, c in enumerate(r) if i != drop] for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--model", default="particlenet")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--n-train", type=int, default=220)
    parser.add_argument("--compute", type=int, default=3200, help="training samples (batch 16: compute/16 steps)")
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="kill-campaign-") as tmp:
        tmp = Path(tmp)
        config, splits, cell = write_study(tmp, args)
        t0 = time.perf_counter()
        subprocess.run(train_command(config, splits, cell, tmp / "straight"), check=True, env=env, capture_output=True)
        straight_s = time.perf_counter() - t0
        victim, kills, attempts, steps_at_kill = tmp / "killed", 0, 0, []
        # each attempt waits until training has written a new checkpoint, then is killed a random time later
        # (mid-step, mid-evaluation or mid-save), so the N kills spread over the whole run
        max_delay = straight_s / max(args.kills, 1)
        while not (victim / "metrics.json").is_file():
            attempts += 1
            proc = subprocess.Popen(
                train_command(config, splits, cell, victim), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            if kills < args.kills:
                last = _checkpoint_step(victim)
                while proc.poll() is None and _checkpoint_step(victim) == last:  # past start-up: training moves
                    time.sleep(0.05)
                try:
                    proc.wait(timeout=rng.uniform(0.0, max_delay))
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    if (victim / "metrics.json").is_file():
                        break  # the kill landed after the run had finished: it interrupted nothing
                    kills += 1
                    steps_at_kill.append(_checkpoint_step(victim))
                    continue
            _, err = proc.communicate()
            if proc.returncode != 0:
                print(f"attempt {attempts} failed with status {proc.returncode}:\n{err.decode()[-2000:]}")
                return 1
        a, b = comparable(tmp / "straight"), comparable(victim)
        max_diff = max((a[0][k].double() - b[0][k].double()).abs().max().item() for k in a[0])
        same_keys = a[0].keys() == b[0].keys()
        differing = sorted(k for k in a[1] if a[1][k] != b[1].get(k))
        log_same = a[2] == b[2]
        print(f"cell {cell}; uninterrupted run {straight_s:.1f} s (start-up included)")
        print(f"SIGKILLs before the run finished: {kills}; attempts: {attempts}")
        print(f"checkpoint step after each kill (None: before the first checkpoint): {steps_at_kill}")
        print(f"final weights identical: {same_keys and max_diff == 0.0} (max |diff| {max_diff:.3g})")
        print(
            f"metrics.json identical without {list(TIMING_KEYS)}: {not differing}"
            + (f" (differ: {differing})" if differing else "")
        )
        print(f"train_log.csv identical without throughput: {log_same}")
        if not log_same:
            diff = [(r1, r2) for r1, r2 in zip(a[2], b[2]) if r1 != r2]
            print(f"  {len(diff)} of {len(a[2]) - 1} rows differ; first: {diff[0][0]} vs {diff[0][1]}")
    return 0


def _checkpoint_step(out: Path) -> int | None:
    import torch

    path = out / "checkpoint.pt"
    if not path.is_file():
        return None
    return int(torch.load(path, weights_only=True)["step"])


if __name__ == "__main__":
    sys.exit(main())

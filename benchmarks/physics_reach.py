"""Physics reach of one ParticleNet cell on fresh jets, next to the published CEPC full-simulation numbers.

    .venv/bin/python benchmarks/physics_reach.py [--config config.yaml] [--n-train 30000] [--compute auto]
        [--width 16] [--jets-per-class N] [--workers 2] [--keep DIR]

Generates fresh jets with the config's generator and detector (a new generator seed, so none of the study's
jets), splits them, records the training subset's input statistics, trains one ParticleNet cell with the
config's training settings and input spec, and evaluates it: every stage through the ``jetscale`` CLI, as the
workflow runs it. Prints per quark flavor the tag efficiency ε_q and charge-flip rate f_q, then accuracy, beside
the PRL ParticleNet and the repository's ParT numbers (~600k training jets per class). Also prints the wall
time of each stage. Runs on one core per worker; the default (the study's largest cell) takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def jetscale(*args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jetscale.cli", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"jetscale {args[0]} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def bench_config(args, work: Path) -> tuple[Path, str]:
    raw = yaml.safe_load(Path(args.config).read_text())
    raw["results"] = str(work / "results")
    gen = raw["data"]["generate"]
    gen["seed"] = int(gen.get("seed", 0)) + 1_000_003  # fresh jets: not the study's
    if args.jets_per_class:
        gen["jets_per_class"] = args.jets_per_class
    gen["n_shards"] = args.workers
    compute = args.compute if args.compute == "auto" else int(args.compute)
    raw["grid"]["axes"].update(model=["particlenet"], width=[args.width], n_train=[args.n_train], compute=[compute])
    raw["grid"]["axes"]["seed"] = [0]
    raw["grid"]["per_model"] = {}
    raw["grid"]["extra_axes"] = {}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, f"model~particlenet/width~{args.width}/n_train~{args.n_train}/compute~{compute}/seed~0"


def run(args, work: Path) -> None:
    from jetscale.reference import JOI_FLAVORS, joi_reference

    config, cell = bench_config(args, work)
    data = work / "results" / "data"
    times = {}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "jetscale.cli", "generate", "--config", str(config), "--shard", str(i)]
            + ["--workers", "1", "--out", str(data / "shards" / f"shard-{i:04d}.parquet")],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(args.workers)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"jetscale generate failed:\n{err[-3000:]}")
    times["generate"] = time.perf_counter() - start
    shards = sorted(str(p) for p in (data / "shards").glob("*.parquet"))
    times["split"] = jetscale("split", "--config", str(config), "--shards", *shards, "--out", str(data / "splits"))
    times["input-stats"] = jetscale("input-stats", "--splits", str(data / "splits"), "--n-train", str(args.n_train))
    run_dir = work / "results" / "runs" / cell
    times["train"] = jetscale(
        "train", "--config", str(config), "--cell", cell, "--splits", str(data / "splits"), "--out", str(run_dir)
    )
    times["evaluate"] = jetscale("evaluate", "--config", str(config), "--run", str(run_dir))
    doc = json.loads((run_dir / "eval.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ref = joi_reference()["models"]
    pn, part = ref["particlenet"]["flavors"], ref["part"]["flavors"]

    print(f"# cell {cell}: {metrics['n_params']:,} parameters, {metrics['samples_seen']:,} training samples seen")
    print(f"# fresh jets: generator seed {yaml.safe_load(config.read_text())['data']['generate']['seed']}, "
          f"test set {doc['n_jets']:,} jets; reference: CEPC full sim, ~600k training jets/class")  # fmt: skip
    print(f"{'':<10}{'this run':>10}{'PN (PRL)':>10}{'ParT':>10}")
    for q in JOI_FLAVORS:
        mine = doc["flavors"][q]
        print(f"{'eps_' + q:<10}{mine['tag_efficiency']:>10.3f}{pn[q]['tag_efficiency']:>10.3f}"
              f"{part[q]['tag_efficiency']:>10.3f}")  # fmt: skip
    for q in JOI_FLAVORS:
        mine = doc["flavors"][q]
        print(
            f"{'flip_' + q:<10}{mine['charge_flip']:>10.3f}{pn[q]['charge_flip']:>10.3f}{part[q]['charge_flip']:>10.3f}"
        )
    print(f"{'accuracy':<10}{doc['accuracy']:>10.3f}{ref['particlenet']['mean_diagonal']:>10.3f}"
          f"{ref['part']['mean_diagonal']:>10.3f}")  # fmt: skip
    print(f"{'log-loss':<10}{doc['log_loss']:>10.3f}")
    print("# wall time [s]: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config.yaml"), help="study config to take settings from")
    parser.add_argument("--n-train", type=int, default=None, help="training jets (default: the config's largest)")
    parser.add_argument("--compute", default="auto", help="training samples, or auto (the config's rule)")
    parser.add_argument("--width", type=int, default=None, help="ParticleNet width (default: the config's first)")
    parser.add_argument("--jets-per-class", type=int, default=None, help="default: the config's")
    parser.add_argument("--workers", type=int, default=2, help="generator processes (one shard each)")
    parser.add_argument("--keep", default=None, help="keep the work directory here (default: a temporary one)")
    args = parser.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    per_model = (cfg["grid"].get("per_model") or {}).get("particlenet", {})
    args.n_train = args.n_train or max(per_model.get("n_train", cfg["grid"]["axes"]["n_train"]))
    args.width = args.width or per_model.get("width", cfg["grid"]["axes"]["width"])[0]
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        run(args, Path(args.keep))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does DeepSpeed train the same model as plain torch? Prints the weight and loss differences per ZeRO stage.

    python benchmarks/engine_parity.py                          # CPU, fp32 and bf16
    python benchmarks/engine_parity.py --device cuda --width 512 --steps 50

One BBT-Neutron cell (synthetic jets, no dropout) is trained with the torch engine and with DeepSpeed at each
ZeRO stage, in each precision. Two yardsticks: the torch engine's bf16-vs-fp32 difference, and "torch~", the
torch engine with the clipping threshold moved by one part in a million: the size of difference that rounding
noise alone grows into over the run (bf16 autocast amplifies it: a last-bit change in a weight can flip its
bf16 rounding). An engine difference near torch~ is rounding order; one far above it is a different computation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def config(width: int, steps: int, batch: int, device: str, precision: str, deepspeed: dict, clip: float = 1.0) -> dict:
    from jetscale.config import load_config

    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["data"].update({"n_particles": 32, "val_per_class": 10, "test_per_class": 10})
    raw["grid"]["axes"].update(
        {"model": ["bbt_neutron"], "width": [width], "n_train": [1100], "compute": [steps * batch], "seed": [0]}
    )
    raw["grid"].pop("per_model", None)
    raw["models"]["bbt_neutron"]["tokenizer"]["max_bytes"] = 512
    raw["training"].update(
        {
            "batch_size": batch,
            "lr": 1e-3,
            "eval_every_samples": 10**9,
            "checkpoint_every_steps": 10**6,
            "early_stopping_patience": None,
            "device": device,
            "precision": precision,
            "grad_clip": clip,
            "deepspeed": deepspeed,
        }
    )
    return load_config(raw)


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True, map_location="cpu")["model"]


def max_difference(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--stages", default="0,1,2,3")
    p.add_argument("--precisions", default="fp32,bf16")
    a = p.parse_args(argv)

    from jetscale.data.testing import write_synthetic_splits
    from jetscale.train import loop

    tmp = Path(tempfile.mkdtemp(prefix="engine_parity_"))
    classes = config(a.width, a.steps, a.batch_size, a.device, "fp32", {"enabled": False})["classes"]
    splits = write_synthetic_splits(tmp / "splits", classes, {"train": 1100, "val": 110, "test": 110}, n_particles=32)
    cell = f"model~bbt_neutron/width~{a.width}/n_train~1100/compute~{a.steps * a.batch_size}/seed~0"
    runs: dict[tuple[str, str], tuple[Path, dict, float]] = {}
    for precision in a.precisions.split(","):
        for engine in ["torch", "torch~"] + [f"zero{s}" for s in a.stages.split(",")]:
            ds = {"enabled": False} if engine.startswith("torch") else {"enabled": True, "zero_stage": int(engine[4:])}
            clip = 1.0 + 1e-6 if engine == "torch~" else 1.0
            out = tmp / f"{precision}-{engine}"
            t0 = time.perf_counter()
            record = loop.train_cell(
                config(a.width, a.steps, a.batch_size, a.device, precision, ds, clip), cell, splits, out, progress=False
            )
            runs[precision, engine] = (out, record, time.perf_counter() - t0)
    print(f"BBT-Neutron width {a.width}, {a.steps} steps of {a.batch_size} jets, device {a.device}")
    if ("fp32", "torch") in runs and ("bf16", "torch") in runs:
        yard = max_difference(weights(runs["fp32", "torch"][0]), weights(runs["bf16", "torch"][0]))
        print(f"yardstick: torch bf16 vs torch fp32, max |weight difference| = {yard:.3g}")
    print(
        f"{'precision':<9} {'engine':<7} {'test loss':>10} {'|dloss| vs torch':>17} "
        f"{'max |dw| vs torch':>18} {'wall s':>7}"
    )
    for (precision, engine), (out, record, wall) in runs.items():
        ref_out, ref, _ = runs[precision, "torch"]
        dw = max_difference(weights(ref_out), weights(out))
        print(
            f"{precision:<9} {engine:<7} {record['test_loss']:>10.6f} "
            f"{abs(record['test_loss'] - ref['test_loss']):>17.3g} "
            f"{dw:>18.3g} {wall:>7.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

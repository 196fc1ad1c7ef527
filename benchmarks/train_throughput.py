"""Training throughput (jets/s) and peak memory per model at two widths; on GPU also model FLOP utilisation.

    python benchmarks/train_throughput.py                       # CPU, 1 thread, the default-study widths and 2x
    python benchmarks/train_throughput.py --splits results/data/splits   # real jets instead of synthetic ones
    python benchmarks/train_throughput.py --threads 2 --steps 20
    python benchmarks/train_throughput.py --device cuda --batch-size 256 --widths particlenet=64,128 ...
    python benchmarks/train_throughput.py --engine deepspeed --zero-stage 2 --widths "bbt_neutron=512,768"

Synthetic jets (``jetscale.data.testing``, ~24 particles of 64) or, with ``--splits``, the first training
jets of a splits directory go through the
same input preparation, trimming and AdamW step as ``train_cell``. Peak memory is the process's peak RSS
growth on CPU (ru_maxrss is a high-water mark, so each measurement runs in a fresh subprocess) and
``torch.cuda.max_memory_allocated`` on GPU. MFU = 3 × forward FLOPs per jet (torch.utils.flop_counter)
× jets/s ÷ the GPU's peak dense bf16 FLOP/s (``--peak-tflops``; default by device name).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

DEFAULT_WIDTHS = {"particlenet": (16, 32), "part": (16, 32), "bbt_neutron": (32, 64)}
BBT_OPTIONS = {"tokenizer": {"mode": "native", "dtype": "float16", "patch_size": 16, "max_bytes": 1024}}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40": 181.0, "A10": 125.0}


def measure(
    model_name: str,
    width: int,
    device: str,
    batch_size: int,
    steps: int,
    threads: int,
    splits: str | None = None,
    engine: str = "torch",
    zero_stage: int = 1,
    compile_model: bool = False,
) -> dict:
    import resource

    import numpy as np
    import torch

    from jetscale.data.testing import synthetic_jets
    from jetscale.models.registry import batch_tensors, build_model, count_params, measure_flops_per_jet, prepare_inputs
    from jetscale.train.distributed import Ranks, make_engine

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n = batch_size * 4
    if splits:
        from jetscale.data.splits import load_split

        jets = {k: np.array(v) for k, v in load_split(splits, "train", n=n).items()}
    else:
        jets = synthetic_jets(n, 11, n_particles=64, seed=0)
    options = BBT_OPTIONS if model_name == "bbt_neutron" else {}  # model options refuse unknown keys
    arrays, _ = prepare_inputs(model_name, options, jets["features"], jets["mask"], jets["vectors"])
    labels = torch.from_numpy(jets["labels"]).to(device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = build_model(model_name, width, 11, 19, options).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    cuda = device.startswith("cuda")
    # the training loop's own engine: plain torch or DeepSpeed (ZeRO), bf16 autocast on GPU
    training = {
        "batch_size": batch_size,
        "grad_clip": 1.0,
        "precision": "auto",
        "compile": compile_model,
        "deepspeed": {"enabled": engine == "deepspeed", "zero_stage": zero_stage},
    }
    eng = make_engine(model, opt, sched, training, Ranks(device=torch.device(device)))

    def step(i):
        idx = np.arange(i * batch_size, (i + 1) * batch_size) % n
        batch = batch_tensors(arrays, idx, device)
        with eng.autocast():
            loss = torch.nn.functional.cross_entropy(eng.forward_model(**batch).float(), labels[idx])
        eng.backward(loss)
        eng.step()

    for i in range(8 if compile_model else 3):  # warm-up (compilation: a few batch shapes)
        step(i)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    flops = measure_flops_per_jet(model, batch_tensors(arrays, np.arange(min(n, 256)), device))
    out = {
        "model": model_name,
        "width": width,
        "device": device,
        "engine": eng.name,
        "threads": threads,
        "batch_size": batch_size,
        "precision": "bf16" if eng.bf16 else "fp32",
        "n_params": count_params(model),
        "fwd_flops_per_jet": flops,
        "jets_per_s": steps * batch_size / dt,
    }
    if cuda:
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        name = torch.cuda.get_device_name()
        out["gpu"] = name
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        if peak:
            out["mfu"] = 3 * flops * out["jets_per_s"] / (peak * 1e12)
    else:
        out["peak_mem_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cpu | cuda (default: both when CUDA is available)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--widths", default=None, help="e.g. particlenet=16,32;part=16,32;bbt_neutron=32,64")
    p.add_argument("--splits", default=None, help="a splits directory: benchmark on its first training jets")
    p.add_argument("--engine", choices=("torch", "deepspeed"), default="torch", help="optimisation engine")
    p.add_argument("--zero-stage", type=int, choices=(0, 1, 2, 3), default=1, help="DeepSpeed ZeRO stage")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward (warm-up excluded)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: model:width:device
    a = p.parse_args(argv)
    if a.one:
        name, width, device = a.one.split(":")
        print(
            json.dumps(
                measure(
                    name,
                    int(width),
                    device,
                    a.batch_size,
                    a.steps,
                    a.threads,
                    a.splits,
                    a.engine,
                    a.zero_stage,
                    a.compile,
                )
            )
        )
        return 0
    widths = dict(DEFAULT_WIDTHS)
    if a.widths:
        for part in a.widths.split(";"):
            key, _, vals = part.partition("=")
            widths[key] = tuple(int(v) for v in vals.split(","))
    import torch

    devices = [a.device] if a.device else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(
        f"engine: {a.engine}"
        + (f" (ZeRO stage {a.zero_stage})" if a.engine == "deepspeed" else "")
        + (", torch.compile" if a.compile else "")
    )
    print(
        f"{'model':<12} {'width':>5} {'device':<6} {'params':>10} {'fwd MFLOP/jet':>13} "
        f"{'jets/s':>9} {'peak MB':>8} {'MFU':>6}"
    )
    for device in devices:
        for name, ws in widths.items():
            for w in ws:
                cmd = (
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        f"{name}:{w}:{device}",
                        "--batch-size",
                        str(a.batch_size),
                        "--steps",
                        str(a.steps),
                        "--threads",
                        str(a.threads),
                        "--engine",
                        a.engine,
                        "--zero-stage",
                        str(a.zero_stage),
                    ]
                    + (["--splits", a.splits] if a.splits else [])
                    + (["--compile"] if a.compile else [])
                )
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    print(f"{name:<12} {w:>5} {device:<6} failed: {res.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
                mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
                print(
                    f"{name:<12} {w:>5} {device:<6} {r['n_params']:>10,} {r['fwd_flops_per_jet'] / 1e6:>13.2f} "
                    f"{r['jets_per_s']:>9.0f} {r['peak_mem_mb']:>8.0f} {mfu:>6}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput per model and width: jets/s, achieved FLOP/s and its ratio to the hardware's rate.

    python benchmarks/train_throughput.py                       # CPU, 1 thread, the default study's widths and batch
    python benchmarks/train_throughput.py --against main~3      # this tree and another commit, side by side
    python benchmarks/train_throughput.py --splits results/data/splits --repeats 5
    python benchmarks/train_throughput.py --device cuda --batch-size 256 --synthetic --widths "particlenet=64,128"
    python benchmarks/train_throughput.py --engine deepspeed --zero-stage 2 --widths "bbt_neutron=512,768"
    python benchmarks/train_throughput.py --buckets 16,32,48 --compile   # buckets + torch.compile against eager
    python benchmarks/train_throughput.py --precision bf16               # bf16 autocast against the default
    python benchmarks/train_throughput.py --splits results/data/splits --cost-split 2,8,32,128   # per step / per jet

Jets: by default real ones, the first training jets of ``--splits`` or, without it, of a small sample generated and
split once into ``--data-cache`` (the built-in generator: about 10 s); ``--synthetic`` uses
``jetscale.data.testing`` jets (~24 particles of 64) instead, e.g. on a machine without the generator. Batches
are drawn as the training loop draws them (a seeded permutation, ``--batch-size`` jets, default the study's
``training.batch_size``) through the same input preparation (``SplitInputs.tensors``: the batch trimmed to its
longest jet), forward, backward, gradient clipping and AdamW step as a training cell.

Each measurement runs in a fresh subprocess (peak memory is the process's high-water mark). FLOP/s = 3 × forward
FLOPs per jet (``torch.utils.flop_counter`` on 256 jets, trimmed as the training loop trims them) × jets/s. On CPU
it is compared with the rate of a 1-thread (``--threads``) fp32 512×512 matmul measured in the same run; on GPU
with the device's peak dense bf16 rate (MFU; the peak by device name). FLOPs are those of the padded layout
(``measure_flops_per_jet``), as a training cell counts them.

``--against REV`` checks REV out into a temporary git worktree and measures both trees in alternation
(``--repeats`` rounds, this tree first in odd rounds), each with this script's own measuring code and the
tree's ``src``; it prints the median of each and their ratio. Without ``--against``, ``--buckets`` (the batches
padded up to those particle counts, ``training.length_buckets``) and ``--compile`` (``training.compile``; with
buckets, one static-shape graph per bucket) are measured against this tree's plain eager run (batches trimmed to
their longest jet) in the same alternation, and so is ``--precision fp32|bf16`` (``training.precision``;
the default, auto, is fp32 on CPU and bf16 autocast on a GPU); ``warm-up s`` is the time of the first pass over
the timed batches (compiled: every shape they hold gets compiled there, so the timed pass compiles nothing) less
that of the timed pass: what compiling cost. ``--cost-split B1,B2,...`` measures each model at those batch sizes
instead and splits a training step's time into a part per step and a part per jet (a least-squares line through
ms/step against batch size): the first is what fewer, larger or overhead-free steps could save, the second what
only less work per jet (fewer or fused passes over the data) can; it prints the jets/s a step with no per-step
cost at all would reach. Speed-ups are claimed from such one-run ratios on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY_WIDTHS = {"particlenet": (16,), "part": (16,), "bbt_neutron": (32,)}
BBT_OPTIONS = {"tokenizer": {"mode": "native", "dtype": "float16", "patch_size": 16, "max_bytes": 1024}}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40": 181.0, "A10": 125.0}
N_JETS = 4096  # jets the batches are drawn from (a permutation per pass, as the training loop's sampler)
EVAL_JETS = 2200  # jets scored per measurement: the default study's validation set, scored at every evaluation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from other_tree import ROOT, other_tree  # noqa: E402  (a script: its own folder is not a package)


def study_batch_size() -> int:
    import yaml

    try:
        return int(yaml.safe_load((ROOT / "config.yaml").read_text())["training"]["batch_size"])
    except (OSError, KeyError, TypeError, ValueError):
        return 32


def matmul_gflops(threads: int, n: int = 512, seconds: float = 1.0) -> float:
    """fp32 n×n matmul rate on ``threads`` threads, GFLOP/s (best of a few timed blocks)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(10):
        a @ b
    best, reps = 0.0, 20
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def real_jets(cache: Path) -> Path:
    """A splits directory of real (generated) jets: ``cache`` if it holds one, else generated and split there."""
    if (cache / "meta.json").exists():
        return cache
    import yaml

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["data"]["source"] = "generate"
    cfg["data"]["generate"].update(jets_per_class=600, n_shards=1)
    cfg["data"].update(val_per_class=50, test_per_class=50)
    cfg["grid"]["axes"]["n_train"] = [100]
    with tempfile.TemporaryDirectory() as tmp:
        cfg["results"] = str(Path(tmp) / "results")
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(cfg))
        shard = Path(tmp) / "shard-0000.parquet"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        run = [sys.executable, "-m", "jetscale"]
        for cmd in (
            [*run, "generate", "--config", str(config), "--shard", "0", "--out", str(shard)],
            [*run, "split", "--config", str(config), "--shards", str(shard), "--out", str(cache)],
        ):
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cache


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
    buckets: tuple[int, ...] | None = None,
    precision: str = "auto",
) -> dict:
    """One model at one width in this process (the imported ``jetscale`` is whichever tree PYTHONPATH names)."""
    import resource

    import numpy as np
    import torch

    from jetscale.models.registry import build_model, count_params, measure_flops_per_jet
    from jetscale.train.distributed import EngineOptions, Ranks, make_engine
    from jetscale.train.inputs import SplitInputs

    torch.set_num_threads(threads)
    from jetscale.train import runner

    if hasattr(runner, "tune_allocator"):  # the training process's allocator settings (an older tree may lack them)
        runner.tune_allocator()
    torch.manual_seed(0)
    options = BBT_OPTIONS if model_name == "bbt_neutron" else {}  # model options refuse unknown keys
    if splits:
        from jetscale.data.splits import load_split, read_meta

        n = min(N_JETS, int(read_meta(splits)["sizes"]["train"]))
        raw = {k: np.array(v) for k, v in load_split(splits, "train", n=n).items()}
    else:
        from jetscale.data.testing import synthetic_jets

        n = N_JETS
        raw = synthetic_jets(n, 11, n_particles=64, seed=0)
        raw["jet_id"] = np.arange(n)
    inputs = SplitInputs(model_name, options, raw)
    labels = torch.from_numpy(inputs.labels).to(device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = build_model(model_name, width, 11, inputs.n_features, options).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)  # as the runner
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    cuda = device.startswith("cuda")
    # (options an older tree may lack are passed only when set: --against REV measures REV with this code)
    static = {"static_shapes": True} if buckets else {}
    engine_options = EngineOptions(
        precision=precision,
        deepspeed=engine == "deepspeed",
        zero_stage=zero_stage,
        compile=bool(compile_model),
        **static,
    )
    bucketed = (buckets,) if buckets else ()
    eng = make_engine(
        model, opt, sched, engine_options, Ranks(device=torch.device(device)), grad_clip=1.0, batch_size=batch_size
    )
    order = np.random.default_rng(0).permutation(n)

    def step(i):
        start = (i * batch_size) % (n - batch_size + 1)
        idx = order[start : start + batch_size]
        batch = inputs.tensors(idx, device, *bucketed)
        with eng.autocast():
            loss = torch.nn.functional.cross_entropy(eng.forward_model(**batch).float(), labels[idx])
        eng.backward(loss)
        eng.step()

    def timed(first: int, n: int) -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(first, first + n):
            step(i)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    # warm-up: compiled, a whole pass over the timed batches (every shape among them compiled); else 3 steps
    warm = timed(0, steps) if compile_model else timed(steps, 3)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    dt = timed(0, steps)
    flops = measure_flops_per_jet(model, inputs.tensors(np.arange(min(n, 256)), device))
    eval_rate = scoring_rate(model, model_name, options, raw, device, eng)
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
        "eval_jets_per_s": eval_rate,
        "warmup_s": warm - dt if compile_model else None,
    }
    out["train_flops_per_s"] = 3 * flops * out["jets_per_s"]
    if cuda:
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        name = torch.cuda.get_device_name()
        out["gpu"] = name
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        if peak:
            out["mfu"] = out["train_flops_per_s"] / (peak * 1e12)
    else:
        out["peak_mem_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return out


def scoring_rate(model, model_name: str, options, raw: dict, device: str, eng) -> float | None:
    """Jets/s of scoring EVAL_JETS jets as an evaluation does (``classifier.predict``: eval mode, no autograd,
    batches by length); None where the measured tree has no such function."""
    import numpy as np

    try:
        from jetscale.train.classifier import predict
        from jetscale.train.inputs import SplitInputs
    except ImportError:
        return None
    n = min(EVAL_JETS, len(raw["jet_id"]))
    subset = SplitInputs(model_name, options, {k: np.asarray(v)[:n] for k, v in raw.items()})
    autocast = getattr(eng, "eval_autocast", eng.autocast)
    predict(model, subset, device, autocast)  # warm-up
    t0 = time.perf_counter()
    predict(model, subset, device, autocast)
    return n / (time.perf_counter() - t0)


def run_one(tree: Path, opts: list[str], name: str, width: int, device: str, a, splits: str | None) -> dict | str:
    """One measurement in a fresh process importing ``tree``'s jetscale; the result, or the error's last line."""
    cmd = [
        sys.executable,
        __file__,
        "--one",
        f"{name}:{width}:{device}",
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
    cmd += (["--splits", splits] if splits else []) + opts
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return (res.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(res.stdout.strip().splitlines()[-1])


def warmup(results: list[dict]) -> str:
    """The median compile cost of compiled runs ('-' for eager ones)."""
    costs = [r["warmup_s"] for r in results if r.get("warmup_s") is not None]
    return f"{statistics.median(costs):.1f}" if costs else "-"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cpu | cuda (default: both when CUDA is available)")
    p.add_argument("--batch-size", type=int, default=None, help="default: config.yaml training.batch_size")
    p.add_argument("--steps", type=int, default=40, help="timed steps per measurement (after 3 warm-up steps)")
    p.add_argument("--repeats", type=int, default=1, help="measurements per model, width and tree (median)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--widths", default=None, help="e.g. particlenet=16,32;part=16;bbt_neutron=32 (default: study)")
    p.add_argument("--splits", default=None, help="a splits directory: its first training jets")
    p.add_argument("--synthetic", action="store_true", help="synthetic jets instead of real ones")
    p.add_argument("--data-cache", default="/tmp/jetscale-throughput-jets", help="where the generated sample lives")
    p.add_argument("--against", default=None, metavar="REV", help="also measure commit REV, side by side")
    p.add_argument("--engine", choices=("torch", "deepspeed"), default="torch", help="optimisation engine")
    p.add_argument("--zero-stage", type=int, choices=(0, 1, 2, 3), default=1, help="DeepSpeed ZeRO stage")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward (warm-up excluded)")
    p.add_argument("--buckets", default=None, help="pad batches up to these particle counts, e.g. 16,32,48")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="training.precision")
    p.add_argument("--cost-split", default=None, metavar="B1,B2,...", help="a step: cost per step, per jet")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: model:width:device
    a = p.parse_args(argv)
    a.batch_size = a.batch_size or study_batch_size()
    if a.one:
        name, width, device = a.one.split(":")
        buckets = tuple(int(b) for b in a.buckets.split(",")) if a.buckets else None
        r = measure(name, int(width), device, a.batch_size, a.steps, a.threads, a.splits, a.engine, a.zero_stage,
                    a.compile, buckets, a.precision)  # fmt: skip
        print(json.dumps(r))
        return 0
    widths = dict(STUDY_WIDTHS)
    if a.widths:
        widths = {}
        for part in a.widths.split(";"):
            key, _, vals = part.partition("=")
            widths[key.strip()] = tuple(int(v) for v in vals.split(","))
    import torch

    devices = [a.device] if a.device else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    splits = None if a.synthetic else (a.splits or str(real_jets(Path(a.data_cache))))
    opts = (["--compile"] if a.compile else []) + (["--buckets", a.buckets] if a.buckets else [])
    opts += ["--precision", a.precision] if a.precision != "auto" else []
    if a.cost_split:
        if a.against:
            p.error("--cost-split measures one tree: leave out --against")
        try:
            sizes = sorted({int(b) for b in a.cost_split.split(",")})
        except ValueError:
            p.error(f"--cost-split takes batch sizes such as 2,8,32,128, not {a.cost_split!r}")
        if len(sizes) < 2 or sizes[0] < 1:
            p.error(f"--cost-split needs at least two positive batch sizes, not {a.cost_split!r}")
        return cost_report(a, devices, widths, splits, sizes, opts)
    with tempfile.TemporaryDirectory() as tmp, other_tree(a.against, Path(tmp) / "against") as against:
        # variants: tag -> (tree, options); the first is the one the others' ratios are of
        trees = {"this": (ROOT, opts)}
        if against is not None:
            trees[a.against] = (against, opts)
        elif opts:  # the options against this tree's plain eager run
            tag = "+".join(
                ["buckets"] * bool(a.buckets) + ["compile"] * a.compile + [a.precision] * (a.precision != "auto")
            )
            trees = {tag: (ROOT, opts), "eager": (ROOT, [])}
        return report(a, devices, widths, splits, trees)


def report(a, devices, widths, splits, trees: dict) -> int:
    mm = [matmul_gflops(a.threads)]
    print(
        f"engine {a.engine}" + (f" (ZeRO {a.zero_stage})" if a.engine == "deepspeed" else "")
        + (", torch.compile" if a.compile else "") + (f", length buckets {a.buckets}" if a.buckets else "")
        + (f", precision {a.precision}" if a.precision != "auto" else "")
        + f"; batch {a.batch_size}; {a.threads} thread(s); "
        + ("synthetic jets" if splits is None else f"real jets from {splits}") + f"; median of {a.repeats}"
    )  # fmt: skip
    head = f"{'model':<12} {'width':>5} {'device':<6} {'tree':<10} {'fwd MFLOP/jet':>13} {'jets/s':>9} {'GFLOP/s':>8}"
    head += f" {'of peak':>8} {'peak MB':>8} {'warm-up s':>9} {'scored/s':>9}"
    print(head + ("  ratio (train, scoring)" if len(trees) > 1 else ""))
    for device in devices:
        for name, ws in widths.items():
            for w in ws:
                runs: dict[str, list] = {tag: [] for tag in trees}
                for rep in range(a.repeats):
                    order = list(trees) if rep % 2 == 0 else list(trees)[::-1]
                    for tag in order:
                        runs[tag].append(run_one(*trees[tag], name, w, device, a, splits))
                if device == "cpu":
                    mm.append(matmul_gflops(a.threads))
                base = None
                for tag, results in runs.items():
                    ok = [r for r in results if isinstance(r, dict)]
                    if not ok:
                        print(f"{name:<12} {w:>5} {device:<6} {tag:<10} failed: {results[-1]}")
                        continue
                    r = dict(ok[0])
                    r["jets_per_s"] = statistics.median(x["jets_per_s"] for x in ok)
                    gflops = 3 * r["fwd_flops_per_jet"] * r["jets_per_s"] / 1e9
                    if "mfu" in r:
                        of_peak = f"{100 * statistics.median(x['mfu'] for x in ok):.1f}%"
                    elif device == "cpu":
                        of_peak = f"{gflops / max(mm):.2f}"
                    else:
                        of_peak = "-"
                    scored = [x["eval_jets_per_s"] for x in ok if x.get("eval_jets_per_s")]
                    r["eval_jets_per_s"] = statistics.median(scored) if scored else None
                    ratio = ""
                    if len(trees) > 1:
                        base = base or (r["jets_per_s"], r["eval_jets_per_s"])
                        if tag != next(iter(trees)):
                            ratio = f"  {base[0] / r['jets_per_s']:.2f}x"
                            if base[1] and r["eval_jets_per_s"]:
                                ratio += f", {base[1] / r['eval_jets_per_s']:.2f}x"
                    print(
                        f"{name:<12} {w:>5} {device:<6} {tag[:10]:<10} {r['fwd_flops_per_jet'] / 1e6:>13.2f} "
                        f"{r['jets_per_s']:>9.0f} {gflops:>8.1f} {of_peak:>8} {r['peak_mem_mb']:>8.0f} "
                        f"{warmup(ok):>9} {r['eval_jets_per_s'] or 0:>9.0f}{ratio}",
                        flush=True,
                    )
    if "cpu" in devices:
        print(
            f"1-thread fp32 512x512 matmul: {max(mm):.1f} GFLOP/s (best of {len(mm)} in this run); "
            "'of peak' = GFLOP/s / that rate (CPU) or MFU (GPU); scored/s: scoring as an evaluation does "
            f"({EVAL_JETS} jets, eval mode, batches by length); ratio = the first row's jets/s / this row's"
        )
    return 0


def step_cost(batch_sizes, ms_per_step) -> tuple[float, float]:
    """(ms per step, ms per jet): the least-squares line ms_per_step = per_step + per_jet * batch_size."""
    import numpy as np

    per_jet, per_step = np.polyfit(np.asarray(batch_sizes, dtype=float), np.asarray(ms_per_step, dtype=float), 1)
    return float(per_step), float(per_jet)


def cost_report(a, devices, widths, splits, sizes: list[int], opts: list[str]) -> int:
    """Each model at each batch size (median of ``--repeats`` fresh processes); the step split into its cost per
    step and per jet."""
    print(
        f"batch sizes {','.join(map(str, sizes))}; {a.threads} thread(s); "
        + ("synthetic jets" if splits is None else f"real jets from {splits}") + f"; median of {a.repeats}"
    )  # fmt: skip
    head = f"{'model':<12} {'width':>5} {'device':<6} " + " ".join(f"{f'ms@{b}':>8}" for b in sizes)
    print(head + f" {'ms/step':>8} {'ms/jet':>7} {'step share@' + str(a.batch_size):>14} {'jets/s, no step cost':>20}")
    for device in devices:
        for name, ws in widths.items():
            for w in ws:
                ms = []
                for b in sizes:
                    at_b = argparse.Namespace(**{**vars(a), "batch_size": b})
                    results = [run_one(ROOT, opts, name, w, device, at_b, splits) for _ in range(a.repeats)]
                    ok = [r["jets_per_s"] for r in results if isinstance(r, dict)]
                    if not ok:
                        print(f"{name:<12} {w:>5} {device:<6} failed at batch {b}: {results[-1]}")
                        break
                    ms.append(1e3 * b / statistics.median(ok))
                if len(ms) < len(sizes):
                    continue
                per_step, per_jet = step_cost(sizes, ms)
                share = per_step / (per_step + per_jet * a.batch_size)
                ceiling = f"{1e3 / per_jet:.0f}" if per_jet > 0 else "-"  # noisy times can give no positive slope
                print(
                    f"{name:<12} {w:>5} {device:<6} " + " ".join(f"{m:>8.2f}" for m in ms)
                    + f" {per_step:>8.2f} {per_jet:>7.3f} {share:>14.0%} {ceiling:>20}",
                    flush=True,
                )  # fmt: skip
    print(
        "ms@B: ms per training step at batch B; ms/step and ms/jet: the line through them (cost per step, per jet); "
        "step share: the per-step part of a step at the study's batch; jets/s, no step cost: 1000 / (ms/jet)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost of the data stages as the pool grows, and the data path's rate against the fastest GPU training rate.

    python benchmarks/data_path.py                                # pools of 100k, 300k and 1M jets (paper layout)
    python benchmarks/data_path.py --pools 20000 --batches 50     # a quick look
    python benchmarks/data_path.py --splits results/data/splits --pools ""   # the data path of an existing split
    python benchmarks/data_path.py --synthetic 50000 --pools "" --device cuda  # batches assembled on a GPU

**The large pools are tiled, not generated**: Pythia would need hours on a small machine for 1M jets, so one
shard of real jets is generated once into ``--data-cache`` (the built-in generator, the repository's
``config.yaml`` settings, ``--seed-jets-per-class`` jets per class; its rate is measured and extrapolated) and
each pool is that shard's jets repeated, with fresh jet ids, written as shards of the paper's size (11M jets in 400
shards). The data stages see realistic jets (multiplicities, features, compressibility) but every jet recurs
``pool / seed`` times, which no stage looks at.

Per pool size, each stage runs in a fresh process (wall time, peak private memory RssAnon sampled every 20 ms,
peak file-backed resident memory RssFile — memory-mapped split pages, shared and reclaimable — the disk
written, and for ``split`` the machine's peak dirty page cache, all processes', so take it on a quiet machine):

* ``tile``: the shards (stands in for ``generate``: the parquet writing alone, no Pythia);
* ``split``: :func:`jetscale.data.splits.build_splits` with the paper's padding (``--n-particles``, 128) and
  the paper's val/test fractions (1% and 5% of the pool);
* ``input-stats``: :func:`jetscale.inputs.stats.write_stats` for the whole training pool;
* ``data path``: what a training cell does before the model: the training split memory-mapped, its inputs
  prepared (ParticleNet/ParT: the ``physics`` preset standardised with the pool's statistics; BBT-Neutron:
  the byte tokenizer with the paper's options) and batched (the training loop's :class:`Sampler` permutation,
  ``SplitInputs.tensors``: rows read, prepared and trimmed to the batch's longest jet, as CPU tensors), no model.
  ``auto`` is the runner's own choice (inputs prepared up front while they fit
  ``jetscale.train.inputs.EAGER_LIMIT_BYTES``), ``lazy`` the batch-by-batch path every pool above that limit
  gets, ``cold`` the lazy path with the split's pages first dropped from the page cache (the benchmark's own
  files: a split larger than memory), where ``MB read from storage`` is what the batches cost the disk. ``MB
  more mapped`` is the batches' growth of mapped file pages (RssFile) against ``MB of rows`` they use (all
  batches drawn, the untimed first one too: on a small split the kernel's read-ahead can bring in the whole file
  during it). ``setup s``
  is the construction of the split's inputs (preparation up front, or the streamed
  truncation count of BBT-Neutron's bytes); ``jets/s`` the batches after it, on one core, against the fastest GPU
  training rate measured (:data:`GPU_JETS_PER_S`, ParticleNet w64 on an H100);
* ``evaluate``: the metrics of a test split's predictions (random scores; ``jetscale evaluate``'s work).

``--device DEV`` sends the data path's batches to DEV as training does there: a split prepared up front is copied
to the device once and each batch gathered on it (``SplitInputs(resident=True)``, which takes that path on
``cpu`` too: a dry run), a streamed one is sent batch by batch from page-locked memory; ``jets/s`` are then
batches ready on the device (synchronised at the end of the timing), ``to device s`` the one-off copy, and the
first batches are checked equal to the host path's. ``--synthetic N`` measures synthetic splits of N training
jets (``jetscale.data.testing``; no generator needed, e.g. on a GPU machine) instead of generated ones.

``--model-ms MS[,MS...]`` puts a simulated model step (the host waits MS ms, as for a synchronous step) after each
batch of the data path: whether a streamed split's reads and preparation overlap the model step. Before each
batch, with or without it, the rows of the batches the tree's training loop asks for ahead are handed to
``SplitInputs.prefetch`` as that loop does (``jetscale.train.runner.AHEAD_STEPS`` steps on, one in a tree
without it; none in a tree without ``prefetch``, e.g. ``--against`` an older commit).

``--against REV`` also measures the split stage and the data path with commit REV's ``src`` (a temporary git
worktree), in the same run, so a speed-up is a ratio measured on one machine at one time; the two split
stages' files are compared byte for byte.

``collect`` reads one small JSON per run and no jets: its cost grows with the number of runs, not the pool.
The page cache is warm (the split was just written): a cold read of a split larger than memory pays the disk's
random-read rate on top. Times on a shared machine: take figures on a quiet one (``HEAVY_SLOTS=2 bash
/work/heavy.sh ...`` here).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GPU_JETS_PER_S = 27_000  # fastest training rate measured so far: ParticleNet w64, bf16, H100 (benchmarks/gpu_check.sh)
PAPER_POOL = 11_000_000
PAPER_JETS_PER_SHARD = 27_500  # 11M jets in 400 shards
VAL_FRACTION, TEST_FRACTION = 0.01, 0.05  # the paper's 10k and 50k per class of 1M
MODELS = {"particles": "particlenet", "bytes": "bbt_neutron"}

sys.path.insert(0, str(Path(__file__).resolve().parent))
from other_tree import ROOT, other_tree  # noqa: E402  (a script: its own folder is not a package)


class MemoryPeak(threading.Thread):
    """Peak RssAnon (private memory) and RssFile (mapped file pages) of this process, and the machine's dirty
    page cache (``Dirty`` of /proc/meminfo: every process's, so a quiet machine's), sampled every 20 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.anon_kb = self.file_kb = self.dirty_kb = 0
        self.running = True

    def sample(self) -> None:
        status = proc_values("/proc/self/status", "RssAnon", "RssFile")
        self.anon_kb = max(self.anon_kb, status["RssAnon"])
        self.file_kb = max(self.file_kb, status["RssFile"])
        self.dirty_kb = max(self.dirty_kb, proc_values("/proc/meminfo", "Dirty")["Dirty"])

    def run(self) -> None:
        while self.running:
            self.sample()
            time.sleep(0.02)

    def __enter__(self) -> MemoryPeak:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.running = False
        self.join()
        self.sample()


def proc_values(path: str, *fields: str) -> dict[str, int]:
    """The integer values of ``fields`` in a /proc file of ``name: value [kB]`` lines (0 for a field not there)."""
    values = dict.fromkeys(fields, 0)
    for line in Path(path).read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in values:
            values[name] = int(rest.split()[0])
    return values


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (RssFile: this process's mapped file pages)."""
    return proc_values("/proc/self/status", field)[field]


def storage_read_bytes() -> int:
    """Bytes this process has had read from storage (page-cache misses, read-ahead included; /proc/self/io)."""
    return proc_values("/proc/self/io", "read_bytes")["read_bytes"]


def drop_cached(directory: Path) -> None:
    """Drop the page-cache pages of the files under ``directory`` (this benchmark's own files only), so that the
    next reads come from the disk, as for a split larger than memory."""
    for path in Path(directory).rglob("*.npy"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def paper_config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())


def bbt_options() -> dict:
    return {"tokenizer": dict(paper_config()["models"]["bbt_neutron"]["tokenizer"])}


# ---------------------------------------------------------------------------------------------- the pool
def seed_shard(cache: Path, jets_per_class: int) -> tuple[Path, dict]:
    """One shard of real jets generated with ``config.yaml``'s generator settings (cached), and its rate."""
    shard, info = cache / "seed.parquet", cache / "seed.json"
    if shard.is_file() and info.is_file() and json.loads(info.read_text())["jets_per_class"] == jets_per_class:
        return shard, json.loads(info.read_text())
    import yaml

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["data"]["source"] = "generate"
    cfg["data"]["generate"].update(jets_per_class=jets_per_class, n_shards=1)
    cfg["data"].update(val_per_class=1, test_per_class=1)  # the shard is tiled, not split as generated
    cfg["grid"]["axes"]["n_train"] = [100]
    for axes in (cfg["grid"].get("per_model") or {}).values():
        axes.pop("n_train", None)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg["results"] = str(Path(tmp) / "results")
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "jetscale", "generate", "--config", str(config), "--shard", "0"]
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, "--out", str(shard)], env=child_env(), capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"generating the seed jets failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        wall = time.perf_counter() - t0
    from jetscale.data.store import shard_labels

    n = len(shard_labels(shard)[0])
    record = {"jets_per_class": jets_per_class, "n_jets": n, "wall_s": wall, "jets_per_s": n / wall}
    info.write_text(json.dumps(record))
    return shard, record


def tile_shards(seed: Path, n_jets: int, out_dir: Path, jets_per_shard: int = PAPER_JETS_PER_SHARD) -> list[Path]:
    """``n_jets`` jets as shards under ``out_dir``: the seed shard's jets repeated (in one fixed shuffled order, so
    that every stretch of the pool mixes the classes as generated shards do), jet ids 0..n-1."""
    import numpy as np

    from jetscale import paths
    from jetscale.data.store import read_shard, write_shard

    table = read_shard(seed)
    order = np.random.default_rng(0).permutation(len(table))
    out = []
    for i, start in enumerate(range(0, n_jets, jets_per_shard)):
        ids = np.arange(start, min(n_jets, start + jets_per_shard), dtype=np.int64)
        part = table.take(order[ids % len(table)])
        part.jets["jet_id"], part.jets["event_id"] = ids, ids // 2
        out.append(write_shard(part, out_dir / paths.shard_name(i)))
    return out


def split_pool(shards: list[Path], out: Path, classes: list[str], n_particles: int) -> dict:
    """The splits of a tiled pool with the paper's val/test fractions."""
    from jetscale.data.splits import build_splits

    per_class = pool_size(shards) // len(classes)
    return build_splits(
        shards,
        out,
        classes=classes,
        val_per_class=max(1, round(VAL_FRACTION * per_class)),
        test_per_class=max(1, round(TEST_FRACTION * per_class)),
        n_particles=n_particles,
        seed=0,
        data_fingerprint="tiled",
    )


def pool_size(shards: list[Path]) -> int:
    from jetscale.data.store import shard_labels

    return sum(len(shard_labels(s)[0]) for s in shards)


# ---------------------------------------------------------------------------------------------- data path
def data_path(
    splits: str | Path,
    kind: str,
    *,
    batch_size: int,
    n_batches: int,
    mode: str = "auto",
    seed: int = 0,
    device: str | None = None,
    model_ms: float = 0.0,
) -> dict:
    """Jets/s of reading, preparing and batching training jets as a training cell does, no model.

    ``kind`` "particles" (ParticleNet/ParT: the physics preset, standardised with the training pool's
    statistics) or "bytes" (BBT-Neutron's byte tokenizer, the paper's options). ``mode`` "auto" (the runner's
    eager-or-lazy choice), "lazy" (memory-mapped, prepared batch by batch) or "cold" (lazy, the split's pages
    dropped from the page cache first). A lazy split is opened as a training cell opens its training split (rows
    drawn at random, where the tree knows that option). The batches' growth of mapped file pages (RssFile) and
    their reads from storage are recorded. The set-up (statistics excluded)
    and ``n_batches`` batches of the training loop's sampler are timed separately. ``device``: batches assembled
    for that device (see the module's notes); None: CPU tensors as before. ``model_ms``: a model step simulated
    after each batch (the host waits that long, as for a synchronous step); before each batch the rows of the
    batches the tree's training loop asks for ahead are handed to ``SplitInputs.prefetch``, where it has it.
    """
    import inspect

    import numpy as np
    import torch

    from jetscale.data.splits import read_meta
    from jetscale.inputs.spec import parse_inputs
    from jetscale.train import runner
    from jetscale.train.inputs import input_transform, load_split_inputs
    from jetscale.train.runner import Sampler

    model = MODELS[kind]
    n_train = int(read_meta(splits)["sizes"]["train"])
    options = bbt_options() if kind == "bytes" else {}
    spec = parse_inputs("physics", model) if kind == "particles" else None
    transform, _ = input_transform(spec, splits, n_train)
    # an older tree (--against) may not have device-resident inputs, or random-row advice: it runs as it did then
    known = inspect.signature(load_split_inputs).parameters
    resident = {"resident": True} if device and "resident" in known else {}
    resident.update({"random_rows": True} if "random_rows" in known else {})
    if mode == "cold":
        drop_cached(Path(splits) / "train")
    t0 = time.perf_counter()
    inputs = load_split_inputs(
        splits, "train", model, options, n_train, eager=False if mode in ("lazy", "cold") else None,
        transform=transform, **resident,
    )  # fmt: skip
    setup = time.perf_counter() - t0
    sampler = Sampler(n_train, seed)
    target = device or "cpu"
    cuda = torch.device(target).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    mapped_kb, read_bytes = status_kb("RssFile"), storage_read_bytes()  # over every batch drawn, the first too
    t0 = time.perf_counter()
    ahead = getattr(inputs, "prefetch", None)  # an older tree (--against) has no next-batch read-ahead
    steps_ahead = getattr(runner, "AHEAD_STEPS", 1)  # how far the tree's training loop asks ahead
    asked = [0]  # the last batch asked for

    def draw(i: int) -> dict:
        """Batch ``i`` as a training step sees it: the rows of the batches up to the loop's read-ahead asked for
        first (each once), the model after it."""
        for j in range(max(i, asked[0]) + 1, i + 1 + steps_ahead if ahead is not None else 0):
            ahead(sampler.batch(j * batch_size, batch_size))
            asked[0] = j
        batch = inputs.tensors(sampler.batch(i * batch_size, batch_size), target)
        if model_ms:
            time.sleep(model_ms / 1e3)
        return batch

    first = draw(0)  # first touch (and the copy to the device)
    sync()
    to_device = time.perf_counter() - t0
    checked = 0
    if device:
        checked = check_batches(inputs, sampler, batch_size, target, first)
    lengths = []
    t0 = time.perf_counter()
    for i in range(1, n_batches + 1):
        batch = draw(i)
        lengths.append(next(iter(batch.values())).shape[-1])  # a shape: known on the host, no sync
    sync()
    wall = time.perf_counter() - t0
    mapped_kb, read_bytes = status_kb("RssFile") - mapped_kb, storage_read_bytes() - read_bytes
    on_device = bool(resident) and inputs.device_arrays(target) is not None
    return {
        "kind": kind,
        "model": model,
        "mode": ("eager" if inputs.eager else "lazy")
        + (", cold" if mode == "cold" else "")
        + (f", on {target}" if on_device else ""),
        "device": target,
        "to_device_s": to_device,
        "checked_batches": checked,
        "n_train": n_train,
        "batch_size": batch_size,
        "setup_s": setup,
        "jets_per_s": n_batches * batch_size / wall,
        "mean_trimmed_length": float(np.mean(lengths)),
        "batch_rows_mb": (n_batches + 1) * batch_size * row_bytes(inputs.raw) / 2**20 if inputs.raw else 0.0,
        "batch_mapped_mb": mapped_kb / 1024,
        "batch_read_mb": read_bytes / 2**20,
        "model_ms": model_ms,
        "read_ahead": ahead is not None,
    }


def row_bytes(raw: dict) -> int:
    """Bytes of one jet's rows in the split's files (all slots: batches read fewer, up to their last particle)."""
    import numpy as np

    return sum(a.itemsize * int(np.prod(a.shape[1:])) for a in raw.values())


def check_batches(inputs, sampler, batch_size: int, device: str, first: dict, n: int = 3) -> int:
    """The first ``n`` batches on ``device`` equal the host path's (numpy gather of the prepared arrays, or the
    streamed preparation, as CPU tensors); a difference stops the benchmark naming the batch and array."""
    import torch

    from jetscale.models.registry import batch_tensors

    for i in range(n):
        rows = sampler.batch(i * batch_size, batch_size)
        got = first if i == 0 else inputs.tensors(rows, device)
        want = batch_tensors(inputs.arrays, rows, "cpu", inputs.kind) if inputs.eager else inputs.tensors(rows)
        for key, value in want.items():
            if not torch.equal(got[key].cpu(), value):
                raise SystemExit(f"batch {i}, {key}: the batch assembled for {device} differs from the host path's")
    return n


# ---------------------------------------------------------------------------------------------- stages
def stage(name: str, work: dict) -> dict:
    """Run one stage in this process; returns its figures (wall time, peak memory, plus the stage's own)."""
    import numpy as np

    with MemoryPeak() as mem:
        t0 = time.perf_counter()
        extra: dict = {}
        if name == "tile":
            shards = tile_shards(Path(work["seed"]), work["n_jets"], Path(work["out"]))
            extra = {"disk_bytes": disk_bytes(Path(work["out"])), "n_shards": len(shards)}
        elif name == "split":
            shards = sorted(Path(work["shards"]).glob("*.parquet"))
            meta = split_pool(shards, Path(work["out"]), work["classes"], work["n_particles"])
            extra = {"disk_bytes": disk_bytes(Path(work["out"])), "sizes": meta["sizes"]}
        elif name == "input-stats":
            from jetscale.data.splits import read_meta
            from jetscale.inputs.stats import write_stats

            n_train = int(read_meta(work["splits"])["sizes"]["train"])
            record = write_stats(work["splits"], n_train)
            extra = {"n_train": n_train, "stats_jets": record["n_jets"]}
        elif name == "data-path":
            extra = data_path(
                work["splits"], work["kind"], batch_size=work["batch_size"], n_batches=work["n_batches"],
                mode=work["mode"], device=work.get("device"), model_ms=work.get("model_ms", 0.0),
            )  # fmt: skip
        elif name == "evaluate":
            extra = evaluate_predictions(work["splits"], work["classes"], work.get("n_jets"))
        else:
            raise ValueError(f"unknown stage {name!r}")
        wall = time.perf_counter() - t0
    return {
        "stage": name,
        "wall_s": wall,
        "peak_anon_mb": mem.anon_kb / 1024,
        "peak_file_mb": mem.file_kb / 1024,
        "peak_dirty_mb": mem.dirty_kb / 1024,
        **{k: (v.item() if isinstance(v, np.generic) else v) for k, v in extra.items()},
    }


def evaluate_predictions(splits: str, classes: list[str], n_jets: int | None = None) -> dict:
    """Time ``jetscale evaluate``'s metrics on the test split's labels (or ``n_jets`` of them, cycled) with random
    softmax scores written as a predictions file first (not timed)."""
    import numpy as np
    import pandas as pd

    from jetscale.data.splits import load_split
    from jetscale.evaluate.cli import _predictions_metrics

    labels = np.asarray(load_split(splits, "test").labels)
    n = n_jets or len(labels)
    labels = np.resize(labels, n)
    logits = np.random.default_rng(0).normal(size=(n, len(classes)))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"jet_id": np.arange(n), "label": labels})
    for i, name in enumerate(classes):
        frame[f"score_{name}"] = probs[:, i].astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.parquet"
        frame.to_parquet(path)
        del frame, probs, logits
        t0 = time.perf_counter()
        pairs = {k: v for k, v in paper_config()["flavor_pairs"].items() if set(v) <= set(classes)}
        doc = _predictions_metrics(path, classes, pairs)
        return {"n_test": n, "metrics_s": time.perf_counter() - t0, "accuracy": doc["accuracy"]}


def child_env(tree: Path = ROOT) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}


def run_stage(name: str, tree: Path = ROOT, **work) -> dict:
    """:func:`stage` in a fresh process (peak memory of that stage alone) importing ``tree``'s jetscale; its
    figures or the error's last line."""
    proc = subprocess.run(
        [sys.executable, __file__, "--stage", json.dumps({"name": name, **work})],
        env=child_env(tree),
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        return {"stage": name, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- report
def line(r: dict, label: str, note: str = "") -> str:
    if "error" in r:
        return f"  {label:<40} FAILED: {r['error']}"
    disk = f"{r['disk_bytes'] / 2**30:7.2f} GiB" if "disk_bytes" in r else " " * 11
    return (
        f"  {label:<40} {r['wall_s']:8.1f} s  anon {r['peak_anon_mb']:7.0f} MB  file {r['peak_file_mb']:7.0f} MB"
        f"  {disk}  {note}"
    )


def measure_pool(a, n_jets: int, seed: Path, classes: list[str], work: Path) -> list[dict]:
    shards, splits = work / "shards", work / "splits"
    print(f"pool {n_jets:,} jets (tiled from {seed}), {a.n_particles} particles per jet:", flush=True)
    rows = []
    r = run_stage("tile", seed=str(seed), n_jets=n_jets, out=str(shards))
    print(line(r, "tile (parquet writing, no Pythia)", f"{r.get('n_shards', '?')} shards"), flush=True)
    rows.append(r)
    r = run_stage("split", shards=str(shards), out=str(splits), classes=classes, n_particles=a.n_particles)
    print(line(r, "split", f"dirty (machine) {r.get('peak_dirty_mb', 0):,.0f} MB, sizes {r.get('sizes')}"), flush=True)
    rows.append(r)
    if "error" in r:
        return rows
    if a.against:
        rows.append(split_against(a, shards, splits, classes))
    shutil.rmtree(shards)  # only the splits from here on (disk)
    rows += measure_splits(a, str(splits), classes)
    return [{**row, "pool": n_jets} for row in rows]


def split_against(a, shards: Path, splits: Path, classes: list[str]) -> dict:
    """The split stage with commit ``--against``'s writer, beside this tree's, and whether every file it writes
    is byte-identical to this tree's (then deleted: disk)."""
    other = splits.parent / "splits-against"
    r = run_stage(
        "split", a.against_tree, shards=str(shards), out=str(other), classes=classes, n_particles=a.n_particles
    )
    r["tree"] = a.against
    if "error" not in r:
        names = sorted(p.relative_to(splits) for p in splits.rglob("*") if p.is_file())
        same = names == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file()) and all(
            filecmp.cmp(splits / n, other / n, shallow=False) for n in names
        )
        r["identical_files"] = same
        note = f"dirty (machine) {r['peak_dirty_mb']:,.0f} MB, files {'identical' if same else 'DIFFER'}"
        print(line(r, f"split {a.against}", note), flush=True)
    else:
        print(line(r, f"split {a.against}"), flush=True)
    shutil.rmtree(other, ignore_errors=True)
    return r


def measure_splits(a, splits: str, classes: list[str]) -> list[dict]:
    rows = []
    r = run_stage("input-stats", splits=splits)
    print(line(r, "input-stats", f"statistics of {r.get('stats_jets', '?'):,} jets"), flush=True)
    rows.append(r)
    start = len(rows)
    for kind in a.kinds:
        for mode in a.modes:
            if mode == "lazy" and any(x.get("kind") == kind and x.get("mode") == "lazy" for x in rows[start:]):
                continue  # the runner's own choice was already the lazy path
            trees = ((ROOT, ""), *(((a.against_tree, a.against),) if a.against else ()))
            for model_ms, (tree, tag) in ((m, t) for m in a.model_ms for t in trees):
                r = run_stage(
                    "data-path", tree, splits=splits, kind=kind, batch_size=a.batch_size, n_batches=a.batches,
                    mode=mode, device=a.device, model_ms=model_ms,
                )  # fmt: skip
                r["tree"] = tag or "this"
                rows.append(r)
                label = f"data path {MODELS[kind]} ({r.get('mode', mode)})" + (f" {tag}" if tag else "")
                label += f" +{model_ms:g} ms model" if model_ms else ""
                if "error" in r:
                    print(line(r, label), flush=True)
                    continue
                ratio = r["jets_per_s"] / GPU_JETS_PER_S
                moved = f"to device {r['to_device_s']:.2f} s, " if a.device else ""
                if r["mode"].startswith("lazy"):
                    moved += (
                        f"batches: {r['batch_rows_mb']:,.0f} MB of rows, {r['batch_mapped_mb']:,.0f} MB more mapped, "
                        f"{r['batch_read_mb']:,.0f} MB read from storage; "
                    )
                print(
                    line(r, label) + f"setup {r['setup_s']:.1f} s, {moved}{r['jets_per_s']:,.0f} jets/s = {ratio:.2f}× "
                    "GPU training",
                    flush=True,
                )
    r = run_stage("evaluate", splits=splits, classes=classes)
    note = f"{r['n_test']:,} jets, metrics {r['metrics_s']:.2f} s" if "error" not in r else ""
    print(line(r, "evaluate (test split)", note), flush=True)
    rows.append(r)
    return rows


def extrapolate(rows: list[dict], gen: dict | None) -> None:
    """Each stage's wall time, peak memory and disk at the paper's 11M: the largest pool's figure plus the
    marginal cost per jet between the two largest pools (a stage that stops growing, e.g. statistics capped at
    100k jets or memory bounded by a chunk, stays flat)."""
    print(
        f"\nextrapolation to the paper's {PAPER_POOL / 1e6:.0f}M jets (the largest pool + the marginal cost "
        "between the two largest):"
    )
    if gen:
        print(
            f"  generate (Pythia + detector, measured on the seed: {gen['jets_per_s']:.0f} jets/s per core): "
            f"{PAPER_POOL / gen['jets_per_s'] / 3600:,.0f} core-hours"
        )
    labels = {}
    for r in rows:
        if "error" not in r and "pool" in r:
            if r["stage"] == "data-path":
                key = f"{r['stage']} {r['model']} ({r['mode']}, {r['tree']})"
            else:
                key = r["stage"] + (f" ({r['tree']})" if "tree" in r else "")
            labels.setdefault(key, []).append(r)
    for key, rs in labels.items():
        rs = sorted(rs, key=lambda r: r["pool"])[-2:]
        if len(rs) < 2 or rs[0]["pool"] == rs[1]["pool"]:
            continue
        (p0, r0), (p1, r1) = ((r["pool"], r) for r in rs)
        parts = []
        for field, unit in (("wall_s", "s"), ("peak_anon_mb", "MB anon"), ("peak_file_mb", "MB file"),
                            ("disk_bytes", "GiB disk"), ("setup_s", "s setup")):  # fmt: skip
            if field not in r1:
                continue
            scale = 2**30 if field == "disk_bytes" else 1
            slope = max(0.0, (r1[field] - r0[field]) / scale / (p1 - p0))  # a drop is noise: flat
            parts.append(f"{r1[field] / scale + slope * (PAPER_POOL - p1):,.0f} {unit} ({slope * 1e6:+,.1f}/M)")
        print(f"  {key:<34} " + ", ".join(parts))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pools", default="100000,300000,1000000", help="pool sizes (jets), comma-separated")
    p.add_argument("--splits", default=None, help="also measure the data path etc. of this existing splits directory")
    p.add_argument("--n-particles", type=int, default=128, help="padding of the tiled splits (paper: 128)")
    p.add_argument("--batch-size", type=int, default=None, help="default: config/paper.yaml's training.batch_size")
    p.add_argument("--batches", type=int, default=200, help="timed batches per data-path measurement")
    p.add_argument("--kinds", default="particles,bytes", help="input kinds: particles (ParticleNet/ParT), bytes")
    p.add_argument("--modes", default="auto,lazy", help="auto (the runner's choice), lazy, cold (lazy, uncached)")
    p.add_argument("--seed-jets-per-class", type=int, default=600, help="real jets per class generated once")
    p.add_argument("--data-cache", default="/tmp/jetscale-data-path-seed", help="where the seed shard lives")
    p.add_argument("--workdir", default=None, help="where pools are written (default: a temporary directory)")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    p.add_argument("--against", default=None, metavar="REV", help="also measure the data path of commit REV")
    p.add_argument("--device", default=None, help="batches for this device (cuda, cpu): gathered there if prepared")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="measure synthetic splits of N train jets")
    p.add_argument("--model-ms", default="0", help="simulated model step per batch, ms (comma-separated values)")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # internal: one stage, JSON
    a = p.parse_args(argv)
    if a.stage:
        work = json.loads(a.stage)
        print(json.dumps(stage(work.pop("name"), work)))
        return 0
    a.kinds = [k for k in a.kinds.split(",") if k]
    a.modes = [m for m in a.modes.split(",") if m]
    a.model_ms = [float(m) for m in a.model_ms.split(",") if m.strip()]
    a.batch_size = a.batch_size or int(paper_config()["training"]["batch_size"])
    a.pools = [int(float(x)) for x in a.pools.split(",") if x.strip()]
    classes = list(paper_config()["classes"])
    if a.device:
        import torch

        try:
            torch.empty(0, device=a.device)
        except (RuntimeError, AssertionError) as err:
            raise SystemExit(f"--device {a.device}: not usable here ({str(err).splitlines()[0]})") from None
    print(
        f"data path: batch {a.batch_size}, {a.batches} timed batches, one process, 1 thread, "
        f"batches for {a.device or 'cpu'}{' (gathered there)' if a.device else ''}; "
        f"GPU training reference {GPU_JETS_PER_S:,} jets/s (ParticleNet w64, H100)"
    )
    with tempfile.TemporaryDirectory() as tmp, other_tree(a.against, Path(tmp) / "against") as a.against_tree:
        return measure_all(a, classes)


def measure_all(a, classes: list[str]) -> int:
    rows: list[dict] = []
    if a.splits:
        print(f"splits {a.splits}:")
        rows += measure_splits(a, a.splits, classes)
    if a.synthetic:
        from jetscale.data.testing import write_synthetic_splits

        sizes = {"train": a.synthetic, "val": max(1, round(VAL_FRACTION * a.synthetic)),
                 "test": max(1, round(TEST_FRACTION * a.synthetic))}  # fmt: skip
        with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
            print(f"SYNTHETIC splits, sizes {sizes}, {a.n_particles} particles per jet:")
            splits = write_synthetic_splits(tmp, classes, sizes, n_particles=a.n_particles)
            rows += [{**r, "synthetic": a.synthetic} for r in measure_splits(a, str(splits), classes)]
    gen = None
    if a.pools:
        seed, gen = seed_shard(Path(a.data_cache), a.seed_jets_per_class)
        print(
            f"TILED POOLS: {gen['n_jets']:,} real jets generated once ({gen['jets_per_s']:.0f} jets/s), "
            "repeated with fresh jet ids; no Pythia time below"
        )
        with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
            for n in a.pools:
                work = Path(tmp) / f"pool-{n}"
                rows += measure_pool(a, n, seed, classes, work)
                shutil.rmtree(work, ignore_errors=True)
        extrapolate(rows, gen)
    if a.json:
        Path(a.json).write_text(json.dumps({"gpu_jets_per_s": GPU_JETS_PER_S, "generate": gen, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

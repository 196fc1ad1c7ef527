"""Cost of writing the pretraining pool (``jetscale ingest-pool``) as it grows: time, memory, mapped pages.

    python benchmarks/pool_write.py --jets 300000                    # this tree
    python benchmarks/pool_write.py --jets 300000 --against REV      # and commit REV's writer, files compared

Writes ``--files`` parquet files of synthetic jets in the JetClass schema (no labels; 10-60 particles a jet) once
into ``--workdir``, then runs :func:`jetscale.data.pool_store.ingest_pool` on them in a fresh process per tree,
padded to ``--n-particles`` (the paper's 128), and reports its wall time, peak private memory (RssAnon), peak
mapped file pages (RssFile, over the process's own at the start: the output's pages while they stay mapped) and
the machine's peak dirty page cache (every process's: take it on a quiet machine). With ``--against`` the two
trees' pool arrays are compared byte for byte.
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_path import MemoryPeak, status_kb  # noqa: E402
from other_tree import ROOT, other_tree  # noqa: E402

PARTICLE_BRANCHES = ("d0val", "d0err", "dzval", "dzerr", "isElectron", "isMuon", "isNeutralHadron", "isPhoton")


def write_jets(path: Path, n_jets: int, seed: int) -> None:
    """A parquet file of ``n_jets`` JetClass-schema jets without label branches."""
    import awkward as ak
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = rng.integers(10, 61, n_jets)
    total = int(counts.sum())
    px, py, pz = rng.normal(0, 5, total), rng.normal(0, 5, total), rng.normal(0, 5, total) + 20
    e = np.sqrt(px**2 + py**2 + pz**2)
    charge = rng.choice([-1.0, 0.0, 1.0], total)
    part = {"px": px, "py": py, "pz": pz, "energy": e, "charge": charge, "isChargedHadron": (charge != 0) * 1.0}
    part.update(deta=rng.normal(0, 0.2, total), dphi=rng.normal(0, 0.2, total))
    part.update({name: np.zeros(total) for name in PARTICLE_BRANCHES})
    arrays = {f"part_{k}": ak.unflatten(v.astype(np.float32), counts) for k, v in part.items()}
    arrays["jet_pt"] = rng.uniform(500, 1000, n_jets)
    arrays["jet_eta"] = rng.normal(0, 1, n_jets)
    arrays["jet_phi"] = rng.uniform(-3, 3, n_jets)
    arrays["jet_energy"] = np.add.reduceat(e, np.r_[0, np.cumsum(counts)[:-1]])
    ak.to_parquet(ak.zip(arrays, depth_limit=1), path)


def measure(files: list[str], out: str, n_particles: int) -> dict:
    """``ingest_pool`` of ``files`` into ``out`` in this process (the child of :func:`run`)."""
    from jetscale.data.pool_store import ingest_pool

    before = status_kb("RssFile")
    start = time.perf_counter()
    with MemoryPeak() as peak:
        record = ingest_pool(files, "jetclass", out, n_particles=n_particles)
    return {
        "seconds": time.perf_counter() - start,
        "jets": record["n_jets"],
        "anon_gb": peak.anon_kb / 1e6,
        "mapped_gb": (peak.file_kb - before) / 1e6,
        "dirty_gb": peak.dirty_kb / 1e6,
        "disk_gb": sum(p.stat().st_size for p in Path(out).glob("*.npy")) / 1e9,
    }


def run(tree: Path, files: list[Path], out: Path, n_particles: int) -> dict:
    """:func:`measure` in a fresh process importing ``tree``'s ``src``."""
    work = json.dumps({"files": [str(f) for f in files], "out": str(out), "n_particles": n_particles})
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    os.sync()  # no writeback left over from the files' writing or the previous run
    done = subprocess.run([sys.executable, __file__, "--child", work], env=env, check=True, capture_output=True)
    return json.loads(done.stdout.decode().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jets", type=int, default=300_000, help="jets in the pool")
    p.add_argument("--files", type=int, default=3, help="pool files the jets are spread over")
    p.add_argument("--n-particles", type=int, default=128, help="padding (paper: 128)")
    p.add_argument("--against", default=None, metavar="REV", help="also measure commit REV's writer")
    p.add_argument("--workdir", default=None, help="where the files are written (default: a temporary directory)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one measurement, JSON
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(measure(**json.loads(a.child))))
        return 0
    work = Path(a.workdir or tempfile.mkdtemp(prefix="pool-write-"))
    work.mkdir(parents=True, exist_ok=True)
    files = [work / f"pool{i}.parquet" for i in range(a.files)]
    for i, path in enumerate(files):
        write_jets(path, a.jets // a.files + (i < a.jets % a.files), seed=i)
    trees = {"this tree": ROOT}
    try:
        with other_tree(a.against, work / "against") as against:
            if against is not None:
                trees[a.against] = against
            compare_trees(a, trees, files, work)
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def compare_trees(a, trees: dict, files: list[Path], work: Path) -> None:
    """Each tree's writer on ``files``, and whether their files are identical."""
    outs = {}
    for label, tree in trees.items():
        outs[label] = work / f"out-{len(outs)}"
        r = run(tree, files, outs[label], a.n_particles)
        print(
            f"{label}: {r['jets']} jets, {r['seconds']:.1f} s, {r['anon_gb']:.2f} GB private, "
            f"{r['mapped_gb']:.2f} GB mapped, {r['dirty_gb']:.2f} GB dirty (machine), {r['disk_gb']:.2f} GB written"
        )
    if len(outs) > 1:
        names = [f"{n}.npy" for n in ("features", "mask", "vectors")]
        same, differ, _ = filecmp.cmpfiles(*outs.values(), names, shallow=False)
        print(f"files identical: {same == names} (differ: {differ})")


if __name__ == "__main__":
    sys.exit(main())

"""`jetscale status`: where a study in progress stands, read from the results directory (and Slurm's queue).

Per cell of the grid, one state:
- finished  ``metrics.json`` present and made with the cell's current settings (same settings hash);
- failed    ``failure.json`` (non-finite loss), or a train log with an error line and no job in the queue;
- running   in Slurm's queue (running or waiting there), or locally: started (log, train_log.csv or checkpoint)
            and touched within the last ``stale_after`` seconds;
- pending   everything else: not started, interrupted (resumes from its checkpoint), or finished with other
            settings (Snakemake retrains it).
Time left: per (model, width), the measured training seconds per sample of its finished cells times the samples
still to go (the budget of pending cells, budget − samples done for running ones; early stopping can only make
it shorter). Read-only: nothing here writes, renames or locks anything.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import paths
from .grid import cell_id, cells
from .paths import results_root, run_dir, train_log
from .settings import resolve_settings, settings_hash
from .terminal import printable
from .train.stopping import max_samples

STATES = ("finished", "running", "failed", "pending")
STALE_AFTER_S = 600.0
LOG_TAIL_BYTES = 65536
ERROR_LINE = re.compile(r"(Traceback|Error|error:|Killed|CANCELLED|DUE TO TIME LIMIT|exit status|non-finite)")


def budget_samples(settings: dict) -> int | None:
    """Training samples a cell may draw at most: its fixed budget, or for compute 'auto' its safety cap (most
    such cells stop well before it); None for a fitted model (no sample stream)."""
    if settings.get("kind") == "fitted":
        return None
    return max_samples(settings)


def last_error(log: Path) -> str | None:
    """The last line of a log that looks like an error (progress-bar carriage returns split into lines)."""
    try:
        with open(log, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    hits = [ln for ln in lines if ERROR_LINE.search(ln)]
    return hits[-1][:300] if hits else None


def samples_done(run: Path) -> int | None:
    """Samples seen so far, from the last row of train_log.csv (None if there is none)."""
    path = run / paths.TRAIN_LOG
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        return int(float(rows[-1]["samples"])) if rows else None
    except (OSError, KeyError, ValueError):
        return None


def _read_json(path: Path, text_as_reason: bool = False) -> dict | None:
    """A JSON object, or None when the file is unreadable or holds no object (with ``text_as_reason`` a bare
    string becomes ``{"reason": text}``, so a failure.json written by hand still tells why)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict):
        return doc
    return {"reason": doc} if text_as_reason and isinstance(doc, str) else None


def _latest_mtime(paths) -> float | None:
    times = []
    for p in paths:
        try:
            times.append(p.stat().st_mtime)
        except OSError:
            pass
    return max(times) if times else None


def cell_status(cfg: dict, root: Path, cell: dict, *, now: float, queue: dict, stale_after: float) -> dict:
    cid = cell_id(cfg, cell)
    run, log = run_dir(root, cid), train_log(root, cid)
    settings = resolve_settings(cfg, cell)
    out = {
        "cell_id": cid,
        "model": cell["model"],
        "width": cell["width"],
        "state": "pending",
        "detail": "not started",
        "error": None,
        "wall_time_s": None,
        "samples_seen": None,
        "budget_samples": budget_samples(settings),
        "evaluated": (run / paths.EVAL).is_file(),
    }
    metrics = _read_json(run / paths.METRICS) if (run / paths.METRICS).is_file() else None
    if metrics is not None:
        if metrics.get("settings_hash") == settings_hash(settings):
            out.update(state="finished", detail="", wall_time_s=metrics.get("wall_time_s"))
            out["samples_seen"] = metrics.get("samples_seen")
            return out
        out["detail"] = "finished with other settings: will retrain"
    in_queue = queue.get(cid)
    if in_queue:
        done = samples_done(run)
        out.update(state="running", detail=f"slurm {in_queue}", samples_seen=done)
        return out
    failure = _read_json(run / paths.FAILURE, text_as_reason=True) if (run / paths.FAILURE).is_file() else None
    if failure is not None:
        out.update(state="failed", detail=paths.FAILURE, error=str(failure.get("reason", failure)))
        return out
    started = [p for p in (log, run / paths.TRAIN_LOG, run / paths.CHECKPOINT) if p.exists()]
    if not started:
        return out
    error = last_error(log) if log.exists() else None
    touched = _latest_mtime([*started, run])
    fresh = touched is not None and now - touched < stale_after
    if error:  # a retry (Slurm) is in the queue, handled above; locally a retry rewrites the log
        out.update(state="failed", detail=f"log {log}", error=error)
    elif fresh and metrics is None:
        out.update(state="running", detail="local", samples_seen=samples_done(run))
    elif metrics is None:
        step = samples_done(run)
        out["detail"] = "interrupted" + (f" at {step} samples (resumes from checkpoint)" if step else "")
    return out


def read_slurm_queue(cfg: dict) -> tuple[dict, str | None]:
    """{cell id: Slurm state} of the queued train jobs Snakemake's Slurm executor submitted; (map, problem)."""
    if not shutil.which("squeue"):
        return {}, "squeue not found: Slurm queue not read"
    try:
        res = subprocess.run(["squeue", "-h", "-o", "%T|%k"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {}, f"squeue failed: {exc}"
    if res.returncode != 0:
        return {}, f"squeue failed: {res.stderr.strip()[:200]}"
    # the executor's job comment is rule_<rule>_wildcards_<wildcards with '/' replaced by '_'>
    by_comment = {f"rule_train_wildcards_{cell_id(cfg, c).replace('/', '_')}": cell_id(cfg, c) for c in cells(cfg)}
    queue = {}
    for line in res.stdout.splitlines():
        state, _, comment = line.partition("|")
        if comment.strip() in by_comment:
            queue[by_comment[comment.strip()]] = state.strip().lower()
    return queue, None


def study_status(cfg: dict, *, queue: dict | None = None, now: float | None = None, stale_after=STALE_AFTER_S):
    """The whole status document (JSON-able): per cell, per model, and the time-left estimate."""
    root = results_root(cfg)
    now = time.time() if now is None else now
    rows = [cell_status(cfg, root, c, now=now, queue=queue or {}, stale_after=stale_after) for c in cells(cfg)]
    models = {}
    for r in rows:
        m = models.setdefault(r["model"], {s: 0 for s in STATES} | {"evaluated": 0, "wall_time_s": []})
        m[r["state"]] += 1
        m["evaluated"] += bool(r["evaluated"] and r["state"] == "finished")
        if r["state"] == "finished" and r["wall_time_s"] is not None:
            m["wall_time_s"].append(float(r["wall_time_s"]))
    for m in models.values():
        times = m.pop("wall_time_s")
        m["mean_cell_s"] = sum(times) / len(times) if times else None
        m["max_cell_s"] = max(times) if times else None
    return {
        "results": str(root),
        "time": now,
        "cells": rows,
        "models": models,
        "totals": {s: sum(m[s] for m in models.values()) for s in STATES},
        "estimate": estimate_left(rows),
    }


def estimate_left(rows: list[dict]) -> dict:
    """Training seconds left (one core/GPU per cell), from measured seconds per sample per (model, width)."""
    rate, fitted = {}, {}
    for r in rows:
        if r["state"] == "finished" and r["wall_time_s"] and r["budget_samples"] is None:
            fitted.setdefault(r["model"], []).append(float(r["wall_time_s"]))
        if r["state"] == "finished" and r["wall_time_s"] and r["samples_seen"]:
            t, s = rate.get((r["model"], r["width"]), (0.0, 0))
            rate[(r["model"], r["width"])] = (t + float(r["wall_time_s"]), s + int(r["samples_seen"]))
    seconds, unknown = 0.0, []
    for r in rows:
        if r["state"] not in ("pending", "running"):
            continue
        if r["budget_samples"] is None:  # a fitted model: no samples; the mean seconds of its finished cells
            if r["model"] in fitted:
                seconds += sum(fitted[r["model"]]) / len(fitted[r["model"]])
            else:
                unknown.append(r["cell_id"])
            continue
        key = (r["model"], r["width"])
        if key not in rate:
            unknown.append(r["cell_id"])
            continue
        done = (r["samples_seen"] or 0) if r["state"] == "running" else 0
        left = r["budget_samples"] - done
        seconds += max(left, 0) * rate[key][0] / rate[key][1]
    running = sum(r["state"] == "running" for r in rows)
    parallel = max(running, 1)
    return {
        "cell_seconds_left": seconds,
        "parallel_jobs": parallel,
        "wall_seconds_left": seconds / parallel,
        "cells_without_estimate": unknown,
        "method": "measured seconds per training sample of finished cells of the same model and width x samples "
        "left (budget; for compute 'auto' the safety cap, an upper bound: such cells stop when they converge), "
        "divided by the number of cells running now; fitted models: the mean seconds of their finished cells",
    }


def _duration(seconds) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_status(doc: dict, *, show_cells: bool = False) -> str:
    lines = [f"jetscale status: {doc['results']}  ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(doc['time']))})"]
    head = f"{'model':<14}{'finished':>9}{'running':>9}{'failed':>8}{'pending':>9}{'evaluated':>11}"
    lines += [head + f"{'mean/cell':>11}{'max/cell':>10}"]
    for model, m in doc["models"].items():
        lines.append(
            f"{model:<14}{m['finished']:>9}{m['running']:>9}{m['failed']:>8}{m['pending']:>9}{m['evaluated']:>11}"
            f"{_duration(m['mean_cell_s']):>11}{_duration(m['max_cell_s']):>10}"
        )
    t = doc["totals"]
    lines.append(f"{'all':<14}{t['finished']:>9}{t['running']:>9}{t['failed']:>8}{t['pending']:>9}")
    est = doc["estimate"]
    known = est["cell_seconds_left"] > 0 or not est["cells_without_estimate"]
    left = f"time left: {_duration(est['cell_seconds_left']) if known else 'unknown'} of training"
    if est["parallel_jobs"] > 1:
        left += f", about {_duration(est['wall_seconds_left'])} at {est['parallel_jobs']} cells in parallel"
    if est["cells_without_estimate"]:
        left += f" (+ {len(est['cells_without_estimate'])} cells: no finished cell of their model and width yet)"
    lines.append(left)
    for r in doc["cells"]:
        if r["state"] == "failed":
            lines.append(f"FAILED {r['cell_id']}: {printable(r['error'])}")
    if show_cells:
        for r in doc["cells"]:
            extra = _duration(r["wall_time_s"]) if r["state"] == "finished" else r["detail"]
            lines.append(f"  {r['state']:<9} {r['cell_id']}  {printable(extra)}")
    if doc.get("queue_note"):
        lines.append(doc["queue_note"])
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser("status", help="cells finished/running/failed/pending per model, errors, time left")
    p.add_argument("--config", default="config.yaml")
    p.add_argument(
        "--profile",
        choices=("auto", "local", "slurm"),
        default="auto",
        help="slurm: also read Slurm's queue (auto: when <results>/logs/slurm exists and squeue is installed)",
    )
    p.add_argument("--cells", action="store_true", help="also list every cell")
    p.add_argument("--json", action="store_true", help="print the status document as JSON")
    p.add_argument("--watch", type=float, nargs="?", const=10.0, default=None, metavar="SECONDS", help="refresh")
    p.add_argument(
        "--stale-after",
        type=float,
        default=STALE_AFTER_S,
        help="a started local cell untouched this many seconds counts as interrupted, not running (default 600)",
    )
    p.set_defaults(func=_status)


def _status(args) -> int:
    from .config import load_config

    cfg = load_config(args.config)
    root = results_root(cfg)
    use_slurm = args.profile == "slurm" or (
        args.profile == "auto" and (paths.logs_dir(root) / "slurm").is_dir() and shutil.which("squeue")
    )
    try:
        return _loop(cfg, args, use_slurm)
    except KeyboardInterrupt:
        return 0


def _loop(cfg, args, use_slurm) -> int:
    while True:
        queue, note = read_slurm_queue(cfg) if use_slurm else ({}, None)
        doc = study_status(cfg, queue=queue, stale_after=args.stale_after)
        doc["queue_note"] = note
        if args.json:
            text = json.dumps(doc, indent=1)
        else:
            text = format_status(doc, show_cells=args.cells)
        if args.watch is None:
            print(text)
            return 0
        sys.stdout.write("\x1b[2J\x1b[H" + text + "\n")
        sys.stdout.flush()
        time.sleep(max(args.watch, 0.5))

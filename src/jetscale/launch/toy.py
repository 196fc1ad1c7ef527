"""A toy 'training' with the ``train_cell`` signature: counts steps, checkpoints, resumes.

Used by the Slurm tests and ``jetscale launch --toy-steps N`` (smoke-test a cluster in a minute). It follows the
same contract as :func:`jetscale.train.loop.train_cell`: resume from ``out_dir/checkpoint.*`` when present,
poll :func:`jetscale.signals.stop_requested` at step boundaries, save and raise ``StopForCheckpoint``.
Its result is checkable: ``total`` must equal 1 + 2 + ... + steps whatever the number of interruptions.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .. import paths, signals


def toy_train_cell(cfg: dict, cell_id: str, splits_dir, out_dir) -> dict:
    toy = (cfg or {}).get("toy", {})
    steps, step_s = int(toy.get("steps", 20)), float(toy.get("step_s", 0.5))
    every = int(toy.get("checkpoint_every", 5))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.json"
    state = json.loads(ckpt.read_text()) if ckpt.exists() else {"step": 0, "total": 0, "resumed_at": []}
    if state["step"]:
        state["resumed_at"].append(state["step"])
    attempt = os.environ.get("SLURM_RESTART_COUNT", "0")
    with open(out / "steps.log", "a") as log:
        log.write(
            f"start cell={cell_id} step={state['step']} job={os.environ.get('SLURM_JOB_ID', '-')} "
            f"restart={attempt} pid={os.getpid()} "
            f"rank={os.environ.get('RANK', '-')}/{os.environ.get('WORLD_SIZE', '-')}\n"
        )
    while state["step"] < steps:
        time.sleep(step_s)
        state["step"] += 1
        state["total"] += state["step"]
        if state["step"] % every == 0 or signals.stop_requested():
            _save(ckpt, state)
        if signals.stop_requested():
            with open(out / "steps.log", "a") as log:
                log.write(f"stop at step={state['step']} signal={signals.stop_signal()}\n")
            raise signals.StopForCheckpoint(state["step"])
    metrics = {
        "cell": cell_id,
        "steps": state["step"],
        "total": state["total"],
        "resumed_at": state["resumed_at"],
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
    (out / paths.METRICS).write_text(json.dumps(metrics, indent=1))
    return metrics


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def main(argv=None) -> int:
    """``python -m jetscale.launch.toy --cell ID --out DIR [--steps N --step-s S]``: the process-side protocol.

    This is what ``jetscale train`` does when a Slurm job runs it directly: SIGUSR1/SIGTERM request a stop, the
    loop checkpoints at a step boundary, and the process exits with ``signals.EXIT_REQUEUE`` (75) so that the
    attempt counts as failed and is retried (Snakemake ``retries``) -- the retry resumes from the checkpoint.
    """
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m jetscale.launch.toy")
    p.add_argument("--cell", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--step-s", type=float, default=1.0)
    p.add_argument("--checkpoint-every", type=int, default=5)
    a = p.parse_args(argv)
    cfg = {"toy": {"steps": a.steps, "step_s": a.step_s, "checkpoint_every": a.checkpoint_every}}
    with signals.stop_on_signals():
        try:
            toy_train_cell(cfg, a.cell, None, a.out)
        except signals.StopForCheckpoint as stop:
            print(f"stopped for checkpoint at step {stop}", file=sys.stderr)
            return signals.EXIT_REQUEUE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Start one training cell as N data-parallel processes on this node (``jetscale train --processes N``).

Why not ``torchrun``: a preempted Slurm job signals the launcher, and the cell must end as "checkpointed,
requeue me" (exit 75, see :mod:`jetscale.signals`). torchrun turns a SIGTERM into its own failure and
exit status; this launcher forwards SIGTERM/SIGUSR1/SIGINT to every rank (they vote, checkpoint together at the
next step and exit 75) and exits with the ranks' status. A rank that fails takes the others down after a
short grace, instead of leaving them blocked in a collective. The ranks see the usual ``env://`` variables,
so ``torchrun -m jetscale.cli train ...``, ``srun`` or submitit work as well.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from ..signals import EXIT_REQUEUE, forwarding

GRACE_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    return env


def run_ranks(argv: list[str], processes: int) -> int:
    """Run ``python -m jetscale.cli <argv>`` as ``processes`` ranks; return the exit status for the cell."""
    port = free_port()
    cmd = [sys.executable, "-m", "jetscale.cli", *argv]
    children = [subprocess.Popen(cmd, env=rank_env(r, processes, port)) for r in range(processes)]

    with forwarding(children):  # the ranks vote on the stop and checkpoint together
        failed_at = None
        while any(c.poll() is None for c in children):
            if failed_at is None and any(c.returncode not in (None, 0) for c in children):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > GRACE_S:
                for c in children:
                    if c.poll() is None:
                        c.kill()
            time.sleep(0.1)
    codes = [c.returncode for c in children]
    if all(code == 0 for code in codes):
        return 0
    failures = [code for code in codes if code not in (0, EXIT_REQUEUE, -signal.SIGKILL)]
    if failures:  # a real failure wins over "checkpointed, requeue me"
        return failures[0] if failures[0] > 0 else 128 - failures[0]
    return EXIT_REQUEUE if EXIT_REQUEUE in codes else 1

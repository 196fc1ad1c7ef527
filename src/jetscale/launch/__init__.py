"""Launching training cells on a cluster, outside Snakemake's own executors.

- :mod:`jetscale.launch.slurm`    -- cluster facts from the Slurm CLI (partitions, the onstart partition check)
- :mod:`jetscale.launch.submit`   -- submitit executors (slurm | local | debug) and the checkpointable ``TrainCell``
- :mod:`jetscale.launch.toy`      -- a tiny resumable step counter with the ``train_cell`` signature (tests, smoke)
- :mod:`jetscale.launch.cli`      -- ``jetscale launch``

Nothing here imports submitit or torch at module import time.
"""

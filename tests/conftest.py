"""Shared fixtures: the repo root and the default config."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_helpers import slurm_cluster  # noqa: F401  (registers the fixture for every test module)
from tiny_config import default_raw_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def default_config_dict() -> dict:
    return default_raw_config()


DISTRIBUTED_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def no_leaked_distributed_env():
    """A test must not leave torch.distributed variables behind: every later `jetscale train` in the same
    worker (and the Snakemake jobs it starts) would wait for ranks that do not exist."""
    import os

    before = {k: os.environ.get(k) for k in DISTRIBUTED_ENV}
    yield
    leaked = {k: os.environ.get(k) for k in DISTRIBUTED_ENV if os.environ.get(k) != before[k]}
    assert not leaked, f"test left distributed environment variables behind: {leaked}"


@pytest.fixture(autouse=True)
def clean_stop_requests():
    """A stop request (signal or call) is process-wide state: never let one cross into another test."""
    from jetscale import signals as preempt

    preempt.reset()
    yield
    preempt.reset()


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test, restored after: timings and results do not depend on the worker."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """`--dist loadgroup` must keep every xdist_group on one worker (the Slurm tests count the cluster's jobs, the
    e2e modules share module fixtures): when a pytest/xdist pairing stops tagging the node ids (pytest 9 with
    xdist 3.8 did), stop here instead of running the groups split and failing at random."""
    if not getattr(config.option, "loadgroup", False):
        return
    split = [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if split:
        raise pytest.UsageError(f"pytest-xdist did not group {len(split)} xdist_group tests (e.g. {split[0]})")

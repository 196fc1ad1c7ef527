"""Shared fixtures: the repo root and the default config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from slurm_helpers import slurm_cluster  # noqa: F401  (registers the fixture for every test module)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def default_config_dict() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


"""Shared fixtures: the repo root, the default config, and a tiny-study config factory."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def default_config_dict() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def tiny_config(results: Path, **overrides) -> dict:
    """A study small enough to run end to end in a test (real data, real training)."""
    cfg = yaml.safe_load((REPO / "tests" / "data" / "tiny_study.yaml").read_text())
    cfg["results"] = str(results)
    for key, value in overrides.items():
        cfg[key] = copy.deepcopy(value)
    return cfg

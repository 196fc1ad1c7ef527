"""A built wheel is a working install: the config schema and the shipped ingest mappings are inside it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.slow


def clean_copy(repo_root, dest):
    """The files of a fresh clone (tracked + new, not ignored): no egg-info or build/ left from a local install,
    which setuptools would silently take package data from."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=repo_root, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    for name in filter(None, listed):
        src = repo_root / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_a_built_wheel_loads_a_config(repo_root, tmp_path):
    source = clean_copy(repo_root, tmp_path / "clone")
    pip = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    build = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = tmp_path.glob("jetscale-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jetscale/schemas/config.schema.yaml" in names and "jetscale/data/mappings/jetclass.yaml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import jetscale, jetscale.config as c; "
        "assert jetscale.__file__.startswith(sys.argv[1]), jetscale.__file__; "
        "cfg = c.load_config(sys.argv[2]); print(cfg['study'])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(site), str(repo_root / "config.yaml")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "joi-default"

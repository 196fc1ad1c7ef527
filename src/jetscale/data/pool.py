"""Which files form the unlabelled pretraining pool, and their fingerprint (torch- and numpy-free: the plan uses it).

With ``pretraining.pool: {paths: [globs], mapping: NAME}`` (``data.source: ingest`` only) pretraining reads its
jets from other files, ingested once into ``results/data/pool/`` (:mod:`jetscale.data.pool_store`), instead of
the tail of the labelled training split. They must be other files than ``data.ingest.paths``, whose jets are in
the validation and test sets. Their fingerprint (paths, sizes and SHA-256s, as in an ingest manifest) is part of
every backbone's settings, so a changed pool re-pretrains.
"""

from __future__ import annotations

import functools
import glob
import os

from .. import paths
from ..errors import ConfigError
from .manifest import changes, manifest, read_manifest, repeats, stamp

KEY = "pretraining.pool"
SNAKEMAKE_SPECIAL = ("{", "}", "<", ">")  # what Snakemake would not take literally in an input path


def pool_config(cfg: dict) -> dict | None:
    """``pretraining.pool`` (None when pretraining reads the training split's tail)."""
    return (cfg.get("pretraining") or {}).get("pool")


def expand_globs(patterns, key: str) -> list[str]:
    """Files matching ``patterns`` (each sorted); a pattern matching nothing, or a file reached twice (listed
    twice, matched by two patterns, or through a link: its jets would be read twice, into training and test
    alike), is an error naming ``key``."""
    files: list[str] = []
    for pattern in patterns:
        matched = sorted(glob.glob(str(pattern)))
        if not matched:
            raise ConfigError(f"{key}: {pattern!r} matches no file")
        files += matched
    odd = next((f for f in files if any(c in f for c in SNAKEMAKE_SPECIAL)), None)
    if odd is not None:
        raise ConfigError(
            f"{key}: {odd!r}: a file name with any of {' '.join(SNAKEMAKE_SPECIAL)} cannot be a workflow input "
            "(Snakemake reads {...} as a wildcard and <...> as a path variable); rename or link the file"
        )
    repeated = repeats(files)
    if repeated:
        first, again = repeated[0]
        raise ConfigError(
            f"{key}: {again!r} is the same file as {first!r} (listed twice, matched by two patterns, or a link)"
            f"{f' ({len(repeated) - 1} more)' if len(repeated) > 1 else ''}; each file may be read once"
        )
    return files


def pool_files(cfg: dict) -> list[str]:
    """The pool's files in ingest order; none may be a labelled input file (its jets are in val/test)."""
    pool = pool_config(cfg)
    if pool is None:
        raise ConfigError(f"{KEY}: not configured; pretraining reads the tail of the training split")
    files = expand_globs(pool["paths"], f"{KEY}.paths")
    labelled = {os.path.realpath(f) for f in expand_globs(cfg["data"]["ingest"]["paths"], "data.ingest.paths")}
    shared = [f for f in files if os.path.realpath(f) in labelled]
    if shared:
        raise ConfigError(
            f"{KEY}.paths: {shared[:3]} also match data.ingest.paths; the pool must be other files "
            "(labelled files feed the validation and test sets)"
        )
    return files


def pool_fingerprint(cfg: dict) -> str:
    """The fingerprint of the pool's files; the ingested pool's manifest is reused while the files are unchanged
    (so jobs do not hash a large pool again), else their contents are hashed."""
    files = pool_files(cfg)
    recorded = read_manifest(paths.pool_dir(paths.results_root(cfg)))
    if recorded is not None and recorded.get("fingerprint") and not changes(recorded, files):
        return recorded["fingerprint"]
    return _fingerprint(tuple((f, *stamp(os.stat(f)).values()) for f in files))


@functools.lru_cache(maxsize=8)
def _fingerprint(stamped: tuple[tuple, ...]) -> str:
    """Keyed by (path, size, mtime, ctime, inode, device) so a file rewritten within one process is hashed again."""
    return manifest([path for path, *_ in stamped])["fingerprint"]


def pool_settings(cfg: dict) -> dict | None:
    """What of the pool determines a backbone's weights: its files' fingerprint and the mapping that reads them
    (None without a pool: those backbones keep their settings, and hashes, as before the pool existed)."""
    pool = pool_config(cfg)
    if pool is None:
        return None
    return {"mapping": pool["mapping"], "fingerprint": pool_fingerprint(cfg)}

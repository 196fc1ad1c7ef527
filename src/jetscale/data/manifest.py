"""What an ingest read: ``data/ingested/manifest.json`` lists every input file with its size, mtime and
SHA-256, so a changed data set (a new file matching the glob, a file rewritten) is noticed.

The ingested shards, the splits and every model trained on them belong to the files in the manifest; a study
whose ``data.ingest.paths`` now resolve to other files (or other content) is refused before any job starts,
naming the change. Checking is cheap: a file's content is hashed again only when its size or mtime moved.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "manifest.json"


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe(path: str | os.PathLike) -> dict:
    stat = os.stat(path)
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256(path)}


def manifest(paths, **extra) -> dict:
    """The manifest of ``paths`` (in ingest order) plus ``extra`` keys; ``fingerprint`` hashes the file list,
    sizes and contents (not the mtimes)."""
    files = [describe(p) for p in paths]
    blob = json.dumps([[f["path"], f["size"], f["sha256"]] for f in files])
    return {"files": files, "fingerprint": hashlib.sha256(blob.encode()).hexdigest()[:16], **extra}


def read_manifest(directory: str | os.PathLike) -> dict | None:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def changes(recorded: dict, paths) -> list[str]:
    """How ``paths`` differ from the files of the ``recorded`` manifest (empty when they are the same)."""
    old = {f["path"]: f for f in recorded.get("files", [])}
    now = [str(p) for p in paths]
    out = [f"new file {p}" for p in now if p not in old]
    out += [f"file {p} no longer matched" for p in old if p not in now]
    for p in now:
        if p not in old:
            continue
        try:
            stat = os.stat(p)
        except OSError:
            out.append(f"file {p} unreadable")
            continue
        was = old[p]
        if stat.st_size != was["size"]:
            out.append(f"file {p} changed size ({was['size']} -> {stat.st_size} bytes)")
        elif stat.st_mtime_ns != was["mtime_ns"] and sha256(p) != was["sha256"]:
            out.append(f"file {p} changed content (SHA-256 {was['sha256'][:12]}... -> {sha256(p)[:12]}...)")
    if not out and [f["path"] for f in recorded.get("files", [])] != now:
        out.append("the files are read in another order")
    return out

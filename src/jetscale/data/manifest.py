"""What an ingest read: ``data/ingested/manifest.json`` lists every input file with its size, mtime and
SHA-256, so a changed data set (a new file matching the glob, a file rewritten) is noticed.

The ingested shards, the splits and every model trained on them belong to the files in the manifest; a study
whose ``data.ingest.paths`` now resolve to other files (or other content) is refused before any job starts,
naming the change. Checking is cheap: a file's content is hashed again unless its size, mtime, ctime and inode
all match the recorded ones (``cp -p``, ``rsync -a`` or ``tar x`` restore an mtime, but a user cannot set a
ctime back: rewriting a file in place or replacing it moves one of them).

A file may be read once only: :func:`repeats` finds the same file reached twice (listed twice, matched by two
globs, or through a link), and :func:`ingest_files <jetscale.data.ingest.ingest_files>` also refuses two
files of identical content, whose jets would land in training and test alike.
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


def stamp(stat: os.stat_result) -> dict:
    """What a file's metadata says about its content: unchanged stamps mean the content need not be hashed."""
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
        "device": stat.st_dev,
    }


def describe(path: str | os.PathLike) -> dict:
    return {"path": str(path), **stamp(os.stat(path)), "sha256": sha256(path)}


def repeats(paths) -> list[tuple[str, str]]:
    """(first, again) for every file of ``paths`` that is the same file as an earlier one (the same path twice,
    or two paths reaching one file through links)."""
    seen: dict[str, str] = {}
    out = []
    for p in map(str, paths):
        real = os.path.realpath(p)
        if real in seen:
            out.append((seen[real], p))
        else:
            seen[real] = p
    return out


def manifest(paths, *, described: list[dict] | None = None, **extra) -> dict:
    """The manifest of ``paths`` (in ingest order) plus ``extra`` keys; ``fingerprint`` hashes the file list,
    sizes and contents (not the mtimes). ``described``: the files' :func:`describe` dicts when already made."""
    files = described if described is not None else [describe(p) for p in paths]
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
        elif not unchanged(was, stat) and (now_sha := sha256(p)) != was["sha256"]:
            out.append(f"file {p} changed content (SHA-256 {was['sha256'][:12]}... -> {now_sha[:12]}...)")
    if not out and [f["path"] for f in recorded.get("files", [])] != now:
        out.append("the files are read in another order")
    return out


def unchanged(recorded: dict, stat: os.stat_result) -> bool:
    """Whether a file's metadata is the recorded one in every stamp (a manifest without some stamp, written
    by an older jetscale, never is: the file is hashed)."""
    now = stamp(stat)
    return all(recorded.get(key) == value for key, value in now.items())

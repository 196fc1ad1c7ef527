"""Atomic file writes: write to a temporary name in the same directory, then rename; and no links followed.

A killed job therefore never leaves a half-written file under the final name (which Snakemake or a
later stage would take as complete). Nothing is written through a symbolic link: a final name that is a link
is refused, naming it (:func:`refuse_link`), files held open are opened with ``O_NOFOLLOW``
(:func:`open_nofollow`), and :func:`read_inside` reads a regular file inside a directory reached without links
(what the report embeds).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import JetscaleError

LINK_REFUSED = "a symbolic link; jetscale reads and writes no result through a link (remove it and rerun)"


def not_a_file(path: str | os.PathLike, what: str = "file") -> str:
    """Why ``path`` is not a readable regular file, as a message naming it: not found, a directory, or a FIFO,
    device or socket (which 'not found' would misname)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"{path}: {what} not found" + (" (a dangling link)" if os.path.islink(path) else "")
    except OSError as exc:
        return f"{path}: {what} cannot be read ({exc.strerror})"
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"{path}: {what} expected, but this is {kind}, not a regular file"


def read_csv_table(path: str | os.PathLike):
    """A CSV file as a DataFrame; a file that is not CSV text (binary, another encoding, unparsable) is a
    :class:`~jetscale.errors.DataError` naming it."""
    import pandas as pd

    from .errors import DataError

    if not Path(path).is_file():
        raise DataError(not_a_file(path, "CSV file"))
    try:
        return pd.read_csv(path)
    except (UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: not a CSV table ({type(exc).__name__}: {detail})") from None


def read_json(path: str | os.PathLike, what: str = "JSON file") -> dict:
    """The JSON object in ``path``; a missing, unreadable, invalid or non-object file is a
    :class:`~jetscale.errors.DataError` naming it (``what`` says which file it should be)."""
    from .errors import DataError

    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: {what} unreadable ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise DataError(f"{path}: {what} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: {what} must be a JSON object, not a {type(doc).__name__}")
    return doc


def refuse_link(path: str | os.PathLike) -> None:
    """Raise a :class:`JetscaleError` naming ``path`` when it is a symbolic link (dangling or not)."""
    if os.path.islink(path):
        raise JetscaleError(f"{path}: {LINK_REFUSED}")


def open_nofollow(path: str | os.PathLike, flags: int, mode: int = 0o666) -> int:
    """``os.open`` that never follows a link at ``path`` (a link is refused, naming it)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise JetscaleError(f"{path}: {LINK_REFUSED}") from None
        raise


def read_inside(path: str | os.PathLike, root: str | os.PathLike) -> bytes:
    """The bytes of ``path``, a regular file inside directory ``root`` reached without any link below ``root``
    (``root`` itself may be a link); anything else is a :class:`JetscaleError` naming the path."""
    import stat

    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise JetscaleError(f"{path}: outside the results directory {root}; only files inside it are read") from None
    here = root
    for part in parts:
        here = here / part
        try:
            st = os.lstat(here)
        except OSError as exc:
            raise JetscaleError(f"{here}: cannot be read ({exc.strerror})") from None
        if stat.S_ISLNK(st.st_mode):
            raise JetscaleError(f"{here}: {LINK_REFUSED}")
    if not parts or not stat.S_ISREG(st.st_mode):
        raise JetscaleError(f"{path}: not a regular file")
    fd = open_nofollow(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    refuse_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=(suffix or path.suffix) + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp creates 0600; give the file the mode a plain open() would have
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON (NaN/inf become null, numpy scalars/arrays plain numbers/lists), written atomically."""
    write_text(
        path, json.dumps(json_safe(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n"
    )


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by None, recursively (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if type(obj).__module__ == "numpy":
        import numpy as np

        if isinstance(obj, np.generic):
            return json_safe(obj.item())
        if isinstance(obj, np.ndarray):
            return json_safe(obj.tolist())
    return obj


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

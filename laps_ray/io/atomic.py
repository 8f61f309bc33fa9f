"""Atomic file writes: write to a temporary sibling, then rename.

A crash leaves either the old file or the new one, never a half-written file that looks done.
Temporary names start with ``.`` and end with ``.tmp`` so resume logic and globbing ignore them.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it to ``path``, on error delete it.

    The temporary is a hidden sibling (same filesystem, so the rename is atomic) that keeps
    ``path``'s suffix, so writers that infer the format from the name (PyAV, matplotlib, h5py)
    still see e.g. ``.mp4``: ``clip.mp4`` is written as ``.clip.1a2b3c4d.tmp.mp4``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(path: str | Path, create: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; on success swap it in for ``path``.

    An existing ``path`` is moved aside first and deleted after the swap, so readers see the old
    directory or the new one, never a half-written one. On error the temporary is deleted.
    ``create=False`` leaves the temporary path for the caller to create (e.g. ``shutil.copytree``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    if create:
        tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (NaN/inf are rejected, not written as invalid JSON)."""
    write_text_atomic(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


class OutputDirError(ValueError):
    """An output folder cannot be used; the message names it and the reason (one line for the user)."""


def prepare_output_dir(path: str | Path, what: str = "output") -> Path:
    """Create the folder ``path`` (and its parents) and check that files can be written into it.

    Called before Ray starts and before anything is deleted, so an unusable output path is one line
    naming it, not a traceback after minutes of work.

    Raises:
        OutputDirError: ``path`` is a file, or cannot be created or written (the reason from the OS).
    """
    import tempfile

    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".laps_write_check.", suffix=".tmp", dir=out)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise OutputDirError(f"{what} {out}: is a file, not a folder") from None
    except NotADirectoryError:
        raise OutputDirError(f"{what} {out}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise OutputDirError(f"{what} {out}: cannot write there ({reason})") from None
    return out


def read_json_object(path: str | Path, error: type[Exception] = ValueError, what: str = "") -> dict[str, Any]:
    """A JSON file whose top level is an object, or ``error`` naming the file and why.

    Args:
        path: the file.
        error: the exception type to raise (the caller's own, e.g. a format error).
        what: a word put before the path in messages (``"report"`` → ``report out/r.json: ...``).
    """
    name = f"{what} {path}" if what else str(path)
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise error(f"{name}: cannot read ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise error(f"{name}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise error(f"{name}: top level must be an object, got {type(doc).__name__}")
    return doc

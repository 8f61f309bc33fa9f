"""Small helpers shared by test modules (import as ``from helpers import ...``)."""

from __future__ import annotations

import os
from pathlib import Path


def make_unlistable_folder(parent: Path, name: str = "deep") -> Path:
    """A sub-folder of ``parent`` that ``os.walk`` cannot list, even as root.

    Tests usually run as root, for whom ``chmod 000`` changes nothing, and the interpreter may live
    where another user cannot run it. A chain of folders whose full path exceeds PATH_MAX (4096
    bytes) fails to list for everyone with ENAMETOOLONG, a real OS error of the same kind. The chain
    is built with ``dir_fd`` (relative ``mkdir``), since no single path to its end may be used.

    Returns:
        ``parent / name``, the top of the chain (listable itself; its deepest part is not).
    """
    top = parent / name
    top.mkdir(parents=True)
    fd = os.open(top, os.O_RDONLY)
    try:
        for level in range(18):  # 18 x 242 bytes > 4096
            child = f"{level:02d}" + "d" * 240
            os.mkdir(child, dir_fd=fd)
            nxt = os.open(child, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    return top

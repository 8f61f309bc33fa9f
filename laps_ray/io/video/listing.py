"""Finding the videos of a folder (:func:`scan_videos`, :func:`list_videos`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from laps_ray.io.decode import VIDEO_EXTS
from laps_ray.io.video.errors import VideoError, _av_reason


@dataclass
class VideoListing:
    """What :func:`scan_videos` found: the videos, and the sub-folders it could not list.

    Attributes:
        videos: video files sorted by path.
        unreadable: ``(folder, reason)`` of every sub-folder that could not be listed (its videos,
            if any, are unknown); the caller reports them and processes the rest.
    """

    videos: list[Path]
    unreadable: list[tuple[str, str]]


def scan_videos(path: str | Path, exts: Sequence[str] = VIDEO_EXTS, recursive: bool = True) -> VideoListing:
    """A file → ``[file]``; a folder → its video files sorted by path (case-insensitive suffix match;
    hidden files/folders and ``.tmp`` temporaries skipped) and the sub-folders that cannot be listed.

    Raises:
        VideoError: a missing path, or a root folder that cannot be listed (nothing to process).
    """
    root = Path(path)
    if root.is_file():
        return VideoListing([root], [])
    if not root.exists():
        raise VideoError(str(root), "no such file or directory")
    if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
        raise VideoError(str(root), "directory not readable")
    wanted = {e.lower() for e in exts}
    unreadable: list[tuple[str, str]] = []

    def note(err: OSError) -> None:  # os.walk would silently skip unreadable sub-folders
        where = str(err.filename or root)
        if Path(where) == root:
            raise VideoError(str(root), f"directory not readable ({_av_reason(err)})")
        unreadable.append((where, f"directory not readable ({_av_reason(err)})"))

    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=note):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in filenames:
            temp = name.startswith(".") or ".tmp." in name or name.endswith(".tmp")
            if temp or Path(name).suffix.lower() not in wanted:
                continue
            found.append(Path(dirpath) / name)
    return VideoListing(sorted(found), sorted(unreadable))


def list_videos(path: str | Path, exts: Sequence[str] = VIDEO_EXTS, recursive: bool = True) -> list[Path]:
    """The videos of :func:`scan_videos`, strictly: any folder that cannot be listed is an error.

    Raises:
        VideoError: missing path, or a folder (or sub-folder) that cannot be listed.
    """
    listing = scan_videos(path, exts, recursive)
    if listing.unreadable:
        folder, reason = listing.unreadable[0]
        raise VideoError(folder, reason)
    return listing.videos

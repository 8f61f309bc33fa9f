"""AMPLIFY-compatible HDF5 track store: one file per video, windows of point tracks.

Layout (DESIGN.md contract)::

    root/<view>/tracks        float32 (W, T, N, 2)  pixel (x, y) in the processed frame
    root/<view>/vis           bool    (W, T, N)
    root/<view>/frame_index   int64   (W,)  source frame index of each window's first frame
    root/<view>/t_start       float64 (W,)  its timestamp in seconds
    root/<view>.attrs         height, width, fps, source_fps, stride, T, grid, tracker, source,
                              num_frames, laps_ray_version

Files are written through a hidden temporary name and renamed when complete, so a file that exists
under its final name is complete; ``root.attrs["complete"]`` is a second guard. Datasets are chunked
per window and gzip-compressed.

:class:`TrackWriter` appends windows while a video streams (memory stays flat in video length);
:func:`load_windows` and :func:`split_by_video` feed tokenizer training.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from laps_ray import __version__

log = logging.getLogger(__name__)

DEFAULT_VIEW = "default"
SUFFIX = ".h5"


class TrackStoreError(ValueError):
    """A track file is missing, incomplete or malformed; the message names the file."""


@dataclass(frozen=True)
class TrackMeta:
    """Per-view attributes of a track file."""

    height: int
    width: int
    fps: float  # processed (target) frame rate
    source_fps: float
    stride: int
    T: int
    grid: int
    tracker: str
    source: str  # source video path, as given
    num_frames: int = 0  # processed frames of the video
    view: str = DEFAULT_VIEW


class TrackWriter:
    """Stream windows into an HDF5 file; :meth:`close` renames it into place.

    Use as a context manager: on an exception the temporary file is deleted and nothing appears
    under the final name.
    """

    def __init__(self, path: str | Path, meta: TrackMeta, num_points: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        self._tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.tmp{SUFFIX}")
        self._file = h5py.File(self._tmp, "w")
        g = self._file.create_group(f"root/{meta.view}")
        T, N = meta.T, num_points
        opts = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        self._tracks = g.create_dataset(
            "tracks", (0, T, N, 2), maxshape=(None, T, N, 2), dtype="f4", chunks=(1, T, N, 2), **opts
        )
        self._vis = g.create_dataset(
            "vis", (0, T, N), maxshape=(None, T, N), dtype="?", chunks=(1, T, N), **opts
        )
        self._frame_index = g.create_dataset(
            "frame_index", (0,), maxshape=(None,), dtype="i8", chunks=(1024,)
        )
        self._t_start = g.create_dataset("t_start", (0,), maxshape=(None,), dtype="f8", chunks=(1024,))
        self._group = g
        self.num_windows = 0

    def append(
        self, tracks: np.ndarray, vis: np.ndarray, frame_index: np.ndarray, t_start: np.ndarray
    ) -> None:
        """Append W windows: tracks (W,T,N,2), vis (W,T,N), frame_index (W,), t_start (W,)."""
        w = len(tracks)
        if w == 0:
            return
        n0 = self.num_windows
        for ds, arr in (
            (self._tracks, tracks),
            (self._vis, vis),
            (self._frame_index, frame_index),
            (self._t_start, t_start),
        ):
            ds.resize(n0 + w, axis=0)
            ds[n0:] = arr
        self.num_windows = n0 + w

    def close(self, num_frames: int) -> Path:
        """Write attributes, mark complete and atomically rename to the final path."""
        attrs = asdict(self.meta)
        attrs["num_frames"] = int(num_frames)
        attrs["laps_ray_version"] = __version__
        for key, value in attrs.items():
            self._group.attrs[key] = value
        self._file["root"].attrs["complete"] = True
        self._file.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file."""
        if self._file.id.valid:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TrackWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self._file.id.valid:
            # Reached without close(): an error, so nothing partial may look done.
            self.abort()


def write_tracks(
    path: str | Path,
    tracks: np.ndarray,
    vis: np.ndarray,
    meta: TrackMeta,
    frame_index: np.ndarray | None = None,
    t_start: np.ndarray | None = None,
) -> Path:
    """Write a whole track file at once (tests, small videos). Shapes as in :meth:`TrackWriter.append`."""
    w = len(tracks)
    if frame_index is None:
        frame_index = np.arange(w, dtype=np.int64) * meta.stride
    if t_start is None:
        t_start = np.asarray(frame_index, dtype=np.float64) / max(meta.fps, 1e-9)
    with TrackWriter(path, meta, num_points=tracks.shape[2]) as writer:
        writer.append(tracks, vis, frame_index, t_start)
        return writer.close(num_frames=meta.num_frames)


def read_meta(path: str | Path, view: str | None = None) -> TrackMeta:
    """Attributes of a complete track file (first view if ``view`` is None)."""
    with _open(path) as f:
        g = _view_group(f, path, view)
        a = g.attrs
        try:
            return TrackMeta(
                height=int(a["height"]),
                width=int(a["width"]),
                fps=float(a.get("fps", 0.0)),
                source_fps=float(a.get("source_fps", 0.0)),
                stride=int(a.get("stride", 1)),  # AMPLIFY files: a window per frame
                T=int(a["T"]) if "T" in a else int(g["tracks"].shape[1]),
                grid=int(a.get("grid", round(np.sqrt(g["tracks"].shape[2])))),
                tracker=str(a.get("tracker", "unknown")),
                source=str(a.get("source", "")),
                num_frames=int(a.get("num_frames", 0)),
                view=g.name.split("/")[-1],
            )
        except KeyError as exc:
            raise TrackStoreError(f"{path}: view '{g.name}' lacks attribute {exc.args[0]!r}") from exc


def read_tracks(path: str | Path, view: str | None = None) -> tuple[np.ndarray, np.ndarray, TrackMeta]:
    """All windows of one view: tracks (W,T,N,2) float32, vis (W,T,N) bool, meta."""
    meta = read_meta(path, view)
    with _open(path) as f:
        g = f[f"root/{meta.view}"]
        # Explicit dtypes: some h5py builds refused to up-cast on read (reference §5.2 #10).
        tracks = np.asarray(g["tracks"][...], dtype=np.float32)
        vis = np.asarray(g["vis"][...]).astype(bool)
    return tracks, vis, meta


def read_window_times(path: str | Path, view: str | None = None) -> np.ndarray:
    """Timestamp in seconds of each window's first frame: float64 (W,)."""
    meta = read_meta(path, view)
    with _open(path) as f:
        return np.asarray(f[f"root/{meta.view}"]["t_start"][...], dtype=np.float64)


def is_complete(path: str | Path) -> bool:
    """True iff ``path`` is a readable track file marked complete."""
    try:
        with h5py.File(path, "r") as f:
            return bool(f["root"].attrs.get("complete", True)) and len(f["root"]) > 0
    except (OSError, KeyError):
        return False


def list_track_files(folder: str | Path) -> list[Path]:
    """Complete-looking track files under ``folder`` (recursive, sorted, temporaries skipped)."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise TrackStoreError(f"{folder}: no such track folder")
    files = [p for p in folder.rglob(f"*{SUFFIX}") if not p.name.startswith(".")]
    files += [p for p in folder.rglob("*.hdf5") if not p.name.startswith(".")]
    return sorted(files)


def split_by_video(
    files: Sequence[Path], val_fraction: float, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Deterministic train/val split by *video* (file), never by window.

    Each file goes to validation iff a seeded hash of its name falls below ``val_fraction``, so the
    split does not depend on which other files exist; with at least two files, both sides get one.
    (The original trained and validated on the same windows.)
    """
    files = sorted(files)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = {p: _unit_hash(f"{seed}:{p.name}") for p in files}
    val = [p for p in files if keys[p] < val_fraction]
    train = [p for p in files if keys[p] >= val_fraction]
    if val_fraction > 0 and len(files) >= 2:
        if not val:  # take the lowest-hash file so tiny datasets still validate
            p = min(train, key=keys.get)
            train.remove(p)
            val.append(p)
        if not train:
            p = max(val, key=keys.get)
            val.remove(p)
            train.append(p)
    return train, val


@dataclass
class WindowSet:
    """Training windows gathered from track files.

    Attributes:
        tracks: float32 (M, V, T, N, 2) pixel positions.
        vis: bool (M, V, T, N).
        sizes: int32 (M, 2) processed frame (height, width) of each window's video.
        video_ids: int32 (M,) index into ``files``.
        files: the source files.
    """

    tracks: np.ndarray
    vis: np.ndarray
    sizes: np.ndarray
    video_ids: np.ndarray
    files: list[Path]

    def __len__(self) -> int:
        return len(self.tracks)


def load_windows(files: Sequence[Path], views: Sequence[str] | None = None) -> WindowSet:
    """Load every window of ``files`` into memory as ``(M, V, T, N, 2)`` arrays.

    ``views`` selects views by name (all files must have them); None takes the first view.
    """
    tracks, vis, sizes, ids = [], [], [], []
    for i, path in enumerate(files):
        per_view_t, per_view_v = [], []
        names = list(views) if views else [None]
        hw = None
        for name in names:
            t, v, meta = read_tracks(path, name)
            if hw is not None and hw != (meta.height, meta.width):
                raise TrackStoreError(f"{path}: views have different frame sizes")
            hw = (meta.height, meta.width)
            per_view_t.append(t)
            per_view_v.append(v)
        tracks.append(np.stack(per_view_t, axis=1))
        vis.append(np.stack(per_view_v, axis=1))
        sizes.append(np.tile(np.array(hw, dtype=np.int32), (len(tracks[-1]), 1)))
        ids.append(np.full(len(tracks[-1]), i, dtype=np.int32))
    if not tracks:
        raise TrackStoreError("no track files to load")
    shapes = {t.shape[2:] for t in tracks}
    if len(shapes) > 1:
        raise TrackStoreError(f"track files disagree on (T, N, 2): {sorted(shapes)}")
    return WindowSet(
        tracks=np.concatenate(tracks),
        vis=np.concatenate(vis),
        sizes=np.concatenate(sizes),
        video_ids=np.concatenate(ids),
        files=list(files),
    )


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def _open(path: str | Path) -> h5py.File:
    try:
        f = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as exc:
        raise TrackStoreError(f"{path}: cannot open track file ({exc})") from exc
    # Files from the original AMPLIFY/LAPS preprocessing have no "complete" flag: accept them.
    if f.get("root") is None or not bool(f["root"].attrs.get("complete", True)):
        f.close()
        raise TrackStoreError(f"{path}: incomplete track file (no complete 'root' group)")
    return f


def _view_group(f: h5py.File, path: str | Path, view: str | None) -> h5py.Group:
    root = f["root"]
    if view is None:
        names = list(root.keys())
        if not names:
            raise TrackStoreError(f"{path}: no views under 'root'")
        view = names[0]
    if view not in root:
        raise TrackStoreError(f"{path}: no view {view!r}; views: {list(root.keys())}")
    return root[view]

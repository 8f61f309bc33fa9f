"""One video → one HDF5 track file: decode, resample, window, track, append, rename.

A plain function (no Ray), called by the preprocess actor and directly by tests.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.io.decode import DecodeConfig
from laps_ray.io.track_store import TrackMeta, TrackWriter
from laps_ray.io.video import iter_frames, probe
from laps_ray.tracking.base import Tracker
from laps_ray.tracking.windowed import Timeline, batched, iter_windows

log = logging.getLogger(__name__)


def track_video(
    source: str | Path,
    out_path: str | Path,
    tracker: Tracker,
    decode: DecodeConfig,
    T: int,
    stride: int,
    grid: int,
    view: str = "default",
    batch_windows: int = 8,
) -> dict[str, Any]:
    """Track every window of ``source`` and write ``out_path`` atomically.

    Returns:
        A record with ``windows``, ``frames``, ``height``, ``width``, ``source_fps``,
        ``video_seconds`` and ``seconds`` (wall time).

    Raises:
        laps_ray.io.video.VideoError: unreadable or too-short input (nothing is written).
    """
    t0 = time.perf_counter()
    info = probe(source)
    timeline = Timeline()
    frames = iter_frames(source, target_fps=decode.target_fps, resize_shorter=decode.resize_shorter or None)
    writer: TrackWriter | None = None
    size = None
    try:
        windows = iter_windows(frames, _Prepare(tracker), T, stride, timeline)
        for batch in batched(windows, batch_windows):
            tracks, vis = tracker.track_prepared([[it.prepared for it in w.items] for w in batch])
            if writer is None:
                size = batch[0].items[0].shape
                meta = TrackMeta(
                    height=size[0],
                    width=size[1],
                    fps=float(decode.target_fps),
                    source_fps=float(info.fps),
                    stride=stride,
                    T=T,
                    grid=grid,
                    tracker=tracker.name,
                    source=str(source),
                    view=view,
                )
                writer = TrackWriter(out_path, meta, num_points=tracks.shape[2])
            writer.append(
                tracks.astype(np.float32),
                vis.astype(bool),
                np.array([w.frame_index for w in batch], dtype=np.int64),
                np.array([w.t_start for w in batch], dtype=np.float64),
            )
        assert writer is not None and size is not None  # iter_windows raises on < 2 frames
        n_windows = writer.num_windows
        writer.close(num_frames=timeline.num_frames)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    _, times = timeline.arrays()
    return {
        "windows": int(n_windows),
        "frames": timeline.num_frames,
        "height": int(size[0]),
        "width": int(size[1]),
        "points": int(grid * grid),
        "source_fps": float(info.fps),
        "video_seconds": float(times[-1] - times[0] + 1.0 / decode.target_fps),
        "seconds": round(time.perf_counter() - t0, 3),
    }


class _Prepared:
    """A prepared frame plus its processed size (the tracker's prepared object is opaque)."""

    __slots__ = ("prepared", "shape")

    def __init__(self, prepared: Any, shape: tuple[int, int]):
        self.prepared = prepared
        self.shape = shape


class _Prepare:
    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def __call__(self, frame: Any) -> _Prepared:
        return _Prepared(self.tracker.prepare(frame.image), frame.image.shape[:2])

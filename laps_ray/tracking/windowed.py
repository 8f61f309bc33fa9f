"""Decode → per-frame preparation → overlapping windows, streaming with flat memory.

Each frame is prepared once (LK: grey pyramid; CoTracker: a tensor) and shared by the
``ceil(T / stride)`` windows that contain it; only the last ``T + stride`` prepared frames are
held, so memory does not grow with video length. Used by preprocessing, offline segmentation and
the live stream job alike, so their windows are identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from laps_ray.core.windows import WindowBuffer, flush_windows, push_item


@dataclass
class Timeline:
    """Source frame index and timestamp (s) of every processed frame seen so far."""

    index: list[int] = field(default_factory=list)
    t: list[float] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.index)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.index, dtype=np.int64), np.asarray(self.t, dtype=np.float64)


@dataclass
class Window:
    """One window: its number, first processed frame, and the T prepared items."""

    index: int
    start: int
    items: list[Any]
    frame_index: int  # source index of the first frame
    t_start: float  # its timestamp (s)


def iter_windows(
    frames: Iterable[Any],
    prepare: Callable[[Any], Any],
    T: int,
    stride: int,
    timeline: Timeline | None = None,
) -> Iterator[Window]:
    """Yield the windows of a frame stream (``laps_ray.io.video.Frame`` objects) in order.

    Args:
        frames: iterable of frames with ``.index`` and ``.t``.
        prepare: per-frame work, run exactly once per frame.
        T, stride: window geometry (see ``laps_ray.core.windows.window_starts``).
        timeline: filled with every frame's source index and time (for exports).
    """
    buf = WindowBuffer(T=T, stride=stride)
    timeline = timeline if timeline is not None else Timeline()
    n = 0
    for frame in frames:
        timeline.index.append(int(frame.index))
        timeline.t.append(float(frame.t))
        for start, items in push_item(buf, prepare(frame)):
            yield _window(n, start, items, timeline)
            n += 1
    for start, items in flush_windows(buf):
        yield _window(n, start, items, timeline)
        n += 1


def batched(windows: Iterable[Window], size: int) -> Iterator[list[Window]]:
    """Group windows into lists of at most ``size`` (GPU trackers batch windows)."""
    batch: list[Window] = []
    for w in windows:
        batch.append(w)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _window(n: int, start: int, items: list[Any], timeline: Timeline) -> Window:
    return Window(
        index=n, start=start, items=items, frame_index=timeline.index[start], t_start=timeline.t[start]
    )

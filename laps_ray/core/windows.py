"""Windows over resampled frames, the query grid and the one velocity normalisation.

Shape letters used across laps_ray:
    F frames of a video (after resampling), T frames per window, W windows, N tracked points,
    L tokens per window (= T-1), D latent width, B batch, V camera views.

Everything here is pure numpy and is shared by preprocessing, training and inference, so that the
tokenizer always sees the same geometry (the original had four different normalisations).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

DEFAULT_T = 16
DEFAULT_STRIDE = 4
DEFAULT_GRID = 20
DEFAULT_TARGET_FPS = 20.0  # processed frame rate: the tokenizer's time base


def window_starts(num_frames: int, T: int = DEFAULT_T, stride: int = DEFAULT_STRIDE) -> np.ndarray:
    """First frame of every window, so that every frame of the video lies in some window.

    Windows start at ``0, stride, 2*stride, ...``. The last window may run past the end of the
    video; its missing frames are the last frame repeated (see :func:`window_frame_indices`), i.e.
    no motion. Nothing is silently dropped.

    Args:
        num_frames: F, the number of (resampled) frames; must be >= 2.
        T: frames per window.
        stride: frames between window starts.

    Returns:
        int64 array (W,) with W = 1 + ceil(max(F - T, 0) / stride).
    """
    if num_frames < 2:
        raise ValueError(f"need at least 2 frames to form a window, got {num_frames}")
    if T < 2 or stride < 1:
        raise ValueError(f"invalid window T={T}, stride={stride}")
    extra = max(num_frames - T, 0)
    n = 1 + -(-extra // stride)
    return np.arange(n, dtype=np.int64) * stride


def window_frame_indices(start: int, num_frames: int, T: int = DEFAULT_T) -> np.ndarray:
    """Frame indices (T,) of the window starting at ``start``, clamped to the last frame."""
    return np.minimum(np.arange(start, start + T, dtype=np.int64), num_frames - 1)


def grid_points(height: int, width: int, grid: int = DEFAULT_GRID) -> np.ndarray:
    """Query points of a ``grid x grid`` lattice covering the whole (non-square) frame.

    Points are cell centres, so the margin is half a cell on each side; order is row-major
    (x varies fastest), the order the tokenizer's point embedding is tied to.

    Returns:
        float32 (N, 2) pixel (x, y) with N = grid**2.
    """
    xs = (np.arange(grid, dtype=np.float32) + 0.5) * (width / grid) - 0.5
    ys = (np.arange(grid, dtype=np.float32) + 0.5) * (height / grid) - 0.5
    gx, gy = np.meshgrid(xs, ys)  # (grid, grid), x fastest
    return np.stack([gx.ravel(), gy.ravel()], axis=-1).astype(np.float32)


def normalized_velocities(tracks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-step point velocities normalised per axis by the processed frame size.

    The one convention used in training and inference: ``v_x = dx / (width / 2)``,
    ``v_y = dy / (height / 2)`` (so a point crossing the whole frame in one step moves by 2),
    in (x, y) order, no clamping.

    Args:
        tracks: (..., T, N, 2) pixel (x, y) positions.
        height, width: processed frame size in pixels.

    Returns:
        float32 (..., T-1, N, 2).
    """
    tracks = np.asarray(tracks, dtype=np.float32)
    scale = np.array([2.0 / width, 2.0 / height], dtype=np.float32)
    return np.diff(tracks, axis=-3) * scale


@dataclass
class WindowBuffer:
    """Streaming state that turns a stream of per-frame items into windows.

    Emits exactly the windows of :func:`window_starts` for the final frame count, in order: full
    windows as soon as their last frame arrives, and at :func:`flush_windows` the tail windows
    padded with the last item. Items are opaque (frames, prepared pyramids, ...), so one buffer
    serves preprocessing, offline segmentation and live streaming.
    """

    T: int = DEFAULT_T
    stride: int = DEFAULT_STRIDE
    items: deque = field(default_factory=deque)
    first: int = 0  # processed-frame index of items[0]
    count: int = 0  # frames pushed so far
    next_start: int = 0  # first frame of the next window to emit


def push_item(buf: WindowBuffer, item: Any) -> list[tuple[int, list[Any]]]:
    """Add the next frame's item; return the windows completed by it as ``(start, items)``."""
    buf.items.append(item)
    buf.count += 1
    out = []
    while buf.next_start + buf.T <= buf.count:
        lo = buf.next_start - buf.first
        out.append((buf.next_start, list(islice(buf.items, lo, lo + buf.T))))
        buf.next_start += buf.stride
    _drop_before(buf, buf.next_start)
    return out


def flush_windows(buf: WindowBuffer) -> list[tuple[int, list[Any]]]:
    """At end of stream, return the remaining (padded) windows of :func:`window_starts`."""
    if buf.count < 2:
        raise ValueError(f"need at least 2 frames to form a window, got {buf.count}")
    out = []
    for start in window_starts(buf.count, buf.T, buf.stride):
        if start < buf.next_start:
            continue
        idx = window_frame_indices(int(start), buf.count, buf.T) - buf.first
        out.append((int(start), [buf.items[i] for i in idx]))
    buf.next_start = buf.count + buf.stride
    return out


def _drop_before(buf: WindowBuffer, frame: int) -> None:
    # Keep the last item even when no window needs it: flush() pads with it.
    while buf.first < frame and len(buf.items) > 1:
        buf.items.popleft()
        buf.first += 1

"""OpenCV pyramidal Lucas-Kanade tracker (the CPU default).

The grid of :func:`laps_ray.core.windows.grid_points` is seeded on each window's frame 0 and chained
frame to frame within the window. A step t -> t+1 keeps a point only if

* OpenCV's status flag is set in both directions (forward t -> t+1 and backward t+1 -> t),
* the forward-backward error ``|backward(forward(p)) - p|`` is at most ``fb_threshold_px``,
* the new position is finite and inside the frame, ``[0, W-1] x [0, H-1]``.

Lost points: a point that fails a step is invisible from that frame to the end of the window and its
position is held at its last good value, so its velocity is exactly zero from then on (the tokenizer
sees "no motion" rather than a drifting guess). LK has no re-detection, so a point is never revived.
Steps between two identical frames (a window padded past the end of the video repeats the last frame)
are not tracked: points stay where they are, with their visibility unchanged.

Lighting changes: before each step the next frame's grey levels are scaled so that its mean equals
the previous frame's (a 256-entry lookup table from the exact integer pixel sums, so the result does
not depend on the CPU). LK assumes constant brightness; a global gain change (mains flicker, auto
exposure) otherwise shifts every match and loses points on textured regions. Measured on the
flicker setting of ``benchmarks/segment_quality.py`` (gain 1 + 0.08 sin, 3 % of frames jumping up to
12 %): ROC AUC of the motion energy against the ground truth 0.86 -> 0.98; unchanged without
flicker (a ratio within 0.2 % leaves every level as it is).

Per-frame sharing: ``prepare`` converts a frame to grayscale once. OpenCV's Python bindings cannot pass
a precomputed pyramid from ``cv2.buildOpticalFlowPyramid`` to ``cv2.calcOpticalFlowPyrLK`` (opencv
issue #4777, still the case in OpenCV 5.0), so the pyramids are built inside each LK call. To build
them as rarely as possible, the windows of a batch that share a frame pair (with T=16 / stride 4 up
to four of them) are tracked in one call with all their points concatenated. LK treats every point
independently, so results are identical to tracking the windows one by one.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from laps_ray.tracking.base import BaseTracker, TrackerConfig, check_frame, check_windows

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LKFrame:
    """A prepared frame: the grayscale image LK works on.

    Attributes:
        gray: (H, W) uint8, C-contiguous.
        total: sum of its grey levels (computed when not given), for the gain compensation.
    """

    gray: np.ndarray
    total: int = -1

    def __post_init__(self) -> None:
        if self.total < 0:  # exact, so the gain ratio is the same on every CPU
            object.__setattr__(self, "total", int(self.gray.sum(dtype=np.int64)))


def match_gain(reference_total: int, frame: LKFrame) -> np.ndarray:
    """``frame.gray`` with its grey levels scaled to the mean of a frame whose pixel sum is
    ``reference_total`` (rounded, clipped to 0-255; the image itself when already equal)."""
    if frame.total <= 0 or frame.total == reference_total:
        return frame.gray
    lut = np.clip(np.rint(np.arange(256) * (reference_total / frame.total)), 0, 255).astype(np.uint8)
    return lut[frame.gray]


class LKTracker(BaseTracker):
    """Pyramidal Lucas-Kanade with a forward-backward visibility check (see module docstring)."""

    name = "lk"

    def __init__(self, cfg: TrackerConfig) -> None:
        super().__init__(cfg)
        if cfg.num_threads > 0:
            # OpenCV's pool (pthreads in the pip wheels) ignores OMP_NUM_THREADS, which Ray sets per
            # actor; without this every actor would spawn one thread per core.
            cv2.setNumThreads(cfg.num_threads)
        win = (cfg.lk_win_size, cfg.lk_win_size)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, cfg.lk_max_iters, cfg.lk_eps)
        self._lk_kwargs = {"winSize": win, "maxLevel": cfg.lk_levels, "criteria": criteria}

    def prepare(self, frame: np.ndarray) -> LKFrame:
        """(H, W, 3) RGB uint8 -> :class:`LKFrame` (grayscale)."""
        check_frame(frame)
        return LKFrame(gray=cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))

    def track_prepared(self, windows: Sequence[Sequence[LKFrame]]) -> tuple[np.ndarray, np.ndarray]:
        """Track W windows of T prepared frames, each seeded with the grid on its frame 0.

        Returns:
            tracks (W, T, N, 2) float32 pixel (x, y), vis (W, T, N) bool.
        """
        T = check_windows(windows)
        num_windows = len(windows)
        height, width = windows[0][0].gray.shape
        if any(f.gray.shape != (height, width) for win in windows for f in win):
            raise ValueError("all prepared frames of a batch must have the same size")

        grid = self.query_points(height, width)
        n = len(grid)
        cur = np.repeat(grid[None], num_windows, axis=0)  # (W, N, 2) latest good position
        alive = np.ones((num_windows, n), bool)
        tracks = np.empty((num_windows, T, n, 2), np.float32)
        vis = np.empty((num_windows, T, n), bool)
        tracks[:, 0] = grid
        vis[:, 0] = True
        for group in _pair_schedule(windows):
            w0, t0 = group[0]
            prev, nxt = windows[w0][t0], windows[w0][t0 + 1]
            rows = np.array([w for w, _ in group])
            if prev is not nxt:
                self._step(prev.gray, match_gain(prev.total, nxt), rows, cur, alive)
            for w, t in group:
                tracks[w, t + 1] = cur[w]
                vis[w, t + 1] = alive[w]
        return tracks, vis

    def _step(
        self, prev: np.ndarray, nxt: np.ndarray, rows: np.ndarray, cur: np.ndarray, alive: np.ndarray
    ) -> None:
        """Advance the alive points of windows ``rows`` from ``prev`` to ``nxt``, in place."""
        wi, ni = np.nonzero(alive[rows])
        if wi.size == 0:
            return
        wi = rows[wi]
        p0 = np.ascontiguousarray(cur[wi, ni], dtype=np.float32)  # (M, 2)
        p1, st, _ = cv2.calcOpticalFlowPyrLK(prev, nxt, p0, None, **self._lk_kwargs)
        pb, st_back, _ = cv2.calcOpticalFlowPyrLK(nxt, prev, p1, None, **self._lk_kwargs)
        p1 = p1.reshape(-1, 2)
        fb_err = np.linalg.norm(pb.reshape(-1, 2) - p0, axis=1)
        height, width = prev.shape
        ok = (
            (st.ravel() == 1)
            & (st_back.ravel() == 1)
            & (fb_err <= self.cfg.fb_threshold_px)  # False for NaN
            & (p1[:, 0] >= 0)
            & (p1[:, 0] <= width - 1)
            & (p1[:, 1] >= 0)
            & (p1[:, 1] <= height - 1)
        )
        cur[wi[ok], ni[ok]] = p1[ok]
        alive[wi[~ok], ni[~ok]] = False


def _pair_schedule(windows: Sequence[Sequence[object]]) -> list[list[tuple[int, int]]]:
    """Order the steps of all windows so that steps on the same frame pair run together.

    Step ``(w, t)`` moves window ``w`` from ``windows[w][t]`` to ``windows[w][t + 1]``; frames are
    identified by object identity (``track_windows`` hands the same prepared object to every window
    that contains that frame). Each window's steps stay in order. A pair is run once every window that
    needs it has reached it; if frame orders conflict (no pair is complete), the pairs at the front
    run as they are, so the schedule always progresses.

    Returns:
        Groups of ``(w, t)`` steps, in execution order; each group shares one frame pair.
    """
    T = len(windows[0])

    def key(w: int, t: int) -> tuple[int, int]:
        return id(windows[w][t]), id(windows[w][t + 1])

    remaining = Counter(key(w, t) for w in range(len(windows)) for t in range(T - 1))
    step = [0] * len(windows)
    active = list(range(len(windows)))
    order: list[list[tuple[int, int]]] = []
    while active:
        front: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for w in active:
            front[key(w, step[w])].append((w, step[w]))
        ready = [k for k, steps in front.items() if len(steps) == remaining[k]] or list(front)
        for k in ready:
            order.append(front[k])
            remaining[k] -= len(front[k])
            for w, _ in front[k]:
                step[w] += 1
        active = [w for w in active if step[w] < T - 1]
    return order

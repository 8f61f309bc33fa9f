"""The tracker interface, its config, and the window logic shared by every tracker.

A tracker follows the ``grid x grid`` lattice of :func:`laps_ray.core.windows.grid_points` (row-major,
whole frame) through windows of ``T`` frames. Every window is seeded afresh on its own frame 0, so
windows are independent; overlapping windows (``T=16``, ``stride=4``) only share the per-frame work
(:meth:`Tracker.prepare`), which :meth:`BaseTracker.track_windows` does once per frame.

Outputs, for every tracker:
    tracks (W, T, N, 2) float32 pixel (x, y) of the processed frame,
    vis    (W, T, N) bool, True where the tracker vouches for the point.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from laps_ray.config import check, check_choice
from laps_ray.core.windows import grid_points, window_frame_indices

logger = logging.getLogger(__name__)

TRACKER_NAMES = ("lk", "cotracker3_online", "cotracker3_offline")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass
class TrackerConfig:
    """Which tracker to run and its knobs.

    Attributes:
        name: ``lk`` (OpenCV pyramidal Lucas-Kanade, CPU), ``cotracker3_online`` or
            ``cotracker3_offline`` (torch.hub CoTracker3, GPU when available).
        grid: points per side of the query lattice; N = grid**2.
        device: ``auto`` (cuda if available, else cpu), ``cpu``, ``cuda`` or ``cuda:K``; CoTracker only.
        num_threads: CPU threads the tracker's library may use in this process
            (``cv2.setNumThreads`` for lk, ``torch.set_num_threads`` for CoTracker on CPU). Both settings
            are process-wide; 1 suits one tracker per single-CPU Ray actor (set it to the actor's
            ``num_cpus`` otherwise); 0 leaves the library default (all cores). Applied when the tracker
            is built, never at import.
        lk_win_size: LK search window side in pixels (odd). 11 with 3 pyramid levels and 10
            iterations is ~3x faster than OpenCV's usual 21/30 at the same median error on 320x240
            textures (0.09 px vs 0.12 px; 68-80 vs 24 frames/s on one core, see README
            "Performance"); larger windows help flat, low-texture scenes at a proportional cost.
        lk_levels: LK pyramid levels above the full-resolution image.
        lk_max_iters: LK iterations per pyramid level (termination criterion).
        lk_eps: LK termination when the update is smaller than this (pixels).
        fb_threshold_px: forward-backward error above which a point is lost (invisible).
        hub_dir: local torch.hub directory (a clone of facebookresearch/co-tracker); None -> GitHub
            through torch.hub (needs internet).
        checkpoint: local CoTracker weights (.pth state dict, read with ``weights_only=True``);
            None -> the hub entry downloads its pretrained weights (needs internet).
        batch_windows: windows per forward pass (cotracker3_offline) and windows per chunk of
            ``track_windows`` (bounds how many prepared frames are held at once).
        amp: autocast (bf16 where supported, else fp16) on CUDA; ignored on CPU.
        vis_threshold: probability above which a float visibility counts as visible.
    """

    name: str = "lk"
    grid: int = 20
    device: str = "auto"
    num_threads: int = 1
    # LK
    lk_win_size: int = 11
    lk_levels: int = 3
    lk_max_iters: int = 10
    lk_eps: float = 0.01
    fb_threshold_px: float = 1.0
    # CoTracker
    hub_dir: str | None = None
    checkpoint: str | None = None
    batch_windows: int = 8
    amp: bool = True
    vis_threshold: float = 0.5

    def __post_init__(self) -> None:
        check_choice(self.name, TRACKER_NAMES, "name")
        check(self.grid >= 1, "grid", f"must be >= 1, got {self.grid}")
        check(
            bool(_DEVICE_RE.match(self.device)),
            "device",
            f"got {self.device!r}, expected 'auto', 'cpu', 'cuda' or 'cuda:K'",
        )
        check(
            self.num_threads >= 0,
            "num_threads",
            f"must be >= 0 (0 = library default), got {self.num_threads}",
        )
        check(
            self.lk_win_size >= 3 and self.lk_win_size % 2 == 1,
            "lk_win_size",
            f"must be odd and >= 3, got {self.lk_win_size}",
        )
        check(self.lk_levels >= 0, "lk_levels", f"must be >= 0, got {self.lk_levels}")
        check(self.lk_max_iters >= 1, "lk_max_iters", f"must be >= 1, got {self.lk_max_iters}")
        check(self.lk_eps > 0, "lk_eps", f"must be > 0, got {self.lk_eps}")
        check(self.fb_threshold_px > 0, "fb_threshold_px", f"must be > 0, got {self.fb_threshold_px}")
        check(self.batch_windows >= 1, "batch_windows", f"must be >= 1, got {self.batch_windows}")
        check(0.0 < self.vis_threshold < 1.0, "vis_threshold", f"must be in (0, 1), got {self.vis_threshold}")


@runtime_checkable
class Tracker(Protocol):
    """What every tracker offers (see module docstring for the output convention)."""

    name: str

    def prepare(self, frame: np.ndarray) -> Any:
        """Per-frame work done once per frame: (H, W, 3) RGB uint8 -> tracker-specific object."""
        ...

    def track_prepared(self, windows: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
        """W windows of T prepared frames -> tracks (W, T, N, 2) float32, vis (W, T, N) bool."""
        ...

    def track_windows(
        self, frames: np.ndarray, starts: Sequence[int], T: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frames (F, H, W, 3) uint8 and window starts -> tracks (W, T, N, 2), vis (W, T, N)."""
        ...

    def track(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One window (T, H, W, 3) uint8 -> tracks (T, N, 2), vis (T, N)."""
        ...


def check_windows(windows: Sequence[Sequence[Any]]) -> int:
    """Validate a batch for ``track_prepared``: at least one window, all of one length >= 2. Returns T."""
    if len(windows) == 0:
        raise ValueError("track_prepared needs at least one window")
    T = len(windows[0])
    if T < 2 or any(len(win) != T for win in windows):
        raise ValueError(f"all windows need the same length >= 2, got {sorted({len(w) for w in windows})}")
    return T


def check_frame(frame: np.ndarray) -> None:
    """Raise ValueError unless ``frame`` is an (H, W, 3) uint8 RGB image."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {desc}")


class BaseTracker(ABC):
    """Shared ``track_windows`` / ``track`` on top of a tracker's ``prepare`` / ``track_prepared``.

    Subclasses implement :meth:`prepare` and :meth:`track_prepared`; they seed every window with
    :meth:`query_points` on its frame 0.
    """

    name: str = "base"

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def prepare(self, frame: np.ndarray) -> Any:
        """Per-frame work, done once per frame (see :class:`Tracker`)."""

    @abstractmethod
    def track_prepared(self, windows: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Track a batch of windows of prepared frames (see :class:`Tracker`)."""

    def query_points(self, height: int, width: int) -> np.ndarray:
        """The seed points (N, 2) float32 pixel (x, y): the one grid shared by all trackers."""
        return grid_points(height, width, self.cfg.grid)

    def track_windows(
        self, frames: np.ndarray, starts: Sequence[int], T: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Track the windows starting at ``starts``, preparing each frame once.

        Windows that run past the last frame repeat it (:func:`window_frame_indices`), i.e. no motion.
        Windows are processed in chunks of ``cfg.batch_windows``; a prepared frame is dropped after the
        last chunk that uses it, so memory stays bounded on long videos.

        Args:
            frames: (F, H, W, 3) uint8 RGB.
            starts: first frame of each window, 0 <= start < F.
            T: frames per window, >= 2.

        Returns:
            tracks (W, T, N, 2) float32 pixel (x, y), vis (W, T, N) bool, in the order of ``starts``.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (F, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
        if T < 2:
            raise ValueError(f"T must be >= 2, got {T}")
        num_frames, height, width = frames.shape[:3]
        starts = [int(s) for s in starts]
        bad = [s for s in starts if not 0 <= s < num_frames]
        if bad:
            raise ValueError(f"window starts {bad[:5]} outside [0, {num_frames - 1}]")
        n = self.cfg.grid**2
        if not starts:
            return np.zeros((0, T, n, 2), np.float32), np.zeros((0, T, n), bool)

        indices = [window_frame_indices(s, num_frames, T) for s in starts]
        chunk = self.cfg.batch_windows
        chunks = [range(i, min(i + chunk, len(starts))) for i in range(0, len(starts), chunk)]
        last_use: dict[int, int] = {}  # frame index -> last chunk that needs it
        for c, rows in enumerate(chunks):
            for w in rows:
                for f in indices[w]:
                    last_use[int(f)] = c
        release: dict[int, list[int]] = {}  # chunk -> frames no later chunk needs
        for f, c in last_use.items():
            release.setdefault(c, []).append(f)

        prepared: dict[int, Any] = {}
        tracks = np.empty((len(starts), T, n, 2), np.float32)
        vis = np.empty((len(starts), T, n), bool)
        for c, rows in enumerate(chunks):
            batch = []
            for w in rows:
                window = []
                for f in indices[w]:
                    f = int(f)
                    if f not in prepared:
                        prepared[f] = self.prepare(frames[f])
                    window.append(prepared[f])
                batch.append(window)
            tr, vi = self.track_prepared(batch)
            if tr.shape != (len(rows), T, n, 2) or vi.shape != (len(rows), T, n):
                raise RuntimeError(
                    f"tracker {self.name} returned tracks {tr.shape} / vis {vi.shape} for "
                    f"{len(rows)} windows of {T} frames and {n} points"
                )
            tracks[rows.start : rows.stop] = tr
            vis[rows.start : rows.stop] = vi
            for f in release.get(c, ()):
                del prepared[f]
        logger.debug("%s: tracked %d windows of %d frames at %dx%d", self.name, len(starts), T, width, height)
        return tracks, vis

    def track(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track one window.

        Args:
            frames: (T, H, W, 3) uint8 RGB, T >= 2.

        Returns:
            tracks (T, N, 2) float32 pixel (x, y), vis (T, N) bool.
        """
        frames = np.asarray(frames)
        tracks, vis = self.track_windows(frames, [0], T=len(frames))
        return tracks[0], vis[0]

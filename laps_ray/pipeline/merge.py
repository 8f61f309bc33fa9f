"""Merging a video's shards into one window table, and the timeline its outputs use.

:func:`merge_shards` puts every window exactly once, in order, into a :class:`VideoWindows` (small
arrays in memory; the quantized vectors stay in the shards' ``.npy`` files). Window and frame fields are
derived from one timeline: the plan's when every decoded frame matched it, else (one unsharded shard)
the decoded one (:func:`timeline_source`). Processed → source mapping: :func:`to_source`, which is
:class:`laps_ray.core.timeline.SourceTimeline` (the one rule; the video's timeline is written to
``timeline.npz`` so that sweeps and calibration use it on cached outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from laps_ray.core.energy import ENERGY_SOURCES
from laps_ray.core.motion import MOTION_FEATURES
from laps_ray.core.timeline import SourceTimeline
from laps_ray.core.windows import window_starts

if TYPE_CHECKING:  # annotations only: merging and mapping need no decoder, tracker or torch
    from laps_ray.pipeline.shard_run import ShardResult
    from laps_ray.pipeline.shards import TimelinePlan


@dataclass
class VideoWindows:
    """Every window of one video, merged from its shards (W windows, F processed frames, L tokens).

    Window fields (``frame_index`` ... ``t_end``) are derived from the one timeline in use.

    Attributes:
        window: (W,) int64 global window numbers; start: (W,) int64 first processed frame of each.
        frame_index, end_frame_index: (W,) int64 source index of each window's first / last frame.
        t_start, t_end: (W,) float64 their times in seconds.
        gate: (W,) int8 gate codes (``shard_run.GATE_NAMES``); energies: (W, 3) float64 in
            ``ENERGY_SOURCES`` order; codes: (W, L) int64, -1 for gated windows.
        timeline_index, timeline_t, last_source_frame, source_fps: the fields of the video's
            :class:`~laps_ray.core.timeline.SourceTimeline` (:func:`source_timeline`).
        zq_parts: ``(npy path, first window, windows)`` of every shard's quantized vectors.
        latent_dim: D of those vectors; timeline_source: :func:`timeline_source` (or ``"live"``).
        features: (W, F) float64 motion features (``core.motion``), NaN rows for untracked windows;
            None when not computed (then :meth:`motion_features` is all NaN).
    """

    window: np.ndarray
    start: np.ndarray
    frame_index: np.ndarray
    end_frame_index: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    gate: np.ndarray
    energies: np.ndarray
    codes: np.ndarray
    timeline_index: np.ndarray
    timeline_t: np.ndarray
    last_source_frame: int
    source_fps: float
    zq_parts: list[tuple[str, int, int]] = field(default_factory=list)
    latent_dim: int = 0
    timeline_source: str = "plan"
    features: np.ndarray | None = None

    @property
    def num_windows(self) -> int:
        return int(self.window.size)

    @property
    def num_frames(self) -> int:
        return int(self.timeline_index.size)

    @property
    def gated(self) -> np.ndarray:
        return self.gate != 0

    def motion_features(self) -> np.ndarray:
        """(W, F) motion features, NaN where a window has none."""
        if self.features is None:
            return np.full((self.num_windows, len(MOTION_FEATURES)), np.nan)
        return self.features

    def energy(self, source: str) -> np.ndarray:
        """(W,) energies of one source (gate rule applied)."""
        return self.energies[:, ENERGY_SOURCES.index(source)]

    def vectors(self, windows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Quantized vectors (len(windows), L, D) float32 of the given windows, read from the shard files."""
        windows = np.asarray(windows, dtype=np.int64)
        L = self.codes.shape[1]
        out = np.zeros((windows.size, L, self.latent_dim), dtype=np.float32)
        for path, w0, n in self.zq_parts:
            sel = np.flatnonzero((windows >= w0) & (windows < w0 + n))
            if sel.size:
                arr = np.load(path, mmap_mode="r")
                out[sel] = arr[windows[sel] - w0]
        return out


def merge_shards(
    results: Sequence[ShardResult], plan: TimelinePlan | None, T: int, stride: int
) -> VideoWindows:
    """Concatenate a video's shard results; every window exactly once, in order, or ValueError."""
    if not results:
        raise ValueError("no shard results to merge")
    results = sorted(results, key=lambda r: r.first_window)
    key = results[0].key
    shards = [r.shard for r in results]
    if shards != list(range(results[0].num_shards)):
        raise ValueError(f"{key}: shards {shards} of {results[0].num_shards} (missing or duplicated)")
    window = np.concatenate([r.window for r in results])
    if not np.array_equal(window, np.arange(window.size)):
        raise ValueError(f"{key}: merged windows are not 0..{window.size - 1} in order")
    matched = plan is not None and all(r.matches_plan for r in results)
    if matched:
        index, times = plan.index, plan.t
    elif len(results) == 1:
        index, times = results[0].frame_index, results[0].frame_t
    else:
        raise ValueError(f"{key}: sharded results do not match the planned timeline")
    last_src, fps = end_of_video(plan, matched, int(index[-1]))
    F = index.size
    expected = window_starts(F, T, stride).size
    if window.size != expected:
        raise ValueError(f"{key}: {window.size} windows for {F} processed frames, expected {expected}")
    start = window * stride
    last = np.minimum(start + T - 1, F - 1)
    return VideoWindows(
        window=window,
        start=start,
        frame_index=index[start],
        end_frame_index=index[last],
        t_start=times[start],
        t_end=times[last],
        gate=np.concatenate([r.gate for r in results]),
        energies=np.concatenate([r.energies for r in results]),
        codes=np.concatenate([r.codes for r in results]),
        features=np.concatenate([r.features for r in results]),
        timeline_index=index,
        timeline_t=times,
        last_source_frame=last_src,
        source_fps=fps,
        zq_parts=[(r.zq_path, r.first_window, r.num_windows) for r in results],
        latent_dim=results[0].latent_dim,
        timeline_source=timeline_source(plan, matched),
    )


def timeline_source(plan: TimelinePlan | None, matches: bool) -> str:
    """Which timeline a file's outputs use (``params.timeline`` of segments.json): ``"plan"`` when
    every decoded frame matched the plan (and the count), else ``"decoded"``."""
    return "plan" if plan is not None and matches else "decoded"


def source_fps(plan: TimelinePlan | None) -> float:
    """``fps`` of a file's segments.json: the plan's nominal source rate (0.0 without a plan)."""
    return float(plan.source_fps) if plan is not None else 0.0


def end_of_video(plan: TimelinePlan | None, matches: bool, last_decoded: int) -> tuple[int, float]:
    """The end-of-video rule of a file: (last source frame, source fps) for :func:`to_source`.

    On the plan's timeline (:func:`timeline_source`) the last source frame is the plan's last packet
    (source frames after the last processed one belong to the last segment), else the last decoded
    frame; the fps is :func:`source_fps`.

    Args:
        plan: the file's planned timeline, or None.
        matches: every decoded frame matched the plan.
        last_decoded: source index of the last processed frame of the timeline in use.
    """
    if timeline_source(plan, matches) == "plan":
        return max(plan.num_source_frames - 1, last_decoded), source_fps(plan)
    return last_decoded, source_fps(plan)


def source_timeline(vw: VideoWindows) -> SourceTimeline:
    """The video's processed frames on its source's clock (``laps_ray.core.timeline``)."""
    return SourceTimeline(vw.timeline_index, vw.timeline_t, vw.last_source_frame, vw.source_fps)


def to_source(vw: VideoWindows, a: int, b: int) -> tuple[int, int, float, float]:
    """Processed frames ``a..b`` (inclusive) -> source frames (inclusive) and seconds: THE rule of
    :class:`laps_ray.core.timeline.SourceTimeline`."""
    return source_timeline(vw).to_source(a, b)

"""The live segmenter's windows and frames seen through ``segment_folder``'s rules.

``segment_folder`` maps segments to source frames and seconds, selects sidecar windows and fills
segments.json (``fps``, ``video_duration_sec``, ``params.timeline``) from one
:class:`~laps_ray.pipeline.merge.VideoWindows` and its plan. The stream holds only recent
windows and frames, so :class:`SourceView` presents them as a ``VideoWindows`` in local coordinates
(processed frame 0 = the first held window's start), and applies the same end-of-video rules, so the
merge/segment functions apply unchanged and a file streamed to its end gives ``segment_folder``'s
numbers. :meth:`SourceView.source_timeline` is the whole stream's timeline (``timeline.npz``).

A mixin of :class:`~.segmenter.LiveSegmenter` (it reads the segmenter's state, declared below), kept
apart so that the segmenter file holds the streaming steps and this one the mapping rules.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from laps_ray.core.timeline import SourceTimeline
from laps_ray.pipeline.live.queue import FramesDone
from laps_ray.pipeline.live.source import LiveTimeline
from laps_ray.pipeline.merge import VideoWindows, end_of_video, source_fps, timeline_source, to_source
from laps_ray.pipeline.outputs import VideoContext
from laps_ray.pipeline.shards import TimelinePlan, video_duration
from laps_ray.pipeline.window_processor import WindowId


@dataclass
class HeldWindow(WindowId):
    """What the segmenter keeps of one window (for sidecars and mapping).

    Attributes:
        gate: 0 computed, 1 pre-gated, 2 motion-gated, 3 dropped (``VideoWindows.gate`` codes).
        energies: energy of every source, in ``ENERGY_SOURCES`` order.
        codes: (L,) int64 code ids, None for gated and dropped windows.
        zq: (L, D) float32 quantized vectors, None for gated and dropped windows.
        features: (F,) motion features, None for windows that were not tracked.
    """

    gate: int
    energies: tuple[float, ...]
    codes: np.ndarray | None
    zq: np.ndarray | None
    features: np.ndarray | None = None


class SourceView:
    """Mapping rules of :class:`~.segmenter.LiveSegmenter` (module docstring)."""

    # state of the segmenter read here
    ctx: VideoContext
    timeline: LiveTimeline
    live: bool
    plan: TimelinePlan | None
    done_info: FramesDone | None
    final: bool
    hist: deque[HeldWindow]
    fps_hint: Callable[[], float]
    L: int
    D: int

    def _local_view(self, final: bool) -> tuple[VideoWindows, int]:
        """The held windows and frames as a ``VideoWindows`` in local coordinates (frame 0 = ``f0``), so
        ``segment_folder``'s mapping and selection functions apply unchanged; returns (view, f0)."""
        hist = list(self.hist)
        w0 = hist[0].window
        f0 = w0 * self.ctx.stride
        idx, t = self.timeline.arrays(f0)
        codes = np.full((len(hist), self.L), -1, dtype=np.int64)
        for i, w in enumerate(hist):
            if w.codes is not None:
                codes[i] = w.codes
        last_src, fps = self._end_rule(idx) if final else (int(idx[-1]), 0.0)
        vw = VideoWindows(
            window=np.array([w.window for w in hist], dtype=np.int64),
            start=np.array([w.start - f0 for w in hist], dtype=np.int64),
            frame_index=np.array([w.frame_index for w in hist], dtype=np.int64),
            end_frame_index=np.array([w.end_frame_index for w in hist], dtype=np.int64),
            t_start=np.array([w.t_start for w in hist]),
            t_end=np.array([w.t_end for w in hist]),
            gate=np.array([w.gate for w in hist], dtype=np.int8),
            energies=np.array([w.energies for w in hist], dtype=np.float64),
            codes=codes,
            timeline_index=idx,
            timeline_t=t,
            last_source_frame=last_src,
            source_fps=fps,
            latent_dim=self.D,
            timeline_source=self.timeline_source(),
        )
        return vw, f0

    def source_timeline(self) -> SourceTimeline:
        """Every processed frame of the stream on its source's clock, with the end-of-stream rule of
        :meth:`_end_rule` (call it at the end: ``timeline.npz``, which sweeps read to map frames to
        seconds). The frames and times are the ones the stream's segments were mapped with; for a file
        read to its end they equal ``segment_folder``'s."""
        idx, t = self.timeline.full()
        last_src, fps = self._end_rule(idx)
        return SourceTimeline(idx, t, last_src, fps)

    def _plan_matches(self) -> bool:
        return self.plan is not None and self.done_info is not None and self.done_info.matches_plan

    def timeline_source(self) -> str:
        """``params.timeline`` of segments.json: a file's as segment_folder (``timeline_source``),
        ``live`` for a live source."""
        if self.live:
            return "live"
        return timeline_source(self.plan, self._plan_matches())

    def source_fps(self) -> float:
        """``fps`` of segments.json: a file's as segment_folder (``source_fps``), a live source's
        measured rate."""
        if self.live:
            return float(self.done_info.source_fps if self.done_info else self.fps_hint())
        return source_fps(self.plan)

    def _end_rule(self, idx: np.ndarray) -> tuple[int, float]:
        """Last source frame and source fps at the end of the stream: segment_folder's rule for a file
        (``end_of_video``); for a live source the last frame decoded and the measured rate."""
        if self.live:
            info = self.done_info
            return (info.last_source_frame if info else int(idx[-1])), self.source_fps()
        return end_of_video(self.plan, self._plan_matches(), int(idx[-1]))

    def duration(self) -> float | None:
        """``video_duration_sec``: the plan's for a file read to its end (as segment_folder), else the
        end of the last frame read."""
        if not self.live and self.plan is not None and (self._plan_matches() or not self.final):
            return video_duration(self.plan)
        count = self.timeline.count
        if count == 0:
            return None
        if self.final and self.hist:
            vw, f0 = self._local_view(final=True)
            return float(to_source(vw, count - 1 - f0, count - 1 - f0)[3])
        return float(self.timeline.get(count - 1)[1])

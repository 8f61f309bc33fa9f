"""Incremental segmentation of one stream: smoothing → change points → state machine → outputs.

**Incremental outputs** (layout of ``laps_ray.io.exports``): one ``energy.jsonl`` line per window as soon
as its result arrives (atomic: written to a hidden temporary, renamed when the stream ends); when a
segment closes: its codes sidecar, its clip, and a rewrite of ``segments.json`` (:mod:`.closing`); at
the end the plot, the whole stream's ``timeline.npz`` (every processed frame's source index and time,
as ``segment_folder`` writes it) and the final ``segments.json``. Segments are mapped to source frames
and seconds, sidecar windows selected and records, sidecars, the plot and segments.json built with the
functions ``segment_folder`` uses (``laps_ray.pipeline.segment.source_segment`` / ``select_windows`` /
``segment_record`` / ``sidecar_meta`` / ``segments_doc``, and ``end_of_video`` for a file's last frame;
:mod:`.source_view`); the state machine, smoothing and change points are the ``core`` streaming steps
that ``segment_folder`` folds offline. With change points on, a window's score arrives ``k`` windows
late, so the state machine runs ``k`` windows behind the tokenizer.

:class:`LiveSegmenter` holds the streaming steps; its mixins :class:`~.source_view.SourceView` (the
mapping rules) and :class:`~.closing.ClipBook` (closing, live clips, forgetting) live in their own files
so that each stays readable.
"""

from __future__ import annotations

import array
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.core import changepoint as cpm
from laps_ray.core import segmentation as segm
from laps_ray.core import smoothing as sm
from laps_ray.core.auto_threshold import is_auto
from laps_ray.core.energy import ENERGY_SOURCES
from laps_ray.io import exports as ex
from laps_ray.pipeline.auto_calibration import AutoSeries, calibrate, threshold_record
from laps_ray.pipeline.cluster_assignment import SegmentAssigner
from laps_ray.pipeline.live.clips import ClipJob, FrameRing
from laps_ray.pipeline.live.closing import ClipBook, FinishingSegment, PendingClose
from laps_ray.pipeline.live.queue import GATE_DROPPED, FramesDone, SkippedWindow
from laps_ray.pipeline.live.source import LiveTimeline
from laps_ray.pipeline.live.source_view import HeldWindow, SourceView
from laps_ray.pipeline.outputs import (
    VideoContext,
    plot_video_energy,
    segments_doc,
    with_threshold,
    write_file_clips,
)
from laps_ray.pipeline.shards import TimelinePlan
from laps_ray.pipeline.window_processor import GATE_MOTION, GATE_PRE, WindowResult

log = logging.getLogger(__name__)

_GATE_CODES = {None: 0, GATE_PRE: 1, GATE_MOTION: 2, GATE_DROPPED: 3}  # VideoWindows.gate codes


class LiveSegmenter(SourceView, ClipBook):
    """Incremental smoothing → change points → state machine → outputs of one stream.

    Feed windows in order with :meth:`add_result` / :meth:`add_skipped` (every window id exactly once),
    call :meth:`update` after each batch, :meth:`frames_done` when the reader says so, and
    :meth:`finish` at the end. All streaming state is explicit: ``smoother``
    (:class:`~laps_ray.core.smoothing.SmootherState`), ``cp_state``
    (:class:`~laps_ray.core.changepoint.ChangePointState`), ``seg_state``
    (:class:`~laps_ray.core.segmentation.SegState`).

    Args:
        ctx: output settings shared with ``segment_folder`` (``laps_ray.pipeline.outputs.VideoContext``).
        timeline: processed-frame timeline (shared with the reader).
        live: the source is live (URL or camera), not a re-readable file.
        ring: live source frames for clips; None for a file (its clips are cut from it at the end) or
            when clips are off.
        num_tokens, latent_dim: L and D of the tokenizer (sidecar arrays).
        video_name: ``video`` field of segments.json and sidecars.
        plan: a file's planned timeline (segment_folder's source of duration and fps).
        fps_hint: the live source's measured frame rate so far (live clips are encoded at it).
        extra: stream counters to put into segments.json.
    """

    def __init__(
        self,
        ctx: VideoContext,
        timeline: LiveTimeline,
        live: bool,
        ring: FrameRing | None,
        num_tokens: int,
        latent_dim: int,
        video_name: str,
        plan: TimelinePlan | None = None,
        fps_hint: Callable[[], float] | None = None,
        extra: Callable[[], dict[str, Any]] | None = None,
        assigner: SegmentAssigner | None = None,
    ) -> None:
        self.ctx = ctx
        self.assigner = assigner  # --clusters: each closed segment is assigned to the fitted clusters
        self.out = Path(ctx.out_dir)
        self.timeline, self.live, self.ring = timeline, live, ring
        self.L, self.D = num_tokens, latent_dim
        self.video_name = video_name
        self.plan = plan
        self.extra = extra or (lambda: {})
        self.fps_hint = fps_hint or (lambda: 0.0)
        seg = ctx.segmentation
        self.cp = seg.changepoint
        self.k = cpm.lag_windows(self.cp) if self.cp.enable else 0
        self.geom = segm.WindowGeometry(T=ctx.T, stride=ctx.stride, target_fps=ctx.target_fps)
        self.smoother = sm.init_smoother(ctx.energy.smoothing)
        self.cp_state = cpm.init_changepoint()
        self.seg_state = segm.SegState()
        # threshold `auto`: windows wait for it until the warm-up's windows calibrate it (core.auto_threshold)
        self.auto = seg.auto if is_auto(seg.threshold) else None
        self._warmup: list[tuple[float, float, bool]] = []  # (signal, proxy, gated) of the warm-up windows
        self._awaiting: deque[tuple[int, float]] = deque()  # (window, signal) waiting for a change score
        self._scores: dict[int, float] = {}
        self.hist: deque[HeldWindow] = deque()
        self.next_window = 0
        self._closes: deque[PendingClose] = deque()
        self._finishing: deque[FinishingSegment] = deque()
        self.open_clip: ClipJob | None = None
        self.records: list[dict[str, Any]] = []
        self.short_segments = 0
        self.done_info: FramesDone | None = None
        self.final = False
        # compact per-window series for energy.png
        self._t_mid = array.array("d")
        self._e = array.array("d")
        self._es = array.array("d")
        self._gated = array.array("b")
        self.out.mkdir(parents=True, exist_ok=True)
        self.energy_writer = ex.JsonlWriter(self.out / ex.ENERGY_FILE)
        self._energy_closed = False

    # -- feeding

    def add_result(self, r: WindowResult) -> None:
        """Feed the next window's computed result."""
        self._add(
            HeldWindow(
                **r.identity(),
                gate=_GATE_CODES[r.gated],
                energies=tuple(float(r.energies[s]) for s in ENERGY_SOURCES),
                codes=r.codes,
                zq=r.zq,
                features=r.features,
            ),
            r.gated,
            None,
        )

    def add_skipped(self, s: SkippedWindow) -> None:
        """Feed the next window as a gap (never computed): energy 0, gated, no codes."""
        zero = tuple(0.0 for _ in ENERGY_SOURCES)
        w = HeldWindow(**s.identity(), gate=_GATE_CODES[GATE_DROPPED], energies=zero, codes=None, zq=None)
        self._add(w, GATE_DROPPED, s.reason)

    def _add(self, w: HeldWindow, gate: str | None, drop_reason: str | None) -> None:
        if w.window != self.next_window:
            raise ValueError(f"stream: expected window {self.next_window}, got {w.window}")
        self.next_window += 1
        e_raw = w.energies[ENERGY_SOURCES.index(self.ctx.energy.source)]
        self.smoother, e_smooth = sm.step(self.smoother, e_raw)
        rec = ex.energy_record(
            window=w.window,
            start_frame=w.frame_index,
            end_frame=w.end_frame_index,
            t_start=w.t_start,
            t_end=w.t_end,
            energy=e_raw,
            energy_smooth=e_smooth,
            gate=gate,
            codes=w.codes,
            energies=dict(zip(ENERGY_SOURCES, w.energies)),
            features=w.features,
        )
        if drop_reason is not None:
            rec["dropped"] = True
            rec["drop_reason"] = drop_reason
        self.energy_writer.write(rec)
        self._t_mid.append(0.5 * (w.t_start + w.t_end))
        self._e.append(e_raw)
        self._es.append(e_smooth)
        self._gated.append(w.gate != 0)
        self.hist.append(w)
        signal = float(sm.for_segmentation(e_raw, e_smooth, self.ctx.energy.smoothing))
        if self.cp.enable:
            self.cp_state, res = cpm.step(self.cp_state, self.cp, codes=w.codes, zq=w.zq, features=w.features)
            if res is not None:
                self._scores[res[0]] = res[1]
        self._awaiting.append((w.window, signal))
        if self.auto is not None:
            proxy = w.energies[ENERGY_SOURCES.index(self.auto.proxy)]
            self._warmup.append((signal, proxy, w.gate != 0))
            if w.t_end >= self.auto.warmup_seconds:
                self._calibrate()
        self._release(final=False)

    def _calibrate(self) -> None:
        """Threshold ``auto``: calibrate on the warm-up windows (scope: this stream), then let the state
        machine run over them and everything after."""
        signal, proxy, gated = (np.array(col) for col in zip(*self._warmup))
        cfg = dataclasses.replace(self.auto, scope="video")  # one stream: calibrated on its own windows
        result, keys = calibrate([AutoSeries(self.ctx.key, signal, proxy, gated.astype(bool))], cfg)
        self.ctx = with_threshold(self.ctx, result.value, threshold_record(result, keys, self.ctx.key))
        n, self.auto, self._warmup = len(self._warmup), None, []
        log.info(
            "threshold auto (stream warm-up, %d windows): %.6g%s",
            n,
            result.value,
            f"; unreliable: {self.ctx.unreliable}" if self.ctx.unreliable else "",
        )

    def frames_done(self, info: FramesDone) -> None:
        """The reader has read every frame: frames clamp at ``num_frames - 1`` from now on."""
        self.done_info = info
        if info.num_frames >= 1:
            self.geom = dataclasses.replace(self.geom, num_frames=info.num_frames)

    # -- state machine

    def _release(self, final: bool) -> None:
        """Step the state machine on every window whose change score is known (``k`` windows late)."""
        if self.auto is not None:  # still warming up: the threshold is not known yet
            if not final or not self._warmup:
                return
            self._calibrate()  # a stream shorter than the warm-up: calibrated on all of it
        while self._awaiting:
            w, signal = self._awaiting[0]
            change = None
            if self.cp.enable:
                change = self._scores.pop(w, None)
                if change is None:
                    # offline scores are 0 where a block is missing: before k-1 and in the last k windows
                    if w < self.k - 1 or final:
                        change = 0.0
                    else:
                        return
            self._awaiting.popleft()
            self.seg_state, events = segm.step(
                self.seg_state, signal, self.ctx.segmentation, self.geom, change, window=w
            )
            self._handle(events)

    def _handle(self, events: list[segm.Event]) -> None:
        for ev in events:
            if isinstance(ev, segm.Start):
                if self.ring is not None:
                    self.open_clip = self._open_clip(ev)
            elif isinstance(ev, segm.End):
                self._closes.append(PendingClose(ev, self.open_clip))
                self.open_clip = None
            else:  # Drop: shorter than min_duration_sec
                self.short_segments += 1
                if self.open_clip is not None:
                    self.open_clip.abort()
                    self.open_clip = None

    # -- per batch

    def update(self) -> None:
        """Close segments whose windows are all known, feed live clips, forget what is no longer needed."""
        self._try_close(final=False)
        self._pump_clips()
        self._collect(block=False)
        self._forget()

    # -- end

    def finish(self) -> None:
        """End of stream: step the lagged windows, close the open segment, write every output."""
        self.final = True
        self._release(final=True)
        if self.next_window:
            self.seg_state, events = segm.finish(self.seg_state, self.ctx.segmentation, self.geom)
            self._handle(events)
        self._try_close(final=True)
        if self.open_clip is not None:  # cannot happen after finish(); keep the file system clean
            self.open_clip.abort()
            self.open_clip = None
        self._collect(block=True)
        self._energy_closed = True
        self.energy_writer.close()
        if not self.live:  # a file is re-readable: its clips are cut at the end, as segment_folder's
            write_file_clips(self.ctx, self.records)
        if self.ctx.export.plot and len(self._e):
            plot_video_energy(
                self.ctx,
                np.frombuffer(self._t_mid, dtype=np.float64),
                np.frombuffer(self._e, dtype=np.float64),
                np.frombuffer(self._es, dtype=np.float64),
                self.records,
                np.frombuffer(self._gated, dtype=np.int8).astype(bool),
                self.video_name,
                suffix=" (stream)",
            )
        self.write_segments(final=True)

    def abort(self) -> None:
        """Give up (an error): delete temporaries of unfinished files."""
        for c in [self.open_clip, *(c.clip for c in self._closes), *(f.clip for f in self._finishing)]:
            if c is not None:
                c.abort()
        if not self._energy_closed:
            self._energy_closed = True
            self.energy_writer.abort()

    def write_segments(self, final: bool) -> None:
        """(Re)write segments.json: the kept segments so far, params and the stream's state; with
        ``final``, the stream's ``timeline.npz`` first (as segment_folder: segments.json marks completion)."""
        doc = segments_doc(
            self.ctx,
            self.video_name,
            self.duration(),
            self.source_fps(),
            self.records,
            self.timeline.count,
            self.next_window,
            self.timeline_source(),
        )
        doc["stream"] = {"finished": final, **self.extra()}
        if self.assigner is not None:
            doc["clusters"] = {"model": str(self.assigner.info.path), "features": self.assigner.info.kind}
        if final:  # sweeps map processed frames to seconds with it
            ex.write_timeline(self.out / ex.TIMELINE_FILE, self.source_timeline())
        ex.write_segments_json(self.out / ex.SEGMENTS_FILE, doc)

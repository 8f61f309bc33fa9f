"""The live segmenter's bookkeeping of ended segments, live clips and forgetting.

**Closing.** A segment that ended (a state-machine ``End``) waits in ``_closes`` until every window
overlapping it is known (sidecar selection) and the frame after it was read (its last source frame is
the one before that frame). It is then mapped to source frames and seconds, its sidecar windows are
selected and its record, sidecar and plot entry built with ``segment_folder``'s functions
(``pipeline.segment.source_segment`` / ``select_windows``, ``pipeline.outputs.segment_record`` /
``sidecar_meta``); the
record waits in ``_finishing`` for its live clip, then joins ``records`` (in order) and segments.json is
rewritten.

**Live clips** (:mod:`.clips`). The ring keeps exactly what a future segment start can still need (the
look-back of ``up_count`` windows plus the queue and the change-point lag) and the frames of the open
segment not yet committed to its encoder; frames after the earliest end an END could still give (the
aligned end of the last window before the current low run) and, with change points on, after a
possible split boundary are held back until decided (:meth:`ClipBook._safe_src`).

A mixin of :class:`~.segmenter.LiveSegmenter` (it reads and updates the segmenter's state, declared
below), kept apart so that the segmenter file holds the streaming steps and this one what follows a
segment's end.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.core import changepoint as cpm
from laps_ray.core import segmentation as segm
from laps_ray.io import exports as ex
from laps_ray.io.segment_codes import SegmentRef
from laps_ray.pipeline.cluster_assignment import SegmentAssigner
from laps_ray.pipeline.live.clips import ClipJob, FrameRing
from laps_ray.pipeline.live.source import LiveTimeline
from laps_ray.pipeline.live.source_view import HeldWindow
from laps_ray.pipeline.outputs import VideoContext, segment_record, sidecar_meta
from laps_ray.pipeline.segment import select_windows, source_segment

log = logging.getLogger(__name__)


@dataclass
class PendingClose:
    """A segment that ended, waiting until every window overlapping it is known."""

    end: segm.End
    clip: ClipJob | None


@dataclass
class FinishingSegment:
    """A kept segment whose record waits for its live clip to be encoded."""

    record: dict[str, Any]
    clip: ClipJob | None


class ClipBook:
    """Closing, live clips and forgetting of :class:`~.segmenter.LiveSegmenter` (module docstring).

    Also calls the segmenter's ``_local_view`` (:class:`~.source_view.SourceView`) and
    ``write_segments``.
    """

    # state of the segmenter read and updated here
    ctx: VideoContext
    out: Path
    video_name: str
    timeline: LiveTimeline
    ring: FrameRing | None
    cp: cpm.ChangePointConfig
    geom: segm.WindowGeometry
    seg_state: segm.SegState
    hist: deque[HeldWindow]
    next_window: int
    records: list[dict[str, Any]]
    open_clip: ClipJob | None
    _closes: deque[PendingClose]
    _finishing: deque[FinishingSegment]
    fps_hint: Callable[[], float]
    L: int
    D: int
    assigner: SegmentAssigner | None

    # -- closing

    def _try_close(self, final: bool) -> None:
        while self._closes:
            c = self._closes[0]
            b = c.end.end_frame
            if not final:
                # every window overlapping the segment must be known (sidecar selection), and frame b+1
                # read (the segment's last source frame is the one before it)
                if self.next_window * self.ctx.stride <= b or self.timeline.count <= b + 1:
                    return
            self._closes.popleft()
            self._close(c, final)

    def _close(self, c: PendingClose, final: bool) -> None:
        ev = c.end
        vw, f0 = self._local_view(final)
        label = ex.segment_label(len(self.records) + len(self._finishing))
        seg = source_segment(
            vw, label, ev.start_frame, ev.end_frame, ev.start_window, ev.window, ev.mean_energy, ev.reason, f0
        )
        exp = self.ctx.export
        sel = None
        if exp.codes:
            sel = select_windows(
                vw, ev.start_frame - f0, ev.end_frame - f0, self.ctx.T, exp.codes_min_overlap
            )
            vectors = np.zeros((sel.size, self.L, self.D), dtype=np.float32)
            hist = list(self.hist)
            for j, i in enumerate(sel):
                if hist[i].zq is not None:
                    vectors[j] = hist[i].zq
            meta = sidecar_meta(self.video_name, seg, vw, sel, self.ctx)
            ex.write_codes_sidecar(self.out / ex.CODES_DIR, label, meta, vectors)
        rec = segment_record(seg, exp, sel)
        if self.assigner is not None:
            rec.update(self._assign(rec, seg))
        if c.clip is not None:
            c.clip.end_src = seg.end_frame
            self._feed(c.clip, seg.end_frame + 1)
            c.clip.end()
        self._finishing.append(FinishingSegment(rec, c.clip))
        log.info(
            "%s: %s %.2f-%.2fs (frames %d-%d, %s)",
            self.video_name,
            label,
            seg.start_sec,
            seg.end_sec,
            seg.start_frame,
            seg.end_frame,
            ev.reason,
        )

    def _assign(self, rec: dict[str, Any], seg: Any) -> dict[str, Any]:
        """The fitted clusters' answer for a segment just closed (its codes sidecar is written)."""
        ref = SegmentRef(
            video=self.video_name,
            video_dir=str(self.out),
            segment=rec["label"],
            start_sec=float(seg.start_sec),
            end_sec=float(seg.end_sec),
            codes=str(self.out / rec["codes"]) if rec.get("codes") else None,
            clip=None,
            stride=self.ctx.stride,
        )
        return self.assigner.assign([ref])[0]

    def _collect(self, block: bool) -> None:
        """Move kept segments whose clip is encoded into ``records`` (in order) and rewrite segments.json."""
        changed = False
        while self._finishing:
            f = self._finishing[0]
            if f.clip is not None:
                if not f.clip.done():
                    if not block:
                        break
                    f.clip.join()
                self._finish_clip(f)
            self._finishing.popleft()
            self.records.append(f.record)
            changed = True
        if changed:
            self.write_segments(final=False)

    def _finish_clip(self, f: FinishingSegment) -> None:
        clip, rec = f.clip, f.record
        final = self.out / rec["clip"]
        if clip.error is not None or not clip.path.is_file():
            why = clip.error or "no frames"
            log.error("%s: clip of %s could not be written (%s)", self.video_name, rec["label"], why)
            rec["clip"] = None
            rec["clip_error"] = str(why)
            return
        os.replace(clip.path, final)
        rec["clip_frames"] = int(clip.count)
        if clip.missing:
            rec["clip_missing_frames"] = int(clip.missing)

    # -- live clips

    def _open_clip(self, ev: segm.Start) -> ClipJob:
        first_src, _ = self.timeline.get(ev.start_frame)
        fps = self.fps_hint() or self.ctx.target_fps
        path = self.out / ex.CLIPS_DIR / f".segment_w{ev.window:06d}.tmp.mp4"
        exp = self.ctx.export
        return ClipJob(path, fps, exp.clip_crf, exp.clip_preset, first_src)

    def _safe_src(self) -> float:
        """Source frames below this index can no longer leave the open segment (module docstring:
        with change points on, not past a pending split boundary)."""
        nw = self.seg_state.next_window
        if nw == 0:
            return -math.inf
        h = self.geom.last_frame(nw - 1) + 1
        align = self.ctx.segmentation.align
        if self.seg_state.active:
            # An END puts the end where motion stopped: at the earliest, the aligned end of the last
            # window before the current low run (with align=end, before frames already read).
            h = min(h, self.geom.end_frame(nw - 1 - self.seg_state.neg_run, align) + 1)
        if self.cp.enable:
            p = self.seg_state.pending
            h = min(h, p.boundary_frame if p is not None else self.geom.start_frame(nw, align))
        return self.timeline.get(h)[0] if h < self.timeline.count else math.inf

    def _feed(self, clip: ClipJob, hi: float) -> None:
        hi_i = int(min(hi, 2**62))
        frames = self.ring.take(clip.next_src, hi_i)
        if frames and frames[0][0] > clip.next_src:
            clip.missing += frames[0][0] - clip.next_src
            log.warning(
                "%s: live clip lost %d frames to stream.ring_max_seconds",
                self.video_name,
                frames[0][0] - clip.next_src,
            )
        for src, _, image in frames:
            clip.add(image)
            clip.next_src = src + 1

    def _pump_clips(self) -> None:
        if self.open_clip is not None:
            self._feed(self.open_clip, self._safe_src())

    def _forget(self) -> None:
        """Drop windows and source images that no segment can need any more, and stop looking up their
        processed frames (the timeline keeps those compactly for ``timeline.npz``)."""
        stride, T = self.ctx.stride, self.ctx.T
        nw = self.seg_state.next_window
        look = max(0, (nw - self.ctx.segmentation.up_count + 1) * stride)  # earliest future start
        keep = look
        if self.seg_state.active:
            keep = min(keep, self.seg_state.start_frame)
        if self._closes:
            keep = min(keep, self._closes[0].end.start_frame)
        w_lo = max(0, -(-(keep - T + 1) // stride))
        while self.hist and self.hist[0].window < w_lo:
            self.hist.popleft()
        if self.hist:
            self.timeline.forget_before(self.hist[0].window * stride)
        if self.ring is not None and look < self.timeline.count:
            # frames not yet sent to the open clip, or to an ended one still waiting to close, stay
            clips = [self.open_clip, *(c.clip for c in self._closes)]
            pending = [c.next_src for c in clips if c is not None]
            self.ring.forget_before(min([self.timeline.get(look)[0], *pending]))

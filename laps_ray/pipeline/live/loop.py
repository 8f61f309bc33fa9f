"""The live loop of the ``stream`` job: reader thread → bounded window queue → compute → segmenter.

**Threads.** The reader (:class:`~.source.SourceReader`) forms windows onto the bounded
:class:`~.queue.WindowQueue`. The *compute* loop (:func:`run_live`, the caller's thread) takes windows
from it, runs the shared :class:`~laps_ray.pipeline.window_processor.WindowProcessor` on them (up to
``batch_windows`` at a time when a backlog has built up) and feeds the
:class:`~.segmenter.LiveSegmenter`. Live clips are encoded by one short-lived thread per open segment
(:mod:`.clips`).

**Latency** of a window = from the moment its last frame was read (for ``realtime`` files: the frame's
scheduled release time, as a camera would deliver it) to the end of the compute iteration that handled
its result (energy line written, smoothing, change points and state machine fed). The real-time budget
of a window is ``stride / target_fps`` (0.2 s at 4 / 20 fps); ``budget_ok_ratio`` is the fraction of
computed windows whose latency is within it.

**Shutdown.** :func:`run_live` takes a ``stop`` event (the job sets it on SIGINT/SIGTERM): the reader
stops at the next frame, the windows already read are computed, the open segment is closed (reason
``end_of_stream``) with its clip and sidecar, and every output is written.
"""

from __future__ import annotations

import array
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from laps_ray.io.decode import DecodeConfig
from laps_ray.io.video import VideoError
from laps_ray.pipeline.cluster_assignment import SegmentAssigner
from laps_ray.pipeline.live.clips import FrameRing
from laps_ray.pipeline.live.config import LiveConfig
from laps_ray.pipeline.live.queue import ReadyWindow, SkippedWindow, WindowQueue, as_ranges
from laps_ray.pipeline.live.segmenter import LiveSegmenter
from laps_ray.pipeline.live.source import LiveTimeline, SourceReader, is_live_source, redact
from laps_ray.pipeline.outputs import VideoContext
from laps_ray.pipeline.shard_run import peak_rss_mb
from laps_ray.pipeline.shards import plan_timeline
from laps_ray.pipeline.window_processor import WindowProcessor

log = logging.getLogger(__name__)


@dataclass
class LiveSummary:
    """What a stream did (the ``stream`` block of run.json)."""

    source: str
    output: str
    end_reason: str
    windows: int
    computed: int
    dropped: int
    dropped_ids: list[list[int]]
    gap_windows: int
    gap_ids: list[list[int]]
    gated: int
    frames: int
    source_frames: int
    segments: int
    short_segments: int
    reconnects: int
    failed_attempts: int
    budget_s: float
    latency_ms: dict[str, float | None]
    compute_ms: dict[str, float | None]
    budget_ok_ratio: float | None
    max_queue_depth: int
    peak_rss_mb: float
    video_seconds: float | None
    wall_seconds: float
    realtime: bool
    live: bool
    error: str | None = None
    status: str = "done"

    def record(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict."""
        return dataclasses.asdict(self)


def _stats_ms(values: array.array) -> dict[str, float | None]:
    """Durations in seconds (an ``array("d")``) -> their p50, p95, max and mean in ms (None if empty)."""
    if not len(values):
        return {"p50": None, "p95": None, "max": None, "mean": None}
    a = np.frombuffer(values, dtype=np.float64) * 1000.0
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
        "mean": round(float(a.mean()), 3),
    }


def run_live(
    processor: WindowProcessor,
    ctx: VideoContext,
    decode: DecodeConfig,
    live: LiveConfig,
    video_name: str,
    stop: threading.Event | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    assigner: SegmentAssigner | None = None,
) -> LiveSummary:
    """Segment one source live; write its outputs under ``ctx.out_dir``; return the summary.

    Args:
        processor: tracker + tokenizer (its ``T``/``stride`` must equal ``ctx``'s).
        ctx: outputs and segmentation settings (threshold resolved), shared with ``segment_folder``.
        decode: ``target_fps`` / ``resize_shorter`` (``ctx.target_fps`` must equal ``decode.target_fps``).
        live: the loop's settings.
        video_name: ``video`` of segments.json (a file's name, or the stream's name).
        stop: set it (e.g. from a signal handler) to end the stream gracefully.
        on_progress: called after every compute iteration with counters (tests, progress displays).
        assigner: ``--clusters``: each segment is assigned to a fitted cluster model as it closes.

    Raises:
        VideoError: the source delivered fewer than 2 frames (nothing could be segmented).
    """
    t_wall = time.perf_counter()
    stop = stop or threading.Event()
    source = ctx.source
    is_live = is_live_source(source)
    plan = None
    if not is_live:
        plan = plan_timeline(source, decode.target_fps)  # duration/fps as segment_folder; early errors
    timeline = LiveTimeline()
    ring = FrameRing(live.ring_max_seconds) if is_live and ctx.export.clips else None
    q = WindowQueue(live.queue_windows)
    reader = SourceReader(
        source, decode, live, ctx.T, ctx.stride, processor.prepare, q, timeline, ring, stop, plan
    )
    budget = ctx.stride / ctx.target_fps
    latencies = array.array("d")
    computes = array.array("d")
    counters = {"computed": 0, "gated": 0}

    def extra() -> dict[str, Any]:
        return {
            "windows_computed": counters["computed"],
            "windows_dropped": len(q.dropped),
            "gap_windows": len(reader.gap_ids),
            "reconnects": reader.reconnects,
        }

    seg = LiveSegmenter(
        ctx,
        timeline,
        is_live,
        ring,
        processor.num_tokens,
        processor.latent_dim,
        video_name,
        plan=plan,
        fps_hint=lambda: reader.fps,
        extra=extra,
        assigner=assigner,
    )
    log.info(
        "%s: streaming (%s, queue %d windows, budget %.0f ms/window) -> %s",
        redact(source),
        "live" if is_live else ("realtime file" if live.realtime else "file"),
        live.queue_windows,
        budget * 1000,
        ctx.out_dir,
    )
    reader.start()
    last_log = time.monotonic()
    try:
        while True:
            entries = q.get_batch(live.batch_windows)
            if entries is None:
                break
            ready = [e for e in entries if isinstance(e, ReadyWindow)]
            t0 = time.monotonic()
            results = processor.process([e.window for e in ready]) if ready else []
            if live.debug_sleep_s and ready:
                time.sleep(live.debug_sleep_s * len(ready))
            if ready:
                computes.extend([(time.monotonic() - t0) / len(ready)] * len(ready))
            it = iter(results)
            for e in entries:
                if isinstance(e, ReadyWindow):
                    r = next(it)
                    counters["computed"] += 1
                    counters["gated"] += r.gated is not None
                    seg.add_result(r)
                elif isinstance(e, SkippedWindow):
                    seg.add_skipped(e)
                else:
                    seg.frames_done(e)
            seg.update()
            now = time.monotonic()
            latencies.extend([now - e.t_ready for e in ready])
            if on_progress is not None:
                on_progress({"windows": seg.next_window, "dropped": len(q.dropped), **extra()})
            if now - last_log >= live.log_every_s:
                last_log = now
                lat = _stats_ms(latencies)
                log.info(
                    "%s: %d windows (%d dropped, %d gap), latency p50 %s ms p95 %s ms, queue %d, %d segments",
                    video_name,
                    seg.next_window,
                    len(q.dropped),
                    len(reader.gap_ids),
                    lat["p50"],
                    lat["p95"],
                    q.depth(),
                    len(seg.records),
                )
        reader.join()
        if reader.timeline.count < 2:
            err = reader.error
            seg.abort()
            if isinstance(err, VideoError):
                raise err
            raise VideoError(redact(source), f"no video could be read ({reader.end_reason})")
        seg.finish()
    except BaseException:
        stop.set()
        seg.abort()
        reader.join(timeout=15)
        raise
    lat = np.frombuffer(latencies, dtype=np.float64)
    error = None if reader.error is None else f"{type(reader.error).__name__}: {reader.error}"
    status = "failed" if reader.error is not None or reader.end_reason.startswith("source_lost") else "done"
    return LiveSummary(
        source=redact(source),
        output=str(ctx.out_dir),
        end_reason=reader.end_reason,
        windows=seg.next_window,
        computed=counters["computed"],
        dropped=len(q.dropped),
        dropped_ids=as_ranges(q.dropped),
        gap_windows=len(reader.gap_ids),
        gap_ids=as_ranges(reader.gap_ids),
        gated=counters["gated"],
        frames=timeline.count,
        source_frames=reader.source_frames,
        segments=len(seg.records),
        short_segments=seg.short_segments,
        reconnects=reader.reconnects,
        failed_attempts=reader.failed_attempts,
        budget_s=budget,
        latency_ms=_stats_ms(latencies),
        compute_ms=_stats_ms(computes),
        budget_ok_ratio=round(float((lat <= budget).mean()), 4) if lat.size else None,
        max_queue_depth=q.max_depth,
        peak_rss_mb=round(peak_rss_mb(), 1),
        video_seconds=seg.duration(),
        wall_seconds=round(time.perf_counter() - t_wall, 3),
        realtime=live.realtime,
        live=is_live,
        error=error,
        status=status,
    )

"""One video's processed-frame timeline, predicted before decoding, and its cut into time shards.

**Timeline.** Windows are numbered over the video's *processed* frames (resampled to ``target_fps`` by
timestamp in ``laps_ray.io.video.iter_frames``). :func:`plan_timeline` predicts, without decoding, which
source frames the resampler keeps: a demux-only pass reads every packet's timestamp (milliseconds for a
long file), times the frames with the decoder's own ``FrameClock`` (the k-th frame gets the k-th smallest
timestamp) and applies the resampler's own rule. The plan gives
processed frame ``f`` → (source index, seconds) for the whole video before any work starts.

**Shards.** :func:`make_shards` cuts the windows ``0..W-1`` into ranges ``[w0, w1)``; a shard decodes
the processed frames ``w0*stride .. (w1-1)*stride + T - 1`` (so consecutive shards overlap by ``T -
stride`` frames, one window's worth) with ``iter_frames(start_sec=...)``. io.video guarantees that a
seeked decode keeps exactly the frames a full decode keeps (its slot grid ``k / target_fps`` does not
depend on where decoding starts) and, for constant-rate files, the same source indices. Windows inside a
shard are independent (every window seeds its own tracks), so a shard's windows equal the unsharded
ones. Running a shard and checking it against the plan: :mod:`laps_ray.pipeline.shard_run`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from laps_ray.core.windows import DEFAULT_TARGET_FPS, window_starts
from laps_ray.io.video import FrameClock, Resampler, packet_timestamp, probe, stream_timing, video_stream

log = logging.getLogger(__name__)


@dataclass
class TimelinePlan:
    """Which source frames the resampler keeps, predicted before decoding.

    Attributes:
        index: (F,) int64 source frame index of every processed frame.
        t: (F,) float64 its time in seconds (from the first frame).
        num_source_frames: frames the decoder outputs (packets that carry a frame of their own).
        source_fps: nominal source frame rate.
        duration_sec: end of the last source frame: its time plus one nominal period, in seconds
            (LAPS ``video_duration_sec``; ``num_source_frames / source_fps`` at a constant rate, the
            real span for AVI drop frames and variable rates).
    """

    index: np.ndarray
    t: np.ndarray
    num_source_frames: int
    source_fps: float
    duration_sec: float

    @property
    def num_frames(self) -> int:
        return int(self.index.size)


def plan_timeline(source: str | Path, target_fps: float) -> TimelinePlan | None:
    """Predict the processed-frame timeline of a file from packet timestamps (no decoding).

    The decoder's frames are the packets that carry a frame of their own (not empty, not discarded
    by an edit list), and their times follow ``io.video.FrameClock`` exactly as in a real decode: the
    k-th frame gets the k-th smallest packet timestamp, forced strictly increasing. So B-frames with
    broken timestamps, negative, repeated or missing timestamps and edit lists all get a plan.

    Returns:
        The plan, or None when the prediction is impossible (damaged packets, unknown frame rate,
        fewer than 2 frames); the caller then processes the video as one shard.

    Raises:
        VideoError: the file cannot be read as a video or has fewer than 2 frames (``probe``'s reasons).
    """
    import av

    info = probe(source)  # precise reasons for unreadable inputs
    if info.is_live:
        return None
    try:
        with av.open(str(source)) as container:
            stream = video_stream(container)  # the stream iter_frames decodes (probe found one)
            tb, fps = stream_timing(stream)
            rate = stream.average_rate or stream.guessed_rate
            clock = FrameClock.for_stream(stream)
            n = 0
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:  # flush packet, AVI drop frame, edit-list cut
                    continue
                if packet.is_corrupt:  # the decoder may drop it: the frame count is unknowable
                    return None
                ts = packet_timestamp(packet)
                if ts is not None:
                    clock.add(ts)
                n += 1
    except (av.error.FFmpegError, OSError) as exc:  # damaged past its start: decode it whole instead
        log.info("%s: cannot plan its timeline (%s); it will be processed as one shard", source, exc)
        return None
    if n < 2 or fps <= 0 or not rate:
        return None
    # FrameClock.start_at is a no-op here: a decode's first frame carries the smallest timestamp
    # unless the decoder skips leading frames, which run_shard then detects.
    ticks = [clock.next() for _ in range(n)]
    times = [float((x - ticks[0]) * tb) for x in ticks]  # exactly as iter_frames computes t
    # iter_frames' own resampler for files, so there is one copy of the rule; if this prediction ever
    # diverges from a real decode, run_shard detects it frame by frame and the video falls back.
    resampler = Resampler.for_file(target_fps, fps, tb)
    keep = np.array([resampler.keep(t) for t in times], dtype=bool)
    index = np.flatnonzero(keep).astype(np.int64)
    return TimelinePlan(
        index=index,
        t=np.asarray(times, dtype=np.float64)[keep],
        num_source_frames=n,
        source_fps=fps,
        duration_sec=float((ticks[-1] - ticks[0]) * tb + 1 / Fraction(rate)),
    )


def video_duration(plan: TimelinePlan | None) -> float | None:
    """LAPS ``video_duration_sec`` from a plan (None without one)."""
    return None if plan is None or not math.isfinite(plan.duration_sec) else float(plan.duration_sec)


# ------------------------------------------------------------------------------------------ shards


@dataclass
class ShardSpec:
    """One unit of actor work: windows ``[first_window, first_window + num_windows)`` of a video.

    Attributes:
        key: the video's key in run.json; source: the file; work_dir: ``<video>/.work``.
        shard, num_shards: position of this shard.
        first_window, num_windows: the windows it computes (global numbering).
        start_sec, end_sec: decode range (``iter_frames``), None = from the start / to the end.
        expect_index, expect_t: the planned source index / time of every frame it must read, or None
            (no plan).
        strict: a mismatch with the plan is an error (multi-shard videos); otherwise the decoded
            timeline is used.
        target_fps, resize_shorter: decoding settings.
    """

    key: str
    source: str
    work_dir: str
    shard: int
    num_shards: int
    first_window: int
    num_windows: int | None
    start_sec: float | None = None
    end_sec: float | None = None
    expect_index: np.ndarray | None = None
    expect_t: np.ndarray | None = None
    strict: bool = False
    target_fps: float = DEFAULT_TARGET_FPS
    resize_shorter: int = 0


def windows_per_shard(shard_seconds: float, target_fps: float, stride: int) -> int:
    """Windows per shard for ``shard_seconds`` of processed video (0 = no sharding -> 0)."""
    if shard_seconds <= 0:
        return 0
    return max(1, round(shard_seconds * target_fps / stride))


def make_shards(
    key: str,
    source: str,
    work_dir: str | Path,
    plan: TimelinePlan | None,
    T: int,
    stride: int,
    per_shard: int,
    target_fps: float,
    resize_shorter: int,
) -> list[ShardSpec]:
    """Shards of one video: ``per_shard`` windows each (0 or no plan = one shard for the whole video).

    Shard boundaries are global window starts; each shard's decode range covers exactly the processed
    frames its windows need (see module docstring).
    """
    common = dict(key=key, source=str(source), work_dir=str(work_dir), target_fps=target_fps)
    common["resize_shorter"] = resize_shorter
    if plan is None:
        return [ShardSpec(shard=0, num_shards=1, first_window=0, num_windows=None, **common)]
    F = plan.num_frames
    W = len(window_starts(F, T, stride))
    per = W if per_shard <= 0 else per_shard
    bounds = [(w0, min(w0 + per, W)) for w0 in range(0, W, per)]
    specs = []
    for k, (w0, w1) in enumerate(bounds):
        f0 = w0 * stride
        f1 = F - 1 if w1 == W else (w1 - 1) * stride + T - 1  # last processed frame it reads
        start = None if f0 == 0 else 0.5 * (plan.t[f0 - 1] + plan.t[f0])
        end = None if f1 == F - 1 else 0.5 * (plan.t[f1] + plan.t[f1 + 1])
        specs.append(
            ShardSpec(
                shard=k,
                num_shards=len(bounds),
                first_window=w0,
                num_windows=w1 - w0,
                start_sec=None if start is None else float(start),
                end_sec=None if end is None else float(end),
                expect_index=plan.index[f0 : f1 + 1].copy(),
                expect_t=plan.t[f0 : f1 + 1].copy(),
                strict=len(bounds) > 1,
                **common,
            )
        )
    return specs

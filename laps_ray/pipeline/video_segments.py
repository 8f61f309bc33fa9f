"""One video, offline: processed-frame timeline, time shards, merge, segmentation, mapping, outputs.

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
ones. :func:`run_shard` checks every decoded frame against the plan (same source index, time within
1 ms); a multi-shard video whose frames do not match (variable frame rate, damaged packets) raises
:class:`ShardMismatch` and is redone as one unsharded shard, where the decoded timeline is authoritative.
Window and frame fields are always derived from one timeline (the plan when every frame matched), so a
sharded and an unsharded run write byte-identical energies, codes and segments.

**Per shard** (:func:`run_shard`, in an actor): window results come back as small arrays; the quantized
vectors go to ``<video>/.work/zq_<w0>.npy`` (written incrementally, renamed when complete), so nothing
large crosses the object store and memory stays flat in video length.

**Per video** (:func:`finalize_video`, once, after all shards): merge (every window exactly once, in
order), causal smoothing, change-point scores, the state machine (``core.segmentation``), mapping to
source frames and seconds, then the outputs of :mod:`laps_ray.io.exports` with ``segments.json`` last.

Processed → source mapping: :class:`laps_ray.core.timeline.SourceTimeline` (the one rule; the video's
timeline is written to ``timeline.npz`` so that sweeps and calibration use it on cached outputs).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.core.changepoint import changepoint_scores
from laps_ray.core.energy import ENERGY_SOURCES, EnergyConfig
from laps_ray.core.segmentation import Segment, SegmentationConfig, WindowGeometry, segment_offline
from laps_ray.core.smoothing import for_segmentation, smooth
from laps_ray.core.timeline import SourceTimeline
from laps_ray.core.windows import DEFAULT_TARGET_FPS, window_starts
from laps_ray.io import exports as ex
from laps_ray.io.video import (
    FrameClock,
    Resampler,
    iter_frames,
    packet_timestamp,
    probe,
    stream_timing,
    video_stream,
    write_clips,
)
from laps_ray.pipeline.window_processor import GATE_MOTION, GATE_PRE, WindowProcessor
from laps_ray.tracking.windowed import Timeline

log = logging.getLogger(__name__)

GATE_NAMES = (None, GATE_PRE, GATE_MOTION)  # int8 gate code -> name
_T_TOL = 1e-3  # seconds: a decoded frame matches the plan if its index is equal and its time this close


class ShardMismatch(RuntimeError):
    """A shard's decoded frames differ from the planned timeline (the video must be redone unsharded)."""


# ---------------------------------------------------------------------------------------- timeline


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


@dataclass
class ShardResult:
    """Small per-window arrays of one shard (n windows, L tokens); vectors live in ``zq_path``.

    Attributes:
        window: (n,) global window numbers.
        gate: (n,) int8 0 = not gated, 1 = pre-gate, 2 = motion gate (:data:`GATE_NAMES`).
        energies: (n, 3) float64 in :data:`laps_ray.core.energy.ENERGY_SOURCES` order.
        codes: (n, L) int64, -1 for gated windows.
        frame_index, frame_t: source index and time of every frame the shard read.
        matches_plan: every frame read matched the plan.
        zq_path: ``.npy`` (n, L, D) float32 quantized vectors (zeros for gated windows).
        seconds: wall time of the shard; cpu_seconds: CPU time of the whole process meanwhile (all
            threads: decoder, tracker, torch).
        peak_rss_mb: peak resident memory of the process so far (MiB).
    """

    key: str
    shard: int
    num_shards: int
    first_window: int
    window: np.ndarray
    gate: np.ndarray
    energies: np.ndarray
    codes: np.ndarray
    frame_index: np.ndarray
    frame_t: np.ndarray
    matches_plan: bool
    zq_path: str
    latent_dim: int
    seconds: float
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    status: str = "done"

    @property
    def num_windows(self) -> int:
        return int(self.window.size)


def run_shard(
    processor: WindowProcessor,
    spec: ShardSpec,
    batch_windows: int = 8,
    on_window: Callable[[int], None] | None = None,
) -> ShardResult:
    """Decode a shard, process its windows, write its vectors; see module docstring.

    Args:
        processor: holds tracker + tokenizer.
        spec: the shard.
        batch_windows: windows per processor call.
        on_window: called with the number of windows done so far after each window (progress, tests).

    Raises:
        VideoError: unreadable input.
        ShardMismatch: ``spec.strict`` and the decoded frames differ from the plan.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    L, D = processor.num_tokens, processor.latent_dim
    work = Path(spec.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    raw_path = work / f".zq_{spec.first_window:06d}.{uuid.uuid4().hex[:8]}.tmp.f32"
    windows, gates, energies, codes = [], [], [], []
    timeline = Timeline()
    zero = np.zeros((L, D), dtype=np.float32)
    frames = iter_frames(
        spec.source,
        target_fps=spec.target_fps,
        resize_shorter=spec.resize_shorter or None,
        start_sec=spec.start_sec,
        end_sec=spec.end_sec,
    )
    try:
        with frames, open(raw_path, "wb") as raw:
            for r in processor.iter_results(frames, batch_windows, spec.first_window, timeline):
                windows.append(r.window)
                gates.append(GATE_NAMES.index(r.gated))
                energies.append([r.energies[s] for s in ENERGY_SOURCES])
                codes.append(np.full(L, -1, np.int64) if r.codes is None else r.codes)
                raw.write((zero if r.zq is None else r.zq.astype(np.float32)).tobytes())
                if on_window is not None:
                    on_window(len(windows))
        index, times = timeline.arrays()
        matches = _matches(spec, index, times)
        if spec.strict and not matches:
            raise ShardMismatch(
                f"{spec.source}: shard {spec.shard} decoded {index.size} frames that differ from the "
                f"planned timeline ({0 if spec.expect_index is None else spec.expect_index.size} frames)"
            )
        n = len(windows)
        if spec.num_windows is not None and n != spec.num_windows and (spec.strict or matches):
            raise ShardMismatch(
                f"{spec.source}: shard {spec.shard} made {n} windows, planned {spec.num_windows}"
            )
        zq_path = work / f"zq_{spec.first_window:06d}.npy"
        ex.write_npy_atomic(zq_path, np.memmap(raw_path, dtype=np.float32, mode="r", shape=(n, L, D)))
    finally:
        raw_path.unlink(missing_ok=True)
        _remove_if_empty(work)
    return ShardResult(
        key=spec.key,
        shard=spec.shard,
        num_shards=spec.num_shards,
        first_window=spec.first_window,
        window=np.asarray(windows, dtype=np.int64),
        gate=np.asarray(gates, dtype=np.int8),
        energies=np.asarray(energies, dtype=np.float64).reshape(n, len(ENERGY_SOURCES)),
        codes=np.asarray(codes, dtype=np.int64).reshape(n, L),
        frame_index=index,
        frame_t=times,
        matches_plan=matches,
        zq_path=str(zq_path),
        latent_dim=D,
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - cpu0,
        peak_rss_mb=peak_rss_mb(),
    )


def _remove_if_empty(folder: Path) -> None:
    """Remove a work folder that a failed or interrupted shard left empty (and its video folder, if
    that is empty too), so no empty ``.work/`` stays behind."""
    for d in (folder, folder.parent):
        try:
            d.rmdir()  # only succeeds on an empty folder
        except OSError:
            return


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ``ru_maxrss`` is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matches_plan(
    expect_index: np.ndarray | int,
    expect_t: np.ndarray | float,
    index: np.ndarray | int,
    t: np.ndarray | float,
) -> bool:
    """Decoded frames are the planned ones: same shape, same source indices, times within 1 ms.

    Args:
        expect_index, expect_t: planned source index and time (seconds) of each frame (arrays or scalars).
        index, t: the decoded ones, same layout.
    """
    index, expect_index = np.asarray(index), np.asarray(expect_index)
    if index.shape != expect_index.shape:
        return False
    return bool((index == expect_index).all() and (np.abs(np.asarray(t) - expect_t) <= _T_TOL).all())


def _matches(spec: ShardSpec, index: np.ndarray, times: np.ndarray) -> bool:
    if spec.expect_index is None or spec.expect_t is None:
        return False
    return matches_plan(spec.expect_index, spec.expect_t, index, times)


# ------------------------------------------------------------------------------------------- merge


@dataclass
class VideoWindows:
    """Every window of one video, merged from its shards (W windows, F processed frames).

    Window fields (``frame_index`` ... ``t_end``) are derived from the one timeline in use.
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

    @property
    def num_windows(self) -> int:
        return int(self.window.size)

    @property
    def num_frames(self) -> int:
        return int(self.timeline_index.size)

    @property
    def gated(self) -> np.ndarray:
        return self.gate != 0

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


# -------------------------------------------------------------------------------------- segmentation


@dataclass
class SourceSegment:
    """A kept segment in source frames and seconds (and the processed frames/windows it came from)."""

    label: str
    start_frame: int
    end_frame: int
    start_sec: float
    end_sec: float
    processed: tuple[int, int]
    windows: tuple[int, int]
    mean_energy: float
    reason: str


@dataclass
class VideoSegmentation:
    """Signals and segments of one video."""

    energy: np.ndarray  # (W,) raw energy of the configured source
    energy_smooth: np.ndarray  # (W,) its causal smoothing
    signal: np.ndarray  # (W,) what the state machine saw
    changes: np.ndarray | None  # (W,) change-point scores, when enabled
    segments: list[SourceSegment]


def source_timeline(vw: VideoWindows) -> SourceTimeline:
    """The video's processed frames on its source's clock (``laps_ray.core.timeline``)."""
    return SourceTimeline(vw.timeline_index, vw.timeline_t, vw.last_source_frame, vw.source_fps)


def to_source(vw: VideoWindows, a: int, b: int) -> tuple[int, int, float, float]:
    """Processed frames ``a..b`` (inclusive) -> source frames (inclusive) and seconds: THE rule of
    :class:`laps_ray.core.timeline.SourceTimeline`."""
    return source_timeline(vw).to_source(a, b)


def segment_video(
    vw: VideoWindows, energy: EnergyConfig, seg: SegmentationConfig, T: int, stride: int, target_fps: float
) -> VideoSegmentation:
    """Smoothing, change points and the state machine, once per video; segments in source terms.

    Args:
        vw: the merged windows.
        energy: energy source + smoothing.
        seg: state machine settings with ``threshold`` resolved.
        T, stride, target_fps: window geometry.
    """
    raw = vw.energy(energy.source)
    smoothed = smooth(raw, energy.smoothing)
    signal = np.asarray(for_segmentation(raw, smoothed, energy.smoothing), dtype=np.float64)
    changes = None
    cp = seg.changepoint
    if cp.enable:
        valid = ~vw.gated
        if cp.method == "code_mmd":
            changes = changepoint_scores(vw.codes, None, cp, valid=valid)
        else:
            changes = changepoint_scores(None, vw.vectors(vw.window), cp, valid=valid)
    geom = WindowGeometry(T=T, stride=stride, target_fps=target_fps, num_frames=vw.num_frames)
    found: list[Segment] = segment_offline(signal, seg, geom, changes)
    segments = [
        source_segment(
            vw,
            ex.segment_label(k),
            s.start_frame,
            s.end_frame,
            s.start_window,
            s.end_window,
            s.mean_energy,
            s.reason,
        )
        for k, s in enumerate(found)
    ]
    return VideoSegmentation(raw, smoothed, signal, changes, segments)


def source_segment(
    vw: VideoWindows,
    label: str,
    start_frame: int,
    end_frame: int,
    start_window: int,
    end_window: int,
    mean_energy: float,
    reason: str,
    f0: int = 0,
) -> SourceSegment:
    """A state-machine segment (processed frames ``start_frame..end_frame``, inclusive) in source
    frames and seconds (:func:`to_source`).

    Args:
        vw: the windows and timeline; its processed frame 0 is the video's frame ``f0`` (``stream``
            holds only recent frames: a view whose frames start at ``f0``).
        label: the segment's label (:func:`laps_ray.io.exports.segment_label`).
        start_frame, end_frame, start_window, end_window: the segment in the video's processed frames
            and windows.
        mean_energy, reason: as the state machine reports them.
    """
    sf, ef, t0, t1 = to_source(vw, start_frame - f0, end_frame - f0)
    return SourceSegment(
        label=label,
        start_frame=sf,
        end_frame=ef,
        start_sec=t0,
        end_sec=t1,
        processed=(int(start_frame), int(end_frame)),
        windows=(int(start_window), int(end_window)),
        mean_energy=float(mean_energy),
        reason=reason,
    )


def select_windows(vw: VideoWindows, a: int, b: int, T: int, min_overlap: float) -> np.ndarray:
    """Windows of a segment's sidecar: with codes, and at least ``min_overlap`` of the window's frames
    inside processed frames ``a..b`` (a padded last window counts its real frames). Window order."""
    F = vw.num_frames
    ws = vw.start
    we = np.minimum(ws + T - 1, F - 1)
    overlap = np.maximum(0, np.minimum(we, b) - np.maximum(ws, a) + 1)
    frac = overlap / (we - ws + 1)
    return np.flatnonzero(~vw.gated & (frac >= min_overlap - 1e-9))


# ------------------------------------------------------------------------------------------ outputs


@dataclass
class VideoContext:
    """What :func:`finalize_video` needs besides the windows (all plain values, picklable).

    Attributes:
        key, source: run.json key and input file; out_dir: ``<out>/<name>``.
        energy, segmentation (threshold resolved), export: settings.
        T, stride, target_fps: window geometry.
        params: the ``params`` block of segments.json.
        checkpoint_sha256, config_sha256: provenance digests (resume compares them).
        duration_sec: video duration (None = from the timeline).
    """

    key: str
    source: str
    out_dir: str
    energy: EnergyConfig
    segmentation: SegmentationConfig
    export: ex.ExportConfig
    T: int
    stride: int
    target_fps: float
    params: dict[str, Any]
    checkpoint_sha256: str
    config_sha256: str
    duration_sec: float | None = None


def segment_record(
    seg: SourceSegment, export: ex.ExportConfig, code_windows: np.ndarray | None = None
) -> dict[str, Any]:
    """One entry of segments.json ``segments`` (``clip_frames`` is added once its clip is cut).

    Args:
        seg: the segment in source terms.
        export: which files exist for it (clip, codes sidecar).
        code_windows: the windows of its codes sidecar (:func:`select_windows`) when ``export.codes``.
    """
    rec: dict[str, Any] = {
        "start_sec": seg.start_sec,
        "end_sec": seg.end_sec,
        "start_frame": seg.start_frame,
        "end_frame": seg.end_frame,
        "label": seg.label,
        "mean_energy": seg.mean_energy,
        "clip": f"{ex.CLIPS_DIR}/{seg.label}.mp4" if export.clips else None,
        "codes": f"{ex.CODES_DIR}/{seg.label}.json" if export.codes else None,
        "vectors": f"{ex.CODES_DIR}/{seg.label}.npy" if export.codes else None,
        "num_frames": seg.end_frame - seg.start_frame + 1,
        "processed_frames": list(seg.processed),
        "windows": list(seg.windows),
        "end_reason": seg.reason,
    }
    if export.codes:
        if code_windows is None:
            raise ValueError(f"{seg.label}: export.codes is on but no sidecar windows were given")
        rec["num_code_windows"] = int(code_windows.size)
    return rec


def sidecar_meta(
    video: str, seg: SourceSegment, vw: VideoWindows, sel: np.ndarray, ctx: VideoContext
) -> dict[str, Any]:
    """The JSON fields of a segment's codes sidecar (:func:`laps_ray.io.exports.write_codes_sidecar`).

    Args:
        video: ``video`` of segments.json.
        seg: the segment.
        vw: the windows; ``sel`` indexes them (rows of ``vw``, whose ``window`` holds the ids).
        sel: the sidecar's windows (:func:`select_windows`), in window order.
        ctx: geometry, selection setting and checkpoint digest.
    """
    return {
        "video": video,
        "segment": seg.label,
        "start_frame": seg.start_frame,
        "end_frame": seg.end_frame,
        "start_sec": seg.start_sec,
        "end_sec": seg.end_sec,
        "processed_frames": list(seg.processed),
        "windows": [int(vw.window[i]) for i in sel],
        "window_frames": [[int(vw.frame_index[i]), int(vw.end_frame_index[i])] for i in sel],
        "codes": [[int(c) for c in vw.codes[i]] for i in sel],
        "selection": {
            "rule": "window has codes and >= min_overlap of its frames inside the segment",
            "min_overlap": ctx.export.codes_min_overlap,
        },
        "T": ctx.T,
        "stride": ctx.stride,
        "target_fps": ctx.target_fps,
        "checkpoint_sha256": ctx.checkpoint_sha256,
    }


def write_file_clips(ctx: VideoContext, records: list[dict[str, Any]]) -> None:
    """Cut the clips of a file's segment records from ``ctx.source`` (one decode) when ``export.clips``;
    sets each record's ``clip_frames``. Records without a clip are skipped.

    Raises:
        VideoError: the source cannot be read.
    """
    recs = [r for r in records if r["clip"]]
    if not ctx.export.clips or not recs:
        return
    out = Path(ctx.out_dir)
    counts = write_clips(
        ctx.source,
        [(r["start_frame"], r["end_frame"]) for r in recs],
        [out / r["clip"] for r in recs],
        crf=ctx.export.clip_crf,
        preset=ctx.export.clip_preset,
    )
    for r, n in zip(recs, counts):
        r["clip_frames"] = int(n)


def plot_video_energy(
    ctx: VideoContext,
    t: np.ndarray,
    energy: np.ndarray,
    energy_smooth: np.ndarray,
    records: list[dict[str, Any]],
    gated: np.ndarray,
    video: str,
    suffix: str = "",
) -> None:
    """``energy.png`` of a video: (W,) window times ``t`` (s), raw and smoothed energies, the on/off
    thresholds of ``ctx.segmentation``, the segment records shaded and ``gated`` (W,) bool marked."""
    thr = float(ctx.segmentation.threshold)
    ex.plot_energy(
        Path(ctx.out_dir) / ex.PLOT_FILE,
        t,
        energy,
        energy_smooth,
        thr,
        thr * ctx.segmentation.hysteresis_ratio,
        [(r["start_sec"], r["end_sec"]) for r in records],
        gated,
        title=f"{video}: {ctx.energy.source} energy{suffix}",
    )


def segments_doc(
    ctx: VideoContext,
    video: str,
    duration: float | None,
    fps: float,
    records: list[dict[str, Any]],
    num_frames: int,
    num_windows: int,
    timeline: str,
) -> dict[str, Any]:
    """The body of a video's segments.json (:func:`laps_ray.io.exports.write_segments_json`).

    Args:
        ctx: params and digests.
        video: file name (or stream name); duration: ``video_duration_sec`` (None = unknown).
        fps: source frame rate; records: :func:`segment_record` entries.
        num_frames, num_windows, timeline: added to ``params`` (processed frames, windows,
            :func:`timeline_source` or ``"live"``).
    """
    params = dict(ctx.params)
    params.update(num_frames=num_frames, num_windows=num_windows, timeline=timeline)
    return {
        "video": video,
        "video_duration_sec": None if duration is None else float(duration),
        "fps": float(fps),
        "segments": records,
        "params": params,
        "checkpoint_sha256": ctx.checkpoint_sha256,
        "config_sha256": ctx.config_sha256,
    }


def finalize_video(vw: VideoWindows, ctx: VideoContext) -> dict[str, Any]:
    """Segment one merged video and write all its outputs (segments.json last); delete its ``.work``.

    Returns:
        A run.json record: ``status`` ``done``, counts and timings.

    Raises:
        VideoError: the clips could not be cut (unreadable source).
    """
    t0 = time.perf_counter()
    out = Path(ctx.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ex.remove_stale_temporaries(out)  # a retried finalize may find a killed writer's temporaries
    res = segment_video(vw, ctx.energy, ctx.segmentation, ctx.T, ctx.stride, ctx.target_fps)
    gate_names = [GATE_NAMES[g] for g in vw.gate]

    with ex.JsonlWriter(out / ex.ENERGY_FILE) as w:
        for i in range(vw.num_windows):
            w.write(
                ex.energy_record(
                    window=int(vw.window[i]),
                    start_frame=int(vw.frame_index[i]),
                    end_frame=int(vw.end_frame_index[i]),
                    t_start=float(vw.t_start[i]),
                    t_end=float(vw.t_end[i]),
                    energy=float(res.energy[i]),
                    energy_smooth=float(res.energy_smooth[i]),
                    gate=gate_names[i],
                    codes=None if vw.gate[i] else vw.codes[i],
                    energies={s: float(vw.energies[i, k]) for k, s in enumerate(ENERGY_SOURCES)},
                )
            )

    video = Path(ctx.source).name
    seg_records = []
    for s in res.segments:
        sel = None
        if ctx.export.codes:
            sel = select_windows(vw, s.processed[0], s.processed[1], ctx.T, ctx.export.codes_min_overlap)
            meta = sidecar_meta(video, s, vw, sel, ctx)
            ex.write_codes_sidecar(out / ex.CODES_DIR, s.label, meta, vw.vectors(vw.window[sel]))
        seg_records.append(segment_record(s, ctx.export, sel))

    write_file_clips(ctx, seg_records)
    if ctx.export.plot:
        t_mid = 0.5 * (vw.t_start + vw.t_end)
        plot_video_energy(ctx, t_mid, res.energy, res.energy_smooth, seg_records, vw.gated, video)

    duration = ctx.duration_sec
    if duration is None:
        _, _, _, duration = to_source(vw, vw.num_frames - 1, vw.num_frames - 1)
    doc = segments_doc(
        ctx, video, duration, vw.source_fps, seg_records, vw.num_frames, vw.num_windows, vw.timeline_source
    )
    ex.write_timeline(out / ex.TIMELINE_FILE, source_timeline(vw))  # sweeps map frames to seconds with it
    ex.write_segments_json(out / ex.SEGMENTS_FILE, doc)
    shutil.rmtree(out / ex.WORK_DIR, ignore_errors=True)
    return {
        "status": "done",
        "output": str(out),
        "windows": vw.num_windows,
        "frames": vw.num_frames,
        "gated": int(vw.gated.sum()),
        "segments": len(res.segments),
        "video_seconds": round(float(duration), 3),
        "finalize_seconds": round(time.perf_counter() - t0, 3),
        "finalize_peak_rss_mb": round(peak_rss_mb(), 1),
    }


def process_video_local(
    processor: WindowProcessor,
    ctx: VideoContext,
    per_shard: int = 0,
    batch_windows: int = 8,
    resize_shorter: int = 0,
) -> dict[str, Any]:
    """Plan, run every shard in this process, and finalize one video (no Ray: tests, benchmarks, demos)."""
    plan = plan_timeline(ctx.source, ctx.target_fps)
    work = Path(ctx.out_dir) / ex.WORK_DIR
    specs = make_shards(
        ctx.key, ctx.source, work, plan, ctx.T, ctx.stride, per_shard, ctx.target_fps, resize_shorter
    )
    try:
        results = [run_shard(processor, s, batch_windows) for s in specs]
    except ShardMismatch:
        log.info("%s: timeline differs from the plan; processing it as one shard", ctx.source)
        specs = make_shards(
            ctx.key, ctx.source, work, None, ctx.T, ctx.stride, 0, ctx.target_fps, resize_shorter
        )
        results = [run_shard(processor, s, batch_windows) for s in specs]
    vw = merge_shards(results, plan, ctx.T, ctx.stride)
    if ctx.duration_sec is None:
        ctx = dataclasses.replace(ctx, duration_sec=video_duration(plan))
    return finalize_video(vw, ctx)


def video_duration(plan: TimelinePlan | None) -> float | None:
    """LAPS ``video_duration_sec`` from a plan (None without one)."""
    return None if plan is None or not math.isfinite(plan.duration_sec) else float(plan.duration_sec)

"""A video's outputs: ``energy.jsonl``, codes sidecars, clips, ``energy.png``, ``timeline.npz`` and
``segments.json`` (formats in :mod:`laps_ray.io.exports`).

**Per video** (:func:`finalize_video`, once, after all shards are merged): smoothing, change-point
scores and the state machine (:func:`laps_ray.pipeline.segment.segment_video`), mapping to source
frames and seconds, then the outputs with ``segments.json`` last, so no partial video looks done. The
record builders (:func:`segment_record`, :func:`sidecar_meta`, :func:`segments_doc`) and the clip and
plot writers are shared with the live pipeline, so a file processed either way writes the same bytes.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.core.energy import ENERGY_SOURCES, EnergyConfig
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.io import exports as ex
from laps_ray.io.video import write_clips
from laps_ray.pipeline.merge import VideoWindows, source_timeline, to_source
from laps_ray.pipeline.segment import SourceSegment, segment_video, select_windows
from laps_ray.pipeline.shard_run import GATE_NAMES, peak_rss_mb


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
        unreliable: why this video's segments cannot be trusted ("" = they can): the automatic
            threshold found that its energy does not separate motion from rest
            (``laps_ray.core.auto_threshold``). The outputs are written all the same, marked.
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
    unreliable: str = ""


def with_threshold(ctx: VideoContext, value: float, record: dict[str, Any]) -> VideoContext:
    """``ctx`` with the threshold ``auto`` calibrated to ``value``: its segmentation, the ``params``
    its segments.json records (the value, and ``threshold_source`` = ``record``), and, from the
    record's ``video.reliable``, whether the video's segments are marked unreliable."""
    seg = dataclasses.replace(ctx.segmentation, threshold=float(value))
    params = {**ctx.params, "segmentation": {**ctx.params["segmentation"], "threshold": float(value)}}
    params["segmentation"]["threshold_source"] = record
    own = record.get("video", {})
    unreliable = "" if own.get("reliable", True) else str(own.get("reason") or "unreliable")
    return dataclasses.replace(ctx, segmentation=seg, params=params, unreliable=unreliable)


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
        "reliable": not ctx.unreliable,
        "unreliable_reason": ctx.unreliable or None,
    }


def finalize_video(vw: VideoWindows, ctx: VideoContext) -> dict[str, Any]:
    """Segment one merged video and write all its outputs (segments.json last); delete its ``.work``.

    Returns:
        A run.json record: ``status`` ``done`` (``unreliable`` with its ``reason`` when
        ``ctx.unreliable``), counts and timings.

    Raises:
        VideoError: the clips could not be cut (unreadable source).
    """
    t0 = time.perf_counter()
    out = Path(ctx.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ex.remove_stale_temporaries(out)  # a retried finalize may find a killed writer's temporaries
    res = segment_video(vw, ctx.energy, ctx.segmentation, ctx.T, ctx.stride, ctx.target_fps)
    gate_names = [GATE_NAMES[g] for g in vw.gate]
    features = vw.motion_features()

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
                    features=features[i],
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
        "status": "unreliable" if ctx.unreliable else "done",
        **({"reason": ctx.unreliable} if ctx.unreliable else {}),
        "output": str(out),
        "windows": vw.num_windows,
        "frames": vw.num_frames,
        "gated": int(vw.gated.sum()),
        "segments": len(res.segments),
        "video_seconds": round(float(duration), 3),
        "finalize_seconds": round(time.perf_counter() - t0, 3),
        "finalize_peak_rss_mb": round(peak_rss_mb(), 1),
    }

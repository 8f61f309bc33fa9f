"""Calibration data: a segment_folder output's cached energies + ground truth or pseudo-labels.

``calibrate`` (threshold report) and ``sweep_thresholds`` (Ray Tune over the state machine) both start
here, so a window gets the same label and a reference segment the same seconds in both:

* **Cached videos** (:func:`read_cached_videos`): per ``<stem>/``, ``energy.jsonl`` (every window's
  energies), ``segments.json`` (geometry, recorded settings) and, when seconds are needed,
  ``timeline.npz`` — the one processed-frame → seconds rule (``laps_ray.core.timeline``), so the
  sweep scores exactly the seconds segment_folder writes. An output without it was written before
  it existed and is refused (re-run segment_folder): there is no approximate fallback.
* **Window labels** (one per window; ``core.calibration``):

  - with ground truth (``laps_ray.io.ground_truth``): active iff the window's mid-time lies in a GT
    segment whose label is not a background label (:func:`~laps_ray.core.calibration.gt_window_labels`);
    the reference segments are *all* GT segments (background runs too: a SIL|action cut is a
    boundary, as ``evaluate`` scores it);
  - without: pseudo-labels, ``proxy >= threshold`` with one threshold fitted by ``method`` on the
    taking-part windows of all videos (:func:`~laps_ray.core.calibration.pooled_pseudo_labels`);
    reference segments = runs of at least ``min_windows`` active windows, each window standing for the
    ``stride`` frames around its centre, mapped to seconds through the timeline.

  ``include_gated``: gated windows (energy 0, no tokens) take part. With the default gates nearly every
  rest window is gated; leaving them out leaves only moving windows, and the pseudo-label threshold then
  splits motion against motion (see ``calibrate``).

No Ray, no video decoding: only the cached files are read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.core.calibration import (
    CalibrationError,
    active_runs,
    gt_window_labels,
    pooled_pseudo_labels,
    runs_to_frames,
)
from laps_ray.core.changepoint import ChangePointConfig, changepoint_scores
from laps_ray.core.timeline import SourceTimeline
from laps_ray.io.energy_store import EnergyTrack, RunMeta, find_energy_files, read_energy_jsonl, read_run_meta
from laps_ray.io.exports import TIMELINE_FILE, read_timeline
from laps_ray.io.ground_truth import GroundTruth, load_ground_truth
from laps_ray.io.labels import Segment

log = logging.getLogger(__name__)

DEFAULT_BACKGROUND_LABELS = ("background", "SIL")


class CalibrationDataError(ValueError):
    """The cached outputs or labels cannot be used; the message names the folder/series and why."""


@dataclass
class CachedVideo:
    """One video of a segment_folder output, as cached on disk.

    Attributes:
        stem: the video's folder name.
        track: its windows (W) and energies.
        meta: geometry and settings recorded in its ``segments.json``.
        timeline: its processed frames on the source clock (None when not asked for).
    """

    stem: str
    track: EnergyTrack
    meta: RunMeta
    timeline: SourceTimeline | None = None


@dataclass
class LabelledVideo:
    """A cached video with its window labels and reference segments.

    Attributes:
        video: the cached video.
        use: bool (W,) windows that take part (gated ones only with ``include_gated``; finite proxy).
        labels: bool (W,) active windows (False outside ``use``).
        reference: GT segments, or pseudo-label segments in seconds (None when seconds were not asked for).
        duration: video duration in seconds (GT's, else segments.json's, else the timeline's end).
        gt: the video's ground truth, if any.
    """

    video: CachedVideo
    use: np.ndarray
    labels: np.ndarray
    reference: list[Segment] | None
    duration: float | None
    gt: GroundTruth | None = None

    @property
    def stem(self) -> str:
        return self.video.stem

    @property
    def track(self) -> EnergyTrack:
        return self.video.track


@dataclass
class CalibrationData:
    """Labelled videos (sorted by stem) and how they were labelled.

    Attributes:
        videos: the videos that take part.
        info: ``{"kind": "ground_truth" | "pseudo", ...}`` (rule, threshold, counts), for reports.
        left_out: stems without ground truth (empty for pseudo-labels).
    """

    videos: list[LabelledVideo]
    info: dict[str, Any]
    left_out: list[str]


def read_cached_videos(root: str | Path, timelines: bool = False) -> dict[str, CachedVideo]:
    """Every video of a segment_folder output (``laps_ray.io.energy_store.find_energy_files`` layout).

    Args:
        root: the output folder (or one video's folder, or one ``energy.jsonl``).
        timelines: also read each video's ``timeline.npz`` (required: needed to map frames to seconds).

    Raises:
        FileNotFoundError: ``root`` holds no energy file.
        laps_ray.io.energy_store.EnergyFormatError: a malformed energy.jsonl or segments.json.
        CalibrationDataError: ``timelines`` and a video folder without (or with a bad) timeline.npz.
    """
    out: dict[str, CachedVideo] = {}
    for stem, path in find_energy_files(root).items():
        timeline = None
        if timelines:
            try:
                timeline = read_timeline(path.parent / TIMELINE_FILE)
            except ValueError as exc:
                raise CalibrationDataError(str(exc)) from exc
            if timeline is None:
                raise CalibrationDataError(
                    f"{path.parent}: no {TIMELINE_FILE} (written by an older segment_folder); re-run "
                    "segment_folder on this video: its seconds cannot be reproduced without it"
                )
        out[stem] = CachedVideo(stem, read_energy_jsonl(path), read_run_meta(path.parent), timeline)
    return out


def track_changes(track: EnergyTrack, cp: ChangePointConfig) -> np.ndarray:
    """(W,) change-point scores of a recorded video, as segment_folder computed them
    (``pipeline.segment.segment_video``) from what ``energy.jsonl`` keeps: motion features or code ids.

    Raises:
        CalibrationDataError: the file has no input for ``cp.method`` (``latent_r2`` needs the
            vectors, which only the codes sidecars keep; features are missing in older files).
    """
    if cp.method == "motion":
        if track.features is None or track.features.shape[1] == 0:
            raise CalibrationDataError(
                f"{track.path}: no motion features (written before they were recorded); "
                "re-run segment_folder, or use changepoint.method=code_mmd"
            )
        return changepoint_scores(None, None, cp, features=track.features)
    if cp.method == "code_mmd":
        if track.codes.shape[1] == 0:
            raise CalibrationDataError(f"{track.path}: no window has code ids; no change points to score")
        return changepoint_scores(track.codes, None, cp, valid=track.has_codes)
    raise CalibrationDataError(
        f"{track.path}: changepoint.method={cp.method!r} needs the quantized vectors, which "
        "energy.jsonl does not keep; use motion or code_mmd"
    )


def fed_series(track: EnergyTrack, source: str) -> np.ndarray:
    """float64 (W,) a series as the segmenter is fed it: gated windows' missing values (null -> NaN)
    are 0, the energy a gated window gets in the stream.

    Raises:
        laps_ray.io.energy_store.EnergyFormatError: no such series (names the file and what it has).
    """
    raw = track.series(source)
    return np.where(np.isfinite(raw), raw, 0.0)


def _uses(videos: Sequence[CachedVideo], include_gated: bool, proxy: str | None = None) -> list[np.ndarray]:
    uses = []
    for v in videos:
        use = np.ones(v.track.num_windows, dtype=bool) if include_gated else ~v.track.gated
        if proxy is not None:
            use &= np.isfinite(v.track.series(proxy))
        uses.append(use)
    return uses


def _duration(v: CachedVideo) -> float | None:
    if v.meta.duration_sec is not None:
        return v.meta.duration_sec
    return None if v.timeline is None else v.timeline.end_sec()


def with_ground_truth(
    cached: dict[str, CachedVideo],
    gt: str | Path,
    fps: float = 0.0,
    background: Sequence[str] = DEFAULT_BACKGROUND_LABELS,
    include_gated: bool = True,
) -> CalibrationData:
    """Window labels and reference segments from ground truth (rules in the module docstring).

    Args:
        cached: :func:`read_cached_videos`.
        gt: ground-truth folder (``laps_ray.io.ground_truth.load_ground_truth``).
        fps: frame rate of per-frame label files (frames per second; 0 = not given).
        background: GT labels meaning "no action".
        include_gated: gated windows take part.

    Raises:
        CalibrationDataError: no cached video has ground truth.
    """
    gts = load_ground_truth(gt, fps)
    left_out = sorted(set(cached) - set(gts))
    if left_out:
        log.warning("%d video(s) without ground truth left out: %s", len(left_out), ", ".join(left_out))
    stems = sorted(set(cached) & set(gts))
    if not stems:
        raise CalibrationDataError(
            f"no energy video has ground truth: energy stems {sorted(cached)[:5]}, GT stems {sorted(gts)[:5]}"
        )
    videos = [cached[s] for s in stems]
    out = []
    for v, use in zip(videos, _uses(videos, include_gated)):
        g = gts[v.stem]
        labels = gt_window_labels(v.track.t_start, v.track.t_end, g.segments, background) & use
        out.append(LabelledVideo(v, use, labels, list(g.segments), g.duration, g))
    info = {
        "kind": "ground_truth",
        "gt": str(gt),
        "rule": "active iff the window's mid-time lies in a GT segment whose label is not in "
        "background_labels (unlabelled GT segments are active)",
        "background_labels": list(background),
    }
    return CalibrationData(out, _counted(info, out), left_out)


def with_pseudo_labels(
    cached: dict[str, CachedVideo],
    proxy: str,
    method: str,
    include_gated: bool = True,
    min_windows: int = 1,
    seconds: bool = False,
) -> CalibrationData:
    """Window labels (and, with ``seconds``, reference segments) from pseudo-labels on ``proxy``.

    Args:
        cached: :func:`read_cached_videos` (with timelines when ``seconds``).
        proxy: series the labels come from (an ``energies`` key, e.g. ``velocity``).
        method: label rule (``core.label_rules.LABEL_METHODS``).
        include_gated: gated windows take part.
        min_windows: shortest run of active windows that makes a reference segment.
        seconds: build the reference segments (needs every video's timeline).

    Raises:
        CalibrationDataError: no window with a finite proxy value, or the label rule fails.
        laps_ray.io.energy_store.EnergyFormatError: a video has no ``proxy`` series.
    """
    videos = [cached[s] for s in sorted(cached)]
    uses = _uses(videos, include_gated, proxy)
    if not any(u.any() for u in uses):
        raise CalibrationDataError(f"no window with a finite {proxy!r} value to build pseudo-labels from")
    try:
        labels, thr = pooled_pseudo_labels([v.track.series(proxy) for v in videos], uses, method)
    except CalibrationError as exc:
        raise CalibrationDataError(f"pseudo-labels from {proxy!r} with {method}: {exc}") from exc
    out = []
    for v, use, lab in zip(videos, uses, labels):
        ref = pseudo_segments(v, lab, min_windows) if seconds else None
        out.append(LabelledVideo(v, use, lab, ref, _duration(v)))
    info = {
        "kind": "pseudo",
        "method": method,
        "proxy": proxy,
        "label_threshold": float(thr),
        "rule": f"active iff {proxy} >= label_threshold",
    }
    return CalibrationData(out, _counted(info, out), [])


def pseudo_segments(v: CachedVideo, labels: np.ndarray, min_windows: int) -> list[Segment]:
    """Reference segments in seconds of a video's pseudo-labels (module docstring), through its timeline.

    Raises:
        CalibrationDataError: the video has no timeline or no window geometry.
    """
    if v.timeline is None:
        raise CalibrationDataError(f"{v.track.path.parent}: pseudo-label segments need its {TIMELINE_FILE}")
    if not v.meta.T or not v.meta.stride:
        raise CalibrationDataError(f"{v.track.path.parent}: segments.json records no params.T/stride")
    frames = runs_to_frames(active_runs(labels, min_windows), v.meta.T, v.meta.stride, v.timeline.num_frames)
    return [Segment(*v.timeline.to_source(a, b)[2:]) for a, b in frames]


def _counted(info: dict[str, Any], videos: list[LabelledVideo]) -> dict[str, Any]:
    pooled = np.concatenate([v.labels[v.use] for v in videos])
    info.update(n=int(pooled.size), n_pos=int(pooled.sum()), n_neg=int(pooled.size - pooled.sum()))
    return info

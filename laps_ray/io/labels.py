"""Label formats: LAPS segment JSON (also our ``segments.json``) and MS-TCN per-frame label files.

* LAPS evaluator JSON: ``{"video": str, "video_duration_sec": float, "segments": [{"start_sec",
  "end_sec", ["label"]}, ...]}``. Our ``segments.json`` is a superset (extra keys are ignored, except
  ``mean_energy``, kept as the segment's detection ``score``).
* MS-TCN / GTEA / Breakfast ``groundTruth`` files: one label per line, line i = frame i.

Times are seconds; frame i covers ``[i / fps, (i + 1) / fps)``. :func:`frames_to_segments` and
:func:`segments_to_frames` are inverses of each other (frames are assigned by their centre time).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from laps_ray.core.segment_metrics import label_runs
from laps_ray.io.atomic import read_json_object, write_json_atomic

logger = logging.getLogger(__name__)

DEFAULT_BACKGROUND = "background"


class LabelFormatError(ValueError):
    """A label file is malformed; the message names the file and the problem."""


class Segment(NamedTuple):
    """One segment in seconds; a tuple, so core metrics take it as ``(start, end, label, score)``."""

    start_sec: float
    end_sec: float
    label: str | None = None
    score: float | None = None  # detection confidence (our segments.json's mean_energy)


def _number(value: Any, where: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LabelFormatError(f"{path}: {where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise LabelFormatError(f"{path}: {where} must be finite, got {value!r}")
    return float(value)


def read_laps_segments(path: str | Path) -> tuple[str, float, list[Segment]]:
    """Read a LAPS evaluator / ``segments.json`` file.

    Args:
        path: the JSON file.

    Returns:
        ``(video, duration_sec, segments)`` with segments in file order.

    Raises:
        LabelFormatError: invalid JSON, a missing or mistyped key, a negative time, ``end <= start``, or
            segments not sorted by start time.
    """
    path = Path(path)
    doc = read_json_object(path, LabelFormatError)
    for key in ("video", "video_duration_sec", "segments"):
        if key not in doc:
            raise LabelFormatError(f"{path}: missing key {key!r}")
    video = doc["video"]
    if not isinstance(video, str):
        raise LabelFormatError(f"{path}: 'video' must be a string, got {video!r}")
    duration = _number(doc["video_duration_sec"], "'video_duration_sec'", path)
    if duration < 0:
        raise LabelFormatError(f"{path}: 'video_duration_sec' is negative ({duration})")
    if not isinstance(doc["segments"], list):
        raise LabelFormatError(f"{path}: 'segments' must be a list")

    segments: list[Segment] = []
    for i, item in enumerate(doc["segments"]):
        where = f"segments[{i}]"
        if not isinstance(item, dict):
            raise LabelFormatError(f"{path}: {where} must be an object")
        for key in ("start_sec", "end_sec"):
            if key not in item:
                raise LabelFormatError(f"{path}: {where} is missing key {key!r}")
        start = _number(item["start_sec"], f"{where}.start_sec", path)
        end = _number(item["end_sec"], f"{where}.end_sec", path)
        if start < 0:
            raise LabelFormatError(f"{path}: {where}.start_sec is negative ({start})")
        if end <= start:
            raise LabelFormatError(f"{path}: {where} ends at {end} s, not after its start {start} s")
        if segments and start < segments[-1].start_sec:
            raise LabelFormatError(
                f"{path}: segments not sorted by start_sec ({where} starts at {start} s, "
                f"before segments[{i - 1}] at {segments[-1].start_sec} s)"
            )
        label = item.get("label")
        if label is not None and not isinstance(label, str):
            raise LabelFormatError(f"{path}: {where}.label must be a string, got {label!r}")
        score = item.get("mean_energy")
        if score is not None:
            score = _number(score, f"{where}.mean_energy", path)
        segments.append(Segment(start, end, label, score))
    if segments and max(s.end_sec for s in segments) > duration + 1e-6:
        logger.warning(
            "%s: a segment ends after video_duration_sec=%s; its end is not a boundary", path, duration
        )
    return video, duration, segments


def write_laps_segments(
    path: str | Path, video: str, duration_sec: float, segments: Sequence[Segment], extra: dict | None = None
) -> None:
    """Write segments in the LAPS evaluator format (atomically); ``extra`` adds top-level keys."""
    items = []
    for seg in segments:
        item: dict[str, Any] = {"start_sec": float(seg[0]), "end_sec": float(seg[1])}
        if len(seg) > 2 and seg[2] is not None:
            item["label"] = seg[2]
        items.append(item)
    doc = {"video": video, "video_duration_sec": float(duration_sec), "segments": items, **(extra or {})}
    write_json_atomic(path, doc)


def read_frame_labels(path: str | Path) -> list[str]:
    """Read an MS-TCN ``groundTruth`` file: one label per line (surrounding whitespace stripped).

    Trailing blank lines are dropped; a blank line before the last label is an error (it would shift
    every later frame), as is a file with no label.
    """
    path = Path(path)
    lines = [line.strip() for line in path.read_text().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise LabelFormatError(f"{path}: no labels")
    blank = [i for i, line in enumerate(lines) if not line]
    if blank:
        raise LabelFormatError(f"{path}: blank line {blank[0] + 1} inside the label sequence")
    return lines


def frames_to_segments(labels: Sequence[str] | np.ndarray, fps: float) -> list[Segment]:
    """Runs of equal labels as segments ``[first / fps, end_exclusive / fps)`` (background kept)."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    names, starts, ends = label_runs(labels, bg_class=())
    return [Segment(int(s) / fps, int(e) / fps, n) for n, s, e in zip(names, starts, ends)]


def segments_to_frames(
    segments: Sequence[Segment], fps: float, num_frames: int, background: str = DEFAULT_BACKGROUND
) -> list[str]:
    """Per-frame labels of a segmentation: frame i takes the label of the segment holding its centre.

    Args:
        segments: ``(start_sec, end_sec, label, ...)`` items; every label must be set.
        fps: frames per second of the label sequence.
        num_frames: length of the output; segment parts beyond it are cut off.
        background: label of frames no segment covers.

    Raises:
        ValueError: a segment without a label, or two segments claiming the same frame.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    out = [background] * num_frames
    owner = np.full(num_frames, -1, dtype=np.int64)
    for i, seg in enumerate(segments):
        label = seg[2] if len(seg) > 2 else None
        if label is None:
            raise ValueError(f"segment {i} ({seg[0]}-{seg[1]} s) has no label; frame labels need one")
        # Centre of frame k is (k + 0.5) / fps; it lies in [start, end) iff k in [k0, k1).
        k0 = max(math.ceil(float(seg[0]) * fps - 0.5), 0)
        k1 = min(math.ceil(float(seg[1]) * fps - 0.5), num_frames)
        if k1 <= k0:
            continue
        taken = np.flatnonzero(owner[k0:k1] >= 0)
        if taken.size:
            k = k0 + int(taken[0])
            raise ValueError(f"segments {int(owner[k])} and {i} both cover frame {k}")
        owner[k0:k1] = i
        out[k0:k1] = [label] * (k1 - k0)
    return out

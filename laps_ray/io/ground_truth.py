"""Ground truth and predictions of a folder, per video stem (``evaluate``, ``calibrate``, sweeps).

**Ground truth** (:func:`load_ground_truth`), per stem, either format (``laps_ray.io.labels``):

* LAPS segments JSON ``<stem>.json`` or ``<stem>_segments.json``;
* MS-TCN / GTEA / Breakfast ``groundTruth`` files ``<stem>`` or ``<stem>.txt`` (one label per line,
  line i = frame i), which need the label frame rate.

**Predictions** (:func:`find_prediction`), per stem, first found of: ``<stem>/segments.json``
(segment_folder output), ``<stem>.json`` / ``<stem>_segments.json`` (LAPS JSON), ``<stem>`` /
``<stem>.txt`` (per-frame labels). A stem without any is a ``missing`` prediction (no segment).

**Scoring frame rate** (:func:`scoring_fps`): the one rule for the frame rate a video is scored at
(rasterisation for frame metrics, and half a frame as the boundary merge tolerance), so ``evaluate``
and ``sweep_thresholds`` score the same segments identically.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from laps_ray.io.labels import (
    LabelFormatError,
    Segment,
    frames_to_segments,
    read_frame_labels,
    read_laps_segments,
)

log = logging.getLogger(__name__)

PRED_FORMATS = ("auto", "segments", "frames")
NOT_PREDICTIONS = ("run.json", "config.json", "metrics.json")  # files of a job's output folder
FRAME_SUFFIXES = ("", ".txt")
FALLBACK_FPS = 30.0


@dataclass
class GroundTruth:
    """One video's ground truth.

    Attributes:
        stem: video stem.
        path: the file read.
        kind: ``laps_json`` or ``frames``.
        duration: seconds.
        segments: segments in seconds; for ``frames`` every run of equal labels (background included).
        frames: per-frame labels (``frames`` only).
        fps: label frame rate (``frames`` only).
    """

    stem: str
    path: Path
    kind: str
    duration: float
    segments: list[Segment]
    frames: list[str] | None = None
    fps: float | None = None


@dataclass
class Prediction:
    """One video's prediction.

    Attributes:
        stem: video stem.
        path: file read, None when missing.
        kind: ``segments`` (JSON), ``frames`` (label file) or ``missing``.
        segments: predicted segments in seconds (``score`` = mean_energy when recorded).
        frames: per-frame labels (``frames`` only).
        source_fps: the video's frame rate recorded in segments.json, if any.
    """

    stem: str
    path: Path | None
    kind: str
    segments: list[Segment]
    frames: list[str] | None = None
    source_fps: float | None = None


def laps_stem(path: Path) -> str:
    """Stem of a LAPS JSON file: ``v.json`` and ``v_segments.json`` are both ``v``."""
    name = path.name[: -len(".json")]
    return name[: -len("_segments")] if name.endswith("_segments") else name


def load_ground_truth(gt: str | Path, fps: float = 0.0) -> dict[str, GroundTruth]:
    """``{stem: GroundTruth}`` from a folder (or one file) of LAPS JSON and/or MS-TCN label files.

    ``<stem>.json`` / ``<stem>_segments.json`` are LAPS JSON; files without a suffix or ending in
    ``.txt`` are per-frame labels (need ``fps`` > 0, frames per second); hidden files and other
    suffixes (README.md, ...) are skipped.

    Raises:
        FileNotFoundError: ``gt`` does not exist or holds no ground-truth file.
        LabelFormatError: a malformed file, per-frame files without ``fps``, or two files for one stem.
    """
    root = Path(gt)
    if not root.exists():
        raise FileNotFoundError(f"ground truth {root}: no such file or folder")
    files = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.is_file())
    out: dict[str, GroundTruth] = {}
    for p in files:
        if p.name.startswith("."):
            continue
        if p.suffix == ".json":
            stem = laps_stem(p)
            _, duration, segments = read_laps_segments(p)
            item = GroundTruth(stem, p, "laps_json", duration, segments)
        elif p.suffix in FRAME_SUFFIXES:
            if not fps or fps <= 0:
                raise LabelFormatError(f"{p}: per-frame label file, but no frame rate given (pass --fps)")
            stem = p.stem if p.suffix else p.name
            frames = read_frame_labels(p)
            item = GroundTruth(
                stem, p, "frames", len(frames) / fps, frames_to_segments(frames, fps), frames, fps
            )
        else:
            log.debug("ground truth: skipping %s (not .json, .txt or suffix-less)", p)
            continue
        if stem in out:
            raise LabelFormatError(f"ground truth for {stem!r} twice: {out[stem].path} and {p}")
        out[stem] = item
    if not out:
        raise FileNotFoundError(
            f"ground truth {root}: no <stem>.json, <stem>_segments.json or per-frame label file in it"
        )
    return out


def _segments_fps(path: Path) -> float | None:
    try:
        v = json.loads(path.read_text()).get("fps")
    except (OSError, ValueError, AttributeError):
        return None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def find_prediction(pred: Path, stem: str, fps: float, pred_format: str = "auto") -> Prediction:
    """The prediction of ``stem`` under ``pred`` (search order in the module docstring).

    Args:
        pred: predictions folder.
        stem: video stem.
        fps: frame rate of per-frame label files (frames per second; 0 = not given).
        pred_format: ``auto`` | ``segments`` (JSON only) | ``frames`` (label files only).

    Raises:
        LabelFormatError: a malformed file, or a per-frame file without ``fps``.
    """
    if pred_format in ("auto", "segments"):
        for p in (pred / stem / "segments.json", pred / f"{stem}.json", pred / f"{stem}_segments.json"):
            if p.is_file():
                _, _, segments = read_laps_segments(p)
                return Prediction(stem, p, "segments", segments, source_fps=_segments_fps(p))
    if pred_format in ("auto", "frames"):
        for p in (pred / stem, pred / f"{stem}.txt"):
            if p.is_file():
                if not fps or fps <= 0:
                    raise LabelFormatError(f"{p}: per-frame prediction, but no frame rate given (pass --fps)")
                frames = read_frame_labels(p)
                return Prediction(stem, p, "frames", frames_to_segments(frames, fps), frames)
    return Prediction(stem, None, "missing", [])


def run_status(pred: Path) -> dict[str, str]:
    """``{stem: "status: reason"}`` from a segment_folder ``run.json`` beside the predictions, if any."""
    try:
        items = json.loads((pred / "run.json").read_text()).get("items", {})
    except (OSError, ValueError, AttributeError):
        return {}
    out = {}
    for key, entry in items.items() if isinstance(items, dict) else ():
        if isinstance(entry, dict):
            text = str(entry.get("status", "unknown"))
            if entry.get("reason"):
                text += f": {entry['reason']}"
            out[Path(str(key)).stem] = text
            out[str(key)] = text
    return out


def prediction_stems(pred: Path) -> set[str]:
    """Stems that have something that looks like a prediction under ``pred``."""
    stems = {p.parent.name for p in pred.glob("*/segments.json")}
    for p in pred.iterdir():
        if p.is_file() and not p.name.startswith(".") and p.name not in NOT_PREDICTIONS:
            if p.suffix == ".json":
                stems.add(laps_stem(p))
            elif p.suffix in FRAME_SUFFIXES:
                stems.add(p.stem if p.suffix else p.name)
    return stems


def scoring_fps(
    gt: GroundTruth | None, fps: float = 0.0, source_fps: float | None = None
) -> tuple[float, bool]:
    """The frame rate (frames per second) a video is scored at, and whether it is the fallback.

    First of: the GT's label frame rate (per-frame GT), ``fps`` (``--fps``), the prediction's source
    frame rate (``segments.json`` ``fps``), else :data:`FALLBACK_FPS` (second value True). Frame
    metrics rasterise at it; boundary metrics merge points closer than half a frame of it.
    """
    if gt is not None and gt.fps:
        return float(gt.fps), False
    if fps > 0:
        return float(fps), False
    if source_fps:
        return float(source_fps), False
    return FALLBACK_FPS, True

"""Reference labels for scoring a clustering: a CSV, a JSON mapping, or ground-truth segment files.

Accepted ``--labels`` inputs (every error names the file and the reason):

* CSV with a header holding ``video``, ``segment`` and ``label`` columns; ``video`` may be the video's
  file name (``a.mp4``) or its output folder name (``a``).
* JSON object ``{"<video>/<segment>": label}`` or ``{"<video>": {"<segment>": label}}``.
* Ground-truth segments (a LAPS JSON file or a folder of them, or MS-TCN frame labels; see
  :func:`laps_ray.io.ground_truth.load_ground_truth`): each segment gets the label of the
  ground-truth segment it overlaps most in time (no overlap: unlabelled).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from laps_ray.io.ground_truth import load_ground_truth
from laps_ray.io.segment_codes import SegmentRef


class LabelsError(ValueError):
    """A labels file cannot be used; the message names it and why."""


def _names(ref: SegmentRef) -> tuple[str, ...]:
    return (ref.video, Path(ref.video).stem, Path(ref.video_dir).name)


def _from_pairs(pairs: dict[tuple[str, str], str], refs: Sequence[SegmentRef]) -> list[str | None]:
    out = []
    for ref in refs:
        label = None
        for name in _names(ref):
            label = pairs.get((name, ref.segment))
            if label is not None:
                break
        out.append(label)
    return out


def _read_csv(path: Path) -> dict[tuple[str, str], str]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"video", "segment", "label"} - set(reader.fieldnames or ())
            if missing:
                raise LabelsError(f"labels {path}: CSV header lacks column(s) {sorted(missing)}")
            return {(r["video"], r["segment"]): r["label"] for r in reader if r.get("label")}
    except OSError as exc:
        raise LabelsError(f"labels {path}: cannot read ({exc.strerror or exc})") from exc


def _read_json_mapping(path: Path, doc: dict) -> dict[tuple[str, str], str]:
    pairs: dict[tuple[str, str], str] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            pairs.update({(key, str(seg)): str(lab) for seg, lab in value.items()})
        elif "/" in key:
            video, seg = key.rsplit("/", 1)
            pairs[(video, seg)] = str(value)
        else:
            raise LabelsError(
                f"labels {path}: key {key!r} is neither '<video>/<segment>' nor a video mapping"
            )
    return pairs


def _by_overlap(path: Path, refs: Sequence[SegmentRef]) -> list[str | None]:
    truth = load_ground_truth(path)
    out: list[str | None] = []
    for ref in refs:
        gt = next((truth[n] for n in _names(ref) if n in truth), None)
        best, label = 0.0, None
        for seg in gt.segments if gt is not None else ():
            ov = min(seg.end_sec, ref.end_sec) - max(seg.start_sec, ref.start_sec)
            if ov > best and seg.label:
                best, label = ov, seg.label
        out.append(label)
    return out


def read_labels(path: str | Path, refs: Sequence[SegmentRef]) -> list[str | None]:
    """One reference label (or None) per segment of ``refs``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        LabelsError: unreadable or malformed, or no segment got a label (names the file).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"labels {p}: no such file or folder")
    if p.is_file() and p.suffix.lower() == ".csv":
        labels = _from_pairs(_read_csv(p), refs)
    elif p.is_file() and p.suffix.lower() == ".json":
        try:
            doc = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LabelsError(f"labels {p}: not readable JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise LabelsError(f"labels {p}: top level must be an object")
        labels = _by_overlap(p, refs) if "segments" in doc else _from_pairs(_read_json_mapping(p, doc), refs)
    else:
        labels = _by_overlap(p, refs)
    if not any(label is not None for label in labels):
        raise LabelsError(f"labels {p}: no segment of the input matched a label (check video/segment names)")
    return labels

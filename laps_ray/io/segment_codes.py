"""Reading segment_folder / stream outputs for discovery: which segments exist and their token sequences.

:func:`find_segments` lists every segment of every ``<out>/<stem>/segments.json`` under a folder (any
depth, sorted) as a :class:`SegmentRef`; :func:`read_sequence` reads one segment's codes sidecar
(``codes/segment_XXXX.json`` + ``.npy``, :mod:`laps_ray.io.exports`) into its time-ordered code and
vector sequences (:func:`laps_ray.core.sequence_features.segment_sequence`: overlapping windows'
steps once). The true code count comes from the tokenizer recorded in ``segments.json``
(``params.tokenizer.codebook_size`` → 1920 for 2048). Every error names the file and the reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from laps_ray.core.sequence_features import segment_sequence
from laps_ray.io.exports import SEGMENTS_FILE, SIDECAR_FORMAT
from laps_ray.models.fsq_levels import true_codebook_size

log = logging.getLogger(__name__)


class SegmentCodesError(ValueError):
    """A segments.json or codes sidecar is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class SegmentRef:
    """One segment of a segment_folder output.

    Attributes:
        video: ``video`` of its segments.json (the source file name).
        video_dir: the folder holding that segments.json (absolute).
        segment: its label (``segment_0003``).
        start_sec, end_sec: its time span in the source video.
        codes: absolute path of its codes sidecar (.json), or None when none was written.
        clip: absolute path of its clip (.mp4), or None.
        stride: window stride in processed frames (from the segments.json params).
    """

    video: str
    video_dir: str
    segment: str
    start_sec: float
    end_sec: float
    codes: str | None
    clip: str | None
    stride: int

    @property
    def key(self) -> str:
        """``<video folder name>/<segment>``: unique within one output folder."""
        return f"{Path(self.video_dir).name}/{self.segment}"


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise SegmentCodesError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise SegmentCodesError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise SegmentCodesError(f"{path}: top level must be an object")
    return doc


def find_segments(root: str | Path) -> tuple[list[SegmentRef], int]:
    """Every segment under ``root`` and the true code count of the tokenizer that made them.

    Args:
        root: a segment_folder output folder (or one video's folder).

    Returns:
        ``(segments in (folder, segment) order, true code count)``.

    Raises:
        FileNotFoundError: ``root`` does not exist or holds no segments.json.
        SegmentCodesError: a malformed segments.json, or two tokenizers with different code counts.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"segments {root}: no such folder")
    docs = sorted(root.rglob(SEGMENTS_FILE))
    if not docs:
        raise FileNotFoundError(f"segments {root}: no {SEGMENTS_FILE} under it (run segment_folder first)")
    refs: list[SegmentRef] = []
    counts: set[int] = set()
    for path in docs:
        doc = _read_json(path)
        params = doc.get("params") or {}
        size = (params.get("tokenizer") or {}).get("codebook_size")
        try:
            counts.add(true_codebook_size(int(size)))
        except (TypeError, ValueError) as exc:
            raise SegmentCodesError(f"{path}: params.tokenizer.codebook_size is {size!r} ({exc})") from exc
        stride = params.get("stride")
        if not isinstance(stride, int) or stride < 1:
            raise SegmentCodesError(f"{path}: params.stride must be a positive integer, got {stride!r}")
        video_dir = path.parent.resolve()
        for i, seg in enumerate(doc.get("segments") or []):
            try:
                refs.append(
                    SegmentRef(
                        video=str(doc.get("video") or video_dir.name),
                        video_dir=str(video_dir),
                        segment=str(seg["label"]),
                        start_sec=float(seg["start_sec"]),
                        end_sec=float(seg["end_sec"]),
                        codes=str(video_dir / seg["codes"]) if seg.get("codes") else None,
                        clip=str(video_dir / seg["clip"]) if seg.get("clip") else None,
                        stride=stride,
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise SegmentCodesError(f"{path}: segments[{i}] is malformed ({exc!r})") from exc
    if len(counts) > 1:
        raise SegmentCodesError(
            f"segments {root}: made by tokenizers with different code counts {sorted(counts)}; "
            "cluster one tokenizer's outputs at a time"
        )
    return refs, counts.pop()


def read_sequence(ref: SegmentRef, with_vectors: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """A segment's code sequence (N,) int64 and, with ``with_vectors``, its vectors (N, D) float32.

    A segment without a sidecar, or whose sidecar selected no window, gives an empty sequence.

    Raises:
        SegmentCodesError: the sidecar or its .npy is missing or malformed (names the file).
    """
    if ref.codes is None:
        return np.zeros(0, np.int64), (np.zeros((0, 0), np.float32) if with_vectors else None)
    path = Path(ref.codes)
    doc = _read_json(path)
    if doc.get("format") != SIDECAR_FORMAT:
        raise SegmentCodesError(f"{path}: format is {doc.get('format')!r}, expected {SIDECAR_FORMAT!r}")
    try:
        codes = np.asarray(doc["codes"], dtype=np.int64)
        windows = np.asarray(doc["windows"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise SegmentCodesError(f"{path}: 'codes' / 'windows' missing or not integers ({exc!r})") from exc
    if codes.size == 0:
        d = int((doc.get("vectors_shape") or [0, 0, 0])[-1])
        return np.zeros(0, np.int64), (np.zeros((0, d), np.float32) if with_vectors else None)
    if codes.ndim != 2 or codes.shape[0] != windows.shape[0]:
        raise SegmentCodesError(f"{path}: codes {codes.shape} do not match windows {windows.shape}")
    vectors = None
    if with_vectors:
        npy = path.parent / str(doc.get("vectors") or path.with_suffix(".npy").name)
        try:
            vectors = np.load(npy, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SegmentCodesError(f"{npy}: cannot read the vectors ({exc})") from exc
    try:
        return segment_sequence(codes, windows, ref.stride, vectors)
    except ValueError as exc:
        raise SegmentCodesError(f"{path}: {exc}") from exc

"""segment_folder / stream outputs of one video, every file written atomically.

Layout (``<out>/<name>/``, DESIGN "segment_folder output")::

    segments.json              written LAST: its presence (with matching digests) marks the video complete
    energy.jsonl               one line per window, window order, every window present
    energy.png                 energy curve, smoothed curve, thresholds, segments shaded, gated windows
    timeline.npz               processed frame -> source index and time (laps_ray.core.timeline)
    clips/segment_0000.mp4     SOURCE frames start_frame..end_frame at the source frame rate
    codes/segment_0000.json    code ids per selected window, window ids, frame range, geometry, digest
    codes/segment_0000.npy     quantized vectors (W_seg, L, D) float32 of the same windows, same order

``energy.jsonl`` line (``laps_ray.io.energy_store`` reads it)::

    {"window", "start_frame", "end_frame", "t_start", "t_end", "energy", "energy_smooth",
     "gated": bool, "gate": "pre" | "motion" | null, "codes": [int] * L | null,
     "energies": {"quantized", "prequant", "velocity", "motion"}, "features": [float] * F | null}

``start_frame``/``end_frame`` are SOURCE frame indices of the window's first/last processed frame and
``t_start``/``t_end`` their times; ``energy`` is the configured source (raw), ``energy_smooth`` its causal
smoothing; gated windows have ``codes: null`` and the gate rule's energy. ``features`` are the
window's motion features (``laps_ray.core.motion.MOTION_FEATURES``, what the ``motion`` change points
compare), null for a window that was not tracked; absent in files written before they existed.

No Ray, no torch: numpy, json and (lazily) matplotlib.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.config import check
from laps_ray.core.timeline import SourceTimeline
from laps_ray.io.atomic import atomic_path, write_json_atomic

ENERGY_FILE = "energy.jsonl"
TIMELINE_FILE = "timeline.npz"
SEGMENTS_FILE = "segments.json"
PLOT_FILE = "energy.png"
CLIPS_DIR = "clips"
CODES_DIR = "codes"
WORK_DIR = ".work"  # per-shard temporaries of a video in progress; deleted when the video completes
SEGMENTS_FORMAT = "laps_ray.segments/1"
SIDECAR_FORMAT = "laps_ray.codes/1"


@dataclass
class ExportConfig:
    """What is written per video besides ``segments.json`` and ``energy.jsonl`` (always written).

    Attributes:
        clips: cut one .mp4 per segment (source frames, source frame rate; one decode per video).
        clip_crf: H.264 quality of the clips (lower = better, 18-23 typical).
        clip_preset: x264 speed preset of the clips.
        codes: write the codes sidecar (.json + .npy) of every segment.
        codes_min_overlap: a window goes into a segment's sidecar when it has codes and at least
            this fraction of its frames lies inside the segment (0.5: the window is mostly inside;
            with T=16, stride=4 a window can belong to two adjacent segments). A segment whose windows
            all fall short still gets a sidecar (with 0 windows): segments are never dropped here.
        plot: write ``energy.png``.
    """

    clips: bool = True
    clip_crf: int = 20
    clip_preset: str = "veryfast"
    codes: bool = True
    codes_min_overlap: float = 0.5
    plot: bool = True

    def __post_init__(self) -> None:
        check(0 <= self.clip_crf <= 51, "clip_crf", f"must be in [0, 51], got {self.clip_crf}")
        check(
            math.isfinite(self.codes_min_overlap) and 0.0 < self.codes_min_overlap <= 1.0,
            "codes_min_overlap",
            f"must be in (0, 1], got {self.codes_min_overlap}",
        )


def segment_label(k: int) -> str:
    """Label (and file stem) of the k-th kept segment of a video: ``segment_0000``..., no gaps."""
    return f"segment_{k:04d}"


def energy_record(
    window: int,
    start_frame: int,
    end_frame: int,
    t_start: float,
    t_end: float,
    energy: float,
    energy_smooth: float,
    gate: str | None,
    codes: Sequence[int] | np.ndarray | None,
    energies: dict[str, float],
    features: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """One ``energy.jsonl`` line as a dict (field order as documented in the module docstring)."""
    has_features = features is not None and bool(np.isfinite(np.asarray(features, dtype=float)).all())
    return {
        "window": int(window),
        "start_frame": int(start_frame),
        "end_frame": int(end_frame),
        "t_start": float(t_start),
        "t_end": float(t_end),
        "energy": float(energy),
        "energy_smooth": float(energy_smooth),
        "gated": gate is not None,
        "gate": gate,
        "codes": None if codes is None else [int(c) for c in codes],
        "energies": {k: float(v) for k, v in energies.items()},
        "features": [float(f) for f in features] if has_features else None,
    }


class JsonlWriter:
    """Append JSON lines to a hidden temporary; :meth:`close` renames it to ``path`` (atomic).

    Streaming (one line at a time, nothing held in memory), for offline exports and live streams.
    Use as a context manager: an exception deletes the temporary and leaves ``path`` untouched.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._fh = open(self._tmp, "w")  # noqa: SIM115 - closed in close()/abort()
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, allow_nan=False) + "\n")
        self.count += 1

    def close(self) -> None:
        self._fh.close()
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        self._fh.close()
        self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write ``records`` as JSON lines to ``path`` atomically; returns the number of lines."""
    with JsonlWriter(path) as w:
        for rec in records:
            w.write(rec)
    return w.count


def write_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically (works for memory-mapped arrays without loading them)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def write_codes_sidecar(
    codes_dir: str | Path, label: str, meta: dict[str, Any], vectors: np.ndarray
) -> tuple[Path, Path]:
    """Write ``<codes_dir>/<label>.npy`` (vectors) and then ``<label>.json`` (``meta`` + file facts).

    Args:
        codes_dir: the video's ``codes/`` folder.
        label: segment label (file stem).
        meta: JSON-serialisable sidecar fields (code ids per window, window ids, frame range, ...).
        vectors: (W_seg, L, D) float32 quantized vectors, rows in the order of ``meta["windows"]``.

    Returns:
        ``(json_path, npy_path)``.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 3:
        raise ValueError(f"{label}: sidecar vectors must be (W_seg, L, D), got {vectors.shape}")
    codes_dir = Path(codes_dir)
    npy = codes_dir / f"{label}.npy"
    js = codes_dir / f"{label}.json"
    write_npy_atomic(npy, vectors)
    body = {
        "format": SIDECAR_FORMAT,
        **meta,
        "vectors": npy.name,
        "vectors_shape": list(vectors.shape),
        "vectors_dtype": "float32",
    }
    write_json_atomic(js, body, indent=None)  # compact: indented code lists run to thousands of lines
    return js, npy


def write_timeline(path: str | Path, timeline: SourceTimeline) -> None:
    """``timeline.npz``: ``index`` (F,) int64, ``t`` (F,) float64, ``last_source_frame`` and
    ``source_fps`` (0-d) of a video's processed frames, written atomically (:func:`read_timeline`).

    Byte-deterministic (``np.savez`` stamps every zip entry with the current time, so two runs
    would differ): the entries carry a fixed date and are stored uncompressed.
    """
    import zipfile

    arrays = {
        "index": np.asarray(timeline.index, dtype=np.int64),
        "t": np.asarray(timeline.t, dtype=np.float64),
        "last_source_frame": np.asarray(timeline.last_source_frame, dtype=np.int64),
        "source_fps": np.asarray(timeline.source_fps, dtype=np.float64),
    }
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=False)


def read_timeline(path: str | Path) -> SourceTimeline | None:
    """A video's ``timeline.npz``, or None if it is missing (outputs written before it existed).

    Raises:
        ValueError: the file exists but is not a timeline (names the file).
    """
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            return SourceTimeline(
                index=z["index"].astype(np.int64),
                t=z["t"].astype(np.float64),
                last_source_frame=int(z["last_source_frame"]),
                source_fps=float(z["source_fps"]),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{p}: not a laps_ray timeline ({exc})") from exc


def write_segments_json(path: str | Path, doc: dict[str, Any]) -> None:
    """Write a video's ``segments.json`` atomically (stamps ``format``); write it LAST (completion)."""
    write_json_atomic(path, {"format": SEGMENTS_FORMAT, **doc})


def read_segments_json(path: str | Path) -> dict[str, Any] | None:
    """A ``segments.json`` as a dict, or None if it is missing or unreadable (= not complete)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def is_complete(video_dir: str | Path, checkpoint_sha256: str, config_sha256: str) -> bool:
    """True iff the video's outputs are complete and were made with this checkpoint and config.

    Complete = ``segments.json`` parses, its digests match, and every file it references (energy file,
    clips, sidecars) exists. Anything else is partial (or stale) and must be redone.
    """
    video_dir = Path(video_dir)
    doc = read_segments_json(video_dir / SEGMENTS_FILE)
    if doc is None or doc.get("format") != SEGMENTS_FORMAT:
        return False
    if doc.get("checkpoint_sha256") != checkpoint_sha256 or doc.get("config_sha256") != config_sha256:
        return False
    if not (video_dir / ENERGY_FILE).is_file():
        return False
    for seg in doc.get("segments", []):
        for key in ("clip", "codes"):
            rel = seg.get(key)
            if rel and not (video_dir / rel).is_file():
                return False
        vec = seg.get("vectors")
        if vec and not (video_dir / vec).is_file():
            return False
    return True


_TEMP = re.compile(r"^\..*\.tmp(\.[^/]*)?$")


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete hidden ``.*.tmp*`` files (left by a killed writer) under ``folder``; returns how many."""
    n = 0
    for p in Path(folder).rglob(".*"):
        if p.is_file() and _TEMP.match(p.name):
            p.unlink(missing_ok=True)
            n += 1
    return n


def plot_energy(
    path: str | Path,
    t: np.ndarray,
    energy: np.ndarray,
    energy_smooth: np.ndarray,
    thr_on: float,
    thr_off: float,
    segments: Sequence[tuple[float, float]],
    gated: np.ndarray,
    title: str = "",
    ylabel: str = "energy",
) -> None:
    """Energy plot: raw and smoothed energy per window, on/off thresholds, segments shaded, gated marked.

    Args:
        path: output .png (written atomically).
        t: (W,) window times in seconds (x axis; e.g. window centres).
        energy, energy_smooth: (W,) raw and smoothed energies.
        thr_on, thr_off: hysteresis thresholds (horizontal lines).
        segments: (start_sec, end_sec) of the kept segments (shaded).
        gated: (W,) bool, windows dropped by a gate (marked on the x axis).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = np.asarray(t, dtype=np.float64)
    gated = np.asarray(gated, dtype=bool)
    fig = Figure(figsize=(12, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for k, (a, b) in enumerate(segments):
        ax.axvspan(a, b, color="tab:green", alpha=0.18, lw=0, label="segments" if k == 0 else None)
    ax.plot(t, energy, color="0.55", lw=0.8, label="energy (raw)")
    ax.plot(t, energy_smooth, color="tab:blue", lw=1.4, label="energy (smoothed)")
    ax.axhline(thr_on, color="tab:red", ls="--", lw=1.0, label=f"θ_on = {thr_on:.4g}")
    ax.axhline(thr_off, color="tab:orange", ls=":", lw=1.0, label=f"θ_off = {thr_off:.4g}")
    if gated.any():
        ax.plot(t[gated], np.zeros(int(gated.sum())), "x", color="0.3", ms=3, label="gated")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    lo, hi = (float(t.min()), float(t.max())) if t.size else (0.0, 1.0)
    if hi <= lo:  # one window (a sub-second video): a zero-width axis is an error to matplotlib
        lo, hi = lo - 0.5, hi + 0.5
    ax.set_xlim(lo, hi)
    ax.legend(loc="upper right", fontsize=7, ncols=3)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")

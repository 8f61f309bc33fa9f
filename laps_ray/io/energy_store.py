"""Cached per-window energies (``energy.jsonl``) and the run metadata beside them (``segments.json``).

``segment_folder`` writes, per video ``<out>/<stem>/``, one JSON line per window, in window order,
every window present::

    {"window": int, "start_frame": int, "end_frame": int, "t_start": float, "t_end": float,
     "energy": float, "energy_smooth": float, "gated": bool, "codes": [int] * L or null,
     "energies": {"quantized": float, "prequant": float, "velocity": float}}

``start_frame``/``end_frame`` are *source* frame indices of the window's first/last processed frame and
``t_start``/``t_end`` their times in seconds. ``energy`` is the configured source/mode (raw),
``energy_smooth`` its causal smoothing, ``energies`` every source (so calibration and sweeps can pick
another one without decoding the video again). Gated windows have ``codes: null`` and energy 0. An
``energies`` value may be ``null`` (e.g. no velocities for a pre-gated window); it is read as NaN.

:func:`read_energy_jsonl` reads one file into arrays (:class:`EnergyTrack`); :func:`find_energy_files`
and :func:`read_run_meta` find the videos of an output folder and their window geometry. Processed
frames map to seconds through the video's ``timeline.npz`` (``laps_ray.io.exports.read_timeline``,
THE rule of ``laps_ray.core.timeline``), never through these windows' times. Nothing here imports
Ray or video libraries: sweeps run on these arrays alone.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.io.atomic import read_json_object
from laps_ray.io.exports import ENERGY_FILE, SEGMENTS_FILE

logger = logging.getLogger(__name__)

# Series names accepted by EnergyTrack.series besides the keys of ``energies``.
RECORDED = ("energy", "energy_smooth")


class EnergyFormatError(ValueError):
    """An energy file (or its metadata) is malformed; the message names the file, the line and why."""


@dataclass
class EnergyTrack:
    """All windows of one video, as arrays (W windows, L tokens per window).

    Attributes:
        path: the file read.
        window: int64 (W,) window indices, always ``0 .. W-1``.
        start_frame, end_frame: int64 (W,) source frame indices of each window's first/last frame.
        t_start, t_end: float64 (W,) their times in seconds.
        energy: float64 (W,) the configured energy (raw).
        energy_smooth: float64 (W,) its causal smoothing as segment_folder computed it.
        gated: bool (W,) windows dropped by a gate (no tokens).
        codes: int64 (W, L) code ids, -1 for windows without codes; L = 0 if no window has codes.
        energies: name -> float64 (W,) every recorded source; NaN where the file has null.
        features: float64 (W, F) motion features, NaN rows where the file has null (or none at
            all: F = 0 for files written before features were recorded).
    """

    path: Path
    window: np.ndarray
    start_frame: np.ndarray
    end_frame: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    energy: np.ndarray
    energy_smooth: np.ndarray
    gated: np.ndarray
    codes: np.ndarray
    energies: dict[str, np.ndarray] = field(default_factory=dict)
    features: np.ndarray | None = None

    @property
    def num_windows(self) -> int:
        return int(self.window.size)

    @property
    def has_codes(self) -> np.ndarray:
        """bool (W,): the window has code ids."""
        if self.codes.shape[1] == 0:
            return np.zeros(self.num_windows, dtype=bool)
        return (self.codes >= 0).all(axis=1)

    def available(self) -> list[str]:
        """Names :meth:`series` accepts: ``energy``, ``energy_smooth`` and the keys of ``energies``."""
        return [*RECORDED, *self.energies]

    def series(self, name: str) -> np.ndarray:
        """A per-window series by name (``energy``, ``energy_smooth`` or an ``energies`` key).

        Raises:
            EnergyFormatError: the file has no such series (the message lists the ones it has).
        """
        if name == "energy":
            return self.energy
        if name == "energy_smooth":
            return self.energy_smooth
        if name in self.energies:
            return self.energies[name]
        raise EnergyFormatError(
            f"{self.path}: no energy series {name!r}; available: {', '.join(self.available())}"
        )


def _fail(path: Path, line: int, msg: str) -> EnergyFormatError:
    return EnergyFormatError(f"{path}:{line}: {msg}")


def _int(rec: dict, key: str, path: Path, line: int) -> int:
    v = rec.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(path, line, f"{key!r} must be an integer, got {v!r}")
    return v


def _float(rec: dict, key: str, path: Path, line: int) -> float:
    v = rec.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _fail(path, line, f"{key!r} must be a finite number, got {v!r}")
    return float(v)


def read_energy_jsonl(path: str | Path) -> EnergyTrack:
    """Read one ``energy.jsonl`` into arrays (format in the module docstring).

    Blank lines are ignored. Every other line must be a JSON object with all required keys; windows
    must be exactly ``0, 1, ..., W-1`` in file order; all code lists must have the same length; every
    line must hold the same ``energies`` keys.

    Raises:
        EnergyFormatError: naming the file, the line number and the problem.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    required = ("window", "start_frame", "end_frame", "t_start", "t_end", "energy", "energy_smooth", "gated")
    ints: dict[str, list[int]] = {"window": [], "start_frame": [], "end_frame": []}
    floats: dict[str, list[float]] = {"t_start": [], "t_end": [], "energy": [], "energy_smooth": []}
    gated: list[bool] = []
    codes: list[list[int] | None] = []
    energies: dict[str, list[float]] | None = None
    code_len: int | None = None
    features: list[list[float] | None] = []
    feature_len: int | None = None
    with path.open() as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _fail(path, lineno, f"not valid JSON ({exc.msg})") from exc
            if not isinstance(rec, dict):
                raise _fail(path, lineno, f"expected a JSON object, got {type(rec).__name__}")
            missing = [k for k in required if k not in rec]
            if missing:
                raise _fail(path, lineno, f"missing key(s) {missing}")
            for k in ints:
                ints[k].append(_int(rec, k, path, lineno))
            expected = len(ints["window"]) - 1
            if ints["window"][-1] != expected:
                raise _fail(
                    path,
                    lineno,
                    f"window {ints['window'][-1]} where window {expected} was expected "
                    "(windows must be 0..W-1, in order, none missing)",
                )
            for k in floats:
                floats[k].append(_float(rec, k, path, lineno))
            if not isinstance(rec["gated"], bool):
                raise _fail(path, lineno, f"'gated' must be true/false, got {rec['gated']!r}")
            gated.append(rec["gated"])
            c = rec.get("codes")
            if c is not None:
                if not isinstance(c, list) or not all(
                    isinstance(x, int) and not isinstance(x, bool) for x in c
                ):
                    raise _fail(
                        path, lineno, f"'codes' must be a list of integers or null, got {str(c)[:80]}"
                    )
                if any(x < 0 for x in c):
                    raise _fail(path, lineno, "'codes' must be non-negative code ids")
                if code_len is None:
                    code_len = len(c)
                elif len(c) != code_len:
                    raise _fail(path, lineno, f"{len(c)} codes where earlier windows have {code_len}")
            codes.append(c)
            f = rec.get("features")
            if f is not None:
                if not isinstance(f, list) or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in f
                ):
                    why = f"'features' must be a list of numbers or null, got {str(f)[:80]}"
                    raise _fail(path, lineno, why)
                if feature_len is None:
                    feature_len = len(f)
                elif len(f) != feature_len:
                    raise _fail(path, lineno, f"{len(f)} features where earlier windows have {feature_len}")
            features.append(f)
            e = rec.get("energies", {})
            if not isinstance(e, dict):
                raise _fail(path, lineno, f"'energies' must be an object, got {e!r}")
            if energies is None:
                energies = {k: [] for k in e}
            elif set(e) != set(energies):
                raise _fail(
                    path, lineno, f"'energies' keys {sorted(e)} differ from line 1's {sorted(energies)}"
                )
            for k, v in e.items():
                if v is None:
                    energies[k].append(math.nan)
                elif isinstance(v, bool) or not isinstance(v, (int, float)) or math.isinf(v):
                    raise _fail(path, lineno, f"'energies.{k}' must be a number or null, got {v!r}")
                else:
                    energies[k].append(float(v))
    if not ints["window"]:
        raise EnergyFormatError(f"{path}: no windows")
    W = len(ints["window"])
    L = code_len or 0
    code_arr = np.full((W, L), -1, dtype=np.int64)
    for w, c in enumerate(codes):
        if c is not None and L:
            code_arr[w] = c
    feat_arr = np.full((W, feature_len or 0), np.nan)
    for w, f in enumerate(features):
        if f is not None:
            feat_arr[w] = f
    return EnergyTrack(
        path=path,
        window=np.asarray(ints["window"], dtype=np.int64),
        start_frame=np.asarray(ints["start_frame"], dtype=np.int64),
        end_frame=np.asarray(ints["end_frame"], dtype=np.int64),
        t_start=np.asarray(floats["t_start"], dtype=np.float64),
        t_end=np.asarray(floats["t_end"], dtype=np.float64),
        energy=np.asarray(floats["energy"], dtype=np.float64),
        energy_smooth=np.asarray(floats["energy_smooth"], dtype=np.float64),
        gated=np.asarray(gated, dtype=bool),
        codes=code_arr,
        energies={k: np.asarray(v, dtype=np.float64) for k, v in (energies or {}).items()},
        features=feat_arr,
    )


def find_energy_files(root: str | Path) -> dict[str, Path]:
    """``{stem: energy.jsonl path}`` of a segment_folder output.

    ``root`` may be the output folder (``<root>/*/energy.jsonl``, stem = sub-folder name), one video's
    folder (``<root>/energy.jsonl``, stem = folder name) or an ``energy.jsonl`` file itself.

    Raises:
        FileNotFoundError: ``root`` does not exist or holds no energy file.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    if root.is_file():
        return {root.parent.name: root}
    if (root / ENERGY_FILE).is_file():
        return {root.name: root / ENERGY_FILE}
    found = {p.parent.name: p for p in sorted(root.glob(f"*/{ENERGY_FILE}"))}
    if not found:
        raise FileNotFoundError(
            f"{root}: no {ENERGY_FILE} in it or in its sub-folders (a segment_folder output?)"
        )
    return found


@dataclass(frozen=True)
class RunMeta:
    """Window geometry and video facts for one video, from its ``segments.json`` (if any).

    Attributes:
        T, stride, target_fps: window geometry (None where unknown).
        duration_sec: ``video_duration_sec`` (None where unknown).
        fps: source frame rate (None where unknown).
        energy: ``params.energy`` as recorded (source, mode, smoothing), or ``{}``.
        segmentation: ``params.segmentation`` as recorded, or ``{}``.
        num_frames: processed frames, if recorded (``params.num_frames``).
    """

    T: int | None = None
    stride: int | None = None
    target_fps: float | None = None
    duration_sec: float | None = None
    fps: float | None = None
    energy: dict = field(default_factory=dict)
    segmentation: dict = field(default_factory=dict)
    num_frames: int | None = None


def read_run_meta(video_dir: str | Path) -> RunMeta:
    """:class:`RunMeta` from ``<video_dir>/segments.json``; an empty one if the file is absent.

    Raises:
        EnergyFormatError: the file exists but is not valid JSON or has mistyped fields.
    """
    path = Path(video_dir) / SEGMENTS_FILE
    if not path.is_file():
        return RunMeta()
    doc = read_json_object(path, EnergyFormatError)
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise EnergyFormatError(f"{path}: 'params' must be an object")

    def num(d: dict, key: str, kind: type) -> Any:
        v = d.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise EnergyFormatError(f"{path}: {key!r} must be a number, got {v!r}")
        return kind(v)

    energy = params.get("energy") or {}
    seg = params.get("segmentation") or {}
    return RunMeta(
        T=num(params, "T", int),
        stride=num(params, "stride", int),
        target_fps=num(params, "target_fps", float),
        duration_sec=num(doc, "video_duration_sec", float),
        fps=num(doc, "fps", float),
        energy=energy if isinstance(energy, dict) else {},
        segmentation=seg if isinstance(seg, dict) else {},
        num_frames=num(params, "num_frames", int),
    )

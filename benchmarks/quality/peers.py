"""The peers: simple motion energies computed on the same decoded frames as the project.

Frames: ``laps_ray.io.video.iter_frames`` at the project's ``target_fps`` (20) and processed size
(shorter side 240), in grey. Per processed frame k >= 1 (frame 0 copies frame 1):

* ``framediff``: mean absolute grey difference of frames k-1 and k (grey levels);
* ``flow``: mean magnitude of OpenCV DIS optical flow (``DISOPTICAL_FLOW_PRESET_FAST``) from k-1
  to k (pixels per processed frame).

**Windows**: a per-frame energy becomes a per-window one on the project's own windows (T=16,
stride=4, ``core.windows.window_starts``): the mean of the T-1 = 15 steps inside the window, so the
peers see exactly the project's time resolution and state machine (``core.segmentation.segment_offline``
with the project's defaults), with the settings the project documents for a window-mean energy (EMA
0.7 smoothing, ``align=center``: a mean crosses the threshold when about half the window moves;
the project's own ``motion`` energy uses no smoothing and ``align=end``); processed frames
map to seconds through the video's planned timeline (``pipeline.shards.plan_timeline``, the rule
segment_folder writes ``timeline.npz`` with).

**PELT** (``ruptures``): change points of the per-frame ``flow`` energy (log, see
:func:`pelt_pieces`); segments = pieces whose mean energy is at or above the threshold; adjacent kept
pieces stay separate segments (a change point inside motion is the detector's claim of a
back-to-back boundary).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from laps_ray.core.segmentation import SegmentationConfig, WindowGeometry, segment_offline
from laps_ray.core.smoothing import SmoothingConfig, segmentation_signal
from laps_ray.core.timeline import SourceTimeline
from laps_ray.core.windows import DEFAULT_STRIDE, DEFAULT_T, DEFAULT_TARGET_FPS, window_starts
from quality import PEERS

log = logging.getLogger("bench.quality.peers")

RESIZE_SHORTER = 240
PELT_MIN_SEC = 0.8  # shortest piece: the project's min_duration_sec
PELT_JUMP = 2  # candidate change points every 2 frames (0.1 s)


@dataclass
class FrameEnergies:
    """One video's per-frame peer energies and its timeline.

    Attributes:
        framediff, flow: float64 (F,) per processed frame.
        timeline: processed frames on the source clock.
    """

    framediff: np.ndarray
    flow: np.ndarray
    timeline: SourceTimeline

    def series(self, name: str) -> np.ndarray:
        return {"framediff": self.framediff, "flow": self.flow}[name]


def _timeline(video: Path, fps: float) -> SourceTimeline:
    from laps_ray.pipeline.shards import plan_timeline

    plan = plan_timeline(video, fps)
    if plan is None:
        raise ValueError(f"{video}: no timeline plan (damaged packets?)")
    return SourceTimeline(plan.index, plan.t, plan.num_source_frames - 1, plan.source_fps)


def compute_frame_energies(video: Path, fps: float = DEFAULT_TARGET_FPS) -> FrameEnergies:
    """Decode ``video`` as the project does and compute both per-frame energies (module docstring)."""
    import cv2

    from laps_ray.io.video import iter_frames

    cv2.setNumThreads(1)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    diff, flow, index = [], [], []
    prev = None
    with iter_frames(video, fps, RESIZE_SHORTER) as frames:
        for fr in frames:
            grey = cv2.cvtColor(fr.image, cv2.COLOR_RGB2GRAY)
            index.append(fr.index)
            if prev is not None:
                diff.append(float(np.mean(np.abs(grey.astype(np.int16) - prev.astype(np.int16)))))
                uv = dis.calc(prev, grey, None)
                flow.append(float(np.mean(np.hypot(uv[..., 0], uv[..., 1]))))
            prev = grey
    timeline = _timeline(video, fps)
    if not np.array_equal(np.asarray(index), timeline.index):
        raise ValueError(f"{video}: decoded frames differ from the planned timeline")
    first = lambda xs: np.asarray([xs[0], *xs], np.float64)  # noqa: E731 - frame 0 copies frame 1
    return FrameEnergies(first(diff), first(flow), timeline)


def _cached(job: tuple[str, str]) -> None:
    video, cache = job
    fe = compute_frame_energies(Path(video))
    tl = fe.timeline
    np.savez(
        cache,
        framediff=fe.framediff,
        flow=fe.flow,
        index=tl.index,
        t=tl.t,
        last_source_frame=tl.last_source_frame,
        source_fps=tl.source_fps,
    )


def frame_energies(videos: list[tuple[Path, Path]], jobs: int = 2) -> list[FrameEnergies]:
    """Per-frame energies of ``(video, cache.npz)`` pairs, computed once and cached."""
    todo = [(str(v), str(c)) for v, c in videos if not c.is_file() or c.stat().st_mtime < v.stat().st_mtime]
    if todo:
        log.info("peer energies (frame difference, DIS flow) of %d videos", len(todo))
        for _, c in todo:
            Path(c).parent.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(max(1, jobs)) as pool:
            list(pool.map(_cached, todo))
    out = []
    for _, c in videos:
        with np.load(c) as z:
            tl = SourceTimeline(z["index"], z["t"], int(z["last_source_frame"]), float(z["source_fps"]))
            out.append(FrameEnergies(z["framediff"], z["flow"], tl))
    return out


# ------------------------------------------------------------------------------------- windowed peers


def window_energy(per_frame: np.ndarray, T: int = DEFAULT_T, stride: int = DEFAULT_STRIDE) -> np.ndarray:
    """float64 (W,): per window, the mean of the T-1 per-frame steps inside it (frames past the end
    repeat the last frame: no motion, as the project pads its last window)."""
    F = per_frame.size
    steps = np.concatenate([per_frame, np.zeros(T)])  # padded frames do not move
    return np.asarray([steps[s + 1 : s + T].mean() for s in window_starts(F, T, stride)])


def window_signal(per_frame: np.ndarray, smoothing: SmoothingConfig) -> np.ndarray:
    """What the state machine sees for a per-frame energy: windowed, then the project's smoothing."""
    raw = window_energy(per_frame)
    return segmentation_signal(raw, smoothing)[1]


def segments_from_signal(
    signal: np.ndarray, threshold: float, seg: SegmentationConfig, timeline: SourceTimeline
) -> list[tuple[float, float]]:
    """The project's state machine on a per-window ``signal`` at ``threshold`` → segments in seconds."""
    cfg = dataclasses.replace(seg, threshold=float(threshold))
    geom = WindowGeometry(DEFAULT_T, DEFAULT_STRIDE, DEFAULT_TARGET_FPS, num_frames=timeline.num_frames)
    return [timeline.to_source(s.start_frame, s.end_frame)[2:] for s in segment_offline(signal, cfg, geom)]


# ------------------------------------------------------------------------------------------------ PELT


def pelt_penalty(x: np.ndarray) -> float:
    """BIC penalty of one more change point in a mean-shift (l2) model of ``x``, with the signal's own
    variance as the noise variance: ``2 var(x) log n`` (scale-free; no ground truth involved)."""
    return 2.0 * max(float(np.var(x)), 1e-12) * math.log(max(len(x), 2))


def pelt_pieces(per_frame: np.ndarray, fps: float = DEFAULT_TARGET_FPS) -> list[tuple[int, int]]:
    """PELT (``ruptures``, l2 cost) on ``log(flow + 0.01)`` with :func:`pelt_penalty`, pieces at least
    ``PELT_MIN_SEC`` long: ``[(first_frame, last_frame)]`` covering every frame (inclusive)."""
    import ruptures as rpt

    x = np.log(np.asarray(per_frame, np.float64) + 0.01)
    min_size = max(2, int(round(PELT_MIN_SEC * fps)))
    ends = rpt.Pelt(model="l2", min_size=min_size, jump=PELT_JUMP).fit(x).predict(pen=pelt_penalty(x))
    starts = [0, *ends[:-1]]
    return [(a, b - 1) for a, b in zip(starts, ends)]


def pelt_segments(
    per_frame: np.ndarray, pieces: list[tuple[int, int]], threshold: float, timeline: SourceTimeline
) -> list[tuple[float, float]]:
    """Pieces whose mean per-frame energy is ``>= threshold``, in seconds (adjacent ones kept apart)."""
    return [
        timeline.to_source(a, b)[2:] for a, b in pieces if float(np.mean(per_frame[a : b + 1])) >= threshold
    ]


# ---------------------------------------------------------------------------------- peers end to end


@dataclass
class PeerRun:
    """A peer on one setting: its unsupervised threshold and segments, and how to re-segment it.

    Attributes:
        threshold: the unsupervised threshold and the rule that gave it.
        segments: per video, segments in seconds at that threshold.
        signals: per video, the values a threshold is compared with (candidates of the upper bound).
        segment: ``segment(video_index, threshold)`` -> segments in seconds.
    """

    threshold: dict
    segments: list[list[tuple[float, float]]]
    signals: list[np.ndarray]
    segment: Callable[[int, float], list[tuple[float, float]]]


PEER_RULE = "ki_log"  # the project's automatic label rule (core.auto_threshold), given to the peers too


def label_rule(values: np.ndarray, rule: str = PEER_RULE) -> tuple[float, str]:
    """An unsupervised label rule (``core.label_rules.label_threshold``; by default the project's own)
    on pooled values; Otsu when it cannot be fitted (said in the returned rule name)."""
    from laps_ray.core.label_rules import CalibrationError, label_threshold

    try:
        return label_threshold(values, rule), rule
    except CalibrationError as exc:
        log.warning("%s failed (%s): Otsu instead", rule, exc)
        return label_threshold(values, "otsu"), f"otsu ({rule} failed)"


def run_peer(
    method: str,
    energies: list[FrameEnergies],
    seg: SegmentationConfig,
    smoothing: SmoothingConfig,
    rule: str = PEER_RULE,
) -> PeerRun:
    """A peer (``framediff``, ``flow`` or ``pelt``) on one setting's videos (module docstring); one
    threshold for all of them, fitted on their pooled values as ``calibrate`` pools a folder."""
    if method in ("framediff", "flow"):
        signals = [window_signal(fe.series(method), smoothing) for fe in energies]
        thr, rule = label_rule(np.concatenate(signals), rule)

        def segment(i: int, t: float) -> list[tuple[float, float]]:
            return segments_from_signal(signals[i], t, seg, energies[i].timeline)

        what = f"{rule} on the pooled per-window signal (windowed, smoothed {method})"
    elif method == "pelt":
        signals = [fe.flow for fe in energies]
        pieces = [pelt_pieces(fe.flow) for fe in energies]
        thr, rule = label_rule(np.concatenate(signals), rule)

        def segment(i: int, t: float) -> list[tuple[float, float]]:
            return pelt_segments(energies[i].flow, pieces[i], t, energies[i].timeline)

        what = f"{rule} on the pooled per-frame flow energy; a PELT piece is kept iff its mean >= it"
    else:
        raise ValueError(f"unknown peer {method!r}; expected one of {PEERS}")
    return PeerRun(
        {"value": float(thr), "rule": what},
        [segment(i, thr) for i in range(len(energies))],
        signals,
        segment,
    )

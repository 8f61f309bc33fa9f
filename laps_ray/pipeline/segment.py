"""Segmentation of one merged video, in source terms: smoothing, change points and the state machine
once per video (:func:`segment_video`), each segment mapped to source frames and seconds
(:func:`source_segment`, through :func:`laps_ray.pipeline.merge.to_source`), and the windows that go
into a segment's codes sidecar (:func:`select_windows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from laps_ray.core.changepoint import changepoint_scores
from laps_ray.core.energy import EnergyConfig
from laps_ray.core.segmentation import Segment, SegmentationConfig, WindowGeometry, segment_offline
from laps_ray.core.smoothing import segmentation_signal
from laps_ray.io import exports as ex
from laps_ray.pipeline.merge import VideoWindows, to_source


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
    smoothed, signal = segmentation_signal(raw, energy.smoothing)
    changes = None
    cp = seg.changepoint
    if cp.enable:
        valid = ~vw.gated
        if cp.method == "motion":  # every tracked window has features (NaN rows: untracked)
            changes = changepoint_scores(None, None, cp, features=vw.motion_features())
        elif cp.method == "code_mmd":
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

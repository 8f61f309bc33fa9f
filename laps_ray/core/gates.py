"""Cheap gates that skip windows with no motion before the expensive work.

* Pre-gate (before tracking): pixel differences of small grayscale frames.
* Motion gate (after tracking, before the tokenizer): speeds of the tracked points.

Both are AND rules on (mean statistic, active fraction): a window is dropped only when its mean
change is small *and* too few pixels/points are active, so a small object moving in a still scene
is kept. Gated windows get no codes and energy 0.0 (see ``core.energy.apply_gates``).

Defaults are deliberately less aggressive than the original's params.yaml (pre-gate MAD 0.005 /
active 0.05, motion gate 0.02 / 0.025), which were tuned on a scene where a whole worker moves: on our
sample videos (small objects moving in a still scene, 320x240) those values gated 100 % of the
windows inside the planted motion. With the defaults below, windows entirely inside motion were gated
0-8 % of the time and windows entirely at rest 100 % (4 videos, 468 windows; see README
"Performance"). A gate should only skip what is certainly static.

Unlike the reference, errors are not swallowed: a malformed input raises instead of silently
counting as "not dropped".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from laps_ray.config import check
from laps_ray.core.energy import mean_speed


@dataclass
class PreGateConfig:
    """Pixel-difference gate on grayscale frames whose shorter side is ``resize_shorter``.

    Attributes:
        enable: apply the gate (statistics are computed either way).
        resize_shorter: shorter side, in pixels, of the gray images that are differenced.
        pixel_diff_thr: a pixel is "active" when ``|g_i - g_{i-1}| / 255`` exceeds this
            (fraction of the full gray range, 0-1).
        mad_thr: drop threshold on the mean absolute difference ``mean |g_i - g_{i-1}| / 255``
            (same units).
        min_active_ratio: drop threshold on the fraction of active pixels (0-1).
    """

    enable: bool = True
    resize_shorter: int = 128
    pixel_diff_thr: float = 0.02
    mad_thr: float = 0.001
    min_active_ratio: float = 0.005

    def __post_init__(self) -> None:
        check(self.resize_shorter >= 8, "pre_gate.resize_shorter", f"must be >= 8, got {self.resize_shorter}")
        for key in ("pixel_diff_thr", "mad_thr", "min_active_ratio"):
            value = getattr(self, key)
            check(math.isfinite(value) and 0.0 <= value <= 1.0, f"pre_gate.{key}", "must be in [0, 1]")


@dataclass
class MotionGateConfig:
    """Speed gate on normalised point velocities.

    Attributes:
        enable: apply the gate (statistics are computed either way).
        vel_norm_thr: speed threshold, in normalised units per step (1.0 = half the processed
            frame's width/height per frame at target_fps; see ``core.windows.normalized_velocities``).
            Used both for the mean speed and to call a (step, point) "active".
        min_active_ratio: drop threshold on the fraction of active (step, point) pairs (0-1).
    """

    enable: bool = True
    vel_norm_thr: float = 0.003
    min_active_ratio: float = 0.01

    def __post_init__(self) -> None:
        check(
            math.isfinite(self.vel_norm_thr) and self.vel_norm_thr >= 0.0,
            "motion_gate.vel_norm_thr",
            "must be a finite number >= 0",
        )
        check(
            math.isfinite(self.min_active_ratio) and 0.0 <= self.min_active_ratio <= 1.0,
            "motion_gate.min_active_ratio",
            "must be in [0, 1]",
        )


@dataclass
class GateConfig:
    """Both gates (values from the reference params.yaml)."""

    pre_gate: PreGateConfig = field(default_factory=PreGateConfig)
    motion_gate: MotionGateConfig = field(default_factory=MotionGateConfig)


@dataclass(frozen=True)
class GateResult:
    """Outcome of one gate on one window.

    Attributes:
        dropped: the window is skipped (gate enabled and both statistics below threshold).
        value: the mean statistic (pre-gate: mean abs. gray difference /255; motion gate: mean speed).
        active_ratio: fraction of active pixels / (step, point) pairs.
    """

    dropped: bool
    value: float
    active_ratio: float


@dataclass(frozen=True)
class GateBatchResult:
    """Outcome of one gate on W windows: arrays of shape (W,) with the fields of :class:`GateResult`."""

    dropped: np.ndarray
    value: np.ndarray
    active_ratio: np.ndarray

    def __getitem__(self, w: int) -> GateResult:
        return GateResult(bool(self.dropped[w]), float(self.value[w]), float(self.active_ratio[w]))


def _drop(enable: bool, value, active, value_thr: float, active_thr: float):
    # The one AND rule shared by both gates.
    return np.logical_and(enable, np.logical_and(value < value_thr, active < active_thr))


def pre_gate_stats(gray: np.ndarray, pixel_diff_thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute difference and active-pixel ratio of consecutive gray frames.

    Args:
        gray: (..., T, h, w) uint8 gray frames (T >= 2).
        pixel_diff_thr: active-pixel threshold on ``|g_i - g_{i-1}| / 255``.

    Returns:
        ``(mad, active)``, float64 arrays of shape (...): the mean over the T-1 pairs and all pixels
        of ``|g_i - g_{i-1}| / 255``, and of ``|g_i - g_{i-1}| / 255 > pixel_diff_thr``.
    """
    gray = np.asarray(gray)
    if gray.dtype != np.uint8 or gray.ndim < 3 or gray.shape[-3] < 2:
        raise ValueError(f"pre-gate expects (..., T>=2, h, w) uint8 frames, got {gray.dtype} {gray.shape}")
    diff = np.abs(np.diff(gray.astype(np.int16), axis=-3)).astype(np.float32) / 255.0
    mad = diff.mean(axis=(-3, -2, -1), dtype=np.float64)
    active = (diff > pixel_diff_thr).mean(axis=(-3, -2, -1), dtype=np.float64)
    return mad, active


def pre_gate_batch(gray: np.ndarray, cfg: PreGateConfig) -> GateBatchResult:
    """Pre-gate of W windows. ``gray``: (W, T, h, w) uint8."""
    gray = np.asarray(gray)
    if gray.ndim != 4:
        raise ValueError(f"pre_gate_batch expects (W, T, h, w), got {gray.shape}")
    mad, active = pre_gate_stats(gray, cfg.pixel_diff_thr)
    dropped = _drop(cfg.enable, mad, active, cfg.mad_thr, cfg.min_active_ratio)
    return GateBatchResult(dropped=dropped, value=mad, active_ratio=active)


def pre_gate(gray: np.ndarray, cfg: PreGateConfig) -> GateResult:
    """Pre-gate of one window.

    Args:
        gray: (T, h, w) uint8 gray frames (``laps_ray.pipeline.window_processor.gray_small``).
        cfg: pre-gate settings.

    Returns:
        Dropped iff ``MAD < mad_thr`` AND ``active < min_active_ratio`` (and the gate is enabled).
    """
    gray = np.asarray(gray)
    if gray.ndim != 3:
        raise ValueError(f"pre_gate expects (T, h, w), got {gray.shape}")
    return pre_gate_batch(gray[None], cfg)[0]


def motion_gate_batch(vel: np.ndarray, cfg: MotionGateConfig) -> GateBatchResult:
    """Motion gate of W windows. ``vel``: (W, L, N, 2) normalised velocities."""
    vel = np.asarray(vel)
    if vel.ndim != 4 or vel.shape[-1] != 2:
        raise ValueError(f"motion_gate_batch expects (W, L, N, 2), got {vel.shape}")
    value = mean_speed(vel)
    speed = np.linalg.norm(vel.astype(np.float64), axis=-1)
    active = (speed > cfg.vel_norm_thr).mean(axis=(-2, -1))
    dropped = _drop(cfg.enable, value, active, cfg.vel_norm_thr, cfg.min_active_ratio)
    return GateBatchResult(dropped=dropped, value=value, active_ratio=active)


def motion_gate(vel: np.ndarray, cfg: MotionGateConfig) -> GateResult:
    """Motion gate of one window.

    Args:
        vel: (T-1, N, 2) normalised velocities (visibility is not used, as in the reference).
        cfg: motion-gate settings.

    Returns:
        Dropped iff mean speed ``< vel_norm_thr`` AND active ratio ``< min_active_ratio``
        (and the gate is enabled).
    """
    vel = np.asarray(vel)
    if vel.ndim != 3 or vel.shape[-1] != 2:
        raise ValueError(f"motion_gate expects (T-1, N, 2), got {vel.shape}")
    return motion_gate_batch(vel[None], cfg)[0]

"""Causal smoothing of the per-window energy (one rule, streaming and offline).

Two filters, both causal so that online and offline runs give the same value for window ``w``
from windows ``<= w`` only:

* ``ema``: ``y_0 = x_0``; ``y_t = alpha * x_t + (1 - alpha) * y_{t-1}`` (alpha = weight of the
  newest value).
* ``ma``: mean of the last ``window`` values (fewer at the start of the stream).
* ``none``: ``y_t = x_t``.

The streaming form is an explicit state plus :func:`step`; the array form :func:`smooth` is
literally a fold of :func:`step`, so there is exactly one implementation of each formula.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from laps_ray.config import check, check_choice

SMOOTHING_METHODS = ("ema", "ma", "none")


@dataclass
class SmoothingConfig:
    """How the energy is smoothed before segmentation.

    Attributes:
        method: ``ema`` (default), ``ma`` or ``none``.
        alpha: EMA weight of the newest value, in (0, 1]; 0.7 follows the reference params.yaml
            (the reference code default 0.4 lagged boundaries by about one more window).
        window: moving-average length in windows (>= 1).
        use_for_seg: segment on the smoothed energy (True) or on the raw one. Both are stored.
    """

    method: str = "ema"
    alpha: float = 0.7
    window: int = 3
    use_for_seg: bool = True

    def __post_init__(self) -> None:
        check_choice(self.method, SMOOTHING_METHODS, "smoothing.method")
        check(math.isfinite(self.alpha) and 0.0 < self.alpha <= 1.0, "smoothing.alpha", "must be in (0, 1]")
        check(self.window >= 1, "smoothing.window", f"must be >= 1, got {self.window}")


@dataclass(frozen=True)
class SmootherState:
    """Streaming state of one smoother (one per video/stream).

    Attributes:
        method, alpha, window: copied from :class:`SmoothingConfig` so ``step`` needs only the state.
        count: number of values seen so far.
        last: previous output (EMA memory); unused for ``ma``/``none``.
        recent: the last ``window`` inputs, oldest first (MA memory); empty for ``ema``/``none``.
    """

    method: str = "ema"
    alpha: float = 0.7
    window: int = 3
    count: int = 0
    last: float = 0.0
    recent: tuple[float, ...] = ()


def init_smoother(cfg: SmoothingConfig) -> SmootherState:
    """Fresh state for a new stream."""
    return SmootherState(method=cfg.method, alpha=cfg.alpha, window=cfg.window)


def step(state: SmootherState, x: float) -> tuple[SmootherState, float]:
    """Feed one value, get the smoothed value for it.

    Args:
        state: current smoother state (not modified).
        x: the next raw value; must be finite.

    Returns:
        ``(new_state, y)``.

    Raises:
        ValueError: ``x`` is NaN or infinite (a gap must be made explicit upstream, not smoothed over).
    """
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"smoothing: value #{state.count} is not finite ({x})")
    if state.method == "ema":
        y = x if state.count == 0 else state.alpha * x + (1.0 - state.alpha) * state.last
        return dataclasses.replace(state, count=state.count + 1, last=y), y
    if state.method == "ma":
        recent = (*state.recent, x)[-state.window :]
        y = sum(recent) / len(recent)
        return dataclasses.replace(state, count=state.count + 1, last=y, recent=recent), y
    return dataclasses.replace(state, count=state.count + 1, last=x), x


def smooth(values: np.ndarray, cfg: SmoothingConfig) -> np.ndarray:
    """Smooth a whole series: a fold of :func:`step` over ``values``.

    Args:
        values: (W,) raw energies in window order.
        cfg: smoothing settings.

    Returns:
        float64 (W,) smoothed energies; ``out[w]`` depends on ``values[: w + 1]`` only.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"smoothing: expected a 1-D series, got shape {values.shape}")
    state = init_smoother(cfg)
    out = np.empty_like(values)
    for i, x in enumerate(values):
        state, out[i] = step(state, x)
    return out


def for_segmentation(raw: float | np.ndarray, smoothed: float | np.ndarray, cfg: SmoothingConfig):
    """The signal the state machine sees: smoothed iff ``cfg.use_for_seg`` (one rule for all callers)."""
    return smoothed if cfg.use_for_seg else raw


def segmentation_signal(raw: np.ndarray, cfg: SmoothingConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(smoothed, signal)`` of a whole series: :func:`smooth` and what the state machine sees
    (:func:`for_segmentation`). Offline segmentation, the automatic threshold and sweeps all take
    their signal from here."""
    smoothed = smooth(raw, cfg)
    return smoothed, np.asarray(for_segmentation(np.asarray(raw, dtype=np.float64), smoothed, cfg))

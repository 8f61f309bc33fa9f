"""Motion evidence that real scenes do not drown: the ``motion`` energy of a window.

The mean speed of all 400 tracked points (the ``velocity`` energy) is what a conveyor that never
stops, a shaking camera or a person crossing the background keep high, while a small object doing
the action barely moves it. This energy is built so that each of those is removed by a rule, per
window (no state across windows: time shards stay independent):

1. **Camera motion is removed** (:func:`residual_velocities`): per frame step, a 2-D affine motion
   field is fitted to all visible points by iteratively reweighted least squares (Tukey weights, so
   a moving object or belt does not pull the fit) and subtracted. Shake, pan and zoom leave
   (nearly) no residual; points that are lost (tracker visibility) do not count.
2. **Steady motion is removed** (:func:`path_deviations`): the camera-compensated path of each point
   over the window is compared with the best straight, constant-velocity path through it (least
   squares on the visible frames); the score is the RMS distance between the two. A belt, a fan or a
   person walking through at constant speed follows that line and scores (nearly) zero; an action
   starts, stops, turns and shakes, and leaves it. The line is fitted on the frames' own times
   (``times``): a resampled source keeps unevenly spaced frames, and on the frame index a steady
   mover zig-zags. Measured in positions, not per-step velocities,
   the tracker's frame-to-frame jitter does not add up (with per-step velocity changes, flicker and
   compression noise scored like slow actions: ROC AUC 0.67 vs 0.98 on the flicker benchmark).
3. **Isolated points do not count** (:func:`grid_median`): each point's score is replaced by the
   median of its 3x3 neighbourhood on the tracking grid. An acting object moves a patch of
   neighbouring points together; a point that loses its track (a flicker frame, a compression
   block) is alone among still neighbours.
4. **The points that move carry it** (:func:`top_mean`): the window's energy is the mean over its top
   ``top_fraction`` of points (5 %: 20 of 400), not over all of them, so a small object is not
   averaged away by the static or steadily moving rest of the frame.

Measured on ``benchmarks/segment_quality.py`` scenes (3 videos x 20 s per setting, windows labelled
by the ground truth, ROC AUC of this energy; before -> after steps 2-3 replaced a per-step velocity
change): all distractors 0.80 -> 0.96, flicker 0.67 -> 0.98 (with the tracker's gain compensation),
shake 0.76 -> 0.96, crossing 0.90 -> 0.98, none 0.99 -> 0.98. Mean point speed: 0.79 with all on.

Positions are in the normalised units of :func:`laps_ray.core.windows.normalized_velocities`
(``x / (width / 2)``, ``y / (height / 2)``). Pure numpy.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

DEFAULT_TOP_FRACTION = 0.05
_TUKEY_C = 4.685  # Tukey biweight constant (95 % efficiency for Gaussian residuals), in robust sigmas
_IRLS_ITERS = 4
_TINY = 1e-12
_LOG_FLOOR = 1e-6  # keeps the logs of a still window finite


def residual_velocities(
    positions: np.ndarray, visible: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step point velocities with the camera's motion (a robust affine field) subtracted.

    Args:
        positions: (..., T, N, 2) normalised positions (pixels scaled like the velocities:
            ``x / (width / 2)``, ``y / (height / 2)``).
        visible: (..., T, N) bool tracker visibility (None = all visible). A step counts for a point
            when it is visible at both ends.

    Returns:
        ``(residual, valid)``: float64 (..., T-1, N, 2) velocity minus the fitted field, and bool
        (..., T-1, N) the steps that count (residuals of the others are 0).
    """
    pos = np.asarray(positions, dtype=np.float64)
    lead, (T, N) = pos.shape[:-3], pos.shape[-3:-1]
    p0 = pos[..., :-1, :, :].reshape(-1, N, 2)
    d = np.diff(pos, axis=-3).reshape(-1, N, 2)
    if visible is None:
        valid = np.ones(d.shape[:2], dtype=bool)
    else:
        vis = np.asarray(visible, dtype=bool)
        valid = (vis[..., :-1, :] & vis[..., 1:, :]).reshape(-1, N)
    X = np.concatenate([p0, np.ones((*p0.shape[:2], 1))], axis=-1)  # (S, N, 3): affine design
    w = valid.astype(np.float64)
    fit = np.zeros_like(d)
    for _ in range(_IRLS_ITERS):
        coef = _weighted_lstsq(X, d, w)  # (S, 3, 2)
        fit = np.einsum("snk,skj->snj", X, coef)
        r = np.linalg.norm(d - fit, axis=-1)
        scale = 1.4826 * _masked_median(r, valid) + 1e-9  # robust sigma of the residuals
        u = r / (_TUKEY_C * scale[:, None])
        w = np.where(valid & (u < 1.0), (1.0 - u**2) ** 2, 0.0)
    residual = np.where(valid[..., None], d - fit, 0.0)
    return residual.reshape(*lead, T - 1, N, 2), valid.reshape(*lead, T - 1, N)


def _weighted_lstsq(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per batch row: argmin_c sum_n w_n |X_n c - y_n|^2, ridge-stabilised (degenerate point sets)."""
    Xw = X * w[..., None]
    A = np.einsum("snk,snl->skl", Xw, X) + 1e-9 * np.eye(X.shape[-1])
    b = np.einsum("snk,snj->skj", Xw, y)
    return np.linalg.solve(A, b)


def _masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise median over the masked entries (0 for a row with none)."""
    v = np.where(mask, values, np.nan)
    out = np.nanmedian(np.where(mask.any(axis=1, keepdims=True), v, 0.0), axis=1)
    return np.nan_to_num(out)


def path_deviations(residual: np.ndarray, valid: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
    """RMS distance of each point's camera-compensated path from its best constant-velocity line.

    The path is the running sum of the residual velocities (0 at the window's first frame); the line
    is the least-squares fit ``a + b t`` over all T frames, ``t`` the frames' own times: a source
    resampled to another rate keeps unevenly spaced frames (30 -> 20 fps: steps of 2 and 1 source
    frames in turn), and against the frame index a belt or a person walking through at constant
    speed zig-zags (measured on the benchmark's 30 fps crossing object, 8 px per step: 0.0066 per
    window, an action's level, against 0.0004-0.001 fitted on the times; window ROC AUC with every
    distractor on 0.959 -> 0.974). A point the tracker loses is held where it was last seen: tracks
    are lost mostly where things move fast or deform, so the kink this leaves counts as evidence of
    motion (measured: fitting only the visible frames lowered the ROC AUC with all distractors from
    0.96 to 0.91).

    Args:
        residual: (..., L, N, 2) camera-compensated velocities (:func:`residual_velocities`).
        valid: (..., L, N) the steps that count (the others move the point by 0).
        times: (..., T) increasing frame times (seconds, or any unit), broadcastable to the leading
            axes; None = evenly spaced.

    Returns:
        float64 (..., N).
    """
    r = np.where(valid[..., None], residual, 0.0)
    zero = np.zeros_like(r[..., :1, :, :])
    path = np.concatenate([zero, np.cumsum(r, axis=-3)], axis=-3)  # (..., T, N, 2)
    t = _centred_times(times, path.shape[-3])[..., None, None]  # centred: intercept and slope decouple
    icpt = path.mean(axis=-3, keepdims=True)
    slope = (t * path).sum(axis=-3, keepdims=True) / np.maximum((t * t).sum(axis=-3, keepdims=True), 1e-12)
    dev = ((path - icpt - slope * t) ** 2).sum(axis=-1)  # (..., T, N)
    return np.sqrt(dev.mean(axis=-2))


def usable_times(times: np.ndarray) -> bool:
    """Whether frame times (..., T) are finite and strictly increasing along the last axis: what
    :func:`path_deviations` needs (a live source that keeps every frame may repeat a timestamp)."""
    t = np.asarray(times, dtype=np.float64)
    return bool(np.isfinite(t).all() and (np.diff(t, axis=-1) > 0).all())


def _centred_times(times: np.ndarray | None, T: int) -> np.ndarray:
    """(..., T) frame times minus their mean; evenly spaced frame numbers when ``times`` is None."""
    if times is None:
        return np.arange(T, dtype=np.float64) - (T - 1) / 2.0
    t = np.asarray(times, dtype=np.float64)
    if t.shape[-1] != T:
        raise ValueError(f"times has {t.shape[-1]} frames per window, the tracks {T}")
    if not usable_times(t):
        raise ValueError("frame times must be finite and strictly increasing within each window")
    return t - t.mean(axis=-1, keepdims=True)


def grid_median(values: np.ndarray) -> np.ndarray:
    """Median over each point's 3x3 neighbourhood on the square tracking grid (edges replicated).

    Args:
        values: (..., N) per-point values in the grid's row-major order
            (:func:`laps_ray.core.windows.grid_points`).

    Returns:
        float64 (..., N); ``values`` unchanged when N is not a square (not a grid).
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[-1]
    g = math.isqrt(n)
    if g * g != n or g < 3:
        return v
    grid = np.pad(v.reshape(*v.shape[:-1], g, g), [(0, 0)] * (v.ndim - 1) + [(1, 1), (1, 1)], mode="edge")
    shifts = [grid[..., i : i + g, j : j + g] for i in range(3) for j in range(3)]
    return np.median(np.stack(shifts, axis=-1), axis=-1).reshape(v.shape)


def top_mean(values: np.ndarray, top_fraction: float = DEFAULT_TOP_FRACTION) -> np.ndarray:
    """Mean of the largest ``top_fraction`` of the last axis (at least one value)."""
    v = np.asarray(values, dtype=np.float64)
    k = max(1, int(round(top_fraction * v.shape[-1])))
    return np.sort(v, axis=-1)[..., -k:].mean(axis=-1)


def motion_energy(
    positions: np.ndarray,
    visible: np.ndarray | None = None,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    times: np.ndarray | None = None,
) -> np.ndarray:
    """The ``motion`` energy of windows (module docstring): (W,) float64, see :func:`window_motion`."""
    return window_motion(positions, visible, top_fraction, times=times).energy


class WindowMotion(NamedTuple):
    """What :func:`window_motion` finds in a batch of windows.

    Attributes:
        energy: float64 (W,) the ``motion`` energy.
        features: float64 (W, len(MOTION_FEATURES)) (:func:`motion_features`).
        foreground: float32 (W, L, N, 2) :func:`foreground_velocities`, or None when not asked for.
    """

    energy: np.ndarray
    features: np.ndarray
    foreground: np.ndarray | None


def window_motion(
    positions: np.ndarray,
    visible: np.ndarray | None = None,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    foreground: bool = False,
    times: np.ndarray | None = None,
) -> WindowMotion:
    """The ``motion`` energy, the motion features (and the foreground) of windows, in one pass.

    Args:
        positions: (W, T, N, 2) normalised positions of each window's tracks.
        visible: (W, T, N) bool visibility, or None.
        top_fraction: share of points (highest scores) whose path deviations are averaged, and
            that the features describe.
        foreground: also return :func:`foreground_velocities` (the tokenizer's ``foreground`` input).
        times: (W, T) the frames' times in seconds (None = evenly spaced; see
            :func:`path_deviations`).
    """
    residual, valid = residual_velocities(positions, visible)
    score = grid_median(path_deviations(residual, valid, times))  # (W, N)
    return WindowMotion(
        top_mean(score, top_fraction),
        _features(residual, score, top_fraction),
        _foreground(residual, score, top_fraction) if foreground else None,
    )


# A point belongs to the foreground when its score reaches this share of the window's top-mean score:
# relative, so it holds for any speed; below 1, so an object larger than the top 5 % keeps its patch.
FOREGROUND_KEEP = 0.5
# ... and leaves its straight path by more than tracker noise: RMS deviation in normalised units
# (about 0.6 px at the default 320x240 processing). Without it a still window fed the jitter of its
# "most moving" points and the tokens changed at rest: the latent energy's ROC AUC on distractor
# scenes was 0.585 for a tokenizer trained without the floor, 0.817 for the shipped one trained with
# it (benchmarks/tokenizer_quality.py).
FOREGROUND_FLOOR = 0.004


def foreground_velocities(
    positions: np.ndarray,
    visible: np.ndarray | None = None,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    times: np.ndarray | None = None,
) -> np.ndarray:
    """The motion of the acting points only: what the ``foreground`` tokenizer input sees.

    The camera-compensated velocities (:func:`residual_velocities`) of the points whose grid-median
    path deviation reaches :data:`FOREGROUND_KEEP` of the window's ``motion`` energy (the mean of its
    top ``top_fraction``) and exceeds the noise floor :data:`FOREGROUND_FLOOR`; every other point is
    still (0), so a window at rest is all zeros. Camera shake, a belt and other steady
    motion and the static background are removed by the same rules as the energy, so the tokens
    encode the action rather than the scene (measured: KMeans(4) on TF-IDF of the codes of the
    ground-truth actions of the discovery benchmark, every distractor on: ARI 0.09 for a tokenizer
    trained and fed every point's velocity, 0.91 for the shipped tokenizer trained on this; README,
    "Discovery benchmark"). The velocities stay displacements per processed frame (what the
    tokenizer is trained on); only the choice of points uses the frame ``times``.

    Args:
        positions: (..., T, N, 2) normalised positions; visible: (..., T, N) bool or None.
        top_fraction: share of points whose mean score sets the window's reference.
        times: (..., T) frame times, or None (evenly spaced; :func:`path_deviations`).

    Returns:
        float32 (..., T-1, N, 2) in the units of :func:`laps_ray.core.windows.normalized_velocities`.
    """
    residual, valid = residual_velocities(positions, visible)
    return _foreground(residual, grid_median(path_deviations(residual, valid, times)), top_fraction)


def _foreground(residual: np.ndarray, score: np.ndarray, top_fraction: float) -> np.ndarray:
    """:func:`foreground_velocities` from residual velocities (..., L, N, 2) and point scores (..., N)."""
    ref = top_mean(score, top_fraction)[..., None]
    keep = (score > FOREGROUND_FLOOR) & (score >= FOREGROUND_KEEP * ref)  # (..., N)
    return np.where(keep[..., None, :, None], residual, 0.0).astype(np.float32)


# Descriptor of how the acting points move, for change points between back-to-back actions.
MOTION_FEATURES = ("horizontal_share", "diagonal_share", "log_frequency", "turning", "log_speed")


def motion_features(
    positions: np.ndarray,
    visible: np.ndarray | None = None,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    times: np.ndarray | None = None,
) -> np.ndarray:
    """What kind of motion the acting points of each window make (:data:`MOTION_FEATURES`).

    The acting points are the ``top_fraction`` with the highest (grid-median) path deviation, the
    points that carry the ``motion`` energy. From their camera-compensated velocities ``r`` (L steps):

    * ``horizontal_share`` ``C_xx / tr C`` and ``diagonal_share`` ``C_xy / tr C`` of the velocity
      second moment ``C = mean r r^T``: the direction of motion (a push sideways vs a lift);
    * ``log_frequency``: ``log(mean |r_t+1 - r_t| / mean |r|)``, how fast the velocity changes
      relative to its size (a shake vs a slow push);
    * ``turning``: ``|sum r_t x r_t+1| / sum |r_t| |r_t+1|``, the sine of the turn per step when
      the path keeps turning one way (a circle), 0 for motion back and forth along a line;
    * ``log_speed``: ``log mean |r|``.

    Scale-free except ``log_speed``, so one change-point threshold holds for any object size. The
    frame ``times`` choose the acting points (:func:`path_deviations`); ``r`` stays per processed
    step (rescaling it to the frames' spacing lowered the back-to-back recall with every distractor
    on from 0.86 to 0.79 at the tuned change threshold, ``benchmarks/segment_quality.py``).

    Args:
        positions: (W, T, N, 2) normalised positions; visible: (W, T, N) bool or None.
        top_fraction: share of points described.
        times: (W, T) frame times, or None (evenly spaced).

    Returns:
        float64 (W, len(MOTION_FEATURES)).
    """
    return window_motion(positions, visible, top_fraction, times=times).features


def _features(residual: np.ndarray, score: np.ndarray, top_fraction: float) -> np.ndarray:
    """:func:`motion_features` from residual velocities (W, L, N, 2) and point scores (W, N)."""
    W, L, N, _ = residual.shape
    k = max(1, int(round(top_fraction * N)))
    # Stable sort: ties (e.g. a still scene, all 0) pick the same points on every CPU.
    idx = np.argsort(score, axis=1, kind="stable")[:, -k:]
    r = np.take_along_axis(residual, idx[:, None, :, None], axis=2)  # (W, L, k, 2)
    speed = np.linalg.norm(r, axis=-1)  # (W, L, k)
    mean_speed = speed.mean(axis=(1, 2))
    C = np.einsum("wlki,wlkj->wij", r, r) / (L * k)
    trace = C[:, 0, 0] + C[:, 1, 1] + _TINY
    accel = np.linalg.norm(np.diff(r, axis=1), axis=-1).mean(axis=(1, 2))
    cross = r[:, :-1, :, 0] * r[:, 1:, :, 1] - r[:, :-1, :, 1] * r[:, 1:, :, 0]
    turning = np.abs(cross.sum(axis=(1, 2))) / ((speed[:, :-1] * speed[:, 1:]).sum(axis=(1, 2)) + _TINY)
    return np.stack(
        [
            C[:, 0, 0] / trace,
            C[:, 0, 1] / trace,
            np.log(accel / (mean_speed + _TINY) + _LOG_FLOOR),
            turning,
            np.log(mean_speed + _LOG_FLOOR),
        ],
        axis=1,
    )

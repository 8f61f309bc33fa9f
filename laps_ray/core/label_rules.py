"""Unsupervised label rules: the threshold that splits a proxy signal into motion and rest windows.

**Positive iff value >= threshold**, the comparison the segmentation state machine uses.

* ``"ki_log"`` — Kittler & Illingworth's minimum-error threshold of the log-values (two Gaussian
  classes with their own variances and weights; every split of a 256-bin histogram tried, each class
  at least ``min_class`` = 10 % of the windows), zeros (gated windows: certainly rest) counted as the
  quietest tracked window. The automatic threshold's rule (``core.auto_threshold``): rest energies
  form a narrow mode and motion a broad one (slow and fast actions), and a rule that models the
  spread of each finds the valley between them. Measured on ``benchmarks/segment_quality.py``
  (8 x 45 s per setting, boundary F1@1s of the segmentation it leads to, re-segmenting the cached
  runs): ki_log 0.88-0.97 over the 7 distractor settings (all distractors: 0.88), otsu_log 0.79-0.97
  (all: 0.79, its cut lands inside the broad motion mode), best threshold chosen on the ground truth
  0.90-0.97. Without the 10 % floor a tiny top class of the fastest windows wins (all: F1 0.00).
* ``"otsu_log"`` — Otsu's split of the log-values, zeros counted as above. On 3 x 20 s per setting:
  gmm_log 0.13-0.84, otsu_log 0.79-0.86 (leaving gated windows out instead: 0.70-0.86).
* ``"gmm_log"`` — a two-component 1-D Gaussian mixture on log-energies, cut where the motion
  component becomes the more probable one; zeros left out. On log-normal rest/motion energies with an
  80/20 imbalance it recovers the labels better than plain Otsu (``tests/unit/test_calibration.py``).
* ``"otsu"`` — Otsu's method on the raw values, as the original.

Pure numpy.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

LABEL_METHODS = ("ki_log", "otsu_log", "gmm_log", "otsu")
DEFAULT_LABEL_METHOD = "gmm_log"  # calibrate's rule for the latent energies; `auto` uses ki_log
KI_MIN_CLASS = 0.1


class CalibrationError(ValueError):
    """The input cannot be calibrated (empty, non-finite, a single class, ...); the message says why."""


def finite_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise CalibrationError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise CalibrationError(f"{name}: empty")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise CalibrationError(f"{name}: {bad.size} non-finite values (first at index {bad[0]})")
    return arr


def otsu_threshold(values: Sequence[float] | np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the histogram split maximising the between-class variance.

    The histogram spans ``[min, max]`` in ``bins`` equal bins; a split after bin k puts bins ``<= k`` in
    the low class. When several consecutive splits tie (empty bins between two modes) the middle of that
    gap is returned, so the cut lands between the modes rather than at the edge of the lower one.

    Args:
        values: (n,) finite values, e.g. velocity energies of windows.
        bins: histogram bins.

    Returns:
        A bin edge ``thr``: the low class is ``values < thr``, the high class ``values >= thr``.

    Raises:
        CalibrationError: empty, non-finite or constant input.
    """
    v = finite_1d(values, "values")
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        raise CalibrationError(f"all {v.size} values equal {lo}: no threshold separates them")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    p = hist / v.size
    centres = 0.5 * (edges[:-1] + edges[1:])
    w = np.cumsum(p)[:-1]  # low-class weight for a split after bin k, k = 0 .. bins-2
    mu = np.cumsum(p * centres)[:-1]
    mu_total = float(np.sum(p * centres))
    denom = w * (1.0 - w)
    valid = denom > 1e-15
    between = np.full(w.shape, -np.inf)
    between[valid] = (mu_total * w[valid] - mu[valid]) ** 2 / denom[valid]
    k0 = int(np.argmax(between))
    k1 = k0
    while k1 + 1 < between.size and between[k1 + 1] >= between[k0] * (1.0 - 1e-12):
        k1 += 1
    return float(0.5 * (edges[k0 + 1] + edges[k1 + 1]))


def _gauss_logpdf(x: np.ndarray, mean: float, var: float) -> np.ndarray:
    return -0.5 * (np.log(2.0 * np.pi * var) + (x - mean) ** 2 / var)


def gmm_log_threshold(values: Sequence[float] | np.ndarray, max_iter: int = 500, tol: float = 1e-10) -> float:
    """Threshold from a two-component Gaussian mixture fitted (EM) to ``log(values)``.

    Zeros (gated windows have energy exactly 0) cannot be logged; they are left out of the fit and fall
    below any threshold, i.e. they are rest. EM starts from the Otsu split of the log-values, so the fit
    is deterministic. The threshold is the point where, going up, the higher-mean ("motion") component
    becomes the more probable one (Bayes decision with the fitted weights); if it never does, the
    midpoint of the two means is used and a warning is logged.

    Args:
        values: (n,) non-negative finite values with at least 4 distinct positive ones.

    Returns:
        Threshold in the units of ``values`` (positive iff value >= threshold).
    """
    v = finite_1d(values, "values")
    if (v < 0).any():
        raise CalibrationError(f"gmm_log needs non-negative values, got min {v.min()}")
    x = np.log(v[v > 0])
    if np.unique(x).size < 4:
        raise CalibrationError(f"gmm_log needs at least 4 distinct positive values, got {np.unique(x).size}")
    high = x >= otsu_threshold(x)
    means = np.array([x[~high].mean(), x[high].mean()])
    var_floor = 1e-6 * float(x.var()) + 1e-12  # stops a component collapsing onto one value
    variances = np.maximum(np.array([x[~high].var(), x[high].var()]), var_floor)
    weights = np.array([np.mean(~high), np.mean(high)])
    prev = -np.inf
    for _ in range(max_iter):
        log_joint = np.stack([np.log(weights[j]) + _gauss_logpdf(x, means[j], variances[j]) for j in (0, 1)])
        log_norm = np.logaddexp(log_joint[0], log_joint[1])
        resp = np.exp(log_joint - log_norm)  # (2, n) posteriors
        counts = resp.sum(axis=1)
        if counts.min() < 1e-6:
            raise CalibrationError("gmm_log: one mixture component became empty; the values look unimodal")
        weights = counts / x.size
        means = resp @ x / counts
        variances = np.maximum(np.sum(resp * (x[None, :] - means[:, None]) ** 2, axis=1) / counts, var_floor)
        loglik = float(log_norm.sum())
        if abs(loglik - prev) <= tol * max(abs(loglik), 1.0):
            break
        prev = loglik
    lo, hi = (0, 1) if means[0] <= means[1] else (1, 0)
    m0, m1, s0, s1, w0, w1 = means[lo], means[hi], variances[lo], variances[hi], weights[lo], weights[hi]
    # log(w1 N1(t)) - log(w0 N0(t)) = a t^2 + b t + c; its upward zero crossing is the threshold.
    a = 0.5 / s0 - 0.5 / s1
    b = m1 / s1 - m0 / s0
    c = 0.5 * m0**2 / s0 - 0.5 * m1**2 / s1 + math.log(w1 / w0) + 0.5 * math.log(s0 / s1)
    if abs(a) < 1e-12 * max(abs(b), 1.0):
        roots = [-c / b] if b != 0 else []
    else:
        disc = b * b - 4 * a * c
        roots = [] if disc < 0 else [(-b - math.sqrt(disc)) / (2 * a), (-b + math.sqrt(disc)) / (2 * a)]
    upward = [r for r in roots if 2 * a * r + b > 0]
    if upward:
        t = min(upward)
    else:
        t = 0.5 * (m0 + m1)
        logger.warning("gmm_log: the motion component never dominates; using the midpoint of the log-means")
    return float(math.exp(t))


def otsu_log_threshold(values: Sequence[float] | np.ndarray) -> float:
    """Otsu's threshold of ``log(values)``, back in the units of ``values`` (module docstring).

    Zeros (gated windows) count as the smallest positive value: they are rest, the quietest class.

    Raises:
        CalibrationError: negative values, or fewer than 2 distinct positive ones.
    """
    v = finite_1d(values, "values")
    if (v < 0).any():
        raise CalibrationError(f"otsu_log needs non-negative values, got min {v.min()}")
    positive = v[v > 0]
    if np.unique(positive).size < 2:
        raise CalibrationError(
            f"otsu_log needs at least 2 distinct positive values, got {np.unique(positive).size}"
        )
    return float(np.exp(otsu_threshold(np.log(np.where(v > 0, v, positive.min())))))


def ki_log_threshold(
    values: Sequence[float] | np.ndarray, bins: int = 256, min_class: float = KI_MIN_CLASS
) -> float:
    """Minimum-error threshold of ``log(values)`` (module docstring), back in the units of ``values``.

    For a split after histogram bin k with class weights ``P1, P2`` and variances ``s1, s2`` (floored
    at 1e-3 of the total variance) the criterion is ``P1 ln s1 + P2 ln s2 - 2 (P1 ln P1 + P2 ln P2)``
    (the misclassification cost of two fitted Gaussians, up to constants); the lowest wins, ties to
    the lower split.

    Raises:
        CalibrationError: negative values, fewer than 2 distinct positive ones, or no split leaves both
            classes ``min_class`` of the windows.
    """
    v = finite_1d(values, "values")
    if (v < 0).any():
        raise CalibrationError(f"ki_log needs non-negative values, got min {v.min()}")
    positive = v[v > 0]
    if np.unique(positive).size < 2:
        n = np.unique(positive).size
        raise CalibrationError(f"ki_log needs at least 2 distinct positive values, got {n}")
    x = np.log(np.where(v > 0, v, positive.min()))
    hist, edges = np.histogram(x, bins=bins, range=(float(x.min()), float(x.max())))
    p = hist / x.size
    centres = 0.5 * (edges[:-1] + edges[1:])
    w1 = np.cumsum(p)[:-1]
    w2 = 1.0 - w1
    m1 = np.cumsum(p * centres)[:-1]
    m2 = float((p * centres).sum()) - m1
    q1 = np.cumsum(p * centres**2)[:-1]
    q2 = float((p * centres**2).sum()) - q1
    ok = (w1 >= min_class) & (w2 >= min_class)
    if not ok.any():
        raise CalibrationError(f"ki_log: no split leaves both classes {min_class:.0%} of the windows")
    floor = 1e-3 * float(x.var()) + 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        s1 = np.maximum(q1 / w1 - (m1 / w1) ** 2, floor)
        s2 = np.maximum(q2 / w2 - (m2 / w2) ** 2, floor)
        cost = w1 * np.log(s1) + w2 * np.log(s2) - 2.0 * (w1 * np.log(w1) + w2 * np.log(w2))
    k = int(np.argmin(np.where(ok, cost, np.inf)))
    return float(np.exp(edges[k + 1]))


def label_threshold(values: Sequence[float] | np.ndarray, method: str = DEFAULT_LABEL_METHOD) -> float:
    """Threshold of an unsupervised label rule (one of :data:`LABEL_METHODS`) on a proxy signal."""
    if method == "gmm_log":
        return gmm_log_threshold(values)
    if method == "otsu":
        return otsu_threshold(values)
    if method == "otsu_log":
        return otsu_log_threshold(values)
    if method == "ki_log":
        return ki_log_threshold(values)
    raise ValueError(f"label method must be one of {LABEL_METHODS}, got {method!r}")

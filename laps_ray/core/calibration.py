"""Threshold calibration: unsupervised label rules on a proxy signal and a threshold search on energy.

Calibration (LAPS's "proxy supervision") labels windows as motion / rest from a proxy signal (e.g.
velocity energy) and then picks the on-threshold of the target energy that best reproduces those labels
(or ground-truth labels, when there are any). Inputs are plain arrays, already smoothed by the caller
(``laps_ray.core.smoothing``); nothing here reads files.

Conventions:

* **Positive iff value >= threshold**, everywhere in this module (label rules and search alike), the
  same comparison the segmentation state machine uses for its on-threshold.
* **Label rules** (:data:`LABEL_METHODS`): ``"gmm_log"`` (default) fits a two-component 1-D Gaussian
  mixture to log-energies and cuts where the motion component becomes the more probable one;
  ``"otsu"`` is Otsu's method on the raw values, as the original. Energies are heavy-tailed and rest
  dominates (most windows), which pulls Otsu's cut far into the motion class; on log-normal rest/motion
  energies with an 80/20 imbalance the mixture recovers the true labels better
  (``tests/unit/test_calibration.py`` measures it), hence the default for the latent energies.
  ``"otsu_log"`` is Otsu's split of the log-values, with zeros (gated windows: certainly rest) counted
  as the quietest tracked window. It is the automatic threshold's rule for the ``motion`` energy
  (``core.auto_threshold``): there the motion class mixes slow and fast actions (two modes), and the
  mixture put its cut between them (a slide labelled rest) or deep in the rest tail, while the log
  histogram's valley between rest and any motion is where Otsu cuts. Leaving the gated windows out
  instead (clean scenes: most rest windows are gated) leaves mostly motion to split, and Otsu then
  cuts slow from fast actions. Measured on ``benchmarks/segment_quality.py`` (3 x 20 s per setting,
  the segmentation F1@1s it leads to): gmm_log 0.13-0.84, otsu_log 0.79-0.86 over the 7 distractor
  settings (ceiling with the ground truth's best threshold 0.84-0.86; zeros left out: 0.70-0.86).
* **Threshold search** reports best-F1 and best-Youden-J thresholds and a rank-based ROC AUC, and says
  plainly when the energy does not separate the labels (the original shipped a threshold whose AUC was
  0.50 and never said so).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

logger = logging.getLogger(__name__)

LABEL_METHODS = ("gmm_log", "otsu", "otsu_log")
DEFAULT_LABEL_METHOD = "gmm_log"
DEFAULT_MIN_AUC_MARGIN = 0.1
RULE = "positive iff score >= thr"


class CalibrationError(ValueError):
    """The input cannot be calibrated (empty, non-finite, a single class, ...); the message says why."""


def _finite_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
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
    v = _finite_1d(values, "values")
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
    v = _finite_1d(values, "values")
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
    v = _finite_1d(values, "values")
    if (v < 0).any():
        raise CalibrationError(f"otsu_log needs non-negative values, got min {v.min()}")
    positive = v[v > 0]
    if np.unique(positive).size < 2:
        raise CalibrationError(
            f"otsu_log needs at least 2 distinct positive values, got {np.unique(positive).size}"
        )
    return float(np.exp(otsu_threshold(np.log(np.where(v > 0, v, positive.min())))))


def label_threshold(values: Sequence[float] | np.ndarray, method: str = DEFAULT_LABEL_METHOD) -> float:
    """Threshold of an unsupervised label rule (one of :data:`LABEL_METHODS`) on a proxy signal."""
    if method == "gmm_log":
        return gmm_log_threshold(values)
    if method == "otsu":
        return otsu_threshold(values)
    if method == "otsu_log":
        return otsu_log_threshold(values)
    raise ValueError(f"label method must be one of {LABEL_METHODS}, got {method!r}")


def pseudo_labels(
    values: Sequence[float] | np.ndarray, method: str = DEFAULT_LABEL_METHOD
) -> tuple[np.ndarray, float]:
    """``(labels, threshold)``: bool (n,) ``values >= threshold`` with the threshold of ``method``."""
    thr = label_threshold(values, method)
    return np.asarray(values, dtype=np.float64) >= thr, thr


def pooled_pseudo_labels(
    series: Sequence[np.ndarray], use: Sequence[np.ndarray], method: str = DEFAULT_LABEL_METHOD
) -> tuple[list[np.ndarray], float]:
    """Pseudo-labels of several videos from one threshold fitted on their pooled windows.

    One threshold over all videos (not one per video): a video that is mostly rest, or mostly action,
    would otherwise get a cut inside its majority class.

    Args:
        series: per video, (W_i,) proxy values (e.g. velocity energy).
        use: per video, bool (W_i,) windows that take part; their values must be finite.
        method: one of :data:`LABEL_METHODS`.

    Returns:
        ``(labels, threshold)``: per video bool (W_i,) ``value >= threshold`` (False outside ``use``).

    Raises:
        CalibrationError: no window takes part, or the label rule fails on the pooled values.
    """
    pooled = np.concatenate([np.asarray(s, dtype=np.float64)[u] for s, u in zip(series, use)])
    pooled_labels, thr = pseudo_labels(pooled, method)
    out, k = [], 0
    for s, u in zip(series, use):
        lab = np.zeros(np.shape(s), dtype=bool)
        n = int(np.count_nonzero(u))
        lab[u] = pooled_labels[k : k + n]
        out.append(lab)
        k += n
    return out, thr


def gt_window_labels(
    t_start: np.ndarray, t_end: np.ndarray, segments: Sequence[Sequence[Any]], background: Sequence[str]
) -> np.ndarray:
    """bool (W,): a window is active iff its mid-time ``(t_start + t_end) / 2`` lies in a GT segment
    ``[start_sec, end_sec)`` whose label is not in ``background`` (segments without a label are active).

    Args:
        t_start, t_end: (W,) seconds of each window's first and last frame.
        segments: ``(start_sec, end_sec[, label, ...])`` items.
        background: labels meaning "no action".
    """
    mid = 0.5 * (np.asarray(t_start, dtype=np.float64) + np.asarray(t_end, dtype=np.float64))
    active = np.zeros(mid.shape, dtype=bool)
    bg = set(background)
    for seg in segments:
        label = seg[2] if len(seg) > 2 else None
        if label is not None and label in bg:
            continue
        active |= (mid >= float(seg[0])) & (mid < float(seg[1]))
    return active


def active_runs(active: np.ndarray, min_windows: int = 1) -> list[tuple[int, int]]:
    """Runs ``(first, last)`` (inclusive window indices) of consecutive active windows, at least
    ``min_windows`` long, in order."""
    a = np.asarray(active, dtype=np.int8).reshape(-1)
    edges = np.diff(np.concatenate([[0], a, [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(int(s), int(e)) for s, e in zip(starts, ends) if e - s + 1 >= min_windows]


def runs_to_frames(
    runs: Sequence[tuple[int, int]], T: int, stride: int, num_frames: int
) -> list[tuple[int, int]]:
    """Processed frames ``(first, last)`` (inclusive) of window runs (pseudo-label segments).

    Windows overlap, so a window stands for the ``stride`` frames around its centre frame
    ``w * stride + T // 2``: window ``w`` covers ``[c - stride // 2, c - stride // 2 + stride - 1]``;
    a run of windows covers its windows' frames, clamped to ``0 .. num_frames - 1``.
    """
    shift = T // 2 - stride // 2
    last = num_frames - 1
    return [
        (min(max(a * stride + shift, 0), last), min(max(b * stride + shift + stride - 1, 0), last))
        for a, b in runs
    ]


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """ROC AUC = P(score of a random positive > score of a random negative), ties counting 1/2.

    Computed from average ranks (the Mann-Whitney U statistic), O(n log n).
    """
    s = _finite_1d(scores, "scores")
    y = np.asarray(labels).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise CalibrationError(f"ROC AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _at(i: int, thr: np.ndarray, tp: np.ndarray, fp: np.ndarray, n_pos: int, n_neg: int) -> dict[str, Any]:
    t_p, f_p = int(tp[i]), int(fp[i])
    f_n, t_n = n_pos - t_p, n_neg - f_p
    recall = t_p / n_pos
    fpr = f_p / n_neg
    return {
        "thr": float(thr[i]),
        "tp": t_p,
        "fp": f_p,
        "tn": t_n,
        "fn": f_n,
        "precision": t_p / (t_p + f_p),  # >= 1 predicted positive: every candidate is <= max(score)
        "recall": recall,
        "fpr": fpr,
        "f1": 2 * t_p / (2 * t_p + f_p + f_n),
        "j": recall - fpr,
        "accuracy": (t_p + t_n) / (n_pos + n_neg),
    }


def threshold_search(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[bool] | np.ndarray,
    min_auc_margin: float = DEFAULT_MIN_AUC_MARGIN,
) -> dict[str, Any]:
    """Best-F1 and best-Youden-J thresholds of ``scores`` against binary ``labels``.

    Candidates are the sorted unique scores and the midpoints between consecutive ones; a sample is
    predicted positive iff ``score >= thr``. All candidates are scored at once from one sort
    (O(n log n)). Ties in F1 or J go to the lowest threshold; since the midpoint of a gap precedes the
    score above it and predicts the same, a perfectly separating gap yields its midpoint.

    Args:
        scores: (n,) finite target energies (already smoothed if wanted).
        labels: (n,) bool / 0-1 labels (pseudo-labels or ground truth), both classes present.
        min_auc_margin: the energy "separates" the labels iff AUC >= 0.5 + this margin.

    Returns:
        ``{"rule", "n", "n_pos", "n_neg", "n_candidates", "auc", "separates", "warning", "best_f1",
        "best_j"}``; ``best_*`` = ``{"thr", "tp", "fp", "tn", "fn", "precision", "recall", "fpr", "f1",
        "j", "accuracy"}``; ``warning`` is ``None`` or a sentence saying why the threshold is unreliable.

    Raises:
        CalibrationError: empty / non-finite / mismatched input, or a single class.
    """
    s = _finite_1d(scores, "scores")
    y_raw = np.asarray(labels)
    if y_raw.shape != s.shape:
        raise CalibrationError(f"scores have shape {s.shape} but labels {y_raw.shape}")
    if not np.isin(y_raw, (0, 1)).all():
        raise CalibrationError("labels must be boolean or 0/1")
    y = y_raw.astype(bool)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise CalibrationError(
            f"labels are a single class ({n_pos} positives, {n_neg} negatives): "
            "no threshold can be calibrated"
        )
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    pos_before = np.concatenate([[0], np.cumsum(y[order])])  # positives among the i lowest scores
    uniq = np.unique(s_sorted)
    cands = np.unique(np.concatenate([uniq, 0.5 * (uniq[:-1] + uniq[1:])]))
    below = np.searchsorted(s_sorted, cands, side="left")  # scores < thr
    tp = n_pos - pos_before[below]
    fp = (s.size - below) - tp
    f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
    j = tp / n_pos - fp / n_neg

    auc = roc_auc(s, y)
    separates = auc >= 0.5 + min_auc_margin
    warning = None
    if uniq.size == 1:
        warning = f"scores are constant ({uniq[0]}): the threshold is meaningless"
    elif auc <= 0.5 - min_auc_margin:
        warning = (
            f"energy is lower on positive samples (AUC {auc:.2f}): a 'score >= threshold' rule "
            "selects the wrong class"
        )
    elif not separates:
        warning = f"energy does not separate the labels (AUC {auc:.2f}): the threshold is meaningless"
    if warning:
        logger.warning("threshold_search: %s", warning)
    return {
        "rule": RULE,
        "n": int(s.size),
        "n_pos": n_pos,
        "n_neg": n_neg,
        "n_candidates": int(cands.size),
        "auc": auc,
        "separates": bool(separates),
        "warning": warning,
        "best_f1": _at(int(np.argmax(f1)), cands, tp, fp, n_pos, n_neg),
        "best_j": _at(int(np.argmax(j)), cands, tp, fp, n_pos, n_neg),
    }


def calibration_report(
    target: Sequence[float] | np.ndarray,
    proxy: Sequence[float] | np.ndarray,
    label_method: str = DEFAULT_LABEL_METHOD,
    min_auc_margin: float = DEFAULT_MIN_AUC_MARGIN,
) -> dict[str, Any]:
    """Proxy supervision: label windows from ``proxy`` with ``label_method``, then search ``target``.

    Args:
        target: (n,) energy to threshold (e.g. smoothed quantized token-diff energy).
        proxy: (n,) proxy signal of the same windows (e.g. velocity energy).

    Returns:
        :func:`threshold_search`'s dict plus ``"label_method"`` and ``"label_threshold"`` (on the proxy).
    """
    t = _finite_1d(target, "target")
    p = _finite_1d(proxy, "proxy")
    if t.shape != p.shape:
        raise CalibrationError(f"target has {t.size} windows but proxy has {p.size}")
    labels, thr = pseudo_labels(p, label_method)
    if labels.all() or not labels.any():
        raise CalibrationError(f"{label_method} labelled every proxy window the same; nothing to calibrate")
    report = threshold_search(t, labels, min_auc_margin)
    return {"label_method": label_method, "label_threshold": thr, **report}

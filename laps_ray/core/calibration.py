"""Threshold calibration: unsupervised label rules on a proxy signal and a threshold search on energy.

Calibration (LAPS's "proxy supervision") labels windows as motion / rest from a proxy signal (e.g.
velocity energy) and then picks the on-threshold of the target energy that best reproduces those labels
(or ground-truth labels, when there are any). Inputs are plain arrays, already smoothed by the caller
(``laps_ray.core.smoothing``); nothing here reads files.

Conventions:

* **Positive iff value >= threshold**, everywhere in this module (label rules and search alike), the
  same comparison the segmentation state machine uses for its on-threshold.
* **Label rules** (``core.label_rules``): the unsupervised rules that turn a proxy signal into
  motion/rest labels; :func:`pseudo_labels` and :func:`pooled_pseudo_labels` apply them.
* **Threshold search** reports best-F1 and best-Youden-J thresholds and a rank-based ROC AUC, and says
  plainly when the energy does not separate the labels (the original shipped a threshold whose AUC was
  0.50 and never said so).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from laps_ray.core.label_rules import (
    DEFAULT_LABEL_METHOD,
    CalibrationError,
    finite_1d,
    label_threshold,
)

logger = logging.getLogger(__name__)

DEFAULT_MIN_AUC_MARGIN = 0.1
RULE = "positive iff score >= thr"


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
    s = finite_1d(scores, "scores")
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
    s = finite_1d(scores, "scores")
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
    t = finite_1d(target, "target")
    p = finite_1d(proxy, "proxy")
    if t.shape != p.shape:
        raise CalibrationError(f"target has {t.size} windows but proxy has {p.size}")
    labels, thr = pseudo_labels(p, label_method)
    if labels.all() or not labels.any():
        raise CalibrationError(f"{label_method} labelled every proxy window the same; nothing to calibrate")
    report = threshold_search(t, labels, min_auc_margin)
    return {"label_method": label_method, "label_threshold": thr, **report}

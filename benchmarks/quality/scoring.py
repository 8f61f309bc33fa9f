"""Scores of one method on one setting's videos, and the ground-truth-chosen threshold (upper bound).

* **Boundary P/R/F1** at 0.5, 1 and 2 s: ``laps_ray.core.metrics.boundary_metrics`` (boundaries =
  segment starts > 0 and ends < duration, the shared boundary of touching segments counted once,
  optimal one-to-one matching within the tolerance), merge tolerance half a frame of the source frame
  rate, as ``evaluate``; the plain numbers are means over videos (the LAPS evaluator's summary), the
  ``_pooled`` ones come from summed counts.
* **Start / end error**: predicted and GT segments are matched one to one by maximum total temporal
  IoU (Hungarian) among pairs with IoU >= ``MATCH_IOU`` (0.3); the error of a pair is
  ``|pred.start - gt.start|`` (``|pred.end - gt.end|``) in seconds; the median over every matched
  pair of every video of the setting. ``matched`` = matched GT segments / GT segments.
* **Back-to-back recall**: the GT boundaries that lie inside continuous motion (``back_to_back_sec``)
  that the optimal matching at 1 s pairs with a predicted boundary (all GT boundaries take part in the
  matching, so no predicted boundary counts twice), pooled over videos: matched / total.
  ``rest_recall`` is the same for the other GT boundaries (an action starting or ending at a rest).
* ``segments_ratio``: predicted segments / GT segments, summed over videos.

**Upper bound** (:func:`best_threshold`): one threshold per method and setting chosen on the ground
truth: every distinct value among ``QUANTILES`` of the method's pooled signal is tried and the one with
the highest mean F1@1s kept (ties: the lower threshold).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from laps_ray.core.metrics import (
    aggregate_boundary_metrics,
    boundary_metrics,
    match_boundaries,
    merge_tol_for_fps,
    segment_boundaries,
)

TOLERANCES = (0.5, 1.0, 2.0)
MAIN_TOL = 1.0
MATCH_IOU = 0.3
QUANTILES = np.round(np.arange(0.02, 0.99, 0.02), 2)

Segments = list[tuple[float, float]]


def iou_matches(pred: Segments, gt: Segments, min_iou: float = MATCH_IOU) -> list[tuple[int, int]]:
    """One-to-one (pred, gt) index pairs of maximum total IoU among pairs with IoU >= ``min_iou``."""
    if not pred or not gt:
        return []
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    inter = np.clip(
        np.minimum(p[:, None, 1], g[None, :, 1]) - np.maximum(p[:, None, 0], g[None, :, 0]), 0, None
    )
    union = (p[:, 1] - p[:, 0])[:, None] + (g[:, 1] - g[:, 0])[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    allowed = iou >= min_iou
    rows, cols = linear_sum_assignment(np.where(allowed, -iou, 0.0))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


def score(
    preds: Sequence[Segments],
    gts: Sequence[Segments],
    durations: Sequence[float],
    back_to_back: Sequence[Sequence[float]],
    fps: Sequence[float],
) -> dict[str, Any]:
    """Every metric of the module docstring for one method on one setting (videos in the same order).

    Args:
        preds, gts: per video, segments ``(start_sec, end_sec)``.
        durations: per video, seconds.
        back_to_back: per video, GT boundary times inside continuous motion (seconds).
        fps: per video, source frame rate (merge tolerance = half a frame).
    """
    rows, starts, ends = [], [], []
    b2b_hit = b2b_all = rest_hit = rest_all = matched = n_pred = n_gt = 0
    for pred, gt, dur, b2b, f in zip(preds, gts, durations, back_to_back, fps):
        tol = merge_tol_for_fps(f)
        rows.append(boundary_metrics(pred, gt, dur, TOLERANCES, tol))
        pairs = iou_matches(pred, gt)
        starts += [abs(pred[i][0] - gt[j][0]) for i, j in pairs]
        ends += [abs(pred[i][1] - gt[j][1]) for i, j in pairs]
        matched += len(pairs)
        n_pred, n_gt = n_pred + len(pred), n_gt + len(gt)
        gt_b = segment_boundaries(gt, dur, tol)
        hit = np.zeros(gt_b.size, bool)
        hit[match_boundaries(segment_boundaries(pred, dur, tol), gt_b, MAIN_TOL)[:, 1]] = True
        is_b2b = np.array([any(abs(b - t) <= tol for t in b2b) for b in gt_b], bool)
        b2b_hit, b2b_all = b2b_hit + int(hit[is_b2b].sum()), b2b_all + int(is_b2b.sum())
        rest_hit, rest_all = rest_hit + int(hit[~is_b2b].sum()), rest_all + int((~is_b2b).sum())
    agg = aggregate_boundary_metrics(rows, TOLERANCES)
    out: dict[str, Any] = {k.removeprefix("boundary/"): v for k, v in agg.items()}
    out.update(
        start_error_median=float(np.median(starts)) if starts else None,
        end_error_median=float(np.median(ends)) if ends else None,
        matched=matched / n_gt if n_gt else None,
        back_to_back_recall=b2b_hit / b2b_all if b2b_all else None,
        back_to_back_boundaries=b2b_all,
        rest_recall=rest_hit / rest_all if rest_all else None,
        num_pred_segments=n_pred,
        num_gt_segments=n_gt,
        segments_ratio=n_pred / n_gt if n_gt else None,
        per_video_f1=[r[f"boundary/f1@{MAIN_TOL}s"] for r in rows],
    )
    return out


def best_threshold(
    signals: Sequence[np.ndarray],
    segment: Callable[[int, float], Segments],
    scorer: Callable[[list[Segments]], dict[str, Any]],
) -> dict[str, Any]:
    """The GT-chosen threshold: ``segment(video_index, thr)`` for every candidate (module docstring),
    scored by ``scorer(preds)``; returns ``{"threshold", "quantile", "scores"}`` of the best."""
    pooled = np.concatenate([np.asarray(s, np.float64) for s in signals])
    pooled = pooled[np.isfinite(pooled)]
    candidates = sorted({float(np.quantile(pooled, q)): float(q) for q in QUANTILES[::-1]}.items())
    best: dict[str, Any] | None = None
    for thr, q in candidates:
        result = scorer([segment(i, thr) for i in range(len(signals))])
        if best is None or result[f"f1@{MAIN_TOL}s"] > best["scores"][f"f1@{MAIN_TOL}s"] + 1e-12:
            best = {"threshold": thr, "quantile": q, "scores": result}
    assert best is not None
    return best

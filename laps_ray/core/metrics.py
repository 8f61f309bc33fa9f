"""Evaluation metrics: temporal-detection mAP here, plus the boundary and MS-TCN metrics re-exported.

Import every metric from this module:

* boundary P/R/F1 at a tolerance (optimal matching, shared boundaries once) — :mod:`.boundary_metrics`;
* MS-TCN MoF / Edit / F1@{10,25,50} and the label mappings (``none``, ``hungarian_video``,
  ``hungarian_global``, the ``auto`` rule) — :mod:`.segment_metrics`;
* mAP@IoU (class-agnostic temporal detection) — below.

**mAP@IoU** (as the LAPS evaluator, which we keep): every predicted segment of every video gets a
confidence (:func:`segment_confidence`: its ``score`` field — ``mean_energy`` in our ``segments.json``,
a higher energy meaning a more confident action — else its duration). All predictions of all videos are
sorted by confidence, highest first (a stable sort: ties keep video order, then segment order). Each is
matched to the *unmatched* GT segment of the same video with the highest temporal IoU; it is a true
positive iff that IoU >= the threshold (and that GT segment is then taken), else a false positive. AP is
the VOC all-point area under the precision envelope (precision made non-increasing from the right,
summed over recall steps). Labels are ignored, so mAP is the same under every label mapping.
``npos`` = GT segments over all videos; with ``npos = 0`` AP is 1 when nothing is predicted and 0
otherwise (the boundary metrics' vacuous convention). mAP values are fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from laps_ray.core.boundary_metrics import (
    DEFAULT_MERGE_TOL_SEC,
    DEFAULT_TOLERANCES_SEC,
    SegmentLike,
    aggregate_boundary_metrics,
    boundary_metrics,
    boundary_scores,
    fmt_num,
    match_boundaries,
    merge_tol_for_fps,
    prf,
    segment_boundaries,
)
from laps_ray.core.segment_metrics import (
    DEFAULT_BG_CLASS,
    DEFAULT_OVERLAPS,
    LABEL_MAPPING_CHOICES,
    LABEL_MAPPINGS,
    MOF_POOLING,
    apply_label_map,
    auto_label_mapping,
    edit_score,
    f1_from_counts,
    frame_metrics,
    hungarian_label_map,
    label_maps,
    label_runs,
    levenshtein,
    segmental_f1_counts,
    segmentation_metrics,
)

__all__ = [
    "DEFAULT_BG_CLASS",
    "DEFAULT_IOU_THRESHOLDS",
    "DEFAULT_MERGE_TOL_SEC",
    "DEFAULT_OVERLAPS",
    "DEFAULT_TOLERANCES_SEC",
    "LABEL_MAPPINGS",
    "LABEL_MAPPING_CHOICES",
    "MOF_POOLING",
    "SegmentLike",
    "aggregate_boundary_metrics",
    "apply_label_map",
    "auto_label_mapping",
    "average_precision",
    "boundary_metrics",
    "boundary_scores",
    "detection_map",
    "edit_score",
    "f1_from_counts",
    "frame_metrics",
    "hungarian_label_map",
    "label_maps",
    "label_runs",
    "levenshtein",
    "match_boundaries",
    "merge_tol_for_fps",
    "prf",
    "segment_boundaries",
    "segment_confidence",
    "segmental_f1_counts",
    "segmentation_metrics",
    "temporal_iou",
]

DEFAULT_IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.75)


def temporal_iou(start: float, end: float, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """IoU of the interval ``[start, end]`` with each of ``[starts[i], ends[i]]`` (shape (G,))."""
    inter = np.clip(np.minimum(end, ends) - np.maximum(start, starts), 0.0, None)
    union = (end - start) + (ends - starts) - inter
    return inter / np.maximum(union, 1e-8)


def segment_confidence(segment: SegmentLike) -> float:
    """Detection confidence of a ``(start, end, label, score)`` item: ``score`` if finite, else duration."""
    if len(segment) > 3 and segment[3] is not None and math.isfinite(float(segment[3])):
        return float(segment[3])
    return float(segment[1]) - float(segment[0])


def average_precision(
    pred_videos: Sequence[Sequence[SegmentLike]], gt_videos: Sequence[Sequence[SegmentLike]], iou_thr: float
) -> float:
    """Class-agnostic AP at one IoU threshold over a set of videos (see module docstring).

    Args:
        pred_videos: per video, predicted ``(start_sec, end_sec[, label[, score]])`` items.
        gt_videos: per video, ground-truth ``(start_sec, end_sec, ...)`` items (same video order).
        iou_thr: IoU needed for a true positive, in (0, 1].
    """
    if len(pred_videos) != len(gt_videos):
        raise ValueError(f"{len(pred_videos)} predicted videos but {len(gt_videos)} ground-truth videos")
    if not 0.0 < iou_thr <= 1.0:
        raise ValueError(f"iou_thr must be in (0, 1], got {iou_thr}")
    gt_s = [np.asarray([float(g[0]) for g in gts], dtype=np.float64) for gts in gt_videos]
    gt_e = [np.asarray([float(g[1]) for g in gts], dtype=np.float64) for gts in gt_videos]
    npos = sum(a.size for a in gt_s)
    preds = [
        (segment_confidence(p), v, float(p[0]), float(p[1])) for v, ps in enumerate(pred_videos) for p in ps
    ]
    if npos == 0:
        return 1.0 if not preds else 0.0
    if not preds:
        return 0.0
    order = sorted(range(len(preds)), key=lambda i: -preds[i][0])  # stable: ties keep input order
    taken = [np.zeros(a.size, dtype=bool) for a in gt_s]
    is_tp = np.zeros(len(preds), dtype=bool)
    for rank, i in enumerate(order):
        _, v, s, e = preds[i]
        if gt_s[v].size == 0:
            continue
        iou = np.where(taken[v], -1.0, temporal_iou(s, e, gt_s[v], gt_e[v]))
        best = int(np.argmax(iou))
        if iou[best] >= iou_thr:
            is_tp[rank] = True
            taken[v][best] = True
    tp = np.cumsum(is_tp)
    fp = np.cumsum(~is_tp)
    recall = np.concatenate([[0.0], tp / npos, [1.0]])
    precision = np.concatenate([[0.0], tp / (tp + fp), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # envelope, non-increasing
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def detection_map(
    pred_videos: Sequence[Sequence[SegmentLike]],
    gt_videos: Sequence[Sequence[SegmentLike]],
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
) -> dict[str, float]:
    """``{"mAP@0.5": ..., "mAP@0.75": ...}``: :func:`average_precision` at each IoU threshold."""
    return {f"mAP@{fmt_num(t)}": average_precision(pred_videos, gt_videos, t) for t in iou_thresholds}

"""Boundary precision / recall / F1 at a time tolerance, with optimal one-to-one matching.

A segmentation's **boundaries** are the segment starts ``> 0`` and ends ``< duration`` (the video's own
edges are not boundaries). Points closer than ``merge_tol_sec`` are one boundary: the end of a segment
and the start of the next one that touches it are the same cut, counted once (the original evaluator
counted it twice, so contiguous ground truth had every boundary duplicated). Merging links each point
to the first point of its group, so a group never spans more than ``merge_tol_sec``; the group is
represented by its mean. Points within ``merge_tol_sec`` of 0 or of ``duration`` are video edges.

**Matching** (fixes the original's greedy nearest-per-GT matching, which can miss matches): a predicted
boundary ``p`` and a GT boundary ``g`` may match iff ``|p - g| <= tol`` (inclusive, with a 1e-9 s slack
for float rounding). Among all one-to-one matchings we take one with the *maximum number* of pairs
(``scipy.optimize.linear_sum_assignment``), and among those the smallest total ``|p - g|``; remaining
ties are broken by scipy's deterministic solver. The scores depend only on the number of pairs, so ties
never change them.

**Scores**: ``tp`` = pairs, ``fp = |P| - tp``, ``fn = |G| - tp``. An empty denominator is vacuously
perfect: precision = ``tp / |P|`` or 1 when nothing is predicted, recall = ``tp / |G|`` or 1 when there
is nothing to find, F1 = harmonic mean (0 when precision + recall = 0). Hence: no GT and no prediction
-> P = R = F1 = 1; no GT but predictions -> P = 0, R = 1, F1 = 0; GT but no prediction -> P = 1, R = 0,
F1 = 0. (The original used P = 1, R = F1 = 0 for the second case and P = 0 for the third; F1, the number
reported, agrees with it in all three.) Scores are fractions in [0, 1], as in the LAPS paper.

**Aggregation** over videos (:func:`aggregate_boundary_metrics`): the plain keys are unweighted means
over videos (the LAPS evaluator's summary, so numbers compare); ``..._pooled`` keys compute P/R/F1 once
from TP/FP/FN summed over videos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

DEFAULT_TOLERANCES_SEC: tuple[float, ...] = (2.0, 5.0)
# Half a frame at 30 fps. Contiguous segments built from frame indices share the exact same float, so
# any small value merges them; pass merge_tol_for_fps(fps) when the frame rate is known.
DEFAULT_MERGE_TOL_SEC = 0.5 / 30.0
_FLOAT_SLACK_SEC = 1e-9

SegmentLike = Sequence[Any]  # (start_sec, end_sec, ...): a tuple, a list or an io.labels.Segment


def merge_tol_for_fps(fps: float) -> float:
    """THE merge tolerance of a video scored at ``fps`` frames per second: half a frame (seconds)."""
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return 0.5 / fps


def fmt_num(x: float) -> str:
    """Compact number for metric keys: ``2.0 -> "2.0"``, ``0.75 -> "0.75"``."""
    s = f"{float(x):g}"
    return s if ("." in s or "e" in s) else s + ".0"


def segment_boundaries(
    segments: Sequence[SegmentLike], duration: float, merge_tol_sec: float = DEFAULT_MERGE_TOL_SEC
) -> np.ndarray:
    """Sorted boundary times (seconds) of a segmentation, shared boundaries counted once.

    Args:
        segments: items whose first two fields are ``start_sec, end_sec``.
        duration: video duration in seconds; ends at or beyond it are not boundaries.
        merge_tol_sec: points closer than this are one boundary (see module docstring).

    Returns:
        float64 array (B,), strictly increasing.
    """
    if merge_tol_sec < 0:
        raise ValueError(f"merge_tol_sec must be >= 0, got {merge_tol_sec}")
    pts = []
    for seg in segments:
        s, e = float(seg[0]), float(seg[1])
        if s > merge_tol_sec:
            pts.append(s)
        if e < duration - merge_tol_sec:
            pts.append(e)
    if not pts:
        return np.zeros(0)
    pts_arr = np.sort(np.asarray(pts, dtype=np.float64))
    groups: list[list[float]] = [[pts_arr[0]]]
    for t in pts_arr[1:]:
        if t - groups[-1][0] <= merge_tol_sec:
            groups[-1].append(t)
        else:
            groups.append([t])
    return np.asarray([np.mean(g) for g in groups], dtype=np.float64)


def match_boundaries(pred: np.ndarray, gt: np.ndarray, tol_sec: float) -> np.ndarray:
    """Maximum-cardinality one-to-one matching of boundaries within ``tol_sec``.

    Args:
        pred: (P,) predicted boundary times in seconds.
        gt: (G,) ground-truth boundary times in seconds.
        tol_sec: largest allowed ``|p - g|`` (inclusive).

    Returns:
        int64 array (M, 2) of ``(pred_index, gt_index)`` pairs, sorted by pred index.
    """
    if tol_sec < 0:
        raise ValueError(f"tol_sec must be >= 0, got {tol_sec}")
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1)
    if pred.size == 0 or gt.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    dist = np.abs(pred[:, None] - gt[None, :])
    allowed = dist <= tol_sec + _FLOAT_SLACK_SEC
    # Each allowed pair is worth -1 plus a distance tie-breaker in [0, eps]; with eps * min(P, G) < 1
    # no amount of tie-breaking can outweigh one extra pair, so the solver maximises the pair count first.
    eps = 0.5 / (min(pred.size, gt.size) + 1)
    scale = max(tol_sec, _FLOAT_SLACK_SEC)
    cost = np.where(allowed, -1.0 + eps * np.minimum(dist / scale, 1.0), 0.0)
    rows, cols = linear_sum_assignment(cost)
    keep = allowed[rows, cols]
    return np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64)


def prf(tp: int, num_pred: int, num_gt: int) -> tuple[float, float, float]:
    """Precision, recall, F1 with the vacuous-denominator convention of the module docstring."""
    precision = tp / num_pred if num_pred else 1.0
    recall = tp / num_gt if num_gt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


def boundary_scores(pred: np.ndarray, gt: np.ndarray, tol_sec: float) -> dict[str, float]:
    """``{"tp", "fp", "fn", "precision", "recall", "f1"}`` of boundary times at one tolerance."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1)
    tp = len(match_boundaries(pred, gt, tol_sec))
    precision, recall, f1 = prf(tp, pred.size, gt.size)
    return {
        "tp": tp,
        "fp": int(pred.size - tp),
        "fn": int(gt.size - tp),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def boundary_metrics(
    pred_segments: Sequence[SegmentLike],
    gt_segments: Sequence[SegmentLike],
    duration: float,
    tolerances_sec: Sequence[float] = DEFAULT_TOLERANCES_SEC,
    merge_tol_sec: float = DEFAULT_MERGE_TOL_SEC,
) -> dict[str, float]:
    """Boundary scores of one video at every tolerance.

    Args:
        pred_segments, gt_segments: ``(start_sec, end_sec, ...)`` items.
        duration: the video's duration in seconds (the GT's ``video_duration_sec``).
        tolerances_sec: tolerances in seconds.
        merge_tol_sec: see :func:`segment_boundaries`.

    Returns:
        ``{"boundary/num_pred", "boundary/num_gt"}`` plus, per tolerance t (e.g. ``2.0``),
        ``"boundary/{tp,fp,fn,precision,recall,f1}@2.0s"``.
    """
    pred_b = segment_boundaries(pred_segments, duration, merge_tol_sec)
    gt_b = segment_boundaries(gt_segments, duration, merge_tol_sec)
    out: dict[str, float] = {"boundary/num_pred": int(pred_b.size), "boundary/num_gt": int(gt_b.size)}
    for tol in tolerances_sec:
        for key, value in boundary_scores(pred_b, gt_b, tol).items():
            out[f"boundary/{key}@{fmt_num(tol)}s"] = value
    return out


def aggregate_boundary_metrics(
    per_video: Sequence[dict[str, float]], tolerances_sec: Sequence[float] = DEFAULT_TOLERANCES_SEC
) -> dict[str, float]:
    """Summary over videos of :func:`boundary_metrics` outputs.

    Returns:
        ``"boundary/num_videos"`` and per tolerance: ``"boundary/{precision,recall,f1}@2.0s"`` (unweighted
        means over videos) and ``"boundary/{precision,recall,f1}@2.0s_pooled"`` (from summed counts).
    """
    if not per_video:
        raise ValueError("no videos to aggregate")
    out: dict[str, float] = {"boundary/num_videos": len(per_video)}
    for tol in tolerances_sec:
        suffix = f"@{fmt_num(tol)}s"
        for name in ("precision", "recall", "f1"):
            key = f"boundary/{name}{suffix}"
            missing = [i for i, v in enumerate(per_video) if key not in v]
            if missing:
                raise KeyError(f"video {missing[0]} has no {key!r}; was it scored at tolerance {tol}?")
            out[key] = float(np.mean([v[key] for v in per_video]))
        tp = sum(int(v[f"boundary/tp{suffix}"]) for v in per_video)
        n_pred = sum(int(v["boundary/num_pred"]) for v in per_video)
        n_gt = sum(int(v["boundary/num_gt"]) for v in per_video)
        for name, value in zip(("precision", "recall", "f1"), prf(tp, n_pred, n_gt)):
            out[f"boundary/{name}{suffix}_pooled"] = value
    return out

"""Frame-level action-segmentation metrics defined as in MS-TCN, so numbers compare with papers.

The definitions follow MS-TCN's ``eval.py`` (Farha & Gall, CVPR 2019, itself adapted from Lea et al.'s
TCN metrics), rebuilt here from their behaviour:

* **Segments** of a frame-label sequence are maximal runs of equal labels; runs whose label is in
  ``bg_class`` are dropped (MS-TCN's default ``bg_class`` is ``["background"]``; Breakfast's ``SIL``
  is therefore *not* background under that default).
* **Edit** = ``(1 - levenshtein(pred_labels, gt_labels) / max(len_pred, len_gt)) * 100`` on the
  sequences of segment labels, background excluded.
* **F1@k** (k = IoU overlap 0.10 / 0.25 / 0.50): each predicted segment, in temporal order, picks the
  ground-truth segment of the *same label* with the highest IoU (first one on ties); it is a true
  positive iff that IoU >= k and that GT segment is not already taken, otherwise a false positive
  (MS-TCN does not fall back to the second-best GT segment; we keep that so numbers match). FN = GT
  segments never taken. Background excluded.
* **MoF** = frame accuracy ``correct / total * 100``, background *included*.

Pooling (MS-TCN's convention, used by :func:`segmentation_metrics`): F1@k pools TP/FP/FN over all
videos and computes one F1; MoF pools frames over all videos (long videos weigh more); Edit is the
unweighted mean of the per-video Edit scores. All three are in percent (0-100), as in the papers.

Edge cases MS-TCN leaves undefined (it divides by zero or calls ``argmax`` on an empty array): Edit of
two empty label sequences is 100; a predicted segment with no GT segment at all is a false positive;
F1 with TP = FP = FN = 0 (nothing predicted, nothing to find) is 100.

Unsupervised predictions (ids such as ``segment_0003`` or cluster ids) are compared after
:func:`hungarian_label_map`, a one-to-one map from predicted ids to GT labels that maximises the number
of agreeing frames.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

DEFAULT_BG_CLASS: tuple[str, ...] = ("background",)
DEFAULT_OVERLAPS: tuple[float, ...] = (0.10, 0.25, 0.50)
UNMATCHED_PREFIX = "unmatched:"
LABEL_MAPPINGS = ("none", "per_video", "global")


def _as_labels(frames: Sequence[str] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of frame labels, got shape {arr.shape}")
    return arr.astype(str)


def label_runs(
    frames: Sequence[str] | np.ndarray, bg_class: Collection[str] = DEFAULT_BG_CLASS
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Maximal runs of equal labels, background runs dropped.

    Args:
        frames: (F,) one label per frame.
        bg_class: labels whose runs are dropped (pass ``()`` to keep every run).

    Returns:
        ``(labels, starts, ends)``: run labels and int64 frame indices (S,), ``ends`` exclusive.
    """
    arr = _as_labels(frames, "frames")
    if arr.size == 0:
        return [], np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.flatnonzero(arr[1:] != arr[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [arr.size]]).astype(np.int64)
    keep = np.array([lab not in bg_class for lab in arr[starts]], dtype=bool)
    return [str(x) for x in arr[starts][keep]], starts[keep], ends[keep]


def levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    """Edit distance (insertions, deletions, substitutions, each cost 1) between two label lists."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] if x == y else 1 + min(prev[j], cur[j - 1], prev[j - 1])
        prev = cur
    return prev[-1]


def edit_score(
    pred: Sequence[str] | np.ndarray,
    gt: Sequence[str] | np.ndarray,
    bg_class: Collection[str] = DEFAULT_BG_CLASS,
) -> float:
    """MS-TCN Edit score of one video in percent (100 when both have no non-background segment)."""
    p, _, _ = label_runs(pred, bg_class)
    g, _, _ = label_runs(gt, bg_class)
    if not p and not g:
        return 100.0
    return (1.0 - levenshtein(p, g) / max(len(p), len(g))) * 100.0


def segmental_f1_counts(
    pred: Sequence[str] | np.ndarray,
    gt: Sequence[str] | np.ndarray,
    overlap: float,
    bg_class: Collection[str] = DEFAULT_BG_CLASS,
) -> tuple[int, int, int]:
    """MS-TCN's ``(tp, fp, fn)`` for one video at IoU ``overlap`` (see module docstring).

    Args:
        pred, gt: (F,) frame labels (pred may differ in length; IoU is on frame indices).
        overlap: IoU threshold in (0, 1]; a value of 0 would let disjoint segments match.
    """
    if not 0.0 < overlap <= 1.0:
        raise ValueError(f"overlap must be in (0, 1], got {overlap}")
    p_lab, p_s, p_e = label_runs(pred, bg_class)
    g_lab, g_s, g_e = label_runs(gt, bg_class)
    g_lab_arr = np.asarray(g_lab, dtype=object)
    hit = np.zeros(len(g_lab), dtype=bool)
    tp = fp = 0
    for lab, s, e in zip(p_lab, p_s, p_e):
        if not g_lab:
            fp += 1
            continue
        inter = np.minimum(e, g_e) - np.maximum(s, g_s)
        union = np.maximum(e, g_e) - np.minimum(s, g_s)
        # Different-label GT segments score 0 (as in MS-TCN), disjoint same-label ones score < 0.
        iou = inter / union * (g_lab_arr == lab)
        best = int(np.argmax(iou))
        if iou[best] >= overlap and not hit[best]:
            tp += 1
            hit[best] = True
        else:
            fp += 1
    return tp, fp, int(len(g_lab) - hit.sum())


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    """F1 in percent from pooled counts; 100 when there is nothing to find and nothing predicted."""
    if tp + fp + fn == 0:
        return 100.0
    return 200.0 * tp / (2 * tp + fp + fn)


def hungarian_label_map(
    pred_frames: Sequence[str] | np.ndarray,
    gt_frames: Sequence[str] | np.ndarray,
    unmatched_prefix: str = UNMATCHED_PREFIX,
) -> dict[str, str]:
    """One-to-one map from predicted ids to GT labels maximising the number of agreeing frames.

    Built with ``linear_sum_assignment`` on the (pred id x GT label) frame-overlap matrix. Ids are
    sorted first, so the result is deterministic. A predicted id left without a partner (more ids than
    GT labels) or paired with a label it never overlaps maps to ``unmatched_prefix + id``: a label that
    never equals a GT label, kept distinct per id so two neighbouring unmatched clusters are not merged
    into one segment (which would flatter Edit and F1@k). Every predicted label is mapped, including the
    background label given to uncovered frames. For a dataset-wide ("global") map, pass the frames of
    all videos concatenated.

    Args:
        pred_frames, gt_frames: (F,) predicted ids and GT labels of the same frames.

    Returns:
        ``{pred_id: gt_label or unmatched label}`` for every predicted id.
    """
    p = _as_labels(pred_frames, "pred_frames")
    g = _as_labels(gt_frames, "gt_frames")
    if p.shape != g.shape:
        raise ValueError(f"pred_frames has {p.size} frames but gt_frames has {g.size}")
    p_ids, p_idx = np.unique(p, return_inverse=True)
    g_ids, g_idx = np.unique(g, return_inverse=True)
    overlap = np.zeros((p_ids.size, g_ids.size), dtype=np.int64)
    np.add.at(overlap, (p_idx, g_idx), 1)
    mapping = {str(pid): f"{unmatched_prefix}{pid}" for pid in p_ids}
    if p_ids.size and g_ids.size:
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        for r, c in zip(rows, cols):
            if overlap[r, c] > 0:
                mapping[str(p_ids[r])] = str(g_ids[c])
    gt_set = set(g_ids.tolist())
    clash = [v for k, v in mapping.items() if v.startswith(unmatched_prefix) and v in gt_set]
    if clash:
        raise ValueError(f"unmatched label {clash[0]!r} is also a GT label; pick another unmatched_prefix")
    return mapping


def apply_label_map(frames: Sequence[str] | np.ndarray, mapping: Mapping[str, str]) -> np.ndarray:
    """Relabel frames with ``mapping`` (every label present must be a key)."""
    arr = _as_labels(frames, "frames")
    ids, inv = np.unique(arr, return_inverse=True)
    missing = [x for x in ids.tolist() if x not in mapping]
    if missing:
        raise ValueError(f"label map has no entry for {missing[:5]}")
    return np.asarray([mapping[x] for x in ids.tolist()], dtype=object)[inv].astype(str)


def overlap_key(overlap: float) -> str:
    """``0.1 -> "F1@10"``: the MS-TCN column name of an IoU overlap."""
    return f"F1@{round(overlap * 100):d}"


def segmentation_metrics(
    pred_videos: Sequence[Sequence[str] | np.ndarray],
    gt_videos: Sequence[Sequence[str] | np.ndarray],
    overlaps: Sequence[float] = DEFAULT_OVERLAPS,
    bg_class: Collection[str] = DEFAULT_BG_CLASS,
    label_mapping: str = "none",
) -> dict[str, float]:
    """MoF, Edit and F1@k over a set of videos with MS-TCN's pooling (see module docstring).

    Args:
        pred_videos: per video, (F_v,) predicted frame labels (same length as the GT of that video).
        gt_videos: per video, (F_v,) ground-truth frame labels.
        overlaps: IoU thresholds for F1@k.
        bg_class: labels excluded from Edit and F1@k (never from MoF).
        label_mapping: ``"none"`` (labels compared as they are), ``"per_video"`` (a Hungarian map per
            video) or ``"global"`` (one Hungarian map over the frames of all videos).

    Returns:
        ``{"mof", "edit", "F1@10", "F1@25", "F1@50", "num_videos", "num_frames"}`` (metrics in percent).
    """
    if label_mapping not in LABEL_MAPPINGS:
        raise ValueError(f"label_mapping must be one of {LABEL_MAPPINGS}, got {label_mapping!r}")
    if len(pred_videos) != len(gt_videos):
        raise ValueError(f"{len(pred_videos)} predicted videos but {len(gt_videos)} ground-truth videos")
    if not gt_videos:
        raise ValueError("no videos to evaluate")
    preds = [_as_labels(p, f"pred_videos[{i}]") for i, p in enumerate(pred_videos)]
    gts = [_as_labels(g, f"gt_videos[{i}]") for i, g in enumerate(gt_videos)]
    for i, (p, g) in enumerate(zip(preds, gts)):
        if p.size != g.size:
            raise ValueError(f"video {i}: prediction has {p.size} frames, ground truth {g.size}")
    if label_mapping == "global":
        mapping = hungarian_label_map(np.concatenate(preds), np.concatenate(gts))
        preds = [apply_label_map(p, mapping) for p in preds]
    elif label_mapping == "per_video":
        preds = [apply_label_map(p, hungarian_label_map(p, g)) for p, g in zip(preds, gts)]

    correct = sum(int((p == g).sum()) for p, g in zip(preds, gts))
    total = sum(g.size for g in gts)
    out: dict[str, float] = {
        "mof": 100.0 * correct / total if total else 100.0,
        "edit": float(np.mean([edit_score(p, g, bg_class) for p, g in zip(preds, gts)])),
    }
    for k in overlaps:
        counts = np.sum([segmental_f1_counts(p, g, k, bg_class) for p, g in zip(preds, gts)], axis=0)
        out[overlap_key(k)] = f1_from_counts(*(int(c) for c in counts))
    out["num_videos"] = len(gts)
    out["num_frames"] = int(total)
    return out

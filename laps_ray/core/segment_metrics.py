"""Frame-level action-segmentation metrics and the label mappings papers report them under.

**Metrics** follow MS-TCN's ``eval.py`` (Farha & Gall, CVPR 2019, itself adapted from Lea et al.'s TCN
metrics), rebuilt here from its behaviour:

* **Segments** of a frame-label sequence are maximal runs of equal labels; runs whose label is in
  ``bg_class`` are dropped (MS-TCN's default ``bg_class`` is ``["background"]``, for Edit and F1 alike,
  on both sides; Breakfast's ``SIL`` is therefore an ordinary class under that default).
* **Edit** = ``(1 - levenshtein(pred_labels, gt_labels) / max(len_pred, len_gt)) * 100`` on the
  sequences of segment labels, background excluded.
* **F1@k** (k = IoU overlap 0.10 / 0.25 / 0.50): each predicted segment, in temporal order, picks the
  ground-truth segment of the *same label* with the highest IoU (first one on ties); it is a true
  positive iff that IoU >= k and that GT segment is not already taken, otherwise a false positive
  (MS-TCN does not fall back to the second-best GT segment). FN = GT segments never taken. Background
  excluded. Segment ends are exclusive except the *last run of a sequence*, which MS-TCN ends at the
  last frame index ``F - 1`` (one frame short); we keep that so the numbers match its script.
* **MoF** = frame accuracy ``correct / total * 100``, background *included*.

Pooling: F1@k pools TP/FP/FN over all videos and computes one F1; Edit is the unweighted mean of the
per-video Edit scores; MoF depends on the protocol (below). All three are in percent (0-100).

Edge cases MS-TCN leaves undefined (it divides by zero or calls ``argmax`` on an empty array): Edit of
two empty label sequences is 100; a predicted segment with no GT segment at all, or with a zero-length
union, is a false positive; F1 with TP = FP = FN = 0 (nothing predicted, nothing to find) is 100 (the
script's ``nan_to_num`` would print 0).

**Label mappings** (:data:`LABEL_MAPPINGS`) say how predicted labels meet GT labels before scoring:

* ``none`` — labels compared as they are: MS-TCN's supervised protocol. MoF pools frames over all
  videos (MS-TCN's "Acc").
* ``hungarian_video`` — per video, a one-to-one map from predicted labels to that video's GT labels
  maximising the agreeing frames (the Hungarian method), as TW-FINCH (Sarfraz et al., CVPR 2021) and
  ABD report. MoF is the unweighted mean over videos of each video's accuracy (TW-FINCH's released
  evaluation averages per-video accuracies).
* ``hungarian_global`` — one such map for the whole evaluated set, built on the contingency table
  summed over all videos, as CTE (Kukleva et al., CVPR 2019) reports (CTE evaluates each activity's
  videos as one set). MoF pools frames over all videos.

A predicted label left without a partner (more predicted labels than GT labels) is renamed
``unmatched:<label>``, wrong everywhere and distinct per label. Summaries carry both MoF poolings
(``mof_pooled``, ``mof_video_mean``); ``mof`` is the one the protocol defines.

**auto** (:func:`auto_label_mapping`): ``none`` when every predicted label is one of the ground truth's
own label names (a supervised, label-carrying prediction), else ``hungarian_video`` (cluster ids,
``segment_0003``, unlabelled segments).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

DEFAULT_BG_CLASS: tuple[str, ...] = ("background",)
DEFAULT_OVERLAPS: tuple[float, ...] = (0.10, 0.25, 0.50)
UNMATCHED_PREFIX = "unmatched:"
LABEL_MAPPINGS = ("none", "hungarian_video", "hungarian_global")
LABEL_MAPPING_CHOICES = ("auto", *LABEL_MAPPINGS)
RENAMED_LABEL_MAPPINGS = {"per_video": "hungarian_video", "global": "hungarian_global"}
MOF_POOLING = {"none": "pooled", "hungarian_video": "video_mean", "hungarian_global": "pooled"}

Frames = Sequence[str] | np.ndarray


def _as_labels(frames: Frames, name: str) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of frame labels, got shape {arr.shape}")
    return arr.astype(str)


def _paired(
    pred_videos: Sequence[Frames], gt_videos: Sequence[Frames]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Label arrays of each video, checked to pair up (same number of videos, same length each)."""
    if len(pred_videos) != len(gt_videos):
        raise ValueError(f"{len(pred_videos)} predicted videos but {len(gt_videos)} ground-truth videos")
    preds = [_as_labels(p, f"pred_videos[{i}]") for i, p in enumerate(pred_videos)]
    gts = [_as_labels(g, f"gt_videos[{i}]") for i, g in enumerate(gt_videos)]
    for i, (p, g) in enumerate(zip(preds, gts)):
        if p.size != g.size:
            raise ValueError(f"video {i}: prediction has {p.size} frames, ground truth {g.size}")
    return preds, gts


def label_runs(
    frames: Frames, bg_class: Collection[str] = DEFAULT_BG_CLASS
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


def edit_score(pred: Frames, gt: Frames, bg_class: Collection[str] = DEFAULT_BG_CLASS) -> float:
    """MS-TCN Edit score of one video in percent (100 when both have no non-background segment)."""
    p, _, _ = label_runs(pred, bg_class)
    g, _, _ = label_runs(gt, bg_class)
    if not p and not g:
        return 100.0
    return (1.0 - levenshtein(p, g) / max(len(p), len(g))) * 100.0


def _ms_tcn_runs(frames: Frames, bg_class: Collection[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs as MS-TCN's segment extraction gives them: the sequence's last run ends at ``F - 1``."""
    labels, starts, ends = label_runs(frames, bg_class)
    ends = ends.copy()
    if ends.size and ends[-1] == len(frames):
        ends[-1] -= 1
    return np.asarray(labels, dtype=object), starts, ends


def segmental_f1_counts(
    pred: Frames, gt: Frames, overlap: float, bg_class: Collection[str] = DEFAULT_BG_CLASS
) -> tuple[int, int, int]:
    """MS-TCN's ``(tp, fp, fn)`` for one video at IoU ``overlap`` (see module docstring).

    Args:
        pred, gt: (F,) frame labels (pred may differ in length; IoU is on frame indices).
        overlap: IoU threshold in (0, 1]; a value of 0 would let disjoint segments match.
    """
    if not 0.0 < overlap <= 1.0:
        raise ValueError(f"overlap must be in (0, 1], got {overlap}")
    p_lab, p_s, p_e = _ms_tcn_runs(pred, bg_class)
    g_lab, g_s, g_e = _ms_tcn_runs(gt, bg_class)
    hit = np.zeros(g_lab.size, dtype=bool)
    tp = fp = 0
    for lab, s, e in zip(p_lab, p_s, p_e):
        if not g_lab.size:
            fp += 1
            continue
        inter = np.minimum(e, g_e) - np.maximum(s, g_s)
        union = np.maximum(e, g_e) - np.minimum(s, g_s)
        # Different-label GT segments score 0 (as in MS-TCN), disjoint same-label ones score < 0.
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0) * (g_lab == lab)
        best = int(np.argmax(iou))
        if iou[best] >= overlap and not hit[best]:
            tp += 1
            hit[best] = True
        else:
            fp += 1
    return tp, fp, int(g_lab.size - hit.sum())


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    """F1 in percent from pooled counts; 100 when there is nothing to find and nothing predicted."""
    if tp + fp + fn == 0:
        return 100.0
    return 200.0 * tp / (2 * tp + fp + fn)


def hungarian_label_map(
    pred_frames: Frames, gt_frames: Frames, unmatched_prefix: str = UNMATCHED_PREFIX
) -> dict[str, str]:
    """One-to-one map from predicted ids to GT labels maximising the number of agreeing frames.

    Built with ``linear_sum_assignment`` on the (pred id x GT label) frame-overlap matrix. Ids are
    sorted first, so the result is deterministic. A predicted id left without a partner (more ids than
    GT labels) or paired with a label it never overlaps maps to ``unmatched_prefix + id``: a label that
    never equals a GT label, kept distinct per id so two neighbouring unmatched clusters are not merged
    into one segment (which would flatter Edit and F1@k). For a dataset-wide map pass the frames of all
    videos concatenated (the overlap matrix is then the sum of the per-video ones).

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


def apply_label_map(frames: Frames, mapping: Mapping[str, str]) -> np.ndarray:
    """Relabel frames with ``mapping`` (every label present must be a key)."""
    arr = _as_labels(frames, "frames")
    ids, inv = np.unique(arr, return_inverse=True)
    missing = [x for x in ids.tolist() if x not in mapping]
    if missing:
        raise ValueError(f"label map has no entry for {missing[:5]}")
    return np.asarray([mapping[x] for x in ids.tolist()], dtype=object)[inv].astype(str)


def _voting_map(pred: np.ndarray, gt: np.ndarray, fixed_label: str | None) -> dict[str, str]:
    if fixed_label is None:
        return hungarian_label_map(pred, gt)
    # The fixed label (frames no predicted segment covers) is neither remapped nor a target: renaming a
    # predicted segment to it would hide a false detection, renaming it would let an empty prediction score.
    vote = (pred != fixed_label) & (gt != fixed_label)
    mapping = hungarian_label_map(pred[vote], gt[vote])
    for pid in np.unique(pred[pred != fixed_label]).tolist():
        mapping.setdefault(str(pid), f"{UNMATCHED_PREFIX}{pid}")
    mapping[fixed_label] = fixed_label
    return mapping


def label_maps(
    pred_videos: Sequence[Frames], gt_videos: Sequence[Frames], mapping: str, fixed_label: str | None = None
) -> list[dict[str, str] | None]:
    """Per video, the label map ``mapping`` prescribes (``None`` for ``none``).

    Args:
        pred_videos, gt_videos: per video, (F_v,) predicted and GT frame labels of the same length.
        mapping: one of :data:`LABEL_MAPPINGS`.
        fixed_label: a label that is never remapped nor mapped to, and whose frames (on either side)
            do not vote (``evaluate``'s uncovered label); ``None`` = every frame votes.

    Returns:
        One map per video; with ``hungarian_global`` the same map object for every video.
    """
    if mapping not in LABEL_MAPPINGS:
        raise ValueError(f"label_mapping must be one of {LABEL_MAPPINGS}, got {mapping!r}")
    preds, gts = _paired(pred_videos, gt_videos)
    if mapping == "none":
        return [None] * len(preds)
    if mapping == "hungarian_video":
        return [_voting_map(p, g, fixed_label) for p, g in zip(preds, gts)]
    empty = np.zeros(0, dtype=str)
    shared = _voting_map(
        np.concatenate(preds) if preds else empty, np.concatenate(gts) if gts else empty, fixed_label
    )
    return [shared] * len(preds)


def auto_label_mapping(pred_labels: Collection[str | None], gt_labels: Collection[str]) -> tuple[str, str]:
    """The mapping ``auto`` picks, and why: ``none`` iff every predicted label is a GT label name.

    Args:
        pred_labels: the distinct labels the predictions carry (``None`` = an unlabelled segment).
        gt_labels: the distinct GT label names of the evaluated set.

    Returns:
        ``(mapping, reason)``; no predicted label at all gives ``none`` (nothing to map).
    """
    labels = set(pred_labels)
    if not labels:
        return "none", "no predicted label (nothing to map)"
    foreign = sorted("<unlabelled>" if x is None else x for x in labels if x is None or x not in gt_labels)
    if not foreign:
        return "none", f"all {len(labels)} predicted labels are ground-truth label names"
    shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
    return (
        "hungarian_video",
        f"{len(foreign)} of {len(labels)} predicted labels are not ground-truth names ({shown})",
    )


def overlap_key(overlap: float) -> str:
    """``0.1 -> "F1@10"``: the MS-TCN column name of an IoU overlap."""
    return f"F1@{round(overlap * 100):d}"


def frame_metrics(
    pred_videos: Sequence[Frames],
    gt_videos: Sequence[Frames],
    overlaps: Sequence[float] = DEFAULT_OVERLAPS,
    bg_class: Collection[str] = DEFAULT_BG_CLASS,
    mof_pooling: str = "pooled",
) -> dict[str, float]:
    """MoF, Edit and F1@k of predictions already in GT label space (see module docstring).

    Args:
        pred_videos, gt_videos: per video, (F_v,) predicted and GT frame labels of the same length.
        overlaps: IoU thresholds for F1@k.
        bg_class: labels excluded from Edit and F1@k (never from MoF).
        mof_pooling: ``pooled`` (frames of all videos) or ``video_mean`` (mean of per-video accuracy):
            which of the two is ``mof``.

    Returns:
        ``{"mof", "mof_pooled", "mof_video_mean", "edit", "F1@10", "F1@25", "F1@50", "num_videos",
        "num_frames"}`` (metrics in percent).
    """
    if mof_pooling not in ("pooled", "video_mean"):
        raise ValueError(f"mof_pooling must be 'pooled' or 'video_mean', got {mof_pooling!r}")
    if not gt_videos:
        raise ValueError("no videos to evaluate")
    preds, gts = _paired(pred_videos, gt_videos)
    correct = [int((p == g).sum()) for p, g in zip(preds, gts)]
    total = sum(g.size for g in gts)
    out: dict[str, float] = {
        "mof_pooled": 100.0 * sum(correct) / total if total else 100.0,
        "mof_video_mean": float(
            np.mean([100.0 * c / g.size if g.size else 100.0 for c, g in zip(correct, gts)])
        ),
        "edit": float(np.mean([edit_score(p, g, bg_class) for p, g in zip(preds, gts)])),
    }
    out["mof"] = out["mof_pooled" if mof_pooling == "pooled" else "mof_video_mean"]
    for k in overlaps:
        counts = np.sum([segmental_f1_counts(p, g, k, bg_class) for p, g in zip(preds, gts)], axis=0)
        out[overlap_key(k)] = f1_from_counts(*(int(c) for c in counts))
    out["num_videos"] = len(gts)
    out["num_frames"] = int(total)
    return out


def segmentation_metrics(
    pred_videos: Sequence[Frames],
    gt_videos: Sequence[Frames],
    overlaps: Sequence[float] = DEFAULT_OVERLAPS,
    bg_class: Collection[str] = DEFAULT_BG_CLASS,
    label_mapping: str = "none",
) -> dict[str, float]:
    """MoF, Edit and F1@k over a set of videos under one label mapping (see module docstring).

    Args:
        pred_videos: per video, (F_v,) predicted frame labels (same length as the GT of that video).
        gt_videos: per video, (F_v,) ground-truth frame labels.
        overlaps: IoU thresholds for F1@k.
        bg_class: labels excluded from Edit and F1@k (never from MoF).
        label_mapping: one of :data:`LABEL_MAPPINGS` (every frame votes in a Hungarian map).

    Returns:
        :func:`frame_metrics`'s keys, ``mof`` pooled as the mapping's protocol defines.
    """
    maps = label_maps(pred_videos, gt_videos, label_mapping)
    mapped = [p if m is None else apply_label_map(p, m) for p, m in zip(pred_videos, maps)]
    return frame_metrics(mapped, gt_videos, overlaps, bg_class, MOF_POOLING[label_mapping])

"""``metrics.md`` of ``evaluate`` and the conventions its ``metrics.json`` records.

Boundary scores are fractions (3 decimals), MS-TCN's F1@k / Edit / MoF percent (1 decimal), ``-``
where a value is absent. Keys are those of ``laps_ray.core.metrics`` (``boundary/f1@2.0s``,
``F1@10``, ``edit``, ``mof``, ``mAP@0.5``). The label mapping the frame metrics were computed under
heads the table (:func:`mapping_note`), so a number is never read without its protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from laps_ray.core.metrics import MOF_POOLING, fmt_num
from laps_ray.core.segment_metrics import overlap_key

# What each label mapping means, as written next to every table (metrics.md, summary, metrics.json).
MAPPING_TEXT = {
    "none": "labels compared as they are (MS-TCN's supervised protocol)",
    "hungarian_video": "one-to-one Hungarian map of predicted labels to GT labels per video (TW-FINCH, ABD)",
    "hungarian_global": "one Hungarian map over all videos, contingency summed over videos (CTE)",
}
MOF_TEXT = {
    "pooled": "MoF = correct / total frames over all videos",
    "video_mean": "MoF = mean over videos of each video's accuracy",
}

_CONVENTIONS = {
    "boundary": "precision/recall/F1 as fractions at each tolerance (seconds), optimal one-to-one matching "
    "(Hungarian), shared boundaries of adjacent segments counted once, video edges not boundaries; GT "
    "boundaries from every GT segment incl. background runs; summary = unweighted mean over videos, "
    "'_pooled' = from summed counts",
    "frame_metrics": "MS-TCN definitions in percent: Edit (mean over videos), F1@k (counts pooled, the last "
    "run of a sequence ending at frame F-1 as in MS-TCN's script), MoF (background included, pooled as "
    "the label mapping's protocol says; mof_pooled and mof_video_mean give both); bg_class left out of "
    "Edit and F1@k",
    "rasterisation": "predictions rasterised at the GT frame rate by frame centre; uncovered frames get "
    "uncovered_label; unlabelled GT segments get unique ids gt_NNNN",
    "mAP": "class-agnostic (the same under every label mapping), all videos pooled; confidence = "
    "segments.json mean_energy, else duration; GT detections exclude bg_class and uncovered_label; VOC "
    "all-point AP",
    "missing_prediction": "scored as an empty prediction (no segment, all frames uncovered)",
}


def mapping_note(mapping: str, reason: str) -> str:
    """One line naming the label mapping used, why, and how MoF is pooled under it."""
    return f"label mapping: {mapping} ({reason}): {MAPPING_TEXT[mapping]}; {MOF_TEXT[MOF_POOLING[mapping]]}"


def conventions(mapping: str, uncovered_label: str, bg_class: Sequence[str]) -> dict[str, Any]:
    """The ``conventions`` object of ``metrics.json`` for frame metrics computed under ``mapping``."""
    text = MAPPING_TEXT[mapping]
    if mapping != "none":
        text += (
            "; built on frames covered in the prediction and not uncovered_label in the GT; uncovered "
            "frames never remapped; a predicted label without a partner becomes 'unmatched:<label>'"
        )
    return {
        **_CONVENTIONS,
        "label_mapping": f"{mapping}: {text}; {MOF_TEXT[MOF_POOLING[mapping]]}",
        "uncovered_label": uncovered_label,
        "bg_class": list(bg_class),
    }


def _f(x: Any, pct: bool = False) -> str:
    return "-" if x is None else (f"{x:.1f}" if pct else f"{x:.3f}")


def markdown_table(
    per_video: dict[str, dict[str, Any]],
    summary: dict[str, Any],
    missing: Sequence[str],
    tolerances_sec: Sequence[float],
    overlaps: Sequence[float],
    settings: str,
    mapping: str,
) -> str:
    """Markdown text: the label mapping, one row per video and a summary row; mAP and conventions below.

    Args:
        per_video: ``{stem: metrics row}`` (with ``missing``, ``num_gt_segments``, ``num_pred_segments``).
        summary: the summary metrics (``mAP@...`` keys are listed below the table).
        missing: stems whose prediction is missing (scored as empty).
        tolerances_sec: boundary tolerances in seconds (one P/R/F1 column triple each).
        overlaps: IoU thresholds of F1@k (fractions).
        settings: how frame metrics were computed, for the footnote (bg_class, uncovered label).
        mapping: the label-mapping line (:func:`mapping_note`), written above the table.
    """
    tols = [fmt_num(t) for t in tolerances_sec]
    ks = [overlap_key(k) for k in overlaps]
    head = ["video", "pred", "#GT", "#pred"]
    for t in tols:
        head += [f"P@{t}s", f"R@{t}s", f"F1@{t}s"]
    head += ks + ["Edit", "MoF"]
    lines = [f"**{mapping}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(row: dict[str, Any]) -> list[str]:
        out = []
        for t in tols:
            out += [_f(row.get(f"boundary/{m}@{t}s")) for m in ("precision", "recall", "f1")]
        return (
            out + [_f(row.get(k), True) for k in ks] + [_f(row.get("edit"), True), _f(row.get("mof"), True)]
        )

    for stem, row in per_video.items():
        status = "**MISSING**" if row["missing"] else "ok"
        counts = [str(row["num_gt_segments"]), str(row["num_pred_segments"])]
        lines.append("| " + " | ".join([stem, status, *counts, *cells(row)]) + " |")
    n_gt = sum(r["num_gt_segments"] for r in per_video.values())
    n_pred = sum(r["num_pred_segments"] for r in per_video.values())
    lines.append(
        "| "
        + " | ".join(["**all**", f"{len(missing)} missing", str(n_gt), str(n_pred), *cells(summary)])
        + " |"
    )
    maps = ", ".join(f"{k} {summary[k]:.3f}" for k in summary if k.startswith("mAP@"))
    lines += [
        "",
        f"mAP (class-agnostic, confidence = mean_energy): {maps}",
        "",
        f"Boundary scores are fractions (optimal matching, summary = mean over videos); "
        f"{', '.join(ks)}, Edit and MoF are MS-TCN's, in percent ({settings}).",
    ]
    if missing:
        lines += ["", f"**Missing predictions (scored as empty): {', '.join(missing)}**"]
    return "\n".join(lines) + "\n"

"""``metrics.md`` of ``evaluate``: one markdown row per video, a summary row, mAP and the conventions.

Boundary scores are fractions (3 decimals), MS-TCN's F1@k / Edit / MoF percent (1 decimal), ``-``
where a value is absent. Keys are those of ``laps_ray.core.metrics`` (``boundary/f1@2.0s``,
``F1@10``, ``edit``, ``mof``, ``mAP@0.5``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from laps_ray.core.metrics import fmt_num
from laps_ray.core.segment_metrics import overlap_key


def _f(x: Any, pct: bool = False) -> str:
    return "-" if x is None else (f"{x:.1f}" if pct else f"{x:.3f}")


def markdown_table(
    per_video: dict[str, dict[str, Any]],
    summary: dict[str, Any],
    missing: Sequence[str],
    tolerances_sec: Sequence[float],
    overlaps: Sequence[float],
    settings: str,
) -> str:
    """Markdown text: one row per video and a summary row; mAP and conventions below.

    Args:
        per_video: ``{stem: metrics row}`` (with ``missing``, ``num_gt_segments``, ``num_pred_segments``).
        summary: the summary metrics (``mAP@...`` keys are listed below the table).
        missing: stems whose prediction is missing (scored as empty).
        tolerances_sec: boundary tolerances in seconds (one P/R/F1 column triple each).
        overlaps: IoU thresholds of F1@k (fractions).
        settings: how frame metrics were computed, for the footnote (bg_class, uncovered label, mapping).
    """
    tols = [fmt_num(t) for t in tolerances_sec]
    ks = [overlap_key(k) for k in overlaps]
    head = ["video", "pred", "#GT", "#pred"]
    for t in tols:
        head += [f"P@{t}s", f"R@{t}s", f"F1@{t}s"]
    head += ks + ["Edit", "MoF"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

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

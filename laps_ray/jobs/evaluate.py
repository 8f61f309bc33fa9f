"""evaluate: predicted segments vs ground truth — boundary P/R/F1, F1@k, Edit, MoF and mAP.

Local (no Ray needed; plain Python)::

    python -m laps_ray.jobs.evaluate --pred out/ --gt gt/ --output eval/ [--fps 15]

On a cluster (same command after ``--``; it runs on the head node as a plain Python entrypoint)::

    ray job submit --working-dir . -- python -m laps_ray.jobs.evaluate --pred out/ --gt gt/ --output eval/

Options: ``--config configs/evaluate.yaml`` and ``key=value`` overrides (e.g.
``tolerances_sec=[1.0,2.0,5.0] uncovered_label=SIL``), ``--label-mapping`` (below), ``--strict`` (exit 1
when a prediction is missing). Outputs: ``<output>/metrics.json`` (per video + summary + the conventions
used), ``<output>/metrics.md`` (a markdown table) and ``<output>/config.yaml``; each states the label
mapping used, as does the printed summary.

**Ground truth** (``--gt DIR``), per video stem, either format (read by ``laps_ray.io.ground_truth``):

* LAPS segments JSON ``<stem>.json`` or ``<stem>_segments.json``: ``{"video", "video_duration_sec",
  "segments": [{"start_sec", "end_sec", ["label"]}]}``;
* MS-TCN / GTEA / Breakfast ``groundTruth`` files ``<stem>`` or ``<stem>.txt``: one label per line,
  line i = frame i; needs the label frame rate (``--fps``).

**Predictions** (``--pred DIR``), per stem, first found of: ``<stem>/segments.json`` (segment_folder
output), ``<stem>.json`` / ``<stem>_segments.json`` (LAPS JSON), ``<stem>`` / ``<stem>.txt`` (per-frame
labels at ``--fps``; ``pred_format`` restricts the search). A GT video without a prediction is scored
as an *empty* prediction (no segment; every frame uncovered), logged as a warning, listed under
``missing_predictions`` in metrics.json and counted in the printed summary.

**Conventions** (also written into metrics.json):

* Boundary P/R/F1 (fractions 0-1) at each tolerance in seconds, optimal one-to-one matching, shared
  boundaries of adjacent segments counted once (points within half a frame of the frame rate below),
  the video's own edges not boundaries (``core.boundary_metrics``); summary = unweighted mean over
  videos (+ pooled counts). GT boundaries come from *every* GT segment, background runs included
  (a SIL|action cut is a boundary).
* Frame metrics (MS-TCN's definitions, percent 0-100; ``core.segment_metrics``): predictions are
  rasterised at the GT frame rate (LAPS-JSON GT: at ``--fps``, else the prediction's source fps, else
  30 fps with a warning); a frame no predicted segment covers gets ``uncovered_label`` (set it to
  the dataset's background label, e.g. ``SIL`` for Breakfast, ``background`` for GTEA).
  LAPS-JSON GT segments without a label get unique ids ``gt_0000, ...`` (frame metrics then measure
  one-to-one segment agreement); GT frames outside every segment get ``uncovered_label``.
  ``bg_class`` (default ``["background"]``, MS-TCN's) is left out of Edit and F1@k; F1@k pools counts
  over videos, Edit is the mean over videos.
* Label mapping (``label_mapping``; definitions in ``core.segment_metrics``): ``none`` (labels as they
  are: MS-TCN's supervised protocol, MoF pooled over frames), ``hungarian_video`` (a one-to-one map per
  video: TW-FINCH/ABD, MoF = mean of per-video accuracies) or ``hungarian_global`` (one map from the
  contingency summed over videos: CTE, MoF pooled). ``auto`` (default): ``none`` when every predicted
  label is a GT label name (a supervised prediction), else ``hungarian_video`` (cluster ids such as
  ``segment_0003``, unlabelled segments). Hungarian maps never remap uncovered frames (an empty
  prediction earns no MoF by being renamed) nor map a predicted label *to* ``uncovered_label``: only
  frames covered in the prediction and not ``uncovered_label`` in the GT vote.
* mAP@IoU (fractions): class-agnostic temporal detection over all videos; detections = predicted
  segments (``mean_energy`` from segments.json as confidence, else the segment duration); GT = GT
  segments whose label is not in ``bg_class`` or ``uncovered_label``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.config import check, check_choice, to_dict, to_yaml
from laps_ray.core.metrics import (
    LABEL_MAPPING_CHOICES,
    MOF_POOLING,
    aggregate_boundary_metrics,
    apply_label_map,
    auto_label_mapping,
    boundary_metrics,
    detection_map,
    fmt_num,
    frame_metrics,
    label_maps,
    merge_tol_for_fps,
)
from laps_ray.core.segment_metrics import RENAMED_LABEL_MAPPINGS
from laps_ray.io.atomic import write_json_atomic, write_text_atomic
from laps_ray.io.ground_truth import (
    PRED_FORMATS,
    GroundTruth,
    Prediction,
    find_prediction,
    load_ground_truth,
    prediction_stems,
    run_status,
    scoring_fps,
)
from laps_ray.io.labels import LabelFormatError, Segment, segments_to_frames
from laps_ray.io.metrics_table import conventions, mapping_note, markdown_table
from laps_ray.jobs._cli import Flag, run_job

log = logging.getLogger("laps_ray.evaluate")


@dataclass
class EvaluateJobConfig:
    """Settings of the evaluate job (``configs/evaluate.yaml``).

    Attributes:
        pred: predictions folder (segment_folder output, LAPS JSON files or per-frame label files).
        gt: ground-truth folder (LAPS JSON and/or MS-TCN label files).
        output: output folder.
        fps: frame rate of per-frame label files (GT and predictions); also the rasterisation rate of
            LAPS-JSON GT for frame metrics. 0 = not given.
        pred_format: ``auto`` | ``segments`` (JSON) | ``frames`` (label files).
        tolerances_sec: boundary tolerances in seconds.
        overlaps: IoU thresholds of F1@k (MS-TCN: 0.10, 0.25, 0.50).
        iou_thresholds: IoU thresholds of mAP.
        bg_class: labels excluded from Edit and F1@k (MS-TCN's default ``["background"]``).
        uncovered_label: label of frames no predicted segment covers (never remapped).
        label_mapping: ``auto`` | ``none`` | ``hungarian_video`` | ``hungarian_global`` (module
            docstring; ``auto``: ``none`` iff every predicted label is a GT label name).
        strict: exit non-zero when a prediction is missing.
    """

    pred: str = ""
    gt: str = ""
    output: str = ""
    fps: float = 0.0
    pred_format: str = "auto"
    tolerances_sec: list[float] = field(default_factory=lambda: [2.0, 5.0])
    overlaps: list[float] = field(default_factory=lambda: [0.10, 0.25, 0.50])
    iou_thresholds: list[float] = field(default_factory=lambda: [0.5, 0.75])
    bg_class: list[str] = field(default_factory=lambda: ["background"])
    uncovered_label: str = "background"
    label_mapping: str = "auto"
    strict: bool = False

    def __post_init__(self) -> None:
        check(math.isfinite(self.fps) and self.fps >= 0, "fps", f"must be >= 0, got {self.fps}")
        check_choice(self.pred_format, PRED_FORMATS, "pred_format")
        new_name = RENAMED_LABEL_MAPPINGS.get(self.label_mapping)
        check(new_name is None, "label_mapping", f"{self.label_mapping!r} is now called {new_name!r}")
        check_choice(self.label_mapping, LABEL_MAPPING_CHOICES, "label_mapping")
        check(len(self.tolerances_sec) > 0, "tolerances_sec", "needs at least one tolerance")
        check(all(t >= 0 for t in self.tolerances_sec), "tolerances_sec", "must be >= 0")
        check(all(0 < k <= 1 for k in self.overlaps), "overlaps", "must be in (0, 1]")
        check(all(0 < k <= 1 for k in self.iou_thresholds), "iou_thresholds", "must be in (0, 1]")
        check(bool(self.uncovered_label), "uncovered_label", "must be a non-empty label")


# --------------------------------------------------------------------------------------------
# Scoring


@dataclass
class EvaluateResult:
    output: Path
    summary: dict[str, Any]
    per_video: dict[str, dict[str, Any]]
    missing: list[str]
    seconds: float
    tolerances: list[float]
    exit_code: int = 0


def _gt_frames(gt: GroundTruth, fps: float, uncovered: str) -> list[str]:
    if gt.frames is not None:
        return list(gt.frames)
    n = max(1, round(gt.duration * fps))
    labelled = [
        Segment(s[0], s[1], s[2] if s[2] is not None else f"gt_{k:04d}") for k, s in enumerate(gt.segments)
    ]
    try:
        return segments_to_frames(labelled, fps, n, background=uncovered)
    except ValueError as exc:
        raise LabelFormatError(f"{gt.path}: {exc}") from exc


def _pred_frames(pred: Prediction, fps: float, n: int, uncovered: str) -> list[str]:
    if pred.frames is not None:
        frames = list(pred.frames)
        if len(frames) != n:
            log.warning(
                "%s: prediction has %d frames, ground truth %d; %s to match",
                pred.path,
                len(frames),
                n,
                "cut" if len(frames) > n else f"padded with {uncovered!r}",
            )
        return (frames + [uncovered] * n)[:n]
    labelled = [
        Segment(s[0], s[1], s[2] if s[2] is not None else f"segment_{k:04d}")
        for k, s in enumerate(pred.segments)
    ]
    try:
        return segments_to_frames(labelled, fps, n, background=uncovered)
    except ValueError as exc:
        raise LabelFormatError(f"{pred.path}: {exc}") from exc


def _predicted_labels(pred: Prediction, uncovered: str) -> set[str | None]:
    """The labels a prediction carries (``None`` = an unlabelled segment), ``uncovered`` left out."""
    labels = set(pred.frames) if pred.frames is not None else {s[2] for s in pred.segments}
    return labels - {uncovered}


def resolve_label_mapping(
    cfg: EvaluateJobConfig, preds: list[Prediction], gt_frames: list[np.ndarray]
) -> tuple[str, str]:
    """The label mapping to use and why (``auto``: ``core.segment_metrics.auto_label_mapping``)."""
    if cfg.label_mapping != "auto":
        return cfg.label_mapping, "set explicitly"
    pred_labels = set().union(*(_predicted_labels(p, cfg.uncovered_label) for p in preds))
    gt_labels = set(np.unique(np.concatenate(gt_frames)).tolist()) if gt_frames else set()
    used, reason = auto_label_mapping(pred_labels, gt_labels)
    if used != "none" and pred_labels & gt_labels:
        msg = "label_mapping auto: %s, some are; using %s (set label_mapping=none for supervised predictions)"
        log.warning(msg, reason, used)
    return used, f"auto: {reason}"


def _detections(segments: list[Segment], exclude: set[str]) -> list[Segment]:
    return [s for s in segments if s.label is None or s.label not in exclude]


def evaluate(
    cfg: EvaluateJobConfig, gts: dict[str, GroundTruth], preds: dict[str, Prediction]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per-video metrics and the summary (conventions in the module docstring).

    Args:
        cfg: settings.
        gts: ground truth by stem (the evaluated set).
        preds: prediction by stem, one per GT stem (``missing`` ones included).

    Returns:
        ``(per_video, summary)``.
    """
    stems = sorted(gts)
    uncovered = cfg.uncovered_label
    exclude = set(cfg.bg_class) | {uncovered}
    warned_fps = False
    rows: dict[str, dict[str, Any]] = {}
    gt_frames: list[np.ndarray] = []
    pred_frames: list[np.ndarray] = []
    for stem in stems:
        gt, pred = gts[stem], preds[stem]
        fps, fallback = scoring_fps(gt, cfg.fps, pred.source_fps)
        if fallback and not warned_fps:
            log.warning("frame metrics of LAPS-JSON ground truth use %g fps (give --fps to change)", fps)
            warned_fps = True
        g = np.asarray(_gt_frames(gt, fps, uncovered))
        p = np.asarray(_pred_frames(pred, fps, g.size, uncovered))
        gt_frames.append(g)
        pred_frames.append(p)
        rows[stem] = {
            "prediction": str(pred.path) if pred.path else None,
            "missing": pred.kind == "missing",
            "gt": str(gt.path),
            "gt_format": gt.kind,
            "duration_sec": gt.duration,
            "frame_fps": fps,
            "num_frames": int(g.size),
            "num_gt_segments": len(gt.segments),
            "num_pred_segments": len(pred.segments),
            **boundary_metrics(
                pred.segments, gt.segments, gt.duration, cfg.tolerances_sec, merge_tol_for_fps(fps)
            ),
        }

    used, reason = resolve_label_mapping(cfg, [preds[s] for s in stems], gt_frames)
    log.info("label mapping: %s (%s)", used, reason)
    maps = label_maps(pred_frames, gt_frames, used, fixed_label=uncovered)
    mapped = [p if m is None else apply_label_map(p, m) for p, m in zip(pred_frames, maps)]

    dets = {
        s: _detections(preds[s].segments, exclude if preds[s].kind == "frames" else {uncovered})
        for s in stems
    }
    gt_dets = {s: _detections(gts[s].segments, exclude) for s in stems}
    summary_only = ("num_videos", "num_frames", "mof_pooled", "mof_video_mean")
    for stem, p, g, m in zip(stems, mapped, gt_frames, maps):
        frame = frame_metrics([p], [g], cfg.overlaps, cfg.bg_class)
        rows[stem].update({k: v for k, v in frame.items() if k not in summary_only})
        rows[stem].update(detection_map([dets[stem]], [gt_dets[stem]], cfg.iou_thresholds))
        if m is not None and used == "hungarian_video":
            rows[stem]["label_map"] = {k: v for k, v in sorted(m.items()) if k != uncovered}

    summary: dict[str, Any] = {}
    summary.update(aggregate_boundary_metrics([rows[s] for s in stems], cfg.tolerances_sec))
    summary.update(frame_metrics(mapped, gt_frames, cfg.overlaps, cfg.bg_class, MOF_POOLING[used]))
    summary.update(detection_map([dets[s] for s in stems], [gt_dets[s] for s in stems], cfg.iou_thresholds))
    summary["num_missing_predictions"] = sum(1 for s in stems if rows[s]["missing"])
    summary["label_mapping"] = used
    summary["label_mapping_reason"] = reason
    if used == "hungarian_global":
        summary["label_map"] = {k: v for k, v in sorted(maps[0].items()) if k != uncovered}
    return rows, summary


def run(cfg: EvaluateJobConfig) -> EvaluateResult:
    """Evaluate every GT video and write metrics.json, metrics.md and config.yaml."""
    check(bool(cfg.pred), "pred", "is required (--pred DIR)")
    check(bool(cfg.gt), "gt", "is required (--gt DIR)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    t0 = time.time()
    pred_root, out_dir = Path(cfg.pred), Path(cfg.output)
    if not pred_root.is_dir():
        raise FileNotFoundError(f"predictions {pred_root}: no such folder")
    gts = load_ground_truth(cfg.gt, cfg.fps)
    preds = {stem: find_prediction(pred_root, stem, cfg.fps, cfg.pred_format) for stem in sorted(gts)}
    missing = [s for s, p in preds.items() if p.kind == "missing"]
    status = run_status(pred_root) if missing else {}
    for s in missing:
        why = f" (run.json says {status[s]})" if s in status else ""
        log.warning("NO PREDICTION for %s under %s%s: scored as an empty prediction", s, pred_root, why)
    unmatched = sorted(prediction_stems(pred_root) - set(gts))
    if unmatched:
        log.warning(
            "%d prediction(s) without ground truth, not evaluated: %s", len(unmatched), ", ".join(unmatched)
        )
    per_video, summary = evaluate(cfg, gts, preds)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.yaml", to_yaml(cfg))
    doc = {
        "job": "evaluate",
        "pred": str(pred_root),
        "gt": str(cfg.gt),
        "videos": sorted(gts),
        "missing_predictions": missing,
        "unmatched_predictions": unmatched,
        "label_mapping": {
            "requested": cfg.label_mapping,
            "used": summary["label_mapping"],
            "reason": summary["label_mapping_reason"],
        },
        "conventions": conventions(summary["label_mapping"], cfg.uncovered_label, cfg.bg_class),
        "summary": summary,
        "per_video": per_video,
        "config": to_dict(cfg),
    }
    write_json_atomic(out_dir / "metrics.json", doc)
    write_text_atomic(
        out_dir / "metrics.md",
        markdown_table(
            per_video,
            summary,
            missing,
            cfg.tolerances_sec,
            cfg.overlaps,
            f"bg_class={cfg.bg_class}, uncovered frames = {cfg.uncovered_label!r}",
            mapping_note(summary["label_mapping"], summary["label_mapping_reason"]),
        ),
    )
    code = 1 if cfg.strict and missing else 0
    return EvaluateResult(
        out_dir, summary, per_video, missing, time.time() - t0, list(cfg.tolerances_sec), code
    )


def summary_text(r: EvaluateResult) -> str:
    """The printed summary."""
    s = r.summary
    parts = [f"F1@{fmt_num(t)}s {s[f'boundary/f1@{fmt_num(t)}s']:.3f}" for t in r.tolerances]
    parts += [f"{k} {s[k]:.1f}" for k in s if k.startswith("F1@")]
    parts += [f"Edit {s['edit']:.1f}", f"MoF {s['mof']:.1f}"]
    parts += [f"{k} {s[k]:.3f}" for k in s if k.startswith("mAP@")]
    lines = [
        f"evaluate: {len(r.per_video)} videos in {r.seconds:.1f}s -> {r.output}/metrics.json, metrics.md"
    ]
    lines.append("  " + ", ".join(parts))
    lines.append("  " + mapping_note(s["label_mapping"], s["label_mapping_reason"]))
    if r.missing:
        lines.append(
            f"  WARNING: {len(r.missing)} missing prediction(s) scored as empty: {', '.join(r.missing)}"
        )
    return "\n".join(lines)


FLAGS = (
    Flag("--pred", "pred", "predictions folder (segment_folder output or label files)"),
    Flag("--gt", "gt", "ground-truth folder (LAPS JSON or MS-TCN label files)"),
    Flag("--output", "output", "output folder for metrics.json / metrics.md"),
    Flag("--fps", "fps", "frame rate of per-frame label files", type=float),
    Flag(
        "--label-mapping",
        "label_mapping",
        "auto | none (labels as they are, MS-TCN) | hungarian_video (TW-FINCH) | hungarian_global (CTE)",
    ),
    Flag("--strict", "strict", "exit 1 if a prediction is missing", switch=True),
)


def main(argv: list[str] | None = None) -> None:
    run_job("evaluate", __doc__, FLAGS, EvaluateJobConfig, run, summary_text, argv)


if __name__ == "__main__":
    main()

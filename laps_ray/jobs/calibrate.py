"""calibrate: cached per-window energies (+ ground truth or pseudo-labels) → a threshold report.

Local (no Ray needed; plain Python)::

    python -m laps_ray.jobs.calibrate --energy out/ --output calib.json
    python -m laps_ray.jobs.calibrate --energy out/ --gt gt/ --fps 15 --output calib.json

On a cluster (same command after ``--``)::

    ray job submit --working-dir . -- python -m laps_ray.jobs.calibrate --energy out/ --output calib.json

``--energy`` is a segment_folder output folder (``<DIR>/*/energy.jsonl``; one video's folder or one
``energy.jsonl`` also work). Options: ``--config configs/calibrate.yaml``, ``key=value`` overrides
(e.g. ``sources=[quantized,prequant] labels.method=otsu smoothing.alpha=0.5``), ``--strict`` (exit 1
when an energy does not separate the labels). Then segment with the threshold::

    python -m laps_ray.jobs.segment_folder ... --report calib.json --report-key quantized.smoothed.best_f1.thr

**Labels** (one per window; ``laps_ray.pipeline.calibration_data``, shared with ``sweep_thresholds``):

* with ``--gt`` (LAPS JSON or MS-TCN label files, see ``laps_ray.io.ground_truth``): a window is
  *active* iff its mid-time ``(t_start + t_end) / 2`` lies in a GT segment whose label is not in
  ``labels.background_labels`` (default ``[background, SIL]``; GT segments without a label are
  active). Per-frame GT tiles the whole video, so the background labels are what make "rest";
  if every window ends up active the job stops and says so.
* without: pseudo-labels from a proxy series (``labels.proxy``, default the velocity energy = mean
  point speed) with ``labels.method`` (``gmm_log`` default, or ``otsu`` as the original; see
  ``core.calibration`` for why gmm_log), one label threshold over the windows of all videos.

**Search**: for each ``sources`` entry (a key of ``energies`` in energy.jsonl, or ``energy`` = the
configured energy as recorded) on the ``raw`` series and on the causally ``smoothed`` one
(``smoothing``, per video), pooled over all windows of all videos: best-F1 and best-Youden-J
thresholds, ROC AUC, precision/recall/FPR at each (``core.calibration.threshold_search``). Gated
windows (no tokens, energy 0) take part by default (``include_gated``): with the default gates nearly
every rest window is gated, and leaving them out leaves only moving windows, so the pseudo-labels
split motion against motion and the best-F1 threshold collapses to 0 ("always on", the original's
shipped failure; measured on the demo videos: AUC 0.50 without them, 0.84-0.86 with them). Set
``include_gated=false`` to study the energy among ungated windows only. Per-video AUCs are reported
too. When an energy does not separate the
labels (AUC < 0.5 + ``min_auc_margin``) it is said LOUDLY: a WARNING log line, the block's
``warning`` field, the report's ``warnings`` list and the printed summary. Pseudo-labels built from
the same series that is searched are circular (what ``segment_folder``'s automatic threshold does by
default); that is said in the block's ``note``.

Report format and the ``--report-key`` strings: ``laps_ray.io.reports`` — keys are
``<source>.<raw|smoothed>.<best_f1|best_j>.thr``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.config import check, check_choice, to_dict
from laps_ray.core.auto_threshold import AutoThresholdConfig
from laps_ray.core.calibration import CalibrationError, roc_auc, threshold_search
from laps_ray.core.energy import EnergyConfig
from laps_ray.core.label_rules import LABEL_METHODS
from laps_ray.core.smoothing import SmoothingConfig, smooth
from laps_ray.io.energy_store import EnergyTrack
from laps_ray.io.reports import CRITERIA, REPORT_FORMAT, report_key, threshold_keys, write_report
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import Flag, run_job
from laps_ray.pipeline.calibration_data import (
    DEFAULT_BACKGROUND_LABELS,
    CachedVideo,
    CalibrationData,
    fed_series,
    read_cached_videos,
    with_ground_truth,
    with_pseudo_labels,
)

log = logging.getLogger("laps_ray.calibrate")


@dataclass
class LabelRuleConfig:
    """How windows get their active/rest label.

    Attributes:
        method: pseudo-label rule on the proxy (``core.label_rules.LABEL_METHODS``; default the
            automatic threshold's); unused with ground truth.
        proxy: series the pseudo-labels come from (an ``energies`` key; default the automatic
            threshold's, ``motion``).
        background_labels: GT labels that mean "no action" (rest).
    """

    method: str = AutoThresholdConfig.label_method
    proxy: str = AutoThresholdConfig.proxy
    background_labels: list[str] = field(default_factory=lambda: list(DEFAULT_BACKGROUND_LABELS))

    def __post_init__(self) -> None:
        check_choice(self.method, LABEL_METHODS, "labels.method")
        check(bool(self.proxy), "labels.proxy", "must name an energy series")


@dataclass
class CalibrateJobConfig:
    """Settings of the calibrate job (``configs/calibrate.yaml``)."""

    energy: str = ""
    gt: str = ""
    fps: float = 0.0
    output: str = ""
    sources: list[str] = field(default_factory=lambda: [EnergyConfig.source])
    labels: LabelRuleConfig = field(default_factory=LabelRuleConfig)
    smoothing: SmoothingConfig = field(default_factory=lambda: EnergyConfig().smoothing)
    include_gated: bool = True
    min_auc_margin: float = 0.1
    strict: bool = False

    def __post_init__(self) -> None:
        check(len(self.sources) > 0, "sources", "needs at least one energy series")
        check(len(set(self.sources)) == len(self.sources), "sources", f"has duplicates: {self.sources}")
        check(
            "energy_smooth" not in self.sources,
            "sources",
            "'energy_smooth' is already smoothed; use 'energy' (its 'smoothed' variant applies `smoothing`)",
        )
        check(all("." not in s for s in self.sources), "sources", "names must not contain '.'")
        check(math.isfinite(self.fps) and self.fps >= 0, "fps", f"must be >= 0, got {self.fps}")
        check(
            0 <= self.min_auc_margin < 0.5,
            "min_auc_margin",
            f"must be in [0, 0.5), got {self.min_auc_margin}",
        )


@dataclass
class CalibrateResult:
    output: Path
    report: dict[str, Any]
    seconds: float
    exit_code: int = 0


def _stats(x: np.ndarray) -> dict[str, float]:
    q = np.quantile(x, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {
        "min": float(x.min()),
        "max": float(x.max()),
        "mean": float(x.mean()),
        **{f"q{int(p * 100)}": float(v) for p, v in zip((0.1, 0.25, 0.5, 0.75, 0.9), q)},
    }


def _warn_other_smoothing(cfg: CalibrateJobConfig, cached: dict[str, CachedVideo]) -> None:
    """The 'smoothed' thresholds use this job's smoothing: say so when a video was segmented with another."""
    mine = to_dict(cfg.smoothing)
    for stem, v in cached.items():
        recorded = v.meta.energy.get("smoothing")
        if not isinstance(recorded, dict):
            continue
        diff = {k: (recorded[k], mine[k]) for k in ("method", "alpha", "window") if k in recorded}
        diff = {k: d for k, d in diff.items() if d[0] != d[1]}
        if diff:
            log.warning(
                "%s was segmented with other smoothing (%s); the 'smoothed' thresholds use this "
                "job's smoothing, so set the same one in segment_folder",
                stem,
                ", ".join(f"{k}: run {a} vs here {b}" for k, (a, b) in diff.items()),
            )


def _labels(cfg: CalibrateJobConfig, cached: dict[str, CachedVideo], warnings: list[str]) -> CalibrationData:
    """Window labels from ground truth or pseudo-labels (``laps_ray.pipeline.calibration_data``)."""
    try:
        if cfg.gt:
            bg = cfg.labels.background_labels
            data = with_ground_truth(cached, cfg.gt, cfg.fps, bg, cfg.include_gated)
        else:
            data = with_pseudo_labels(cached, cfg.labels.proxy, cfg.labels.method, cfg.include_gated)
    except ValueError as exc:  # no GT stem in common, no usable proxy value, a failed label rule
        raise rt.JobError(str(exc)) from exc
    if data.left_out:
        warnings.append(
            f"{len(data.left_out)} video(s) without ground truth left out: {', '.join(data.left_out)}"
        )
    info = data.info
    if info["kind"] == "ground_truth" and info["n"] and info["n_pos"] == info["n"]:
        raise rt.JobError(
            "ground truth marks every window active: its segments tile the video and none has a label "
            f"in labels.background_labels={cfg.labels.background_labels}; list the rest labels there"
        )
    info["n_gated_excluded"] = 0 if cfg.include_gated else int(sum(v.track.gated.sum() for v in data.videos))
    return data


def _variants(track: EnergyTrack, source: str, smoothing: SmoothingConfig) -> dict[str, np.ndarray]:
    return {"raw": track.series(source), "smoothed": smooth(fed_series(track, source), smoothing)}


def calibrate(cfg: CalibrateJobConfig, cached: dict[str, CachedVideo]) -> dict[str, Any]:
    """The report (format in ``laps_ray.io.reports``) for already-read cached videos."""
    warnings: list[str] = []
    data = _labels(cfg, cached, warnings)
    videos, labels_info = data.videos, data.info
    for src in cfg.sources:
        for v in videos:
            v.track.series(src)  # a missing series is an error naming the file and what it has
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "rule": "positive iff energy >= thr",
        "labels": labels_info,
        "smoothing": {k: v for k, v in to_dict(cfg.smoothing).items() if k != "use_for_seg"},
    }
    per_video: dict[str, dict[str, Any]] = {
        v.stem: {
            "windows": v.track.num_windows,
            "gated": int(v.track.gated.sum()),
            "used": int(v.use.sum()),
            "active": int(v.labels[v.use].sum()),
        }
        for v in videos
    }
    for src in cfg.sources:
        block: dict[str, Any] = {"stats": {}}
        series = {v.stem: _variants(v.track, src, cfg.smoothing) for v in videos}
        for variant in ("raw", "smoothed"):
            keep = [v.use & np.isfinite(series[v.stem][variant]) for v in videos]
            scores = np.concatenate([series[v.stem][variant][k] for v, k in zip(videos, keep)])
            labels = np.concatenate([v.labels[k] for v, k in zip(videos, keep)])
            try:
                res = threshold_search(scores, labels, cfg.min_auc_margin)
            except CalibrationError as exc:
                raise rt.JobError(f"{src} ({variant}): {exc}") from exc
            if labels_info["kind"] == "pseudo" and src == cfg.labels.proxy:
                # segment_folder's `auto` does exactly this (the default); the AUC then only says how
                # well smoothing keeps the labels, so it is reported as a note, not as evidence.
                res["note"] = f"pseudo-labels come from {src!r} itself: this AUC is circular, not evidence"
                log.info("%s.%s: %s", src, variant, res["note"])
            if res["warning"]:
                msg = f"{src}.{variant}: {res['warning']}"
                log.warning("ENERGY DOES NOT SEPARATE / UNRELIABLE: %s", msg)
                warnings.append(msg)
            block[variant] = res
            block["stats"][variant] = _stats(scores)
            for v, k in zip(videos, keep):
                entry = per_video[v.stem].setdefault(src, {})
                y, s = v.labels[k], series[v.stem][variant][k]
                entry[f"{variant}_auc"] = roc_auc(s, y) if 0 < y.sum() < y.size else None
                entry[f"{variant}_at_best_f1_thr"] = _agreement(s, y, res["best_f1"]["thr"])
        report[src] = block
    variant = "smoothed" if cfg.smoothing.use_for_seg and cfg.smoothing.method != "none" else "raw"
    report["recommended_key"] = report_key(cfg.sources[0], variant, CRITERIA[0])
    report["per_video"] = per_video
    report["videos"] = [v.stem for v in videos]
    report["warnings"] = warnings
    report["config"] = to_dict(cfg)
    return report


def _agreement(scores: np.ndarray, labels: np.ndarray, thr: float) -> dict[str, float | None]:
    """Per-video F1 of the pooled threshold (None where the video has no positive window)."""
    pred = scores >= thr
    tp = int((pred & labels).sum())
    denom = int(pred.sum() + labels.sum())
    return {
        "f1": 2 * tp / denom if denom else None,
        "positive_share": float(pred.mean()) if pred.size else None,
    }


def run(cfg: CalibrateJobConfig) -> CalibrateResult:
    """Read the energies, build labels, search thresholds, write the report."""
    check(bool(cfg.energy), "energy", "is required (--energy DIR)")
    check(bool(cfg.output), "output", "is required (--output report.json)")
    t0 = time.time()
    try:
        cached = read_cached_videos(cfg.energy)  # no timelines: calibration never maps frames to seconds
    except ValueError as exc:  # a malformed energy.jsonl or segments.json
        raise rt.JobError(str(exc)) from exc
    _warn_other_smoothing(cfg, cached)
    report = calibrate(cfg, cached)
    out = Path(cfg.output)
    write_report(out, report)
    code = 1 if cfg.strict and report["warnings"] else 0
    return CalibrateResult(out, report, time.time() - t0, code)


def summary_text(r: CalibrateResult) -> str:
    """The printed summary: one line per source/variant, then warnings and the key to use."""
    rep = r.report
    lab = rep["labels"]
    how = (
        f"ground truth ({lab['gt']})"
        if lab["kind"] == "ground_truth"
        else f"pseudo-labels: {lab['proxy']} >= {lab['label_threshold']:.4g} ({lab['method']})"
    )
    lines = [
        f"calibrate: {len(rep['videos'])} videos, {lab['n']} windows ({lab['n_pos']} active) in "
        f"{r.seconds:.1f}s -> {r.output}",
        f"  labels: {how}",
    ]
    for src in rep["config"]["sources"]:
        for variant in ("raw", "smoothed"):
            b = rep[src][variant]
            f1, j = b["best_f1"], b["best_j"]
            flag = "" if not b["warning"] else "   <-- UNRELIABLE (see warning)"
            if not b["separates"]:
                flag = "   <-- DOES NOT SEPARATE"
            lines.append(
                f"  {src}.{variant}: AUC {b['auc']:.3f}  best_f1.thr {f1['thr']:.4g} (F1 {f1['f1']:.3f}, "
                f"P {f1['precision']:.3f}, R {f1['recall']:.3f}, FPR {f1['fpr']:.3f})  best_j.thr "
                f"{j['thr']:.4g} (J {j['j']:.3f}){flag}"
            )
    for w in rep["warnings"]:
        lines.append(f"  WARNING: {w}")
    lines.append(f"  keys: {', '.join(threshold_keys(rep))}")
    lines.append(f"  use: segment_folder --report {r.output} --report-key {rep['recommended_key']}")
    return "\n".join(lines)


FLAGS = (
    Flag("--energy", "energy", "segment_folder output folder (*/energy.jsonl)"),
    Flag("--gt", "gt", "ground-truth folder (LAPS JSON or MS-TCN label files); else pseudo-labels"),
    Flag("--fps", "fps", "frame rate of MS-TCN label files", type=float),
    Flag("--output", "output", "report JSON to write"),
    Flag("--strict", "strict", "exit 1 when an energy does not separate the labels", switch=True),
)


def main(argv: list[str] | None = None) -> None:
    run_job("calibrate", __doc__, FLAGS, CalibrateJobConfig, run, summary_text, argv)


if __name__ == "__main__":
    main()

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

**Labels** (one per window):

* with ``--gt`` (LAPS JSON or MS-TCN label files, see ``laps_ray.jobs.evaluate``): a window is
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
the same series that is searched are circular; that is flagged too.

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
from laps_ray.core.calibration import (
    LABEL_METHODS,
    CalibrationError,
    label_threshold,
    roc_auc,
    threshold_search,
)
from laps_ray.core.smoothing import SmoothingConfig, smooth
from laps_ray.io.energy_store import (
    EnergyFormatError,
    EnergyTrack,
    find_energy_files,
    read_energy_jsonl,
    read_run_meta,
)
from laps_ray.io.reports import CRITERIA, REPORT_FORMAT, report_key, threshold_keys, write_report
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import Flag, run_job

log = logging.getLogger("laps_ray.calibrate")

DEFAULT_BACKGROUND_LABELS = ["background", "SIL"]


@dataclass
class LabelRuleConfig:
    """How windows get their active/rest label.

    Attributes:
        method: pseudo-label rule on the proxy (``gmm_log`` | ``otsu``); unused with ground truth.
        proxy: series the pseudo-labels come from (an ``energies`` key; default ``velocity``).
        background_labels: GT labels that mean "no action" (rest).
    """

    method: str = "gmm_log"
    proxy: str = "velocity"
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
    sources: list[str] = field(default_factory=lambda: ["quantized"])
    labels: LabelRuleConfig = field(default_factory=LabelRuleConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
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


@dataclass
class _Video:
    stem: str
    track: EnergyTrack
    use: np.ndarray  # bool (W,) windows that take part
    labels: np.ndarray  # bool (W,)


def gt_window_labels(
    t_start: np.ndarray, t_end: np.ndarray, segments: list, background: list[str] | set[str]
) -> np.ndarray:
    """bool (W,): window mid-time inside a GT segment whose label is not background (rule above)."""
    mid = 0.5 * (np.asarray(t_start, dtype=np.float64) + np.asarray(t_end, dtype=np.float64))
    active = np.zeros(mid.shape, dtype=bool)
    bg = set(background)
    for seg in segments:
        label = seg[2] if len(seg) > 2 else None
        if label is not None and label in bg:
            continue
        active |= (mid >= float(seg[0])) & (mid < float(seg[1]))
    return active


def _stats(x: np.ndarray) -> dict[str, float]:
    q = np.quantile(x, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {
        "min": float(x.min()),
        "max": float(x.max()),
        "mean": float(x.mean()),
        **{f"q{int(p * 100)}": float(v) for p, v in zip((0.1, 0.25, 0.5, 0.75, 0.9), q)},
    }


def _load(cfg: CalibrateJobConfig) -> dict[str, EnergyTrack]:
    files = find_energy_files(cfg.energy)
    tracks: dict[str, EnergyTrack] = {}
    for stem, path in files.items():
        tracks[stem] = read_energy_jsonl(path)
        recorded = read_run_meta(path.parent).energy.get("smoothing")
        if isinstance(recorded, dict):
            mine = to_dict(cfg.smoothing)
            diff = {k: (recorded[k], mine[k]) for k in ("method", "alpha", "window") if k in recorded}
            diff = {k: v for k, v in diff.items() if v[0] != v[1]}
            if diff:
                log.warning(
                    "%s was segmented with other smoothing (%s); the 'smoothed' thresholds use this "
                    "job's smoothing, so set the same one in segment_folder",
                    stem,
                    ", ".join(f"{k}: run {a} vs here {b}" for k, (a, b) in diff.items()),
                )
    return tracks


def _labels(
    cfg: CalibrateJobConfig, tracks: dict[str, EnergyTrack], warnings: list[str]
) -> tuple[list[_Video], dict[str, Any]]:
    videos: list[_Video] = []
    if cfg.gt:
        from laps_ray.jobs.evaluate import load_ground_truth

        gts = load_ground_truth(cfg.gt, cfg.fps)
        without = sorted(set(tracks) - set(gts))
        if without:
            msg = f"{len(without)} video(s) without ground truth left out: {', '.join(without)}"
            log.warning(msg)
            warnings.append(msg)
        stems = sorted(set(tracks) & set(gts))
        if not stems:
            raise rt.JobError(
                f"no energy video has ground truth: energy stems {sorted(tracks)[:5]}, "
                f"GT stems {sorted(gts)[:5]}"
            )
        for stem in stems:
            tr = tracks[stem]
            use = np.ones(tr.num_windows, dtype=bool) if cfg.include_gated else ~tr.gated
            lab = gt_window_labels(tr.t_start, tr.t_end, gts[stem].segments, cfg.labels.background_labels)
            videos.append(_Video(stem, tr, use, lab))
        pooled = np.concatenate([v.labels[v.use] for v in videos])
        info: dict[str, Any] = {
            "kind": "ground_truth",
            "gt": str(cfg.gt),
            "rule": "active iff the window's mid-time lies in a GT segment whose label is not in "
            "background_labels (unlabelled GT segments are active)",
            "background_labels": list(cfg.labels.background_labels),
        }
        if pooled.size and pooled.all():
            raise rt.JobError(
                "ground truth marks every window active: its segments tile the video and none has a label "
                f"in labels.background_labels={cfg.labels.background_labels}; list the rest labels there"
            )
    else:
        proxy = cfg.labels.proxy
        series = {s: tracks[s].series(proxy) for s in sorted(tracks)}
        uses = {}
        for stem, tr in sorted(tracks.items()):
            base = np.ones(tr.num_windows, dtype=bool) if cfg.include_gated else ~tr.gated
            uses[stem] = base & np.isfinite(series[stem])
        values = np.concatenate([series[s][uses[s]] for s in sorted(tracks)])
        if values.size == 0:
            raise rt.JobError(f"no window with a finite {proxy!r} value to build pseudo-labels from")
        try:
            thr = label_threshold(values, cfg.labels.method)
        except CalibrationError as exc:
            raise rt.JobError(f"pseudo-labels from {proxy!r} with {cfg.labels.method}: {exc}") from exc
        for stem in sorted(tracks):
            videos.append(_Video(stem, tracks[stem], uses[stem], series[stem] >= thr))
        info = {
            "kind": "pseudo",
            "method": cfg.labels.method,
            "proxy": proxy,
            "label_threshold": float(thr),
            "rule": f"active iff {proxy} >= label_threshold",
        }
    pooled = np.concatenate([v.labels[v.use] for v in videos])
    info.update(n=int(pooled.size), n_pos=int(pooled.sum()), n_neg=int(pooled.size - pooled.sum()))
    info["n_gated_excluded"] = 0 if cfg.include_gated else int(sum(v.track.gated.sum() for v in videos))
    return videos, info


def _variants(track: EnergyTrack, source: str, smoothing: SmoothingConfig) -> dict[str, np.ndarray]:
    raw = track.series(source)
    # Gated windows have no value for some series (null -> NaN); the stream feeds them as 0.
    fed = np.where(np.isfinite(raw), raw, 0.0)
    return {"raw": raw, "smoothed": smooth(fed, smoothing)}


def calibrate(cfg: CalibrateJobConfig, tracks: dict[str, EnergyTrack]) -> dict[str, Any]:
    """The report (format in ``laps_ray.io.reports``) for already-read energy tracks."""
    warnings: list[str] = []
    videos, labels_info = _labels(cfg, tracks, warnings)
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
                circ = f"pseudo-labels come from {src!r} itself: this AUC is circular, not evidence"
                res["warning"] = f"{res['warning']}; {circ}" if res["warning"] else circ
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
        tracks = _load(cfg)
    except EnergyFormatError as exc:
        raise rt.JobError(str(exc)) from exc
    report = calibrate(cfg, tracks)
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

r"""sweep_thresholds: Ray Tune over the segmentation settings, on cached energies (no video is decoded).

Local (starts or joins a Ray instance on this machine)::

    python -m laps_ray.jobs.sweep_thresholds --energy out/ --gt gt/ [--fps 15] --output sweep/

On a cluster (same command after ``--``)::

    ray job submit --working-dir . -- \
        python -m laps_ray.jobs.sweep_thresholds --energy out/ --gt gt/ --output sweep/

Options: ``--config configs/sweep_thresholds.yaml``, ``key=value`` overrides (e.g.
``space.threshold=[0.5,1.0] space.up_count=[1,2,3] search=random num_samples=40``). Then::

    python -m laps_ray.jobs.segment_folder --config sweep/best.yaml --input videos/ --output out2/

**Inputs.** ``--energy`` is a segment_folder output folder: per video ``<stem>/energy.jsonl`` (every
window's raw energies and code ids) and ``<stem>/segments.json`` (``params.T/stride/target_fps``;
``T``/``stride``/``target_fps`` in this config override, 0 = take them from there). The driver reads
the arrays once and hands them to the trials with ``tune.with_parameters`` (one object-store copy);
a trial only smooths, runs the state machine (``core.segmentation.segment_offline``) and scores. Video
modules are never imported. Change-point scores (``code_mmd`` on the cached code ids) are computed once
per ``k`` by the driver.

**Scoring.** Ground truth (``--gt``: LAPS JSON or MS-TCN label files with ``--fps``, as in
``evaluate``) or, without it, pseudo-label segments: windows whose proxy (``pseudo.proxy``, the
velocity energy) is ``>=`` a ``pseudo.method`` threshold pooled over videos, runs of at least
``pseudo.min_windows`` windows, each window standing for the ``stride`` frames around its centre.
Segments in processed frames are mapped to seconds by interpolating the windows' knots (processed
frame ``w*stride`` -> ``t_start[w]``, ``w*stride+T-1`` -> ``t_end[w]``); a segment ends one processed
frame after its last frame. Score = boundary F1 at ``tolerance_sec`` (optimal matching, shared
boundaries once; ``core.boundary_metrics``), mean over videos; P/R and F1 at every ``tolerances_sec``
are reported too. Ties go to the higher mean F1 over all tolerances, then precision, then the fewest
settings changed from the base values (when the data cannot tell, keep the defaults), then trial order.

**Search space** (``space.*``): a list of candidates per setting; an empty list keeps the base value
(``smoothing.*``, ``segmentation.*``). The threshold comes from ``space.threshold`` (absolute values)
or, when that is empty, ``space.threshold_quantiles`` (quantiles of the pooled non-gated segmentation
signal, resolved per trial because smoothing changes the signal; the absolute value is reported and
written). ``search: grid`` = every combination; ``random`` = ``num_samples`` draws
(``BasicVariantGenerator``, seeded). No scheduler: each trial is a single evaluation (one report), so
early stopping such as ASHA has nothing to stop. Trials ask for ``resources.cpus_per_trial`` CPUs
(0.5: four at a time on 2 cores).

**Outputs** (``--output DIR``): ``best.yaml`` (``energy:`` {source, mode, smoothing} and
``segmentation:`` {threshold, hysteresis_ratio, up_count, down_count, cooldown_windows,
min_duration_sec, max_duration_sec, align, changepoint} — the field names of ``EnergyConfig`` and
``SegmentationConfig``, which segment_folder's config nests under those keys), ``trials.csv`` and
``trials.json`` (every trial, best first, with its settings and scores), ``result.json`` and
``config.yaml``; Tune's own files under ``DIR/tune/`` (its ``storage_path``; on a multi-node
cluster trial folders stay on the nodes unless DIR is shared storage — our tables come from the
driver and are complete either way).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from laps_ray.config import ConfigError, check, check_choice, to_dict
from laps_ray.core.boundary_metrics import DEFAULT_MERGE_TOL_SEC, boundary_metrics, fmt_num
from laps_ray.core.calibration import LABEL_METHODS, CalibrationError, label_threshold
from laps_ray.core.changepoint import ChangePointConfig, changepoint_scores
from laps_ray.core.segmentation import SegmentationConfig, WindowGeometry, segment_offline
from laps_ray.core.smoothing import SmoothingConfig, for_segmentation, smooth
from laps_ray.io.atomic import write_json_atomic, write_text_atomic
from laps_ray.io.energy_store import (
    EnergyFormatError,
    EnergyTrack,
    find_energy_files,
    frame_time_knots,
    read_energy_jsonl,
    read_run_meta,
)
from laps_ray.io.run_manifest import versions
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import Flag, run_job

log = logging.getLogger("laps_ray.sweep_thresholds")

SEARCHES = ("grid", "random")
MAX_GRID = 5000
# Latent sources in energies{} are token_diff_l2_mean (segment_folder's contract); velocity ignores mode.
ENERGIES_MODE = "token_diff_l2_mean"


@dataclass
class SweepSpaceConfig:
    """Candidates per setting; an empty list keeps the base value."""

    threshold: list[float] = field(default_factory=list)
    threshold_quantiles: list[float] = field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9])
    hysteresis_ratio: list[float] = field(default_factory=list)
    up_count: list[int] = field(default_factory=list)
    down_count: list[int] = field(default_factory=list)
    cooldown_windows: list[int] = field(default_factory=list)
    smoothing_method: list[str] = field(default_factory=list)
    smoothing_alpha: list[float] = field(default_factory=list)
    smoothing_window: list[int] = field(default_factory=list)
    min_duration_sec: list[float] = field(default_factory=list)
    max_duration_sec: list[float] = field(default_factory=list)
    changepoint_enable: list[bool] = field(default_factory=list)
    changepoint_k: list[int] = field(default_factory=list)
    changepoint_threshold: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        check(
            all(0 <= q <= 1 for q in self.threshold_quantiles),
            "space.threshold_quantiles",
            "must be in [0, 1]",
        )
        check(all(math.isfinite(t) for t in self.threshold), "space.threshold", "must be finite")
        check(all(k >= 1 for k in self.changepoint_k), "space.changepoint_k", "must be >= 1")


@dataclass
class PseudoLabelConfig:
    """Pseudo-label segments when there is no ground truth."""

    proxy: str = "velocity"
    method: str = "gmm_log"
    min_windows: int = 2

    def __post_init__(self) -> None:
        check_choice(self.method, LABEL_METHODS, "pseudo.method")
        check(self.min_windows >= 1, "pseudo.min_windows", f"must be >= 1, got {self.min_windows}")


@dataclass
class SweepResourcesConfig:
    """Trial resources: small, since a trial is a few milliseconds to seconds of numpy."""

    cpus_per_trial: float = 0.5
    max_concurrent_trials: int = 4

    def __post_init__(self) -> None:
        check(self.cpus_per_trial > 0, "resources.cpus_per_trial", "must be > 0 (Tune rejects 0)")
        check(self.max_concurrent_trials >= 1, "resources.max_concurrent_trials", "must be >= 1")


@dataclass
class SweepJobConfig:
    """Settings of the sweep_thresholds job (``configs/sweep_thresholds.yaml``)."""

    input: str = ""
    gt: str = ""
    fps: float = 0.0
    output: str = ""
    source: str = "energy"
    T: int = 0
    stride: int = 0
    target_fps: float = 0.0
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    space: SweepSpaceConfig = field(default_factory=SweepSpaceConfig)
    search: str = "grid"
    num_samples: int = 20
    seed: int = 0
    tolerance_sec: float = 2.0
    tolerances_sec: list[float] = field(default_factory=lambda: [1.0, 2.0, 5.0])
    pseudo: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    resources: SweepResourcesConfig = field(default_factory=SweepResourcesConfig)

    def __post_init__(self) -> None:
        check_choice(self.search, SEARCHES, "search")
        check(self.num_samples >= 1, "num_samples", f"must be >= 1, got {self.num_samples}")
        check(self.tolerance_sec >= 0, "tolerance_sec", f"must be >= 0, got {self.tolerance_sec}")
        check(all(t >= 0 for t in self.tolerances_sec), "tolerances_sec", "must be >= 0")
        check(self.T == 0 or self.T >= 2, "T", f"must be 0 (from segments.json) or >= 2, got {self.T}")
        check(self.stride >= 0, "stride", f"must be >= 0, got {self.stride}")
        check(self.target_fps >= 0, "target_fps", f"must be >= 0, got {self.target_fps}")
        check(self.source != "energy_smooth", "source", "'energy_smooth' is already smoothed; use 'energy'")


# --------------------------------------------------------------------------------------------
# What the trials get (one object-store copy)


@dataclass
class SweepVideo:
    """One video's cached arrays, ready for the state machine."""

    stem: str
    energy: np.ndarray  # (W,) raw energy of the chosen source (NaN -> 0, as the stream feeds it)
    gated: np.ndarray  # (W,) bool
    geom: WindowGeometry
    knots_frame: np.ndarray  # processed-frame -> seconds interpolation knots
    knots_sec: np.ndarray
    duration: float
    gt: list[tuple[float, float]]  # reference segments in seconds
    changes: dict[int, np.ndarray] = field(default_factory=dict)  # k -> (W,) code_mmd scores


@dataclass
class SweepData:
    """Everything a trial needs: videos, base settings and scoring settings."""

    videos: list[SweepVideo]
    smoothing: SmoothingConfig
    segmentation: SegmentationConfig
    tolerance_sec: float
    tolerances_sec: list[float]


def frames_to_seconds(video: SweepVideo, first: np.ndarray, last: np.ndarray) -> list[tuple[float, float]]:
    """Processed-frame ranges ``[first, last]`` (inclusive) -> ``(start_sec, end_sec)``.

    ``end_sec`` is one processed frame (``1 / target_fps``) after the time of ``last``.
    """
    s = np.interp(np.asarray(first, dtype=np.float64), video.knots_frame, video.knots_sec)
    e = np.interp(np.asarray(last, dtype=np.float64), video.knots_frame, video.knots_sec)
    e = e + 1.0 / video.geom.target_fps
    return [(float(a), float(b)) for a, b in zip(s, e)]


def settings_from_params(
    data: SweepData, params: dict[str, Any]
) -> tuple[SmoothingConfig, SegmentationConfig]:
    """Base settings with the trial's ``params`` applied (threshold left to the caller).

    Raises:
        ConfigError: an invalid combination (e.g. max_duration_sec <= min_duration_sec).
    """
    sm = data.smoothing
    smoothing = SmoothingConfig(
        method=params.get("smoothing_method", sm.method),
        alpha=params.get("smoothing_alpha", sm.alpha),
        window=params.get("smoothing_window", sm.window),
        use_for_seg=sm.use_for_seg,
    )
    base = data.segmentation
    cp = base.changepoint
    changepoint = ChangePointConfig(
        enable=params.get("changepoint_enable", cp.enable),
        method=cp.method,
        k=params.get("changepoint_k", cp.k),
        threshold=params.get("changepoint_threshold", cp.threshold),
        min_gap_windows=cp.min_gap_windows,
        min_valid_windows=cp.min_valid_windows,
    )
    seg = SegmentationConfig(
        threshold=params.get("threshold", base.threshold),
        hysteresis_ratio=params.get("hysteresis_ratio", base.hysteresis_ratio),
        up_count=params.get("up_count", base.up_count),
        down_count=params.get("down_count", base.down_count),
        cooldown_windows=params.get("cooldown_windows", base.cooldown_windows),
        min_duration_sec=params.get("min_duration_sec", base.min_duration_sec),
        max_duration_sec=params.get("max_duration_sec", base.max_duration_sec),
        align=base.align,
        changepoint=changepoint,
    )
    return smoothing, seg


def score_settings(data: SweepData, params: dict[str, Any]) -> dict[str, Any]:
    """Segment every video with the trial's settings and score it (the trial body; pure numpy).

    Returns:
        ``{"score", "f1", "precision", "recall", "f1@<t>s", "precision@<t>s", "recall@<t>s",
        "threshold", "num_segments", "error"}``; ``score`` is -1 for an invalid combination.
    """
    try:
        smoothing, seg = settings_from_params(data, params)
    except ConfigError as exc:
        return {"score": -1.0, "error": str(exc)}
    signals = [for_segmentation(v.energy, smooth(v.energy, smoothing), smoothing) for v in data.videos]
    if "threshold_quantile" in params:
        pooled = np.concatenate([s[~v.gated] for s, v in zip(signals, data.videos)])
        if pooled.size == 0:
            return {"score": -1.0, "error": "every window is gated: no threshold quantile"}
        seg = replace(seg, threshold=float(np.quantile(pooled, params["threshold_quantile"])))
    if seg.threshold is None:
        return {"score": -1.0, "error": "no threshold: set space.threshold, space.threshold_quantiles or one"}
    cp = seg.changepoint
    tols = sorted(set(data.tolerances_sec) | {data.tolerance_sec})
    rows = []
    n_segments = 0
    for video, signal in zip(data.videos, signals):
        changes = video.changes.get(cp.k) if cp.enable else None
        if cp.enable and changes is None:
            return {"score": -1.0, "error": f"no change scores cached for changepoint.k={cp.k}"}
        try:
            segs = segment_offline(signal, seg, video.geom, changes)
        except ValueError as exc:
            return {"score": -1.0, "error": f"{video.stem}: {exc}"}
        n_segments += len(segs)
        pred = frames_to_seconds(
            video, np.array([s.start_frame for s in segs]), np.array([s.end_frame for s in segs])
        )
        merge = max(DEFAULT_MERGE_TOL_SEC, 0.5 / video.geom.target_fps)
        rows.append(boundary_metrics(pred, video.gt, video.duration, tols, merge))
    out: dict[str, Any] = {"threshold": float(seg.threshold), "num_segments": n_segments, "error": ""}
    for t in tols:
        for name in ("precision", "recall", "f1"):
            out[f"{name}@{fmt_num(t)}s"] = float(np.mean([r[f"boundary/{name}@{fmt_num(t)}s"] for r in rows]))
    main = fmt_num(data.tolerance_sec)
    out.update(f1=out[f"f1@{main}s"], precision=out[f"precision@{main}s"], recall=out[f"recall@{main}s"])
    out["score"] = out["f1"]
    return out


def _trial(config: dict[str, Any], data: SweepData | None = None) -> None:
    """Tune function trainable: one evaluation, one report."""
    from ray import tune

    metrics = score_settings(data, config)
    # Evidence for the "no video is touched" contract: the video module is never loaded here.
    metrics["video_module_loaded"] = "laps_ray.io.video" in sys.modules
    tune.report(metrics)


# --------------------------------------------------------------------------------------------
# Driver


@dataclass
class SweepResult:
    output: Path
    best: dict[str, Any]
    trials: list[dict[str, Any]]
    seconds: float
    num_videos: int
    labels: str
    tolerance_sec: float
    exit_code: int = 0


def param_lists(cfg: SweepJobConfig) -> dict[str, list]:
    """``{param: candidates}`` of every swept setting (threshold as absolute values or quantiles)."""
    sp = cfg.space
    out: dict[str, list] = {}
    if sp.threshold:
        out["threshold"] = list(sp.threshold)
    elif sp.threshold_quantiles:
        out["threshold_quantile"] = list(sp.threshold_quantiles)
    elif cfg.segmentation.threshold is None:
        raise ConfigError(
            "config key 'space.threshold': no threshold to use; give space.threshold, "
            "space.threshold_quantiles or segmentation.threshold"
        )
    for name in (
        "hysteresis_ratio",
        "up_count",
        "down_count",
        "cooldown_windows",
        "smoothing_method",
        "smoothing_alpha",
        "smoothing_window",
        "min_duration_sec",
        "max_duration_sec",
        "changepoint_enable",
        "changepoint_k",
        "changepoint_threshold",
    ):
        values = list(getattr(sp, name))
        if values:
            check(len(set(values)) == len(values), f"space.{name}", f"has duplicates: {values}")
            out[name] = values
    return out


def build_param_space(cfg: SweepJobConfig, lists: dict[str, list]) -> tuple[dict[str, Any], int]:
    """Tune ``param_space`` and ``num_samples`` for grid or random search."""
    from ray import tune

    if cfg.search == "grid":
        size = math.prod(len(v) for v in lists.values())
        check(size <= MAX_GRID, "search", f"grid has {size} combinations (> {MAX_GRID}); use search=random")
        return {k: tune.grid_search(v) for k, v in lists.items()}, 1
    return {k: tune.choice(v) for k, v in lists.items()}, cfg.num_samples


def _geometry(cfg: SweepJobConfig, stem: str, meta: Any, path: Path) -> WindowGeometry:
    T = cfg.T or meta.T
    stride = cfg.stride or meta.stride
    fps = cfg.target_fps or meta.target_fps
    missing = [n for n, v in (("T", T), ("stride", stride), ("target_fps", fps)) if not v]
    if missing:
        raise rt.JobError(
            f"{stem}: window geometry {missing} unknown: {path.parent / 'segments.json'} has no params "
            f"for it; set {', '.join(missing)} in the config"
        )
    return WindowGeometry(T=int(T), stride=int(stride), target_fps=float(fps), num_frames=meta.num_frames)


def _pseudo_segments(
    cfg: SweepJobConfig, tracks: dict[str, EnergyTrack], videos: dict[str, SweepVideo]
) -> dict[str, Any]:
    proxy = cfg.pseudo.proxy
    values = {s: t.series(proxy) for s, t in tracks.items()}
    use = {s: ~t.gated & np.isfinite(values[s]) for s, t in tracks.items()}
    pooled = np.concatenate([values[s][use[s]] for s in tracks])
    if pooled.size == 0:
        raise rt.JobError(f"no non-gated window with a finite {proxy!r}: cannot build pseudo-labels")
    try:
        thr = label_threshold(pooled, cfg.pseudo.method)
    except CalibrationError as exc:
        raise rt.JobError(f"pseudo-labels from {proxy!r}: {exc}") from exc
    for stem, v in videos.items():
        active = use[stem] & (values[stem] >= thr)
        T, stride = v.geom.T, v.geom.stride
        runs = []
        w = 0
        while w < active.size:
            if not active[w]:
                w += 1
                continue
            w1 = w
            while w1 + 1 < active.size and active[w1 + 1]:
                w1 += 1
            if w1 - w + 1 >= cfg.pseudo.min_windows:
                runs.append((w, w1))
            w = w1 + 1
        # Each window stands for the `stride` frames around its centre frame w*stride + T//2.
        first = np.array([a * stride + T // 2 - stride // 2 for a, _ in runs], dtype=np.float64)
        last = np.array([b * stride + T // 2 - stride // 2 + stride - 1 for _, b in runs], dtype=np.float64)
        v.gt = frames_to_seconds(v, first, last)
    if cfg.source == proxy:
        log.warning("pseudo-labels come from %r, the swept energy itself: the scores are circular", proxy)
    return {"kind": "pseudo", "proxy": proxy, "method": cfg.pseudo.method, "label_threshold": float(thr)}


def load_sweep_data(cfg: SweepJobConfig) -> tuple[SweepData, dict[str, Any], dict[str, Any]]:
    """Read the cached energies (+ GT) into :class:`SweepData`; also returns labels info and energy info."""
    files = find_energy_files(cfg.input)
    tracks: dict[str, EnergyTrack] = {}
    metas: dict[str, Any] = {}
    try:
        for stem, path in files.items():
            tracks[stem] = read_energy_jsonl(path)
            metas[stem] = read_run_meta(path.parent)
    except EnergyFormatError as exc:
        raise rt.JobError(str(exc)) from exc
    labels: dict[str, Any]
    gts: dict[str, Any] = {}
    if cfg.gt:
        from laps_ray.jobs.evaluate import load_ground_truth

        gts = load_ground_truth(cfg.gt, cfg.fps)
        without = sorted(set(tracks) - set(gts))
        if without:
            log.warning("%d video(s) without ground truth left out: %s", len(without), ", ".join(without))
        stems = sorted(set(tracks) & set(gts))
        if not stems:
            raise rt.JobError(
                f"no energy video has ground truth (energy stems {sorted(tracks)[:5]}, GT {sorted(gts)[:5]})"
            )
        tracks = {s: tracks[s] for s in stems}
        labels = {"kind": "ground_truth", "gt": str(cfg.gt), "left_out": without}
    videos: dict[str, SweepVideo] = {}
    for stem, tr in tracks.items():
        meta = metas[stem]
        try:
            raw = tr.series(cfg.source)
        except EnergyFormatError as exc:
            raise rt.JobError(str(exc)) from exc
        geom = _geometry(cfg, stem, meta, tr.path)
        xp, fp = frame_time_knots(tr, geom.T, geom.stride)
        if cfg.gt:
            duration = gts[stem].duration
            ref = [(float(s[0]), float(s[1])) for s in gts[stem].segments]
        else:
            duration = meta.duration_sec or float(tr.t_end[-1] + 1.0 / geom.target_fps)
            ref = []
        videos[stem] = SweepVideo(
            stem, np.where(np.isfinite(raw), raw, 0.0), tr.gated.copy(), geom, xp, fp, duration, ref
        )
    if not cfg.gt:
        labels = _pseudo_segments(cfg, tracks, videos)

    # Change-point scores once per k (code ids are cached; latent_r2 would need vectors we do not keep).
    cp = cfg.segmentation.changepoint
    enables = cfg.space.changepoint_enable or [cp.enable]
    if any(enables):
        if cp.method != "code_mmd":
            raise ConfigError(
                "config key 'segmentation.changepoint.method': sweeps need 'code_mmd' (energy.jsonl keeps "
                f"code ids, not quantized vectors), got {cp.method!r}"
            )
        for stem, tr in tracks.items():
            if tr.codes.shape[1] == 0:
                raise rt.JobError(f"{tr.path}: no window has code ids; change points cannot be swept")
            for k in cfg.space.changepoint_k or [cp.k]:
                kcfg = ChangePointConfig(enable=True, k=k, min_valid_windows=min(cp.min_valid_windows, k))
                videos[stem].changes[k] = changepoint_scores(tr.codes, None, kcfg, valid=tr.has_codes)

    energy_info = _energy_info(cfg, metas)
    data = SweepData(
        videos=[videos[s] for s in sorted(videos)],
        smoothing=cfg.smoothing,
        segmentation=cfg.segmentation,
        tolerance_sec=cfg.tolerance_sec,
        tolerances_sec=list(cfg.tolerances_sec),
    )
    return data, labels, energy_info


def _energy_info(cfg: SweepJobConfig, metas: dict[str, Any]) -> dict[str, str]:
    """``source`` and ``mode`` of the swept series, for best.yaml's ``energy:``."""
    if cfg.source != "energy":
        return {"source": cfg.source, "mode": ENERGIES_MODE}
    recorded = {(m.energy.get("source"), m.energy.get("mode")) for m in metas.values()}
    recorded.discard((None, None))
    if len(recorded) > 1:
        raise rt.JobError(f"videos were segmented with different energies {sorted(map(str, recorded))}")
    if not recorded:
        log.warning("segments.json records no params.energy; best.yaml gets the default energy source/mode")
        return {"source": "quantized", "mode": ENERGIES_MODE}
    src, mode = recorded.pop()
    return {"source": str(src), "mode": str(mode or ENERGIES_MODE)}


def base_values(cfg: SweepJobConfig) -> dict[str, Any]:
    """The base value of every swept parameter name (threshold ones excluded)."""
    seg, sm, cp = cfg.segmentation, cfg.smoothing, cfg.segmentation.changepoint
    return {
        "hysteresis_ratio": seg.hysteresis_ratio,
        "up_count": seg.up_count,
        "down_count": seg.down_count,
        "cooldown_windows": seg.cooldown_windows,
        "smoothing_method": sm.method,
        "smoothing_alpha": sm.alpha,
        "smoothing_window": sm.window,
        "min_duration_sec": seg.min_duration_sec,
        "max_duration_sec": seg.max_duration_sec,
        "changepoint_enable": cp.enable,
        "changepoint_k": cp.k,
        "changepoint_threshold": cp.threshold,
    }


def _rank_key(row: dict[str, Any], tols: list[str], base: dict[str, Any]) -> tuple:
    """Sort key, best first: score, mean F1 over all tolerances, precision, fewest changes from base."""
    f1s = [row.get(f"f1@{t}s", 0.0) for t in tols]
    changed = sum(1 for k, v in base.items() if k in row and row[k] != v)
    return (-row.get("score", -1.0), -float(np.mean(f1s)), -row.get("precision", 0.0), changed)


def best_settings(
    data: SweepData, params: dict[str, Any], threshold: float, energy_info: dict[str, str]
) -> dict[str, Any]:
    """The ``energy:`` / ``segmentation:`` document of a trial (what segment_folder --config reads)."""
    smoothing, seg = settings_from_params(
        data, {k: v for k, v in params.items() if k != "threshold_quantile"}
    )
    seg = replace(seg, threshold=float(threshold))
    return {
        "energy": {
            "source": energy_info["source"],
            "mode": energy_info["mode"],
            "smoothing": to_dict(smoothing),
        },
        "segmentation": to_dict(seg),
    }


def run(cfg: SweepJobConfig) -> SweepResult:
    """Load the cached energies (no video is decoded), then start (or join) Ray and sweep."""
    check(bool(cfg.input), "input", "is required (--energy DIR)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    t0 = time.time()
    out_dir = Path(cfg.output).resolve()
    lists = param_lists(cfg)
    data, labels, energy_info = load_sweep_data(cfg)
    n_windows = sum(v.energy.size for v in data.videos)
    log.info(
        "%d videos, %d windows, labels: %s; swept: %s", len(data.videos), n_windows, labels["kind"], lists
    )

    rt.prepare_output_dir(out_dir)
    rt.init_ray()  # after every input was checked

    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    space, num_samples = build_param_space(cfg, lists)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    concurrent = max(
        1, min(cfg.resources.max_concurrent_trials, int(cpus // cfg.resources.cpus_per_trial) or 1)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    # Metric names like "f1@2.0s" make tensorboardX log one INFO line per name and trial.
    logging.getLogger("tensorboardX").setLevel(logging.WARNING)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, data=data), {"cpu": cfg.resources.cpus_per_trial}
    )
    name = time.strftime("sweep_%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            num_samples=num_samples,
            # The concurrency cap goes to the generator: Tune ignores max_concurrent_trials with one.
            search_alg=BasicVariantGenerator(max_concurrent=concurrent, random_state=cfg.seed),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(out_dir / "tune"), verbose=0),
    )
    with rt.reclaim_placement_groups(), rt.tune_output_as_configured():
        grid = tuner.fit()

    tols = [fmt_num(t) for t in sorted(set(cfg.tolerances_sec) | {cfg.tolerance_sec})]
    trials: list[dict[str, Any]] = []
    for i, res in enumerate(grid):
        params = {k: res.config[k] for k in lists if k in (res.config or {})}
        row: dict[str, Any] = {"trial": i, "trial_id": (res.metrics or {}).get("trial_id", ""), **params}
        if res.error is not None:
            row.update(score=-1.0, error=f"{type(res.error).__name__}: {res.error}".splitlines()[0])
        else:
            m = res.metrics or {}
            keep = [
                "score",
                "f1",
                "precision",
                "recall",
                "threshold",
                "num_segments",
                "error",
                "video_module_loaded",
            ]
            keep += [f"{n}@{t}s" for t in tols for n in ("precision", "recall", "f1")]
            row.update({k: m[k] for k in keep if k in m})
        trials.append(row)
    base = base_values(cfg)
    trials.sort(key=lambda r: (*_rank_key(r, tols, base), r["trial"]))
    for rank, row in enumerate(trials):
        row["rank"] = rank
    valid = [r for r in trials if r.get("score", -1.0) >= 0]
    if not valid:
        reasons = sorted({r.get("error", "") for r in trials})
        raise rt.JobError(f"all {len(trials)} trials failed or were invalid: {'; '.join(reasons)[:500]}")
    best = valid[0]
    best_params = {k: best[k] for k in lists if k in best}
    doc = best_settings(data, best_params, best["threshold"], energy_info)
    header = (
        f"# sweep_thresholds best settings: boundary F1@{fmt_num(cfg.tolerance_sec)}s = {best['f1']:.4f} "
        f"(P {best['precision']:.3f}, R {best['recall']:.3f}) over {len(data.videos)} videos, labels: "
        f"{labels['kind']}\n# use: python -m laps_ray.jobs.segment_folder --config best.yaml ...\n"
    )
    write_text_atomic(out_dir / "best.yaml", header + yaml.safe_dump(doc, sort_keys=False))
    write_json_atomic(out_dir / "trials.json", trials)
    write_text_atomic(out_dir / "trials.csv", _csv(trials))
    seconds = time.time() - t0
    result = {
        "job": "sweep_thresholds",
        "best": {**best, "settings": doc},
        "num_trials": len(trials),
        "num_invalid": len(trials) - len(valid),
        "search": cfg.search,
        "swept": lists,
        "videos": [v.stem for v in data.videos],
        "num_windows": n_windows,
        "labels": labels,
        "energy": energy_info,
        "tolerance_sec": cfg.tolerance_sec,
        "tune_dir": str(out_dir / "tune" / name),
        "seconds": round(seconds, 3),
        "versions": versions(),
        "config": to_dict(cfg),
    }
    write_json_atomic(out_dir / "result.json", result)
    return SweepResult(out_dir, best, trials, seconds, len(data.videos), labels["kind"], cfg.tolerance_sec)


def _csv(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    first = ["rank", "trial", "score"]
    cols = [c for c in first if c in cols] + [c for c in cols if c not in first]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def summary_text(r: SweepResult) -> str:
    """The printed summary."""
    b = r.best
    params = ", ".join(f"{k}={v}" for k, v in b.items() if k in _PARAM_NAMES and k != "threshold")
    lines = [
        f"sweep_thresholds: {len(r.trials)} trials on {r.num_videos} videos ({r.labels} labels) in "
        f"{r.seconds:.1f}s -> {r.output}",
        f"  best: F1@{fmt_num(r.tolerance_sec)}s {b['f1']:.4f} (P {b['precision']:.3f}, "
        f"R {b['recall']:.3f}), threshold {b['threshold']:.4g}; {params}",
        "  wrote best.yaml (segment_folder --config), trials.csv, trials.json, result.json",
    ]
    return "\n".join(lines)


_PARAM_NAMES = {f.name for f in SweepSpaceConfig.__dataclass_fields__.values()} | {"threshold_quantile"}


FLAGS = (
    Flag("--energy", "input", "segment_folder output folder (*/energy.jsonl, */segments.json)"),
    Flag("--gt", "gt", "ground-truth folder (LAPS JSON or MS-TCN label files); else pseudo-labels"),
    Flag("--fps", "fps", "frame rate of MS-TCN label files", type=float),
    Flag("--output", "output", "output folder"),
    Flag("--num-samples", "num_samples", "random search: trials", type=int),
)


def main(argv: list[str] | None = None) -> None:
    run_job("sweep_thresholds", __doc__, FLAGS, SweepJobConfig, run, summary_text, argv)


if __name__ == "__main__":
    main()

"""The computation of one ``sweep_thresholds`` trial: settings → segments → seconds → boundary F1.

**Swept parameters** are named once, in :data:`SWEPT`: each swept name (a ``space.<name>`` list of the
job config, a column of trials.csv) → the dotted key it sets in :class:`SegmentSettings`, which is
exactly what ``best.yaml`` holds and ``segment_folder --config`` reads (``energy:`` /
``segmentation:``). One generic function, :func:`laps_ray.config.with_overrides`, applies ``{dotted key:
value}`` to the base settings; it rebuilds every dataclass on a changed path, so each one's
``__post_init__`` rejects an invalid combination (a trial then scores -1 with the reason).
``threshold_quantile`` (:data:`QUANTILE`) is not a config key: a trial resolves it to
``segmentation.threshold`` on its own smoothed signal.

**A trial** does per video what ``segment_folder`` does (``laps_ray.pipeline.segment.segment_video``):
causal smoothing, the signal the state machine sees, change-point scores (cached per ``k``), the state
machine (``core.segmentation.segment_offline``), then processed frames → seconds with the video's
:class:`~laps_ray.core.timeline.SourceTimeline` (THE rule; ``tests/unit/test_sweep_equals_evaluate.py``
checks that the sweep's score equals ``evaluate``'s score of segment_folder's output). Boundary
P/R/F1 at every tolerance (``core.metrics``) with half a frame of the video's scoring frame rate
(``laps_ray.io.ground_truth.scoring_fps``) as merge tolerance, as ``evaluate``; mean over videos.
Pure numpy on cached arrays: no video module is imported.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from laps_ray.config import ConfigError, get_key, with_overrides
from laps_ray.core.changepoint import changepoint_scores
from laps_ray.core.energy import EnergyConfig
from laps_ray.core.metrics import boundary_metrics, fmt_num, merge_tol_for_fps
from laps_ray.core.segmentation import SegmentationConfig, WindowGeometry, segment_offline
from laps_ray.core.smoothing import for_segmentation, smooth
from laps_ray.core.timeline import SourceTimeline
from laps_ray.io.ground_truth import scoring_fps
from laps_ray.io.labels import Segment
from laps_ray.pipeline.calibration_data import CalibrationData, CalibrationDataError, fed_series

log = logging.getLogger(__name__)

# Swept name -> dotted key in SegmentSettings. THE list of swept parameters (order = trials.csv order).
SWEPT: dict[str, str] = {
    "threshold": "segmentation.threshold",
    "hysteresis_ratio": "segmentation.hysteresis_ratio",
    "up_count": "segmentation.up_count",
    "down_count": "segmentation.down_count",
    "cooldown_windows": "segmentation.cooldown_windows",
    "smoothing_method": "energy.smoothing.method",
    "smoothing_alpha": "energy.smoothing.alpha",
    "smoothing_window": "energy.smoothing.window",
    "min_duration_sec": "segmentation.min_duration_sec",
    "max_duration_sec": "segmentation.max_duration_sec",
    "changepoint_enable": "segmentation.changepoint.enable",
    "changepoint_k": "segmentation.changepoint.k",
    "changepoint_threshold": "segmentation.changepoint.threshold",
}
QUANTILE = "threshold_quantile"  # a trial parameter, resolved to segmentation.threshold per trial
# Latent sources in energies{} are token_diff_l2_mean (segment_folder's contract); velocity ignores mode.
ENERGIES_MODE = "token_diff_l2_mean"


@dataclass
class SegmentSettings:
    """What segment_folder's config nests and best.yaml holds: ``energy:`` and ``segmentation:``."""

    energy: EnergyConfig = field(default_factory=EnergyConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)


def settings_for(base: SegmentSettings, params: Mapping[str, Any]) -> SegmentSettings:
    """``base`` with a trial's swept ``params`` (names of :data:`SWEPT`) applied; ``threshold_quantile``
    is left to the caller. Raises ConfigError for an invalid combination."""
    return with_overrides(base, {SWEPT[k]: v for k, v in params.items() if k in SWEPT})


def trial_best(base: SegmentSettings, params: Mapping[str, Any], threshold: float) -> SegmentSettings:
    """A trial's settings with its resolved absolute ``threshold``: what best.yaml holds."""
    return with_overrides(settings_for(base, params), {SWEPT["threshold"]: float(threshold)})


def base_values(base: SegmentSettings) -> dict[str, Any]:
    """The base value of every swept name (threshold excluded: it is always chosen)."""
    return {name: get_key(base, key) for name, key in SWEPT.items() if name != "threshold"}


def swept_type(name: str) -> type:
    """Python type of swept name ``name`` (from the config field it sets; ``Optional`` unwrapped)."""
    cls: Any = SegmentSettings
    hint: Any = None
    for part in SWEPT[name].split("."):
        hint = typing.get_type_hints(cls)[part]
        cls = hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


@dataclass
class SweepVideo:
    """One video's cached arrays, ready for the state machine (W windows, F processed frames).

    Attributes:
        stem: video folder name.
        energy: float64 (W,) raw energy of the swept series (NaN -> 0, as the stream feeds it).
        gated: bool (W,).
        geom: window geometry (``num_frames`` = F of the timeline).
        timeline: processed frames on the source clock (THE frames -> seconds rule).
        duration: seconds (GT's, else segments.json's).
        merge_tol: boundary merge tolerance in seconds (half a frame of the scoring frame rate).
        reference: GT or pseudo-label segments in seconds.
        changes: ``k`` -> float64 (W,) cached ``code_mmd`` change scores.
    """

    stem: str
    energy: np.ndarray
    gated: np.ndarray
    geom: WindowGeometry
    timeline: SourceTimeline
    duration: float
    merge_tol: float
    reference: list[Segment]
    changes: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass
class SweepData:
    """Everything a trial needs (one object-store copy): videos, base settings, tolerances (seconds)."""

    videos: list[SweepVideo]
    base: SegmentSettings
    tolerance_sec: float
    tolerances_sec: list[float]

    @property
    def tolerances(self) -> list[float]:
        """Every scored tolerance, sorted (``tolerance_sec`` included)."""
        return sorted(set(self.tolerances_sec) | {self.tolerance_sec})


def build_sweep_data(
    cal: CalibrationData,
    source: str,
    base: SegmentSettings,
    tolerance_sec: float,
    tolerances_sec: Sequence[float],
    fps: float = 0.0,
    changepoint_ks: Sequence[int] = (),
) -> SweepData:
    """The trials' arrays from labelled cached videos (read with timelines and reference segments).

    Args:
        cal: ``pipeline.calibration_data`` output with ``reference`` segments in seconds.
        source: swept series (``energy`` = as segmented, or an ``energies`` key).
        base: base settings (threshold may be None when every trial picks one).
        tolerance_sec, tolerances_sec: the scored tolerance and the reported ones (seconds).
        fps: frame rate of per-frame GT label files (the ``--fps`` evaluate takes; 0 = not given).
        changepoint_ks: ``k`` values whose ``code_mmd`` scores to cache (empty = change points not swept).

    Raises:
        CalibrationDataError: missing geometry, timeline, duration or code ids (names the folder).
        ConfigError: change points with a method other than ``code_mmd``.
    """
    cp = base.segmentation.changepoint
    if changepoint_ks and cp.method != "code_mmd":
        raise ConfigError(
            "config key 'segmentation.changepoint.method': sweeps need 'code_mmd' (energy.jsonl keeps "
            f"code ids, not quantized vectors), got {cp.method!r}"
        )
    videos = []
    for lv in cal.videos:
        v, tr, where = lv.video, lv.track, lv.track.path.parent
        meta = v.meta
        if not (meta.T and meta.stride and meta.target_fps):
            raise CalibrationDataError(f"{where}: segments.json records no params T/stride/target_fps")
        if v.timeline is None or lv.reference is None or lv.duration is None:
            raise CalibrationDataError(f"{where}: no timeline, reference segments or duration")
        geom = WindowGeometry(meta.T, meta.stride, meta.target_fps, num_frames=v.timeline.num_frames)
        fps_used, _ = scoring_fps(lv.gt, fps, meta.fps)
        sv = SweepVideo(
            lv.stem,
            fed_series(tr, source),
            tr.gated.copy(),
            geom,
            v.timeline,
            lv.duration,
            merge_tol_for_fps(fps_used),
            lv.reference,
        )
        for k in changepoint_ks:
            if tr.codes.shape[1] == 0:
                raise CalibrationDataError(
                    f"{tr.path}: no window has code ids; change points cannot be swept"
                )
            kcfg = dataclasses.replace(cp, enable=True, k=k, min_valid_windows=min(cp.min_valid_windows, k))
            sv.changes[k] = changepoint_scores(tr.codes, None, kcfg, valid=tr.has_codes)
        videos.append(sv)
    return SweepData(videos, base, tolerance_sec, list(tolerances_sec))


def swept_energy(source: str, recorded: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """``(source, mode)`` of the swept series for best.yaml's ``energy:``.

    Args:
        source: the swept series (``energy`` = each video's configured energy).
        recorded: each video's ``params.energy`` from segments.json.

    Raises:
        CalibrationDataError: ``source`` is ``energy`` and videos were segmented with different energies.
    """
    if source != "energy":
        return source, ENERGIES_MODE
    found = {(r.get("source"), r.get("mode")) for r in recorded}
    found.discard((None, None))
    if len(found) > 1:
        raise CalibrationDataError(f"videos were segmented with different energies {sorted(map(str, found))}")
    if not found:
        log.warning("segments.json records no params.energy; best.yaml gets the default energy source/mode")
        return EnergyConfig.source, EnergyConfig.mode
    src, mode = found.pop()
    return str(src), str(mode or ENERGIES_MODE)


def segments_in_seconds(timeline: SourceTimeline, found: Sequence[Any]) -> list[tuple[float, float]]:
    """State-machine segments (processed frames, inclusive) → ``(start_sec, end_sec)`` by THE rule."""
    return [timeline.to_source(s.start_frame, s.end_frame)[2:] for s in found]


class TrialError(ValueError):
    """A trial's settings cannot be scored (invalid combination, no threshold, ...)."""


def trial_settings(data: SweepData, params: Mapping[str, Any]) -> tuple[SegmentSettings, list[np.ndarray]]:
    """A trial's settings (threshold resolved) and each video's state-machine signal.

    Raises:
        TrialError: invalid combination, or no threshold at all.
    """
    try:
        settings = settings_for(data.base, params)
    except ConfigError as exc:
        raise TrialError(str(exc)) from exc
    sm = settings.energy.smoothing
    signals = [np.asarray(for_segmentation(v.energy, smooth(v.energy, sm), sm)) for v in data.videos]
    if QUANTILE in params:
        pooled = np.concatenate([s[~v.gated] for s, v in zip(signals, data.videos)])
        if pooled.size == 0:
            raise TrialError("every window is gated: no threshold quantile")
        thr = float(np.quantile(pooled, params[QUANTILE]))
        settings = with_overrides(settings, {SWEPT["threshold"]: thr})
    if settings.segmentation.threshold is None:
        raise TrialError("no threshold: set space.threshold, space.threshold_quantiles or one")
    return settings, signals


def video_scores(data: SweepData, params: Mapping[str, Any]) -> tuple[SegmentSettings, dict[str, dict]]:
    """Segment every video with a trial's settings and score it against its reference.

    Returns:
        ``(settings, {stem: core.metrics.boundary_metrics row})`` at every tolerance of ``data``.

    Raises:
        TrialError: the settings cannot be scored (the message says why).
    """
    settings, signals = trial_settings(data, params)
    seg = settings.segmentation
    cp = seg.changepoint
    rows = {}
    for video, signal in zip(data.videos, signals):
        changes = video.changes.get(cp.k) if cp.enable else None
        if cp.enable and changes is None:
            raise TrialError(f"no change scores cached for changepoint.k={cp.k}")
        try:
            found = segment_offline(signal, seg, video.geom, changes)
        except ValueError as exc:
            raise TrialError(f"{video.stem}: {exc}") from exc
        pred = segments_in_seconds(video.timeline, found)
        row = boundary_metrics(pred, video.reference, video.duration, data.tolerances, video.merge_tol)
        rows[video.stem] = {**row, "num_segments": len(found)}
    return settings, rows


def score_settings(data: SweepData, params: Mapping[str, Any]) -> dict[str, Any]:
    """The trial body: mean boundary scores over videos (never raises for bad settings).

    Returns:
        ``{"score", "f1", "precision", "recall", "f1@<t>s", "precision@<t>s", "recall@<t>s",
        "threshold", "num_segments", "error"}`` (fractions; t in seconds); ``score`` is -1 and
        ``error`` says why for settings that cannot be scored.
    """
    try:
        settings, rows = video_scores(data, params)
    except TrialError as exc:
        return {"score": -1.0, "error": str(exc)}
    out: dict[str, Any] = {
        "threshold": float(settings.segmentation.threshold),  # type: ignore[arg-type]
        "num_segments": sum(r["num_segments"] for r in rows.values()),
        "error": "",
    }
    for t in data.tolerances:
        for name in ("precision", "recall", "f1"):
            key = f"{name}@{fmt_num(t)}s"
            out[key] = float(np.mean([r[f"boundary/{key}"] for r in rows.values()]))
    main = fmt_num(data.tolerance_sec)
    out.update(f1=out[f"f1@{main}s"], precision=out[f"precision@{main}s"], recall=out[f"recall@{main}s"])
    out["score"] = out["f1"]
    return out


def rank_trials(trials: list[dict[str, Any]], tolerances: Sequence[float], base: Mapping[str, Any]) -> None:
    """Sort trial rows best first (in place) and number them (``rank``).

    Order: score, then mean F1 over all ``tolerances`` (seconds), then precision, then the fewest swept
    settings changed from their ``base`` values (when the data cannot tell, keep the defaults), then
    trial order.
    """

    def key(row: dict[str, Any]) -> tuple:
        f1s = [row.get(f"f1@{fmt_num(t)}s", 0.0) for t in tolerances]
        changed = sum(1 for k, v in base.items() if k in row and row[k] != v)
        return (
            -row.get("score", -1.0),
            -float(np.mean(f1s)),
            -row.get("precision", 0.0),
            changed,
            row["trial"],
        )

    trials.sort(key=key)
    for rank, row in enumerate(trials):
        row["rank"] = rank


def trials_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text of trial rows: ``rank, trial, score`` first, then every other key in order of appearance."""
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

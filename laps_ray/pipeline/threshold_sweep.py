"""The computation of one ``sweep_thresholds`` trial: settings → segments → seconds → boundary F1.

**Swept parameters** are named once, in :data:`SWEPT`: each swept name (a ``space.<name>`` list of the
job config, a column of trials.csv) → the dotted key it sets in :class:`SegmentSettings`, which is
exactly what ``best.yaml`` holds and ``segment_folder --config`` reads (``energy:`` /
``segmentation:``). One generic function, :func:`laps_ray.config.with_overrides`, applies ``{dotted key:
value}`` to the base settings; it rebuilds every dataclass on a changed path, so each one's
``__post_init__`` rejects an invalid combination. The job resolves every trial to complete settings
before Tune runs (``pipeline.sweep_space``: the recorded base, threshold candidates, distinct settings);
``threshold_quantile`` (:data:`QUANTILE`) in a params dict is resolved on that setting's own signal.

**A trial** does per video what ``segment_folder`` does (``laps_ray.pipeline.segment.segment_video``):
causal smoothing, the signal the state machine sees, change-point scores (cached per ``k``), the state
machine (``core.segmentation.segment_offline``), then processed frames → seconds with the video's
:class:`~laps_ray.core.timeline.SourceTimeline` (THE rule; ``tests/unit/test_sweep_equals_evaluate.py``
checks that the sweep's score equals ``evaluate``'s score of segment_folder's output). Boundary
P/R/F1 at every tolerance (``core.metrics``) with half a frame of the video's scoring frame rate
(``laps_ray.io.ground_truth.scoring_fps``) as merge tolerance, as ``evaluate``; mean over videos.
**Ranking** (:func:`rank_trials`): the never-worse rule first (no worse than the base at any
tolerance), then the score. Pure numpy on cached arrays: no video module is imported.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from laps_ray.config import ConfigError, get_key, with_overrides
from laps_ray.core.energy import EnergyConfig
from laps_ray.core.metrics import boundary_metrics, fmt_num, merge_tol_for_fps
from laps_ray.core.segmentation import SegmentationConfig, WindowGeometry, segment_offline
from laps_ray.core.smoothing import segmentation_signal
from laps_ray.core.timeline import SourceTimeline
from laps_ray.io.ground_truth import scoring_fps
from laps_ray.io.labels import Segment
from laps_ray.pipeline.calibration_data import (
    CalibrationData,
    CalibrationDataError,
    fed_series,
    track_changes,
)

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


def number(x: Any) -> float | None:
    """``x`` as a float if it is a number (not a bool), else None (``auto``, ``null``)."""
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def swept_type(name: str) -> type:
    """Python type of swept name ``name`` (from the config field it sets; ``Optional`` unwrapped)."""
    if name == "threshold":  # "auto" or a number in the config; the sweep's candidates are numbers
        return float
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
        use: bool (W,) windows with a reference label (``pipeline.calibration_data``).
        labels: bool (W,) reference window labels (active windows; False outside ``use``).
        changes: ``k`` -> float64 (W,) cached change scores (``motion`` or ``code_mmd``).
    """

    stem: str
    energy: np.ndarray
    gated: np.ndarray
    geom: WindowGeometry
    timeline: SourceTimeline
    duration: float
    merge_tol: float
    reference: list[Segment]
    use: np.ndarray
    labels: np.ndarray
    changes: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass
class SweepData:
    """Everything a trial needs (one object-store copy): videos, base settings, tolerances (seconds).

    ``recorded``: stem -> threshold, when the base keeps each video's own (``base`` threshold None/auto);
    ``base_info``: where the base came from (``result.json``'s ``base.recorded``).
    """

    videos: list[SweepVideo]
    base: SegmentSettings
    tolerance_sec: float
    tolerances_sec: list[float]
    recorded: dict[str, float] = field(default_factory=dict)
    base_info: dict[str, Any] = field(default_factory=dict)

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
    recorded: Mapping[str, float] | None = None,
) -> SweepData:
    """The trials' arrays from labelled cached videos (read with timelines and reference segments).

    Args:
        cal: ``pipeline.calibration_data`` output with ``reference`` segments in seconds.
        source: swept series (``energy`` = as segmented, or an ``energies`` key).
        base: base settings (threshold may be None when every trial picks one).
        tolerance_sec, tolerances_sec: the scored tolerance and the reported ones (seconds).
        fps: frame rate of per-frame GT label files (the ``--fps`` evaluate takes; 0 = not given).
        changepoint_ks: ``k`` values whose change scores to cache (empty = change points not swept).
        recorded: stem -> the video's own threshold when ``base`` keeps them (threshold None/auto).

    Raises:
        CalibrationDataError: missing geometry, timeline, duration or code ids (names the folder).
        ConfigError: change points with ``latent_r2`` (energy.jsonl does not keep the vectors).
    """
    cp = base.segmentation.changepoint
    if changepoint_ks and cp.method == "latent_r2":
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
            lv.use.copy(),
            lv.labels.copy(),
        )
        for k in changepoint_ks:
            kcfg = dataclasses.replace(cp, enable=True, k=k, min_valid_windows=min(cp.min_valid_windows, k))
            sv.changes[k] = track_changes(tr, kcfg)
        videos.append(sv)
    return SweepData(videos, base, tolerance_sec, list(tolerances_sec), dict(recorded or {}))


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


def signals_for(data: SweepData, settings: SegmentSettings) -> list[np.ndarray]:
    """Each video's state-machine signal under ``settings``' smoothing (float64 (W,) per video)."""
    return [segmentation_signal(v.energy, settings.energy.smoothing)[1] for v in data.videos]


def base_signals(data: SweepData) -> list[np.ndarray]:
    """Each video's state-machine signal with the base smoothing."""
    return signals_for(data, data.base)


def quantile_threshold(data: SweepData, settings: SegmentSettings, q: float) -> float:
    """Quantile ``q`` of the pooled non-gated signal under ``settings``' smoothing.

    Raises:
        TrialError: every window is gated.
    """
    signals = signals_for(data, settings)
    pooled = np.concatenate([s[~v.gated] for s, v in zip(signals, data.videos)])
    if pooled.size == 0:
        raise TrialError("every window is gated: no threshold quantile")
    return float(np.quantile(pooled, q))


def trial_settings(data: SweepData, params: Mapping[str, Any] | SegmentSettings) -> SegmentSettings:
    """A trial's resolved settings: ``params`` (swept names, ``threshold_quantile`` resolved on the
    trial's own signal) applied to the base, or resolved settings as they are.

    Raises:
        TrialError: invalid combination, or no threshold (neither a number nor each video's recorded one).
    """
    if isinstance(params, SegmentSettings):
        settings = params
    else:
        try:
            settings = settings_for(data.base, params)
            if QUANTILE in params:
                thr = quantile_threshold(data, settings, params[QUANTILE])
                settings = with_overrides(settings, {SWEPT["threshold"]: thr})
        except ConfigError as exc:
            raise TrialError(str(exc)) from exc
    if number(settings.segmentation.threshold) is None and not data.recorded:
        raise TrialError("no threshold: set space.threshold, space.threshold_quantiles or one")
    return settings


def video_scores(
    data: SweepData, params: Mapping[str, Any] | SegmentSettings
) -> tuple[SegmentSettings, dict[str, dict]]:
    """Segment every video with a trial's settings and score it against its reference.

    A threshold that is not a number (None/``auto``) means each video's recorded one (``data.recorded``).

    Returns:
        ``(settings, {stem: core.metrics.boundary_metrics row})`` at every tolerance of ``data``.

    Raises:
        TrialError: the settings cannot be scored (the message says why).
    """
    settings = trial_settings(data, params)
    seg = settings.segmentation
    cp = seg.changepoint
    rows = {}
    for video, signal in zip(data.videos, signals_for(data, settings)):
        changes = video.changes.get(cp.k) if cp.enable else None
        if cp.enable and changes is None:
            raise TrialError(f"no change scores cached for changepoint.k={cp.k}")
        thr = number(seg.threshold)
        thr = data.recorded.get(video.stem) if thr is None else thr
        if thr is None:
            raise TrialError(f"{video.stem}: no threshold recorded")
        try:
            found = segment_offline(signal, dataclasses.replace(seg, threshold=thr), video.geom, changes)
        except ValueError as exc:
            raise TrialError(f"{video.stem}: {exc}") from exc
        pred = segments_in_seconds(video.timeline, found)
        row = boundary_metrics(pred, video.reference, video.duration, data.tolerances, video.merge_tol)
        rows[video.stem] = {**row, "num_segments": len(found)}
    return settings, rows


def score_settings(data: SweepData, params: Mapping[str, Any] | SegmentSettings) -> dict[str, Any]:
    """The trial body: mean boundary scores over videos (never raises for bad settings).

    Returns:
        ``{"score", "f1", "precision", "recall", "f1@<t>s", "precision@<t>s", "recall@<t>s",
        "threshold", "num_segments", "error"}`` (fractions; t in seconds; ``threshold`` None when each
        video keeps its recorded one); ``score`` is -1 and ``error`` says why for settings that cannot
        be scored.
    """
    try:
        settings, rows = video_scores(data, params)
    except TrialError as exc:
        return {"score": -1.0, "error": str(exc)}
    out: dict[str, Any] = {
        "threshold": number(settings.segmentation.threshold),
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


def no_worse(row: Mapping[str, Any], base: Mapping[str, Any], tolerances: Sequence[float]) -> bool:
    """``row`` scored, and its F1 at every tolerance (seconds) at least the ``base`` row's."""
    if row.get("score", -1.0) < 0 or row.get("score", -1.0) < base.get("score", -1.0):
        return False
    return all(row.get(f"f1@{fmt_num(t)}s", -1.0) >= base.get(f"f1@{fmt_num(t)}s", 0.0) for t in tolerances)


def rank_trials(
    trials: list[dict[str, Any]],
    tolerances: Sequence[float],
    base: Mapping[str, Any],
    base_row: Mapping[str, Any] | None = None,
) -> None:
    """Sort trial rows best first (in place), number them (``rank``) and mark ``no_worse``.

    Order: trials no worse than ``base_row`` at every tolerance first (:func:`no_worse`; the never-worse
    rule: the base is one of them, so rank 0 is the base or a trial at least as good everywhere), then
    score, mean F1 over all ``tolerances`` (seconds), precision, the fewest swept settings changed from
    their ``base`` values and the threshold nearest the base's (ratio; when the data cannot tell, keep
    the base), then trial order (base = 0).
    """
    for row in trials:
        row["no_worse"] = base_row is None or no_worse(row, base_row, tolerances)
    base_thr = number((base_row or {}).get("threshold"))

    def key(row: dict[str, Any]) -> tuple:
        f1s = [row.get(f"f1@{fmt_num(t)}s", 0.0) for t in tolerances]
        changed = sum(1 for k, v in base.items() if k in row and row[k] != v)
        thr = number(row.get("threshold"))
        far = abs(np.log(thr / base_thr)) if thr and base_thr and thr * base_thr > 0 else 0.0
        return (
            not row["no_worse"],
            -row.get("score", -1.0),
            -float(np.mean(f1s)),
            -row.get("precision", 0.0),
            changed,
            far,
            row["trial"],
        )

    trials.sort(key=key)
    for rank, row in enumerate(trials):
        row["rank"] = rank

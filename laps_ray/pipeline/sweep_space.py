"""The search space of ``sweep_thresholds``: the recorded base, threshold candidates, distinct settings.

:class:`SweepSpaceConfig` (the job's ``space:``) lists the candidates: one list per swept name of
``threshold_sweep.SWEPT`` (``[]`` keeps the base value; defaults: :data:`DEFAULT_SPACE`) and the
threshold's ``threshold_factors``, ``threshold_rules`` and ``threshold_quantiles``.

**The base** (:func:`recorded_base`) is what the segment_folder run that wrote the cached outputs
used: each ``<stem>/segments.json`` records ``params.energy`` (smoothing) and ``params.segmentation``
(every state-machine setting and the threshold actually used, with ``threshold_source``: fixed, a
report, or ``auto``). Settings it does not record come from the job config. When the videos were
segmented with different thresholds (``auto`` per video) the base keeps each video's own threshold
(``threshold: None`` in the settings); best.yaml then says ``threshold: auto``, which recomputes those
same values from the same energies and smoothing.

**Threshold candidates** (:func:`threshold_candidates`), absolute values on the base signal: the base
threshold, a geometric grid around it (``factors``: x0.25 ... x4 by default), the label-rule
thresholds of the pooled non-gated signal (``gmm_log``, ``otsu``: the rules of ``calibrate``/auto)
and the window-level best-F1 / best-J thresholds of the signal against the reference labels
(``best_f1``, ``best_j``), plus any absolute ``space.threshold`` values; quantiles of the pooled
signal are resolved per smoothing setting (:func:`distinct_candidates`), so every trial's threshold
is a number before Tune sees it.

**Distinct settings** (:func:`distinct_candidates`): every combination is resolved to the
:class:`~laps_ray.pipeline.threshold_sweep.SegmentSettings` it runs, canonicalised (:func:`canonical`:
settings that cannot change the segments are reset to the base's, e.g. change-point knobs while change
points are off, ``alpha`` of a moving average) and kept once; the base is candidate 0.
:func:`trial_table` ranks what ran by the never-worse rule (``threshold_sweep.rank_trials``);
:func:`trials_csv` writes it. Pure numpy.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import itertools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from laps_ray.config import ConfigError, check, check_choice, get_key, to_dict, with_overrides
from laps_ray.core.calibration import CalibrationError, threshold_search
from laps_ray.core.label_rules import LABEL_METHODS, label_threshold
from laps_ray.core.metrics import fmt_num
from laps_ray.io.energy_store import RunMeta
from laps_ray.pipeline.calibration_data import CalibrationDataError
from laps_ray.pipeline.threshold_sweep import (
    SWEPT,
    SegmentSettings,
    SweepData,
    TrialError,
    base_signals,
    base_values,
    number,
    quantile_threshold,
    rank_trials,
    settings_for,
    swept_type,
)

log = logging.getLogger(__name__)

WINDOW_RULES = ("best_f1", "best_j")  # threshold_search of the signal against the reference window labels
THRESHOLD_RULES = (*LABEL_METHODS, *WINDOW_RULES)
DEFAULT_FACTORS = [round(2 ** (k / 3), 4) for k in range(-6, 7)]  # x0.25 ... x4 in third-octave steps, x1 in


# Default candidates besides the thresholds (the base value is always added).
DEFAULT_SPACE: dict[str, list] = {
    "down_count": [1, 2, 3],
    "min_duration_sec": [0.4, 0.8, 1.6],
    "changepoint_enable": [False, True],
    "changepoint_k": [4, 6],
}


def _check_space(space: Any) -> None:
    q, f = space.threshold_quantiles, space.threshold_factors
    check(all(0 <= x <= 1 for x in q), "space.threshold_quantiles", "must be in [0, 1]")
    check(all(math.isfinite(x) and x > 0 for x in f), "space.threshold_factors", "must be finite and > 0")
    check(all(math.isfinite(t) for t in space.threshold), "space.threshold", "must be finite")
    for rule in space.threshold_rules:
        check_choice(rule, THRESHOLD_RULES, "space.threshold_rules")
    check(all(k >= 1 for k in space.changepoint_k), "space.changepoint_k", "must be >= 1")
    for name in SWEPT:
        values = list(getattr(space, name))
        check(len({repr(v) for v in values}) == len(values), f"space.{name}", f"has duplicates: {values}")


def _default(values: list) -> Any:
    return field(default_factory=functools.partial(list, values))


# One field per swept name of SWEPT (candidates of the type of the config field it sets; [] keeps the base
# value), plus the threshold's factors, rules and quantiles.
SweepSpaceConfig = dataclasses.make_dataclass(
    "SweepSpaceConfig",
    [(n, list[swept_type(n)], _default(DEFAULT_SPACE.get(n, []))) for n in SWEPT]  # type: ignore[misc]
    + [
        ("threshold_factors", list[float], _default(DEFAULT_FACTORS)),
        ("threshold_rules", list[str], _default(list(THRESHOLD_RULES))),
        ("threshold_quantiles", list[float], _default([])),
    ],
    namespace={
        "__post_init__": _check_space,
        "__doc__": "Candidates per swept setting (names: threshold_sweep.SWEPT); [] keeps the base value.",
    },
)
SweepSpaceConfig.__module__ = __name__  # pickling and OmegaConf find it here


def space_lists(space: Any) -> dict[str, list]:
    """``{name: candidates}`` of every swept setting of a :class:`SweepSpaceConfig` but the threshold
    (non-empty lists only)."""
    return {n: list(getattr(space, n)) for n in SWEPT if n != "threshold" and getattr(space, n)}


@dataclass
class Candidate:
    """One distinct setting to run.

    Attributes:
        settings: resolved and canonical (threshold a number, or None = each video's recorded one).
        params: swept name -> value of ``settings`` (the trials table's columns).
        threshold_from: where the threshold comes from (``base``, ``base*1.19``, ``gmm_log``, ``q0.5``, ...).
    """

    settings: SegmentSettings
    params: dict[str, Any] = field(default_factory=dict)
    threshold_from: str = "base"


def _overrides(obj: Any, recorded: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of ``recorded`` that are fields of the dataclass ``obj`` (others, e.g. the
    ``threshold_source`` block, are not settings)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.name not in recorded:
            continue
        value, current = recorded[f.name], getattr(obj, f.name)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            out.update(_overrides(current, value, f"{prefix}{f.name}."))
        elif not dataclasses.is_dataclass(current):
            out[f"{prefix}{f.name}"] = value
    return out


def _agreed(values: dict[str, Any], what: str) -> Any:
    distinct = {json.dumps(v, sort_keys=True) for v in values.values()}
    if len(distinct) > 1:
        raise CalibrationDataError(
            f"videos were segmented with different {what} ({', '.join(sorted(distinct))[:300]}): sweep the "
            "outputs of one segment_folder run (or set base=config)"
        )
    return next(iter(values.values())) if values else None


def recorded_base(
    metas: Mapping[str, RunMeta], fallback: SegmentSettings, same_energy: bool
) -> tuple[SegmentSettings, dict[str, float], dict[str, Any]]:
    """The settings segment_folder ran with, from each video's ``segments.json`` ``params``.

    Args:
        metas: stem -> the video's recorded metadata.
        fallback: settings for what is not recorded (the job config's ``smoothing``/``segmentation``).
        same_energy: the swept series is the one segmented (else its recorded threshold means nothing).

    Returns:
        ``(base, per-video thresholds, info)``: ``base.segmentation.threshold`` is the one recorded
        threshold, or None with ``{stem: threshold}`` when they differ by video; ``info`` says what was
        recorded (``threshold_source`` of the first video, the thresholds).

    Raises:
        CalibrationDataError: videos segmented with different settings, or different non-auto thresholds.
    """
    smoothing = _agreed(
        {s: m.energy["smoothing"] for s, m in metas.items() if "smoothing" in m.energy}, "smoothing"
    )
    per_run = {s: dict(m.segmentation) for s, m in metas.items() if m.segmentation}
    for rec in per_run.values():  # what may differ by video: the threshold and where it came from
        rec.pop("threshold", None)
        rec.pop("threshold_source", None)
    seg = _agreed(per_run, "segmentation settings")
    values: dict[str, Any] = {}
    if smoothing:
        values.update(_overrides(fallback.energy.smoothing, smoothing, "energy.smoothing."))
    if seg:
        values.update(_overrides(fallback.segmentation, seg, "segmentation."))
    base = with_overrides(fallback, values)
    sources = {s: m.segmentation.get("threshold_source") or {} for s, m in metas.items()}
    thresholds = {s: number(m.segmentation.get("threshold")) for s, m in metas.items()}
    thresholds = {s: t for s, t in thresholds.items() if t is not None}
    info: dict[str, Any] = {"recorded": bool(smoothing or seg or thresholds), "thresholds": thresholds}
    info["threshold_source"] = next((src for src in sources.values() if src), {})
    per_video: dict[str, float] = {}
    if not same_energy or not thresholds:
        if thresholds:
            log.warning("the swept series is not the segmented one: its recorded thresholds are not used")
        info["thresholds"] = {}
        return with_overrides(base, {SWEPT["threshold"]: number(fallback.segmentation.threshold)}), {}, info
    if len(set(thresholds.values())) == 1:
        thr: float | None = next(iter(thresholds.values()))
    else:
        if any((src or {}).get("source") != "auto" for src in sources.values()):
            raise CalibrationDataError(
                f"videos were segmented with different thresholds {thresholds} that are not 'auto': sweep "
                "the outputs of one segment_folder run"
            )
        thr, per_video = None, thresholds
    return with_overrides(base, {SWEPT["threshold"]: thr}), per_video, info


def rule_thresholds(data: SweepData, rules: Sequence[str]) -> list[tuple[float, str]]:
    """Thresholds of the base signal by ``rules`` (:data:`THRESHOLD_RULES`); a rule that finds none
    (e.g. a constant signal) is left out with a warning."""
    signals = base_signals(data)
    pooled = np.concatenate([s[~v.gated] for s, v in zip(signals, data.videos)])
    out = []
    for rule in rules:
        try:
            if rule in WINDOW_RULES:
                use = [v.use for v in data.videos]
                scores = np.concatenate([s[u] for s, u in zip(signals, use)])
                labels = np.concatenate([v.labels[u] for v, u in zip(data.videos, use)])
                thr = float(threshold_search(scores, labels)[rule]["thr"])
            else:
                thr = float(label_threshold(pooled, rule))
        except CalibrationError as exc:
            log.warning("threshold rule %s gives no threshold here: %s", rule, exc)
            continue
        if math.isfinite(thr):
            out.append((thr, rule))
    return out


def threshold_candidates(
    data: SweepData,
    factors: Sequence[float] = DEFAULT_FACTORS,
    absolute: Sequence[float] = (),
    rules: Sequence[str] = THRESHOLD_RULES,
) -> list[tuple[float | None, str]]:
    """Absolute thresholds to try, with where each comes from (module docstring); the base first.

    ``None`` stands for each video's recorded threshold (videos segmented with different ones); the
    geometric grid is then centred on their median.
    """
    base = number(data.base.segmentation.threshold)
    centre = base if base is not None else float(np.median(list(data.recorded.values())))
    out: list[tuple[float | None, str]] = [(base, "base")]
    out += [(centre * f, f"base*{f:g}" if base is not None else f"median*{f:g}") for f in factors]
    out += [(float(t), "space.threshold") for t in absolute]
    return out + list(rule_thresholds(data, rules))


def complete_base(data: SweepData, rules: Sequence[str] = THRESHOLD_RULES) -> SweepData:
    """``data`` with a base threshold: when nothing recorded or configured one, the first rule's.

    Raises:
        CalibrationDataError: no rule finds a threshold either.
    """
    if number(data.base.segmentation.threshold) is not None or data.recorded:
        return data
    found = rule_thresholds(data, rules)
    if not found:
        raise CalibrationDataError("no threshold recorded or configured, and no rule finds one: set one")
    thr, rule = found[0]
    log.warning("no threshold recorded or configured: the base uses the %s threshold %.4g", rule, thr)
    data.base = with_overrides(data.base, {SWEPT["threshold"]: thr})
    data.base_info["threshold_from"] = rule
    return data


def canonical(s: SegmentSettings, base: SegmentSettings) -> SegmentSettings:
    """``s`` with every setting that cannot change its segments reset to ``base``'s value."""
    sm, bsm = s.energy.smoothing, base.energy.smoothing
    keep = {"method": sm.method, "use_for_seg": sm.use_for_seg, "alpha": bsm.alpha, "window": bsm.window}
    if sm.use_for_seg and sm.method == "ema":
        keep["alpha"] = sm.alpha
    if sm.use_for_seg and sm.method == "ma":
        keep["window"] = sm.window
    if not sm.use_for_seg:
        keep["method"] = bsm.method
    cp = s.segmentation.changepoint
    if not cp.enable:
        cp = dataclasses.replace(base.segmentation.changepoint, enable=False)
    seg = dataclasses.replace(s.segmentation, changepoint=cp)
    energy = dataclasses.replace(s.energy, smoothing=dataclasses.replace(sm, **keep))
    return SegmentSettings(energy, seg)


def settings_key(s: SegmentSettings) -> str:
    """Identity of resolved settings (two equal keys run the same segmentation)."""
    return json.dumps(to_dict(s), sort_keys=True)


def distinct_candidates(
    data: SweepData,
    lists: Mapping[str, Sequence[Any]],
    thresholds: Sequence[tuple[float | None, str]],
    quantiles: Sequence[float] = (),
) -> tuple[list[Candidate], dict[str, int]]:
    """Every distinct resolved setting of the space, the base first.

    Args:
        data: the sweep's data (its ``base`` is candidate 0).
        lists: swept name -> candidates (not ``threshold``); the base value is always added.
        thresholds: :func:`threshold_candidates`.
        quantiles: quantiles of the pooled non-gated signal, resolved per smoothing setting.

    Returns:
        ``(candidates, counts)``: counts of ``combinations`` (before dedupe), ``duplicates`` dropped and
        ``invalid`` combinations (rejected by the configs' checks, e.g. max_duration <= min_duration).
    """
    names = [n for n in SWEPT if n != "threshold" and lists.get(n)]
    values = [list(dict.fromkeys([get_key(data.base, SWEPT[n]), *lists[n]])) for n in names]
    shown = [*names, "threshold"]
    first = canonical(data.base, data.base)
    out = [Candidate(first, _params(first, shown), "base")]
    seen = {settings_key(first)}
    counts = {"combinations": 1, "duplicates": 0, "invalid": 0}
    for combo in itertools.product(*values):
        try:
            settings = settings_for(data.base, dict(zip(names, combo)))
        except ConfigError:
            counts["invalid"] += len(thresholds) + len(quantiles)
            continue
        same_signal = settings.energy.smoothing == data.base.energy.smoothing
        thr = [(t, why) for t, why in thresholds if t is not None or same_signal]  # auto needs its signal
        thr += [(quantile_threshold(data, settings, q), f"q{q:g}") for q in quantiles]
        for t, why in thr:
            s = canonical(with_overrides(settings, {SWEPT["threshold"]: t}), data.base)
            counts["combinations"] += 1
            key = settings_key(s)
            if key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
            out.append(Candidate(s, _params(s, shown), why))
    return out, counts


def _params(s: SegmentSettings, names: Sequence[str]) -> dict[str, Any]:
    return {n: get_key(s, SWEPT[n]) for n in names}


def draw(candidates: list[Candidate], n: int, seed: int) -> list[int]:
    """``n`` distinct candidates (indices, sorted), drawn without replacement, the base (0) always in."""
    if n >= len(candidates):
        return list(range(len(candidates)))
    rng = np.random.default_rng(seed)
    rest = rng.choice(np.arange(1, len(candidates)), size=max(n - 1, 0), replace=False)
    return [0, *sorted(int(i) for i in rest)]


def trial_table(
    data: SweepData, cands: Sequence[Candidate], outcomes: Mapping[int, Mapping[str, Any]]
) -> list:
    """The trials table, best first: one row per candidate that ran (its settings, ``threshold_from``
    and scores), ranked by the never-worse rule (``threshold_sweep.rank_trials``).

    Args:
        data: the sweep's data (tolerances, base).
        cands: :func:`distinct_candidates`.
        outcomes: candidate index -> what its trial reported (``threshold_sweep.score_settings``), or
            ``{"score": -1, "error": ...}``.

    Raises:
        TrialError: the base (candidate 0) did not run or could not be scored.
    """
    keep = ["score", "f1", "precision", "recall", "num_segments", "error", "video_module_loaded"]
    keep += [f"{n}@{fmt_num(t)}s" for t in data.tolerances for n in ("precision", "recall", "f1")]
    rows = []
    for i, m in sorted(outcomes.items()):
        row = {"trial": i, **cands[i].params, "threshold_from": cands[i].threshold_from}
        rows.append({**row, **{k: m[k] for k in keep if k in m}})
    base = rows[0] if rows and rows[0]["trial"] == 0 else {}
    if base.get("score", -1.0) < 0:
        raise TrialError(f"the base settings could not be scored: {base.get('error') or 'no result'}")
    rank_trials(rows, data.tolerances, base_values(data.base), base)
    return rows


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

"""THE automatic on-threshold: calibrated without labels on the energies a run computes itself.

``segment_folder`` (per folder by default, or per video), ``stream`` (on its warm-up) and the sweeps
call :func:`auto_threshold`, and ``calibrate`` reports the same numbers, so "auto" means one thing:

1. **Pseudo-labels** on a proxy signal (``proxy``, the ``motion`` energy by default: mean point
   speed, the old proxy, is what a conveyor or a shaking camera keeps high in every window): one
   threshold of the label rule (``core.label_rules.LABEL_METHODS``, ``ki_log`` by default, why
   there) fitted on the pooled windows of every
   video in scope (:func:`~laps_ray.core.calibration.pooled_pseudo_labels`), so a video that is mostly
   rest (or mostly action) does not get a cut inside its majority class.
2. **Threshold search** of the segmentation signal (the smoothed energy the state machine sees)
   against those labels (:func:`~laps_ray.core.calibration.threshold_search`); the on-threshold is its
   ``criterion`` (``best_f1`` by default).
3. **Evidence and reliability**, recorded next to the threshold: the AUC of the signal against the
   labels, the share of active windows, the label rule's own threshold. Per video, the segments are
   *unreliable* (and said so, never silently written as one whole-video segment) when the video's own
   AUC is below ``min_auc``, when its active windows do not stand out from its rest windows
   (``min_contrast``: median signal of the active windows over that of the (non-zero) rest ones),
   or when nearly every window is active (``max_active_fraction``: something
   moves all the time, the labels cannot tell action from background). A video with no active window
   is reliable: it has no action.

Pure numpy; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from laps_ray.config import check, check_choice
from laps_ray.core.calibration import CalibrationError, pooled_pseudo_labels, roc_auc, threshold_search
from laps_ray.core.energy import ENERGY_SOURCES
from laps_ray.core.label_rules import LABEL_METHODS

SCOPES = ("folder", "video")
CRITERIA = ("best_f1", "best_j")
AUTO = "auto"


@dataclass
class AutoThresholdConfig:
    """How ``segmentation.threshold: auto`` is calibrated (module docstring).

    Attributes:
        scope: ``folder`` (one threshold over every video of a run; default) or ``video``.
        proxy: the series pseudo-labels come from (an ``energies`` key of energy.jsonl).
        label_method: unsupervised label rule on the proxy.
        criterion: which threshold of the search is used.
        include_gated: gated windows (energy 0) take part: without them only moving windows are left
            and the labels would split motion against motion.
        min_auc: a video whose segmentation signal separates the labels with a lower AUC is unreliable.
        max_active_fraction: a video with more active windows than this is unreliable. (``ki_log``
            keeps both classes at least 10 % of the pooled windows, so with one video in scope this
            cannot fire; the AUC and contrast tests catch such a video.)
        min_contrast: a video whose active windows' median signal is less than this many times its
            rest windows' is unreliable. With the default proxy (the motion energy, the signal
            itself) the AUC is circular (1 by construction without smoothing), so this is the test
            that fails when an energy does not separate. Measured on the quality benchmark (8 x 45 s
            per setting): the motion energy 2.0-3.4 with all distractors on (>= 2.6 on each alone),
            mean point speed 1.2-1.8 on the settings where it fails (conveyor, shake, all), 3.5-225
            where it works.
        warmup_seconds: ``stream``: seconds of video whose windows calibrate the threshold before the
            state machine runs (a file shorter than that is calibrated on all of it).
    """

    scope: str = "folder"
    proxy: str = "motion"
    label_method: str = "ki_log"
    criterion: str = "best_f1"
    include_gated: bool = True
    min_auc: float = 0.7
    max_active_fraction: float = 0.95
    min_contrast: float = 1.8
    warmup_seconds: float = 30.0

    def __post_init__(self) -> None:
        check_choice(self.scope, SCOPES, "segmentation.auto.scope")
        check_choice(self.proxy, ENERGY_SOURCES, "segmentation.auto.proxy")
        check_choice(self.label_method, LABEL_METHODS, "segmentation.auto.label_method")
        check_choice(self.criterion, CRITERIA, "segmentation.auto.criterion")
        check(
            0.5 <= self.min_auc <= 1.0,
            "segmentation.auto.min_auc",
            f"must be in [0.5, 1], got {self.min_auc}",
        )
        check(
            0.0 < self.max_active_fraction <= 1.0,
            "segmentation.auto.max_active_fraction",
            f"must be in (0, 1], got {self.max_active_fraction}",
        )
        check(self.min_contrast >= 1.0, "segmentation.auto.min_contrast", "must be >= 1")
        check(self.warmup_seconds > 0, "segmentation.auto.warmup_seconds", "must be > 0")


def is_auto(threshold: Any) -> bool:
    """True for ``segmentation.threshold: auto`` (and the legacy ``null``)."""
    return threshold is None or (isinstance(threshold, str) and threshold.strip().lower() == AUTO)


@dataclass
class AutoThreshold:
    """The calibrated on-threshold of a scope and, per video, its evidence.

    Attributes:
        value: the on-threshold.
        evidence: scope-level facts (rule, label threshold, AUC, active share, window counts).
        videos: per video (in input order): ``{"auc", "active_fraction", "reliable", "reason"}``.
    """

    value: float
    evidence: dict[str, Any]
    videos: list[dict[str, Any]]


def auto_threshold(
    signals: Sequence[np.ndarray],
    proxies: Sequence[np.ndarray],
    gated: Sequence[np.ndarray],
    cfg: AutoThresholdConfig,
) -> AutoThreshold:
    """Calibrate the on-threshold of the videos of one scope (module docstring).

    Args:
        signals: per video, (W_i,) the segmentation signal (smoothed energy as the state machine sees it).
        proxies: per video, (W_i,) the proxy series (``cfg.proxy``), NaN where it has no value.
        gated: per video, bool (W_i,) windows a gate dropped.
        cfg: the rule's settings.

    Returns:
        The threshold and its evidence. When the labels find no motion the threshold is set above every
        signal value (no segment), when they find only motion below every value; both are recorded.
    """
    uses = []
    for s, p, g in zip(signals, proxies, gated):
        use = np.isfinite(np.asarray(p, dtype=np.float64)) & np.isfinite(np.asarray(s, dtype=np.float64))
        if not cfg.include_gated:
            use &= ~np.asarray(g, dtype=bool)
        uses.append(use)
    evidence: dict[str, Any] = {
        "rule": f"pseudo-labels {cfg.proxy} >= {cfg.label_method} threshold (pooled over the {cfg.scope}); "
        f"on-threshold = {cfg.criterion} of the segmentation signal against them",
        "scope": cfg.scope,
        "proxy": cfg.proxy,
        "label_method": cfg.label_method,
        "criterion": cfg.criterion,
    }
    pooled_signal = np.concatenate([np.asarray(s, dtype=np.float64)[u] for s, u in zip(signals, uses)])
    if pooled_signal.size == 0:
        value = float(np.finfo(np.float64).max)  # finite: segments.json is strict JSON
        evidence.update(n=0, n_pos=0, reason="no window to calibrate on")
        return AutoThreshold(value, evidence, [_video(None, None, cfg, "no window") for _ in signals])
    try:
        labels, label_thr = pooled_pseudo_labels(proxies, uses, cfg.label_method)
    except CalibrationError as exc:  # the label rule found no two classes in the proxy
        labels, label_thr = [np.zeros(np.shape(s), dtype=bool) for s in signals], math.nan
        evidence["label_rule_failed"] = str(exc)
    pooled_labels = np.concatenate([lab[u] for lab, u in zip(labels, uses)])
    n, n_pos = int(pooled_labels.size), int(pooled_labels.sum())
    evidence.update(label_threshold=_num(label_thr), n=n, n_pos=n_pos, active_fraction=n_pos / n)
    if n_pos == 0:  # no motion anywhere: nothing is active
        value = float(np.nextafter(pooled_signal.max(), math.inf))
        evidence.update(auc=None, reason="the pseudo-labels find no motion")
    elif n_pos == n:  # motion everywhere: everything is active
        value = float(pooled_signal.min())
        evidence.update(auc=None, reason="the pseudo-labels find motion in every window")
    else:
        search = threshold_search(pooled_signal, pooled_labels)
        value = float(search[cfg.criterion]["thr"])
        evidence.update(
            auc=search["auc"],
            contrast=_contrast(pooled_signal, pooled_labels),
            search={k: search[cfg.criterion][k] for k in ("precision", "recall", "f1")},
        )
    videos = []
    for s, lab, u in zip(signals, labels, uses):
        videos.append(_video(np.asarray(s, dtype=np.float64)[u], lab[u], cfg, None))
    return AutoThreshold(value, evidence, videos)


def _video(
    signal: np.ndarray | None, labels: np.ndarray | None, cfg: AutoThresholdConfig, why: str | None
) -> dict:
    """A video's own evidence and whether its segments can be trusted."""
    if signal is None or labels is None or signal.size == 0:
        return {"auc": None, "active_fraction": None, "reliable": True, "reason": why or "no window"}
    frac = float(labels.mean())
    if not labels.any():
        return {"auc": None, "active_fraction": 0.0, "reliable": True, "reason": "no motion found"}
    if frac > cfg.max_active_fraction:
        reason = (
            f"the pseudo-labels find motion in {100 * frac:.0f}% of its windows (more than "
            f"{100 * cfg.max_active_fraction:.0f}%): something moves all the time, action and background "
            "cannot be told apart"
        )
        return {"auc": None, "active_fraction": frac, "reliable": False, "reason": reason}
    auc = roc_auc(signal, labels)
    contrast = _contrast(signal, labels)
    facts = {"auc": auc, "active_fraction": frac, "contrast": contrast}
    if auc < cfg.min_auc:
        reason = f"its energy does not separate motion from rest (AUC {auc:.2f} < {cfg.min_auc})"
        return {**facts, "reliable": False, "reason": reason}
    if contrast is not None and contrast < cfg.min_contrast:
        reason = (
            f"its active windows barely stand out from its rest (median energy {contrast:.2f}x the rest's, "
            f"< {cfg.min_contrast}): background motion may dominate the energy"
        )
        return {**facts, "reliable": False, "reason": reason}
    return {**facts, "reliable": True, "reason": ""}


def _contrast(signal: np.ndarray, labels: np.ndarray) -> float | None:
    """Median signal of the active windows over that of the non-zero rest windows (None: no such rest,
    e.g. every rest window was gated, which is the clearest separation there is)."""
    rest = signal[~labels & (signal > 0)]
    if rest.size == 0 or not labels.any():
        return None
    return float(np.median(signal[labels]) / np.median(rest))


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None

"""``segmentation.threshold: auto`` inside a run: the series the rule needs, and what gets recorded.

The rule itself is :func:`laps_ray.core.auto_threshold.auto_threshold`. This module feeds it the same
series wherever they come from — a video's shard results in the ``segment_folder`` driver
(:func:`series_from_shards`), a complete video's cached ``energy.jsonl`` (:func:`series_from_cache`:
a resumed run pools the same windows as an uninterrupted one), the windows of a stream's warm-up —
and turns the result into the ``threshold_source`` block of each video's ``segments.json``
(:func:`threshold_record`). No Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.core.auto_threshold import AutoThreshold, AutoThresholdConfig, auto_threshold
from laps_ray.core.energy import ENERGY_SOURCES, EnergyConfig
from laps_ray.core.smoothing import segmentation_signal
from laps_ray.io.energy_store import read_energy_jsonl
from laps_ray.io.exports import ENERGY_FILE
from laps_ray.pipeline.shard_run import ShardResult


@dataclass
class AutoSeries:
    """What the automatic threshold sees of one video (W windows).

    Attributes:
        key: the video's run.json key (pooling order is sorted by key: the threshold does not depend
            on which video finished first).
        signal: (W,) the segmentation signal (smoothed energy, as the state machine sees it).
        proxy: (W,) the pseudo-label proxy series.
        gated: bool (W,) windows a gate dropped.
    """

    key: str
    signal: np.ndarray
    proxy: np.ndarray
    gated: np.ndarray


def series_from_arrays(
    key: str, energies: dict[str, np.ndarray], gated: np.ndarray, energy: EnergyConfig, proxy: str
) -> AutoSeries:
    """The series of a video from its raw per-window energies (gate rule applied) and gates."""
    _, signal = segmentation_signal(energies[energy.source], energy.smoothing)
    return AutoSeries(key, signal, np.asarray(energies[proxy], dtype=np.float64), np.asarray(gated, bool))


def series_from_shards(
    key: str, results: Sequence[ShardResult], energy: EnergyConfig, proxy: str
) -> AutoSeries:
    """The series of a video from all its shard results (any order)."""
    results = sorted(results, key=lambda r: r.first_window)
    table = np.concatenate([r.energies for r in results])  # (W, len(ENERGY_SOURCES))
    gated = np.concatenate([r.gate for r in results]) != 0
    energies = {s: table[:, k] for k, s in enumerate(ENERGY_SOURCES)}
    return series_from_arrays(key, energies, gated, energy, proxy)


def series_from_cache(key: str, video_dir: str | Path, energy: EnergyConfig, proxy: str) -> AutoSeries:
    """The series of a complete video from its ``energy.jsonl`` (the same values its shards gave).

    Raises:
        laps_ray.io.energy_store.EnergyFormatError: a malformed file (names it).
    """
    track = read_energy_jsonl(Path(video_dir) / ENERGY_FILE)
    energies = {s: np.nan_to_num(track.series(s), nan=0.0) for s in {energy.source, proxy}}
    return series_from_arrays(key, energies, track.gated, energy, proxy)


def calibrate(series: Sequence[AutoSeries], cfg: AutoThresholdConfig) -> tuple[AutoThreshold, list[str]]:
    """The automatic threshold of the videos of one scope, pooled in key order; returns it and the
    keys in the order of its per-video evidence."""
    ordered = sorted(series, key=lambda s: s.key)
    result = auto_threshold(
        [s.signal for s in ordered], [s.proxy for s in ordered], [s.gated for s in ordered], cfg
    )
    return result, [s.key for s in ordered]


def threshold_record(result: AutoThreshold, keys: Sequence[str], key: str) -> dict[str, Any]:
    """The ``threshold_source`` block of one video's segments.json: the rule, the scope's evidence and
    the video's own (``reliable``, ``reason``)."""
    own = result.videos[list(keys).index(key)]
    return {"source": "auto", "value": result.value, **result.evidence, "video": own}

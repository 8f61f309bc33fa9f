"""sweep_thresholds on Ray Tune, on cached energies only: the recorded base is trial 0, no setting runs
twice, and best.yaml is never worse than the base (a bad base is beaten; an optimal one is kept)."""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import PLANTED, make_planted_sweep, sweep_cfg

from laps_ray.config import load_config, to_dict
from laps_ray.core.energy import EnergyConfig
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.core.smoothing import SmoothingConfig
from laps_ray.io import exports as ex
from laps_ray.jobs import sweep_thresholds as sw

SMALL = {"down_count": [], "min_duration_sec": [], "changepoint_enable": [], "changepoint_k": []}


@pytest.fixture()
def planted(tmp_path):
    """Two videos of cached energies + GT made by the planted settings; returns (energy_dir, gt_dir)."""
    return make_planted_sweep(tmp_path)


@dataclass
class SegmentSide:
    """What segment_folder's config nests: the two sections best.yaml must fill."""

    energy: EnergyConfig = field(default_factory=EnergyConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)


def record_run(energy_dir: Path, seg: SegmentationConfig) -> None:
    """Record in each segments.json the settings a segment_folder run used (as it records them)."""
    for d in sorted(p for p in energy_dir.iterdir() if p.is_dir()):
        doc = json.loads((d / ex.SEGMENTS_FILE).read_text())
        doc["params"]["energy"]["smoothing"] = to_dict(SmoothingConfig())
        doc["params"]["segmentation"] = {**to_dict(seg), "threshold_source": {"source": "fixed"}}
        ex.write_segments_json(d / ex.SEGMENTS_FILE, doc)


def test_tune_sweep_beats_a_bad_base_and_runs_each_setting_once(ray_local, planted, tmp_path):
    energy_dir, gt_dir = planted
    assert not [p for p in energy_dir.rglob("*") if p.suffix in (".mp4", ".avi", ".mov", ".mkv")]
    record_run(energy_dir, dataclasses.replace(PLANTED, threshold=1.6))  # misses the 'low' blocks
    out = tmp_path / "sweep"
    space = {**SMALL, "max_duration_sec": [0.0, 3.0], "threshold": [1.6], "threshold_factors": [0.625]}
    res = sw.run(sweep_cfg(energy_dir, gt_dir, out, **space))

    result = json.loads((out / "result.json").read_text())
    base, best = result["base"], result["best"]
    assert base["trial"] == 0 and base["threshold"] == 1.6 and base["threshold_from"] == "base"
    assert base["recall"] < 1.0 and best["f1"] == 1.0 and not result["best_is_base"]
    assert all(best[f"f1@{t}s"] >= base[f"f1@{t}s"] for t in ("0.5", "2.0"))  # never worse
    # Each distinct setting ran once: space.threshold=[1.6] repeats the base (once per max_duration).
    counts = result["counts"]
    assert counts["duplicates"] >= 2 and result["num_trials"] == counts["distinct"] == counts["run"]
    settings = [json.dumps({k: t[k] for k in ("threshold", "max_duration_sec")}) for t in res.trials]
    assert len(settings) == len(set(settings)) == len(res.trials)
    assert [t["rank"] for t in res.trials] == list(range(len(res.trials))) and res.trials[0] is res.best
    assert not any(t["video_module_loaded"] for t in res.trials)  # trials only saw cached arrays

    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == len(res.trials) and float(rows[0]["f1"]) == 1.0
    assert {"threshold_from", "no_worse", "max_duration_sec"} <= set(rows[0])  # only swept settings:
    assert "hysteresis_ratio" not in rows[0]
    side = load_config(SegmentSide, out / "best.yaml")
    assert side.segmentation.threshold == best["threshold"] and 1.0 <= best["threshold"] < 1.3
    assert dataclasses.replace(side.segmentation, threshold=1.0) == PLANTED
    assert side.energy.source == "quantized" and side.energy.smoothing.alpha == 0.7
    text = sw.summary_text(res)
    assert text.splitlines()[1].split() == ["base", "best"]  # side by side
    line = next(x for x in text.splitlines() if x.split()[0] == "F1@0.5s")
    assert line.split()[1:] == [f"{base['f1']:.4f}", "1.0000"]


def test_tune_sweep_keeps_an_optimal_base(ray_local, planted, tmp_path):
    energy_dir, gt_dir = planted
    record_run(energy_dir, PLANTED)  # the settings the GT was made with: nothing can beat them
    out = tmp_path / "sweep"
    space = {**SMALL, "max_duration_sec": [3.0], "threshold_factors": [0.5, 0.85, 1.6]}
    res = sw.run(
        dataclasses.replace(sweep_cfg(energy_dir, gt_dir, out, **space), search="random", num_samples=4)
    )
    assert len(res.trials) == 4 and res.counts["distinct"] > 4  # random: 4 distinct of more, base in
    assert res.best["trial"] == 0 and res.best["f1"] == 1.0
    side = load_config(SegmentSide, out / "best.yaml")
    assert side.segmentation == PLANTED
    assert json.loads((out / "result.json").read_text())["best_is_base"]
    assert "best = the base" in sw.summary_text(res)

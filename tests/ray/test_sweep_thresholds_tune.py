"""sweep_thresholds on Ray Tune: a small grid with a planted optimum, on cached energies only."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import PLANTED, SWEEP_GRID, make_planted_sweep, sweep_cfg

from laps_ray.config import load_config
from laps_ray.core.energy import EnergyConfig
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.jobs import sweep_thresholds as sw


@pytest.fixture()
def planted(tmp_path):
    """Two videos of cached energies + GT made by the planted settings; returns (energy_dir, gt_dir)."""
    return make_planted_sweep(tmp_path)


@dataclass
class SegmentSide:
    """What segment_folder's config nests: the two sections best.yaml must fill."""

    energy: EnergyConfig = field(default_factory=EnergyConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)


def test_tune_sweep_finds_planted_optimum(ray_local, planted, tmp_path):
    energy_dir, gt_dir = planted
    assert not [p for p in energy_dir.rglob("*") if p.suffix in (".mp4", ".avi", ".mov", ".mkv")]
    out = tmp_path / "sweep"
    res = sw.run(sweep_cfg(energy_dir, gt_dir, out, **SWEEP_GRID))
    assert len(res.trials) == 6
    best = res.best
    assert (best["threshold"], best["max_duration_sec"], best["f1"]) == (1.0, 0.0, 1.0)
    assert [t["rank"] for t in res.trials] == list(range(6)) and res.trials[0] is best
    assert all(t["f1"] < 0.95 for t in res.trials[1:])
    assert not any(t["video_module_loaded"] for t in res.trials)  # trials only saw cached arrays

    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 6 and rows[0]["threshold"] == "1.0" and float(rows[0]["f1"]) == 1.0
    assert {"hysteresis_ratio", "precision@2.0s"} - set(rows[0]) == {"hysteresis_ratio"}  # only swept params
    assert json.loads((out / "trials.json").read_text())[0]["max_duration_sec"] == 0.0
    result = json.loads((out / "result.json").read_text())
    assert result["num_trials"] == 6 and result["labels"]["kind"] == "ground_truth"
    assert Path(result["tune_dir"]).is_dir() and Path(result["tune_dir"]).is_relative_to(out)

    side = load_config(SegmentSide, out / "best.yaml")
    assert side.segmentation.threshold == 1.0 and side.segmentation.max_duration_sec == 0.0
    assert side.energy.source == "quantized" and side.energy.smoothing.alpha == 0.7
    assert side.segmentation == PLANTED
    assert "Ray Tune" not in sw.summary_text(res) and "F1@0.5s 1.0000" in sw.summary_text(res)

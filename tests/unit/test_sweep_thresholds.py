"""sweep_thresholds: scoring on cached energies (no Ray).
The Tune grid: tests/ray/test_sweep_thresholds_tune.py."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import SWEEP_FPS as FPS
from helpers import SWEEP_GRID as GRID
from helpers import SWEEP_STRIDE as STRIDE
from helpers import SWEEP_T as T
from helpers import (
    blocks_energy,
    make_planted_sweep,
    segments_in_seconds,
    sweep_cfg,
    write_sweep_energies,
)

from laps_ray.config import ConfigError, get_key, with_overrides
from laps_ray.core.changepoint import ChangePointConfig, changepoint_scores
from laps_ray.core.segmentation import SegmentationConfig, WindowGeometry, segment_offline
from laps_ray.core.smoothing import SmoothingConfig, smooth
from laps_ray.jobs import sweep_thresholds as sw
from laps_ray.pipeline import threshold_sweep as ts

SMOOTHING = SmoothingConfig()  # EMA 0.7


@pytest.fixture()
def planted(tmp_path):
    """Two videos of cached energies + GT made by the planted settings; returns (energy_dir, gt_dir)."""
    return make_planted_sweep(tmp_path)


def test_scoring_has_a_unique_planted_optimum_without_ray(planted, tmp_path):
    data, labels, energy = sw.load_sweep_data(sweep_cfg(*planted, tmp_path / "s", **GRID))
    assert labels["kind"] == "ground_truth" and energy == {
        "source": "quantized",
        "mode": "token_diff_l2_mean",
    }
    scores = {
        (thr, md): ts.score_settings(data, {"threshold": thr, "max_duration_sec": md})
        for thr in GRID["threshold"]
        for md in GRID["max_duration_sec"]
    }
    best = scores[(1.0, 0.0)]
    assert best["f1"] == 1.0 and best["precision"] == 1.0 and best["recall"] == 1.0 and best["error"] == ""
    others = [s["f1"] for k, s in scores.items() if k != (1.0, 0.0)]
    assert max(others) < 0.95  # each alternative changes the segmentation visibly
    assert scores[(0.5, 0.0)]["precision"] < 1.0 and scores[(0.5, 0.0)]["recall"] == 1.0  # medium blocks
    assert scores[(1.6, 0.0)]["recall"] < 1.0  # low blocks missed
    assert scores[(1.0, 3.0)]["precision"] < 1.0  # long blocks cut every 3 s
    # An impossible combination is reported, not raised: max_duration <= min_duration (0.8 s).
    bad = ts.score_settings(data, {"threshold": 1.0, "max_duration_sec": 0.5})
    assert bad["score"] == -1.0 and "max_duration_sec" in bad["error"]
    # Quantile thresholds resolve on the pooled smoothed signal.
    q = ts.score_settings(data, {"threshold_quantile": 0.5})
    pooled = np.concatenate([smooth(v.energy, SMOOTHING) for v in data.videos])
    assert q["threshold"] == pytest.approx(np.quantile(pooled, 0.5))


def test_changepoint_settings_use_cached_code_scores(tmp_path):
    # One long motion block whose code ids switch half-way: only change points can find that boundary.
    rng = np.random.default_rng(3)
    spec = [("rest", 12), ("high", 50), ("rest", 12)]
    e = blocks_energy(rng, spec)
    W = e.size
    codes = rng.integers(100, 130, (W, T - 1))
    codes[12:37] = rng.integers(0, 4, (25, T - 1))
    codes[37:62] = rng.integers(10, 14, (25, T - 1))
    write_sweep_energies(tmp_path / "out", "v", e, codes)
    cp = ChangePointConfig(enable=True)
    truth_cfg = SegmentationConfig(threshold=1.0, changepoint=cp)
    valid = np.ones(W, bool)
    segs = segment_offline(
        smooth(e, SMOOTHING),
        truth_cfg,
        WindowGeometry(T, STRIDE, FPS),
        changepoint_scores(codes, None, cp, valid),
    )
    assert len(segs) == 2 and segs[0].reason == "change"
    gt = tmp_path / "gt"
    gt.mkdir()
    doc = {
        "video": "v.mp4",
        "video_duration_sec": ((W - 1) * STRIDE + T) / FPS,
        "segments": segments_in_seconds(segs),
    }
    (gt / "v.json").write_text(json.dumps(doc))
    cfg = sweep_cfg(tmp_path / "out", gt, tmp_path / "s", threshold=[1.0], changepoint_enable=[False, True])
    data, _, _ = sw.load_sweep_data(cfg)
    assert set(data.videos[0].changes) == {4}
    on = ts.score_settings(data, {"threshold": 1.0, "changepoint_enable": True})
    off = ts.score_settings(data, {"threshold": 1.0, "changepoint_enable": False})
    assert on["f1"] == 1.0 and off["recall"] == pytest.approx(2 / 3)  # 3 GT boundaries, the split missed
    missing_k = ts.score_settings(data, {"threshold": 1.0, "changepoint_enable": True, "changepoint_k": 6})
    assert missing_k["score"] == -1.0 and "k=6" in missing_k["error"]


def test_pseudo_label_reference_without_ground_truth(planted, tmp_path):
    energy_dir, _ = planted
    data, labels, _ = sw.load_sweep_data(sweep_cfg(energy_dir, None, tmp_path / "s", threshold=[1.0]))
    assert labels["kind"] == "pseudo" and labels["proxy"] == "velocity"
    # velocity = energy / 20 here, so the proxy's motion windows are the medium/low/high blocks.
    assert all(len(v.reference) == 4 for v in data.videos)
    res = ts.score_settings(data, {"threshold": 0.5})
    assert res["error"] == "" and res["f1@2.0s"] == 1.0
    # Starts agree to the frame; the state machine's ends include the down_count low windows (~0.75 s late).
    assert res["recall@0.5s"] == 0.5


def test_swept_names_are_config_keys_set_by_one_override():
    # Every swept name is one space.* list and one key of what best.yaml holds (SWEPT, named once).
    space = {f.name for f in dataclasses.fields(sw.SweepSpaceConfig)}
    assert space == set(ts.SWEPT) | {"threshold_quantiles"}
    base = ts.SegmentSettings()
    for name, key in ts.SWEPT.items():
        assert isinstance(get_key(base, key), (ts.swept_type(name), type(None))), key
    s = with_overrides(
        base, {"energy.smoothing.alpha": 0.4, "segmentation.changepoint.k": 6, "segmentation.up_count": 3}
    )
    assert (s.energy.smoothing.alpha, s.segmentation.changepoint.k, s.segmentation.up_count) == (0.4, 6, 3)
    assert base == ts.SegmentSettings() and s.segmentation.down_count == base.segmentation.down_count
    assert ts.settings_for(base, {"smoothing_alpha": 0.4, "threshold_quantile": 0.5}) == with_overrides(
        base, {"energy.smoothing.alpha": 0.4}
    )
    with pytest.raises(ConfigError, match="segmentation.max_duration_sec"):  # rebuilt, so validated
        with_overrides(base, {"segmentation.max_duration_sec": 0.5})
    with pytest.raises(ConfigError, match="SmoothingConfig has no 'alfa'"):
        with_overrides(base, {"energy.smoothing.alfa": 0.4})


def test_outputs_without_timeline_are_refused_in_one_line(planted, tmp_path, capsys):
    energy_dir, gt_dir = planted
    (energy_dir / "cam_b" / "timeline.npz").unlink()  # as written before segment_folder wrote it
    argv = ["--energy", str(energy_dir), "--gt", str(gt_dir), "--output", str(tmp_path / "s")]
    with pytest.raises(SystemExit) as exc:
        sw.main([*argv, "space.threshold=[1.0]"])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(energy_dir / "cam_b") in err and "re-run segment_folder" in err
    assert not (tmp_path / "s").exists()  # refused before anything was written


def test_trial_module_does_not_import_video_code():
    code = "import sys, laps_ray.jobs.sweep_thresholds; print('laps_ray.io.video' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

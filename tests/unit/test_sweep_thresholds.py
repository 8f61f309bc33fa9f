"""sweep_thresholds: the recorded base, the distinct search space, the never-worse rule and scoring on
cached energies (no Ray). The Tune run: tests/ray/test_sweep_thresholds_tune.py."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    PLANTED,
    blocks_energy,
    make_planted_sweep,
    segments_in_seconds,
    sweep_cfg,
    write_sweep_energies,
)
from helpers import SWEEP_FPS as FPS
from helpers import SWEEP_GRID as GRID
from helpers import SWEEP_STRIDE as STRIDE
from helpers import SWEEP_T as T

from laps_ray.config import ConfigError, get_key, to_dict, with_overrides
from laps_ray.core.changepoint import ChangePointConfig, changepoint_scores
from laps_ray.core.energy import EnergyConfig
from laps_ray.core.segmentation import SegmentationConfig, WindowGeometry, segment_offline
from laps_ray.core.smoothing import SmoothingConfig, smooth
from laps_ray.io import exports as ex
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs import sweep_thresholds as sw
from laps_ray.pipeline import sweep_space as sp
from laps_ray.pipeline import threshold_sweep as ts

SMOOTHING = SmoothingConfig()  # EMA 0.7
NO_CP = PLANTED.changepoint  # planted runs have code ids, not motion features


# Only the threshold (and what a test adds) is searched: small spaces, every candidate scored without Ray.
THRESHOLD_ONLY = {"down_count": [], "min_duration_sec": [], "changepoint_enable": [], "changepoint_k": []}


@pytest.fixture()
def planted(tmp_path):
    """Two videos of cached energies + GT made by the planted settings; returns (energy_dir, gt_dir)."""
    return make_planted_sweep(tmp_path)


def record_run(energy_dir, seg: SegmentationConfig, alpha: float = 0.7, thresholds=None, source="fixed"):
    """Record in each video's segments.json the settings a segment_folder run used, as it records them
    (``params.energy.smoothing``, ``params.segmentation`` with ``threshold_source``); ``thresholds``:
    stem -> that video's own threshold."""
    for d in sorted(p for p in energy_dir.iterdir() if p.is_dir()):
        doc = json.loads((d / ex.SEGMENTS_FILE).read_text())
        thr = (thresholds or {}).get(d.name, seg.threshold)
        doc["params"]["energy"]["smoothing"] = to_dict(SmoothingConfig(alpha=alpha))
        doc["params"]["segmentation"] = {
            **to_dict(seg),
            "threshold": thr,
            "threshold_source": {"source": source},
        }
        ex.write_segments_json(d / ex.SEGMENTS_FILE, doc)


def scored_rows(data, cands):
    """Every candidate scored as a Tune trial scores it, ranked by the job's rule (no Ray)."""
    rows = [{"trial": i, **c.params, **ts.score_settings(data, c.settings)} for i, c in enumerate(cands)]
    ts.rank_trials(rows, data.tolerances, ts.base_values(data.base), rows[0])
    return rows


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
    # An impossible combination is reported, not raised: max_duration <= min_duration.
    bad = ts.score_settings(data, {"threshold": 1.0, "max_duration_sec": 0.3})
    assert bad["score"] == -1.0 and "max_duration_sec" in bad["error"]
    # Quantile thresholds resolve on the pooled smoothed signal.
    q = ts.score_settings(data, {"threshold_quantile": 0.5})
    pooled = np.concatenate([smooth(v.energy, SMOOTHING) for v in data.videos])
    assert q["threshold"] == pytest.approx(np.quantile(pooled, 0.5))


def test_base_is_the_setting_segment_folder_recorded(planted, tmp_path):
    energy_dir, gt_dir = planted
    seg = SegmentationConfig(changepoint=NO_CP, threshold=1.6, up_count=3, min_duration_sec=0.4)
    record_run(energy_dir, seg, alpha=0.5)
    data, _, _ = sw.load_sweep_data(sweep_cfg(energy_dir, gt_dir, tmp_path / "s"))
    assert data.base.segmentation == seg and data.base.energy.smoothing == SmoothingConfig(alpha=0.5)
    assert data.base_info["threshold_source"] == {"source": "fixed"} and not data.recorded
    # Trial 0 is exactly that setting, scored like any other: built here independently of the sweep.
    thresholds = sp.threshold_candidates(data, [0.5, 1.0, 2.0], [], [])
    assert thresholds == [(1.6, "base"), (0.8, "base*0.5"), (1.6, "base*1"), (3.2, "base*2")]
    cands, _ = sp.distinct_candidates(data, sw.param_lists(sw.SweepJobConfig()), thresholds)
    own = ts.SegmentSettings(EnergyConfig("quantized", smoothing=SmoothingConfig(alpha=0.5)), seg)
    assert cands[0].settings == own and ts.score_settings(data, own) == ts.score_settings(
        data, cands[0].settings
    )
    assert len([c for c in cands if c.settings.segmentation.threshold == 1.6]) > 1  # the base's neighbours
    # The default threshold candidates contain the base and reach both sides of it, plus the rules.
    found = sp.threshold_candidates(data)
    assert found[0] == (1.6, "base") and {"gmm_log", "otsu", "best_f1", "best_j"} <= {w for _, w in found}
    assert min(t for t, _ in found) <= 0.8 and max(t for t, _ in found) >= 3.2
    # base=config: this config's settings instead of the record.
    cfg = dataclasses.replace(sweep_cfg(energy_dir, gt_dir, tmp_path / "s"), base="config")
    config_base, _, _ = sw.load_sweep_data(cfg)
    assert config_base.base.segmentation.up_count == 2 and config_base.base_info["from"] == "config"


def test_every_distinct_setting_runs_once(planted, tmp_path):
    energy_dir, gt_dir = planted
    record_run(energy_dir, SegmentationConfig(changepoint=NO_CP, threshold=1.0))
    space = {
        **THRESHOLD_ONLY,
        "threshold": [1.0, 2.0],  # both again below: base and base*2
        "changepoint_k": [4, 6],  # inert while change points are off (the base)
        "changepoint_threshold": [0.5, 0.7],
        "smoothing_method": ["ema", "none"],  # alpha is inert without EMA
        "smoothing_alpha": [0.4, 0.7],
        "threshold_factors": [1.0, 2.0],
        "threshold_rules": [],
        "threshold_quantiles": [0.5],  # resolved on each smoothing's own signal
    }
    cfg = sweep_cfg(energy_dir, gt_dir, tmp_path / "s", **space)
    data, _, _ = sw.load_sweep_data(cfg)
    thresholds = sp.threshold_candidates(data, cfg.space.threshold_factors, cfg.space.threshold, [])
    cands, counts = sp.distinct_candidates(data, sw.param_lists(cfg), thresholds, [0.5])
    # 3 smoothings that differ (EMA 0.7, EMA 0.4, none) x (1.0, 2.0, their own median) = 9 settings.
    assert len(cands) == 9 and len({sp.settings_key(c.settings) for c in cands}) == 9
    assert counts["combinations"] == counts["duplicates"] + 9 and counts["invalid"] == 0
    assert all(sp.canonical(c.settings, data.base) == c.settings for c in cands)
    assert cands[0].settings == data.base and cands[0].threshold_from == "base"
    medians = {c.settings.energy.smoothing.method + str(c.settings.energy.smoothing.alpha):
               c.settings.segmentation.threshold for c in cands if c.threshold_from == "q0.5"}  # fmt: skip
    assert len(medians) == 3 and len(set(medians.values())) == 3
    # random: distinct draws without replacement, the base always in, reproducible.
    picked = sp.draw(cands, 4, seed=1)
    assert picked[0] == 0 and len(set(picked)) == 4 and picked == sp.draw(cands, 4, seed=1)
    assert sp.draw(cands, 50, seed=1) == list(range(9))


def test_best_is_the_base_when_the_base_is_already_optimal(planted, tmp_path):
    energy_dir, gt_dir = planted
    record_run(
        energy_dir, SegmentationConfig(changepoint=NO_CP, threshold=1.0)
    )  # the planted settings: F1 = 1
    cfg = sweep_cfg(energy_dir, gt_dir, tmp_path / "s", **THRESHOLD_ONLY, max_duration_sec=[0.0, 3.0])
    data, _, _ = sw.load_sweep_data(cfg)
    cands, _ = sp.distinct_candidates(data, sw.param_lists(cfg), sp.threshold_candidates(data))
    rows = scored_rows(data, cands)
    assert rows[0]["trial"] == 0 and rows[0]["f1"] == 1.0
    ties = [r for r in rows if r["no_worse"]]
    assert len(ties) > 1 and all(r["f1@0.5s"] == r["f1@2.0s"] == 1.0 for r in ties)  # others tie: base wins


def test_best_beats_a_bad_base_and_is_no_worse_at_any_tolerance(planted, tmp_path):
    energy_dir, gt_dir = planted
    record_run(energy_dir, SegmentationConfig(changepoint=NO_CP, threshold=1.6))  # misses the 'low' blocks
    cfg = sweep_cfg(energy_dir, gt_dir, tmp_path / "s", **THRESHOLD_ONLY)
    data, _, _ = sw.load_sweep_data(cfg)
    cands, _ = sp.distinct_candidates(data, sw.param_lists(cfg), sp.threshold_candidates(data))
    rows = scored_rows(data, cands)
    base, best = next(r for r in rows if r["trial"] == 0), rows[0]
    assert base["recall"] < 1.0 and best["trial"] != 0 and best["f1"] == 1.0
    assert all(best[f"f1@{t}s"] >= base[f"f1@{t}s"] for t in ("0.5", "2.0"))


def test_a_trial_worse_at_any_tolerance_is_never_chosen():
    base = {"trial": 0, "score": 0.9, "f1@1.0s": 0.8, "f1@2.0s": 0.9, "up_count": 2}
    sharper = {"trial": 1, "score": 0.97, "f1@1.0s": 0.7, "f1@2.0s": 0.97, "up_count": 1}  # worse at 1 s
    better = {"trial": 2, "score": 0.92, "f1@1.0s": 0.8, "f1@2.0s": 0.92, "up_count": 3}
    rows = [dict(r) for r in (sharper, base, better)]
    ts.rank_trials(rows, [1.0, 2.0], {"up_count": 2}, base)
    assert [r["trial"] for r in rows] == [2, 0, 1] and not rows[2]["no_worse"]
    rows = [dict(r) for r in (sharper, base)]
    ts.rank_trials(rows, [1.0, 2.0], {"up_count": 2}, base)
    assert rows[0]["trial"] == 0  # nothing at least as good everywhere: the base
    # Equal scores: the threshold nearest the base's (ratio) wins, whatever the trial order.
    far = {**better, "trial": 3, "threshold": 0.5, "up_count": 2}
    near = {**better, "trial": 4, "threshold": 1.25, "up_count": 2}
    rows = [dict(r) for r in (far, {**base, "threshold": 1.0}, near)]
    ts.rank_trials(rows, [1.0, 2.0], {"up_count": 2}, {**base, "threshold": 1.0})
    assert [r["trial"] for r in rows] == [4, 3, 0]


def test_per_video_auto_thresholds_are_the_base(planted, tmp_path):
    energy_dir, gt_dir = planted
    own = {"cam_a": 1.0, "cam_b": 1.5}
    record_run(
        energy_dir, SegmentationConfig(changepoint=NO_CP, threshold=1.0), thresholds=own, source="auto"
    )
    cfg = sweep_cfg(energy_dir, gt_dir, tmp_path / "s", **THRESHOLD_ONLY)
    data, _, _ = sw.load_sweep_data(cfg)
    assert data.recorded == own and ts.number(data.base.segmentation.threshold) is None
    _, rows = ts.video_scores(data, data.base)  # each video with its own threshold
    assert rows["cam_a"] == ts.video_scores(data, {"threshold": 1.0})[1]["cam_a"]
    assert rows["cam_b"] == ts.video_scores(data, {"threshold": 1.5})[1]["cam_b"]
    thresholds = sp.threshold_candidates(data, [1.0], [], [])
    assert thresholds == [(None, "base"), (1.25, "median*1")]
    cands, _ = sp.distinct_candidates(data, {}, thresholds)
    assert to_dict(cands[0].settings)["segmentation"]["threshold"] == "auto"  # what best.yaml would say
    # Different fixed thresholds cannot be one best.yaml: refused in one line.
    record_run(
        energy_dir, SegmentationConfig(changepoint=NO_CP, threshold=1.0), thresholds=own, source="fixed"
    )
    with pytest.raises(rt.JobError, match="different thresholds"):
        sw.load_sweep_data(cfg)


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
    cp = ChangePointConfig(enable=True, method="code_mmd")
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
    cfg = sweep_cfg(
        tmp_path / "out",
        gt,
        tmp_path / "s",
        threshold=[1.0],
        changepoint_enable=[False, True],
        changepoint_k=[4],
    )
    data, _, _ = sw.load_sweep_data(cfg)
    assert set(data.videos[0].changes) == {4, 5}  # the swept k and the base's (the default 5)
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
    # Starts agree to the frame (so at least half the boundaries at 0.5 s); ends follow the end rule.
    assert res["recall@0.5s"] >= 0.5


def test_swept_names_are_config_keys_set_by_one_override():
    # Every swept name is one space.* list and one key of what best.yaml holds (SWEPT, named once).
    space = {f.name for f in dataclasses.fields(sw.SweepSpaceConfig)}
    assert space == set(ts.SWEPT) | {"threshold_quantiles", "threshold_factors", "threshold_rules"}
    base = ts.SegmentSettings()
    for name, key in ts.SWEPT.items():
        allowed = (ts.swept_type(name), type(None), str) if name == "threshold" else ts.swept_type(name)
        assert isinstance(get_key(base, key), allowed), key  # threshold: a number or "auto"
    s = with_overrides(
        base, {"energy.smoothing.alpha": 0.4, "segmentation.changepoint.k": 6, "segmentation.up_count": 3}
    )
    assert (s.energy.smoothing.alpha, s.segmentation.changepoint.k, s.segmentation.up_count) == (0.4, 6, 3)
    assert base == ts.SegmentSettings() and s.segmentation.down_count == base.segmentation.down_count
    assert ts.settings_for(base, {"smoothing_alpha": 0.4, "threshold_quantile": 0.5}) == with_overrides(
        base, {"energy.smoothing.alpha": 0.4}
    )
    with pytest.raises(ConfigError, match="segmentation.max_duration_sec"):  # rebuilt, so validated
        with_overrides(base, {"segmentation.max_duration_sec": 0.3})
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

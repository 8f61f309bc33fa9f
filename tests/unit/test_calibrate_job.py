"""calibrate job, energy.jsonl reader and threshold reports, on synthetic segment_folder outputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from helpers import write_energy_outputs

from laps_ray.core.smoothing import SmoothingConfig
from laps_ray.io.energy_store import EnergyFormatError, find_energy_files, read_energy_jsonl, read_run_meta
from laps_ray.io.reports import ReportError, read_report_threshold, threshold_keys
from laps_ray.jobs import calibrate as cal

T, STRIDE, FPS = 16, 4, 20.0  # source fps = target fps: source frames = processed frames
NO_SMOOTHING = SmoothingConfig(method="none")


def write_video(root: Path, stem: str, energies: dict[str, np.ndarray], gated=None, codes=None) -> Path:
    """A segment_folder-style <root>/<stem>/ (energy.jsonl unsmoothed, as calibrate reads raw energies)."""
    params = {"segmentation": {}, "threshold": 1.0}
    return write_energy_outputs(
        root, stem, energies, gated=gated, codes=codes, smoothing=NO_SMOOTHING, params=params,
        T=T, stride=STRIDE, fps=FPS,
    )  # fmt: skip


def action_intervals(rng, duration: float) -> list[tuple[float, float]]:
    """Alternating rest (2-6 s) and action (2-5 s) intervals."""
    out, t = [], rng.uniform(1, 3)
    while True:
        a = rng.uniform(2, 5)
        if t + a > duration - 1:
            return out
        out.append((t, t + a))
        t += a + rng.uniform(2, 6)


def window_truth(W: int, intervals) -> np.ndarray:
    mid = (np.arange(W) * STRIDE + (T - 1) / 2) / FPS
    return np.array([any(s <= m < e for s, e in intervals) for m in mid])


def synthetic_run(root: Path, seed: int, informative=True, velocity_informative=True, W=300):
    """Two videos; returns {stem: (intervals, truth)}. quantized separates perfectly at (0.9, 1.1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for stem in ("vid_a", "vid_b"):
        duration = ((W - 1) * STRIDE + T) / FPS
        iv = action_intervals(rng, duration)
        truth = window_truth(W, iv)
        if informative:
            q = np.where(truth, rng.uniform(1.1, 2.0, W), rng.uniform(0.1, 0.9, W))
        else:
            q = rng.uniform(0.1, 2.0, W)
        lab = truth if velocity_informative else rng.random(W) < 0.4
        v = np.where(lab, rng.lognormal(np.log(0.05), 0.3, W), rng.lognormal(np.log(0.005), 0.3, W))
        write_video(root, stem, {"quantized": q, "prequant": q * 3, "velocity": v})
        out[stem] = (iv, truth, q)
    return out


def run_cal(tmp_path: Path, **kw) -> cal.CalibrateResult:
    # The expectations below were worked out for these series and rules (the job's defaults follow
    # segment_folder's automatic threshold: the motion energy, which these synthetic runs do not have).
    kw.setdefault("sources", ["quantized"])
    kw.setdefault("labels", cal.LabelRuleConfig(method="gmm_log", proxy="velocity"))
    kw.setdefault("smoothing", SmoothingConfig())
    cfg = cal.CalibrateJobConfig(energy=str(tmp_path / "out"), output=str(tmp_path / "calib.json"), **kw)
    return cal.run(cfg)


# ---------------------------------------------------------------- energy.jsonl reader


def test_read_energy_jsonl_arrays(tmp_path):
    W = 6
    q = np.arange(W, dtype=float) + 0.5
    gated = np.array([0, 0, 1, 0, 0, 0], bool)
    d = write_video(tmp_path, "v", {"quantized": q, "velocity": q / 10}, gated=gated)
    tr = read_energy_jsonl(d / "energy.jsonl")
    assert tr.num_windows == W and tr.window.tolist() == list(range(W))
    assert tr.codes.shape == (W, T - 1)
    assert (tr.codes[2] == -1).all() and tr.has_codes.tolist() == [True, True, False, True, True, True]
    assert tr.energy[2] == 0.0 and tr.energy[3] == 3.5 and tr.gated.tolist() == gated.tolist()
    assert tr.series("velocity")[2] == pytest.approx(0.25)  # velocity kept for a gated window
    assert tr.t_end[1] == pytest.approx((4 + 15) / 20)
    meta = read_run_meta(d)
    assert (meta.T, meta.stride, meta.target_fps, meta.fps) == (16, 4, 20.0, 20.0)
    assert find_energy_files(tmp_path) == {"v": d / "energy.jsonl"}
    with pytest.raises(EnergyFormatError, match="no energy series 'prequant'; available: energy"):
        tr.series("prequant")


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda recs: recs.pop(2), r"energy.jsonl:3: window 3 where window 2 was expected"),
        (lambda recs: recs.__setitem__(1, "{not json"), r"energy.jsonl:2: not valid JSON"),
        (lambda recs: recs[3].pop("t_end"), r"energy.jsonl:4: missing key\(s\) \['t_end'\]"),
        (lambda recs: recs[1].__setitem__("codes", [1, 2]), r"energy.jsonl:2: 2 codes where earlier windows"),
        (
            lambda recs: recs[0].__setitem__("energy", "x"),
            r"energy.jsonl:1: 'energy' must be a finite number",
        ),
        (
            lambda recs: recs[2].__setitem__("features", [0.1, "x"]),
            r"energy.jsonl:3: 'features' must be a list of numbers or null",
        ),
    ],
)
def test_read_energy_jsonl_errors_name_file_and_line(tmp_path, mutate, message):
    d = write_video(tmp_path, "v", {"quantized": np.ones(5), "velocity": np.ones(5)})
    path = d / "energy.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    mutate(recs)
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in recs) + "\n")
    with pytest.raises(EnergyFormatError, match=message):
        read_energy_jsonl(path)


def test_motion_features_are_read_back_and_their_absence_is_explained(tmp_path):
    from laps_ray.core.changepoint import ChangePointConfig
    from laps_ray.pipeline.calibration_data import CalibrationDataError, track_changes

    d = write_video(tmp_path, "v", {"quantized": np.ones(12), "velocity": np.ones(12)})
    path = d / "energy.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    old = read_energy_jsonl(path)  # a file from before features were recorded
    assert old.features.shape == (12, 0)
    with pytest.raises(CalibrationDataError, match="no motion features.*re-run segment_folder"):
        track_changes(old, ChangePointConfig())
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(12, 5))
    for i, r in enumerate(recs):
        r["features"] = None if i == 3 else feats[i].tolist()
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    tr = read_energy_jsonl(path)
    assert np.isnan(tr.features[3]).all()
    np.testing.assert_array_equal(np.delete(tr.features, 3, axis=0), np.delete(feats, 3, axis=0))
    assert track_changes(tr, ChangePointConfig()).shape == (12,)


# ---------------------------------------------------------------- calibrate


def test_calibrate_pseudo_labels_find_the_separating_threshold(tmp_path):
    videos = synthetic_run(tmp_path / "out", seed=1)
    r = run_cal(tmp_path)
    rep = json.loads(Path(r.output).read_text())
    assert rep["labels"]["kind"] == "pseudo" and rep["labels"]["method"] == "gmm_log"
    truth = np.concatenate([t for _, t, _ in videos.values()])
    assert rep["labels"]["n_pos"] == int(truth.sum())  # gmm_log on velocity recovers the truth
    raw = rep["quantized"]["raw"]
    q = np.concatenate([q for _, _, q in videos.values()])
    gap = (q[~truth].max(), q[truth].min())  # inside (0.9, 1.1) by construction
    assert gap[0] < raw["best_f1"]["thr"] <= gap[1] and gap[0] < raw["best_j"]["thr"] <= gap[1]
    assert raw["best_f1"]["f1"] == 1.0 and raw["auc"] == 1.0 and raw["separates"] and raw["warning"] is None
    assert rep["quantized"]["smoothed"]["auc"] > 0.9  # EMA 0.7 blurs edges but still separates
    assert rep["warnings"] == [] and rep["videos"] == ["vid_a", "vid_b"]
    assert set(rep["per_video"]) == {"vid_a", "vid_b"}
    assert rep["per_video"]["vid_a"]["quantized"]["raw_auc"] == 1.0
    assert rep["recommended_key"] == "quantized.smoothed.best_f1.thr"
    assert read_report_threshold(r.output, "quantized.raw.best_f1.thr") == raw["best_f1"]["thr"]
    text = cal.summary_text(r)
    assert "WARNING" not in text and "quantized.raw: AUC 1.000" in text


def test_calibrate_flags_uninformative_energy_loudly(tmp_path, caplog, capsys):
    synthetic_run(tmp_path / "out", seed=2, informative=False)
    out = tmp_path / "calib.json"
    with caplog.at_level(logging.WARNING), pytest.raises(SystemExit) as exc:
        cal.main(
            ["--energy", str(tmp_path / "out"), "--output", str(out), "--strict"]
            + ["sources=[quantized]", "labels.proxy=velocity", "labels.method=gmm_log"]
            + ["smoothing.method=ema"]
        )
    assert exc.value.code == 1  # --strict: a meaningless threshold fails the job
    rep = json.loads(out.read_text())
    raw = rep["quantized"]["raw"]
    assert abs(raw["auc"] - 0.5) < 0.1 and not raw["separates"]
    assert "does not separate" in raw["warning"]
    assert any(w.startswith("quantized.raw:") for w in rep["warnings"])
    printed = capsys.readouterr().out
    assert "WARNING: quantized.raw" in printed and "DOES NOT SEPARATE" in printed
    assert any(
        "DOES NOT SEPARATE" in rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING
    )
    # Reading that threshold repeats the report's warning in the log.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        read_report_threshold(out, "quantized.raw.best_f1.thr")
    assert any("does not separate" in rec.getMessage() for rec in caplog.records)


def test_calibrate_uses_ground_truth_when_given(tmp_path):
    # Velocity (the pseudo-label proxy) is noise; the quantized energy follows the GT actions.
    videos = synthetic_run(tmp_path / "out", seed=3, velocity_informative=False)
    pseudo = run_cal(tmp_path).report["quantized"]["raw"]
    assert not pseudo["separates"]  # against noise labels even a perfect energy looks useless
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    gt_fps = 10.0
    for stem, (iv, truth, _) in videos.items():
        n = round(((len(truth) - 1) * STRIDE + T) / FPS * gt_fps)
        t = (np.arange(n) + 0.5) / gt_fps
        labels = ["SIL"] * n
        for k, (s, e) in enumerate(iv):
            for i in np.flatnonzero((t >= s) & (t < e)):
                labels[i] = f"act{k % 3}"
        (gt_dir / stem).write_text("\n".join(labels) + "\n")  # MS-TCN format, SIL = background
    r = run_cal(tmp_path, gt=str(gt_dir), fps=gt_fps)
    rep = r.report
    assert rep["labels"]["kind"] == "ground_truth" and rep["labels"]["background_labels"] == [
        "background",
        "SIL",
    ]
    raw = rep["quantized"]["raw"]
    # Window labels from GT at 10 fps agree with the truth except possibly at an interval edge.
    assert raw["auc"] > 0.98 and raw["separates"] and raw["warning"] is None
    assert 0.9 <= raw["best_f1"]["thr"] <= 1.1
    # With SIL not declared as background every window is "active": a clear error, not a silent report.
    cfg = cal.CalibrateJobConfig(
        energy=str(tmp_path / "out"),
        gt=str(gt_dir),
        fps=gt_fps,
        output=str(tmp_path / "x.json"),
        sources=["quantized"],
        labels=cal.LabelRuleConfig(background_labels=[]),
    )
    with pytest.raises(cal.rt.JobError, match="every window active"):
        cal.run(cfg)


def test_report_keys_round_trip_and_missing_key_lists_them(tmp_path):
    synthetic_run(tmp_path / "out", seed=4)
    r = run_cal(tmp_path, sources=["quantized", "prequant"])
    rep = json.loads(Path(r.output).read_text())
    keys = threshold_keys(rep)
    assert keys == [
        f"{s}.{v}.{c}.thr"
        for s in ("quantized", "prequant")
        for v in ("raw", "smoothed")
        for c in ("best_f1", "best_j")
    ]
    for key in keys:
        s, v, c, _ = key.split(".")
        assert read_report_threshold(r.output, key) == rep[s][v][c]["thr"]
    with pytest.raises(ReportError) as info:
        read_report_threshold(r.output, "quantized.best_f1.thr")
    msg = str(info.value)
    assert "calib.json has no key 'quantized.best_f1.thr'" in msg
    assert "there: stats, raw, smoothed" in msg
    assert "available: " + ", ".join(keys) in msg
    with pytest.raises(ReportError, match="'labels.kind' holds 'pseudo', not a finite number"):
        read_report_threshold(r.output, "labels.kind")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ReportError, match="top level must be an object"):
        read_report_threshold(tmp_path / "bad.json", "a.thr")


def test_gated_rest_windows_take_part_by_default(tmp_path):
    """With gates on, rest windows are gated (energy 0, no speed): leaving them out would leave only
    moving windows, and the pseudo-labels would split motion against motion."""
    rng = np.random.default_rng(7)
    for stem in ("vid_a", "vid_b"):
        W = 200
        truth = window_truth(W, action_intervals(rng, ((W - 1) * STRIDE + T) / FPS))
        v = np.where(truth, rng.lognormal(np.log(0.01), 1.0, W), 0.0)
        q = np.where(truth, 0.3 + 100 * v * rng.uniform(0.8, 1.2, W), 0.0)  # energy follows motion
        write_video(tmp_path / "out", stem, {"quantized": q, "prequant": q, "velocity": v}, gated=~truth)
    raw = json.loads(Path(run_cal(tmp_path).output).read_text())["quantized"]["raw"]
    assert raw["n"] == 400 and raw["n_neg"] > 100  # the gated rest windows are the negatives
    assert raw["separates"] and raw["best_f1"]["thr"] > 0.0  # never the "always on" threshold 0
    moving = json.loads(Path(run_cal(tmp_path, include_gated=False).output).read_text())["quantized"]
    assert moving["raw"]["n"] < 200 and moving["raw"]["auc"] < raw["auc"]

"""The sweep scores a setting exactly as ``evaluate`` scores segment_folder's output made with it.

Issue #9: the sweep used to end a segment one target-fps frame after its last frame's interpolated
time, while segment_folder writes it ending where the next processed frame starts
(``core.timeline``), so the sweep ranked settings on segments nobody writes. Here two small synthetic
videos (source 30 and 25 fps, processed at 20 fps: the two rules differ by 1/60 s and 1/100 s) are
segmented by the real per-video pipeline with one fixed setting; the sweep, on the cached outputs,
must give every video the same boundary P/R/F1 as ``evaluate`` gives the written ``segments.json``.
"""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import SMALL_SCENE_GATES, tiny_checkpoint

from laps_ray.config import to_dict
from laps_ray.core.energy import EnergyConfig
from laps_ray.io.exports import ExportConfig
from laps_ray.io.synthetic import make_action_video
from laps_ray.jobs import evaluate as ev
from laps_ray.jobs import sweep_thresholds as sw
from laps_ray.pipeline import threshold_sweep as ts
from laps_ray.pipeline.local import process_video_local
from laps_ray.pipeline.outputs import VideoContext
from laps_ray.pipeline.window_processor import WindowProcessor
from laps_ray.tracking.base import TrackerConfig

T, STRIDE, TARGET_FPS = 16, 4, 20.0
# The fixed setting, in swept names; smoothing and up_count differ from the sweep's base (the defaults),
# so the sweep's override of its base must reproduce segment_folder's settings too.
SETTING = {"threshold": 0.0015, "smoothing_alpha": 0.5, "up_count": 1}
VIDEOS = {  # stem: (source fps, bursts, seed)
    "cam30": (30.0, [(1.0, 2.5, "circle"), (3.5, 5.0, "shake")], 0),
    "cam25": (25.0, [(0.8, 2.0, "shake"), (3.0, 4.6, "circle")], 1),
}
TOLS = [0.0, 0.1, 0.5, 2.0]
KEYS = ["boundary/num_pred", "boundary/num_gt"] + [
    f"boundary/{m}@{t}s" for t in ("0.0", "0.1", "0.5", "2.0") for m in ("precision", "recall", "f1")
]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """segment_folder outputs of the two videos made with SETTING, their GT, and SETTING's settings."""
    d = tmp_path_factory.mktemp("sweep_eq")
    ckpt = tiny_checkpoint(d / "tok", T=T)  # the velocity energy does not use its weights
    settings = ts.trial_best(
        ts.SegmentSettings(EnergyConfig(source="velocity")), SETTING, SETTING["threshold"]
    )
    wp = WindowProcessor(TrackerConfig(), SMALL_SCENE_GATES, settings.energy, ckpt, T=T, tokenizer_batch=8)
    out, gt = d / "out", d / "gt"
    gt.mkdir()
    for stem, (fps, bursts, seed) in VIDEOS.items():
        src = d / f"{stem}.mp4"
        doc = make_action_video(src, duration_s=6, fps=fps, size=(96, 72), bursts=bursts, seed=seed)
        (gt / f"{stem}.json").write_text(json.dumps(doc))
        ctx = VideoContext(
            key=src.name,
            source=str(src),
            out_dir=str(out / stem),
            energy=settings.energy,
            segmentation=settings.segmentation,
            export=ExportConfig(clips=False, codes=False, plot=False),
            T=T,
            stride=STRIDE,
            target_fps=TARGET_FPS,
            params={"T": T, "stride": STRIDE, "target_fps": TARGET_FPS, "energy": to_dict(settings.energy)},
            checkpoint_sha256="ckpt",
            config_sha256="cfg",
        )
        assert process_video_local(wp, ctx)["status"] == "done"
    return out, gt, settings


def sweep_rows(out, gt, tmp_path, tolerance: float) -> tuple[ts.SegmentSettings, dict]:
    """The sweep's per-video scores of SETTING (base = the defaults, as configs/sweep_thresholds.yaml)."""
    cfg = sw.SweepJobConfig(
        input=str(out), gt=str(gt), output=str(tmp_path / "s"), tolerance_sec=tolerance, tolerances_sec=TOLS
    )
    data, labels, energy = sw.load_sweep_data(cfg)
    assert labels["kind"] == "ground_truth" and energy["source"] == "velocity"
    return ts.video_scores(data, SETTING)


def test_sweep_score_equals_evaluate_of_segment_folder_output(outputs, tmp_path):
    out, gt, used = outputs
    for stem in VIDEOS:  # meaningful: each video has a segment that ends inside it
        doc = json.loads((out / stem / "segments.json").read_text())
        assert any(s["end_sec"] < doc["video_duration_sec"] - 0.1 for s in doc["segments"])
    settings, rows = sweep_rows(out, gt, tmp_path, tolerance=0.5)
    assert settings == used  # the sweep's override of its base = what segment_folder ran with
    evaluated = ev.run(
        ev.EvaluateJobConfig(pred=str(out), gt=str(gt), output=str(tmp_path / "e"), tolerances_sec=TOLS)
    )
    for stem in VIDEOS:
        assert {k: rows[stem][k] for k in KEYS} == {k: evaluated.per_video[stem][k] for k in KEYS}, stem
    # The mean over videos is the trial's score, and evaluate's summary.
    data, _, _ = sw.load_sweep_data(
        sw.SweepJobConfig(
            input=str(out), gt=str(gt), output=str(tmp_path / "s"), tolerance_sec=0.5, tolerances_sec=TOLS
        )
    )
    assert ts.score_settings(data, SETTING)["f1"] == evaluated.summary["boundary/f1@0.5s"]


def test_sweep_scores_segment_folder_seconds_to_the_last_digit(outputs, tmp_path):
    """Ground truth = segment_folder's own output: evaluate finds every boundary at tolerance 0, and so
    must the sweep (the old end-time rule put every end 1/60 s or 1/100 s late here)."""
    out, _, _ = outputs
    own = tmp_path / "own_gt"
    own.mkdir()
    for stem in VIDEOS:
        shutil.copy(out / stem / "segments.json", own / f"{stem}.json")
    evaluated = ev.run(
        ev.EvaluateJobConfig(pred=str(out), gt=str(own), output=str(tmp_path / "e"), tolerances_sec=TOLS)
    )
    _, rows = sweep_rows(out, own, tmp_path, tolerance=0.0)
    for stem in VIDEOS:
        assert evaluated.per_video[stem]["boundary/f1@0.0s"] == 1.0
        assert rows[stem]["boundary/num_gt"] >= 3
        assert {k: rows[stem][k] for k in KEYS} == {k: evaluated.per_video[stem][k] for k in KEYS}, stem

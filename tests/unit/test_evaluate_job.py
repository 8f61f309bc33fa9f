"""evaluate job: real Breakfast GT (MS-TCN format) and LAPS-JSON GT against segment_folder-style outputs."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from helpers import BREAKFAST, write_segments_doc

from laps_ray.io.ground_truth import FALLBACK_FPS, GroundTruth, load_ground_truth, scoring_fps
from laps_ray.io.labels import read_frame_labels
from laps_ray.jobs import evaluate as ev

FPS = 15.0
A, B, C = "P03_cam01_P03_coffee", "P08_webcam01_P08_coffee", "P06_cam01_P06_coffee"


def write_predictions(
    root: Path, stem: str, segs: list[tuple[float, float, str | None, float]], duration: float
) -> None:
    """A segment_folder-style <root>/<stem>/segments.json (start/end in seconds, label, mean_energy)."""
    segments = [
        {
            "start_sec": s,
            "end_sec": e,
            "start_frame": 0,
            "end_frame": 0,
            "mean_energy": m,
            "clip": f"clips/segment_{k:04d}.mp4",
            "codes": f"codes/segment_{k:04d}.json",
            **({"label": lab} if lab is not None else {}),
        }
        for k, (s, e, lab, m) in enumerate(segs)
    ]
    write_segments_doc(
        root / stem, stem, duration, 30.0, segments, {"T": 16, "stride": 4, "target_fps": 20.0}
    )


@pytest.fixture()
def breakfast(tmp_path):
    """GT = real P03 and P08 files; predictions derived from them by known edits (as unit/test_metrics.py).

    P03 runs: SIL[0,38) take_cup[38,199) pour_coffee[199,378) pour_milk[378,775) SIL[775,917).
    Prediction: take_cup [48,199) (start +10 frames), one segment [199,765) over pour_coffee + pour_milk
    (merged, end -10 frames). P08 runs: SIL[0,2) pour_coffee[2,158) SIL[158,271); prediction [2,70).
    Segments carry unsupervised ids; frames outside them are uncovered (= SIL).
    """
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    for stem in (A, B):
        shutil.copy(BREAKFAST / stem, gt / stem)
    assert len(read_frame_labels(gt / A)) == 917 and len(read_frame_labels(gt / B)) == 271
    f = 1 / FPS
    write_predictions(
        pred, A, [(48 * f, 199 * f, "segment_0000", 3.0), (199 * f, 765 * f, "segment_0001", 2.0)], 917 * f
    )
    write_predictions(pred, B, [(2 * f, 70 * f, "segment_0000", 1.0)], 271 * f)
    return gt, pred


def cfg_for(gt, pred, out, **kw) -> ev.EvaluateJobConfig:
    return ev.EvaluateJobConfig(pred=str(pred), gt=str(gt), output=str(out), **kw)


def test_breakfast_metrics_equal_hand_computed_values(breakfast, tmp_path):
    gt, pred = breakfast
    r = ev.run(cfg_for(gt, pred, tmp_path / "eval", fps=FPS, uncovered_label="SIL"))
    s = r.summary
    # Frame metrics: identical frames to tests/unit/test_metrics.py's breakfast_pair once the Hungarian map
    # (on covered frames) sends segment_0000 -> take_cup / pour_coffee and segment_0001 -> pour_milk.
    # The ids are not GT names, so auto picks hungarian_video, whose MoF (TW-FINCH) is the mean of the
    # per-video accuracies 718/917 and 183/271; the frames pooled give 901/1188.
    assert s["label_mapping"] == "hungarian_video" and s["label_mapping_reason"].startswith("auto: 2 of 2")
    assert s["mof"] == pytest.approx(100 * (718 / 917 + 183 / 271) / 2)
    assert s["mof_pooled"] == pytest.approx(100 * 901 / 1188)
    assert s["edit"] == pytest.approx(90.0)
    assert s["F1@10"] == pytest.approx(100 * 14 / 15) and s["F1@25"] == pytest.approx(100 * 14 / 15)
    assert s["F1@50"] == pytest.approx(80.0)
    assert r.per_video[A]["label_map"] == {"segment_0000": "take_cup", "segment_0001": "pour_milk"}
    # Boundaries. P03: GT cuts at frames 38, 199, 378, 775; predicted 48, 199, 765 (the shared 199 once):
    # 10 frames = 0.67 s -> tp 3 of 4 at 2 s and 5 s (378 is 11.9 s from any prediction).
    a = r.per_video[A]
    assert (a["boundary/num_pred"], a["boundary/num_gt"]) == (3, 4)
    assert (a["boundary/precision@2.0s"], a["boundary/recall@2.0s"]) == (1.0, 0.75)
    assert a["boundary/f1@2.0s"] == pytest.approx(6 / 7) and a["boundary/f1@5.0s"] == pytest.approx(6 / 7)
    # P08: GT 2, 158; predicted 2, 70 (88 frames = 5.87 s off) -> tp 1, fp 1, fn 1 at both tolerances.
    b = r.per_video[B]
    assert (b["boundary/precision@5.0s"], b["boundary/recall@5.0s"], b["boundary/f1@5.0s"]) == (0.5, 0.5, 0.5)
    assert s["boundary/f1@2.0s"] == pytest.approx((6 / 7 + 0.5) / 2)
    assert s["boundary/precision@2.0s"] == pytest.approx(0.75)
    # mAP: GT detections (SIL excluded) take_cup, pour_coffee, pour_milk, pour_coffee -> npos 4.
    # By mean_energy: A0 IoU 151/161 (TP at .5 and .75), A1 vs pour_milk 387/576 = .67 (TP at .5 only),
    # B0 vs pour_coffee 68/156 = .44 (FP). @.5: recall .25, .5 at precision 1 -> AP .5; @.75: AP .25.
    assert s["mAP@0.5"] == pytest.approx(0.5) and s["mAP@0.75"] == pytest.approx(0.25)
    assert s["num_missing_predictions"] == 0

    doc = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert doc["missing_predictions"] == [] and doc["videos"] == [A, B]
    assert doc["summary"]["mof"] == pytest.approx(s["mof"]) and "mAP" in doc["conventions"]
    assert doc["label_mapping"] == {
        "requested": "auto",
        "used": "hungarian_video",
        "reason": s["label_mapping_reason"],
    }
    assert doc["conventions"]["label_mapping"].startswith("hungarian_video: one-to-one Hungarian map")
    md = (tmp_path / "eval" / "metrics.md").read_text()
    assert md.startswith(
        "**label mapping: hungarian_video (auto: 2 of 2 predicted labels are not ground-truth"
    )
    assert "MoF = mean over videos of each video's accuracy**" in md
    assert "\n| video | pred | #GT | #pred | P@2.0s |" in md
    assert f"| {A} | ok | 5 | 2 | 1.000 | 0.750 | 0.857 |" in md
    assert "| **all** | 0 missing |" in md and "mAP@0.5 0.500" in md
    assert (tmp_path / "eval" / "config.yaml").is_file()
    # One map for all videos: segment_0000 (P03 take_cup 151 frames, P08 pour_coffee 68) -> take_cup and
    # segment_0001 -> pour_milk maximise agreement (538 frames), so P08's 68 predicted frames turn wrong.
    g = ev.run(
        cfg_for(
            gt,
            pred,
            tmp_path / "eval_global",
            fps=FPS,
            uncovered_label="SIL",
            label_mapping="hungarian_global",
        )
    )
    assert g.summary["label_map"] == {"segment_0000": "take_cup", "segment_0001": "pour_milk"}
    assert g.summary["mof"] == pytest.approx(100 * (901 - 68) / 1188)  # CTE: frames pooled
    assert "label mapping: hungarian_global (set explicitly)" in ev.summary_text(g)
    # Labels compared as they are: unsupervised ids never equal a GT name; only uncovered (= SIL) frames
    # that are SIL in the GT are right: A's uncovered [0,48) and [765,917) hold GT SIL 38 + 142 = 180,
    # B's [0,2) and [70,271) hold 2 + 113 = 115.
    n = ev.run(
        cfg_for(gt, pred, tmp_path / "eval_none", fps=FPS, uncovered_label="SIL", label_mapping="none")
    )
    assert n.summary["mof"] == pytest.approx(100 * (180 + 115) / 1188) and "label_map" not in n.per_video[A]


def test_missing_prediction_is_scored_empty_and_reported_loudly(breakfast, tmp_path, caplog, capsys):
    gt, pred = breakfast
    shutil.copy(BREAKFAST / C, gt / C)  # GT without a prediction
    run_json = {"items": {f"{C}.mp4": {"status": "failed", "reason": "decode error"}}}
    (pred / "run.json").write_text(json.dumps(run_json))  # segment_folder's manifest explains why
    out = tmp_path / "eval"
    argv = ["--pred", str(pred), "--gt", str(gt), "--output", str(out), "--fps", "15", "uncovered_label=SIL"]
    with caplog.at_level(logging.WARNING):
        ev.main(argv)
    printed = capsys.readouterr().out
    assert f"WARNING: 1 missing prediction(s) scored as empty: {C}" in printed
    warned = [r.getMessage() for r in caplog.records if "NO PREDICTION" in r.getMessage()]
    assert len(warned) == 1 and C in warned[0] and "run.json says failed: decode error" in warned[0]
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["unmatched_predictions"] == []  # run.json is not a prediction
    assert doc["missing_predictions"] == [C] and doc["summary"]["num_missing_predictions"] == 1
    c = doc["per_video"][C]
    assert c["missing"] and c["prediction"] is None and c["num_pred_segments"] == 0
    assert (c["boundary/precision@2.0s"], c["boundary/recall@2.0s"], c["boundary/f1@2.0s"]) == (1.0, 0.0, 0.0)
    labels = read_frame_labels(gt / C)
    # Every frame uncovered (= SIL): MoF = the SIL share, never a renamed "cluster".
    assert c["mof"] == pytest.approx(100 * labels.count("SIL") / len(labels))
    assert c["F1@10"] == 0.0 and c["mAP@0.5"] == 0.0
    assert doc["summary"]["boundary/f1@2.0s"] == pytest.approx((6 / 7 + 0.5 + 0.0) / 3)
    assert f"| {C} | **MISSING** |" in (out / "metrics.md").read_text()
    with pytest.raises(SystemExit) as exc:
        ev.main([*argv, "--strict"])
    assert exc.value.code == 1


def test_per_frame_label_predictions(breakfast, tmp_path):
    gt, _ = breakfast
    pred = tmp_path / "pred_frames"
    pred.mkdir()
    a = read_frame_labels(gt / A)
    a[38:48] = ["SIL"] * 10
    a[765:775] = ["SIL"] * 10
    a = ["pour_milk" if x == "pour_coffee" else x for x in a]
    b = read_frame_labels(gt / B)
    b[70:158] = ["SIL"] * 88
    (pred / f"{A}.txt").write_text("\n".join(a) + "\n")
    (pred / B).write_text("\n".join(b) + "\n")
    r = ev.run(cfg_for(gt, pred, tmp_path / "eval", fps=FPS, label_mapping="none"))
    # The same frames as the segment predictions above, given as labels: the same MS-TCN numbers.
    assert r.summary["mof"] == pytest.approx(100 * 901 / 1188) and r.summary["edit"] == pytest.approx(90.0)
    assert r.summary["F1@50"] == pytest.approx(80.0)
    assert r.per_video[A]["boundary/f1@2.0s"] == pytest.approx(6 / 7)
    # Labels that are GT names: auto picks none (MS-TCN's supervised protocol), the same numbers.
    a_ = ev.run(cfg_for(gt, pred, tmp_path / "eval_auto", fps=FPS))
    assert a_.summary["label_mapping"] == "none" and a_.summary["mof"] == pytest.approx(r.summary["mof"])


def test_label_mapping_flag(breakfast, tmp_path, capsys):
    gt, pred = breakfast
    out = tmp_path / "eval"
    argv = ["--pred", str(pred), "--gt", str(gt), "--output", str(out), "--fps", "15", "uncovered_label=SIL"]
    ev.main([*argv, "--label-mapping", "hungarian_global"])
    assert "label mapping: hungarian_global (set explicitly)" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["label_mapping"]["used"] == "hungarian_global"
    with pytest.raises(SystemExit) as exc:
        ev.main([*argv, "--label-mapping", "global"])
    assert exc.value.code == 2 and "'global' is now called 'hungarian_global'" in capsys.readouterr().err


def test_laps_json_ground_truth_hand_case(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    doc = {"video": "v.mp4", "video_duration_sec": 20.0, "segments": [{"start_sec": 2.0, "end_sec": 6.0}]}
    doc["segments"].append({"start_sec": 8.0, "end_sec": 14.0})
    (gt / "v_segments.json").write_text(json.dumps(doc))
    write_predictions(
        pred, "v", [(2.5, 6.0, None, 2.0), (9.0, 13.0, None, 1.0), (16.0, 18.0, None, 3.0)], 20.0
    )
    r = ev.run(cfg_for(gt, pred, tmp_path / "eval", fps=10.0, tolerances_sec=[0.5, 2.0]))
    v = r.per_video["v"]
    # Boundaries: GT 2, 6, 8, 14; predicted 2.5, 6, 9, 13, 16, 18.
    # @2 s: 2.5-2, 6-6, 9-8, 13-14 -> tp 4, fp 2, fn 0: P 2/3, R 1, F1 0.8
    # @0.5 s (inclusive): 2.5-2, 6-6 -> tp 2: P 1/3, R 1/2, F1 0.4
    assert (v["boundary/precision@2.0s"], v["boundary/recall@2.0s"]) == pytest.approx((2 / 3, 1.0))
    assert v["boundary/f1@2.0s"] == pytest.approx(0.8) and v["boundary/f1@0.5s"] == pytest.approx(0.4)
    # Frames at 10 fps (200): GT gt_0000 [20,60), gt_0001 [80,140), else background (= uncovered).
    # Prediction segment_0000 [25,60) -> gt_0000, segment_0001 [90,130) -> gt_0001, segment_0002 [160,180)
    # overlaps only background and is never renamed to it -> unmatched.
    # MoF: 35 + 40 + background 100 - 20 = 155 / 200.  Edit: [g0, g1, x] vs [g0, g1] -> 1 - 1/3.
    # F1@k: g0 IoU 35/40, g1 IoU 40/60 (TP at .1/.25/.5), x FP -> tp 2, fp 1, fn 0 -> 80 at every k.
    assert v["mof"] == pytest.approx(77.5) and v["edit"] == pytest.approx(200 / 3)
    assert (v["F1@10"], v["F1@25"], v["F1@50"]) == pytest.approx((80.0, 80.0, 80.0))
    assert v["label_map"] == {
        "segment_0000": "gt_0000",
        "segment_0001": "gt_0001",
        "segment_0002": "unmatched:segment_0002",
    }
    # mAP by mean_energy: [16,18) FP, [2.5,6) IoU .875 TP, [9,13) IoU 4/6: TP at .5, FP at .75. npos 2.
    # @.5: precision 0, 1/2, 2/3 at recall 0, .5, 1 -> envelope 2/3 -> AP 2/3; @.75: AP .5 * 1/2 = .25
    assert r.summary["mAP@0.5"] == pytest.approx(2 / 3) and r.summary["mAP@0.75"] == pytest.approx(0.25)


def test_ground_truth_discovery_errors(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "README.md").write_text("not ground truth")
    with pytest.raises(FileNotFoundError, match="no <stem>.json"):
        load_ground_truth(gt)
    (gt / "v").write_text("a\na\nb\n")
    with pytest.raises(ValueError, match="per-frame label file, but no frame rate given"):
        load_ground_truth(gt)
    assert load_ground_truth(gt, fps=2.0)["v"].duration == 1.5
    (gt / "v.json").write_text(json.dumps({"video": "v.mp4", "video_duration_sec": 2.0, "segments": []}))
    with pytest.raises(ValueError, match="ground truth for 'v' twice"):
        load_ground_truth(gt, fps=2.0)


def test_scoring_fps_one_rule_for_frames_and_boundary_merging():
    """GT label rate, else --fps, else the prediction's source fps, else the fallback (said so)."""
    frames_gt = GroundTruth("v", Path("v"), "frames", 1.0, [], ["a"] * 15, 15.0)
    json_gt = GroundTruth("v", Path("v.json"), "laps_json", 1.0, [])
    assert scoring_fps(frames_gt, 10.0, 30.0) == (15.0, False)
    assert scoring_fps(json_gt, 10.0, 30.0) == (10.0, False)
    assert scoring_fps(json_gt, 0.0, 25.0) == (25.0, False)
    assert scoring_fps(json_gt) == (FALLBACK_FPS, True) and scoring_fps(None, 0.0, 20.0) == (20.0, False)


def test_auto_warns_when_labels_are_partly_gt_names(breakfast, tmp_path, caplog):
    gt, _ = breakfast
    pred = tmp_path / "pred_frames"
    pred.mkdir()
    a = ["pour_cofee" if x == "pour_coffee" else x for x in read_frame_labels(gt / A)]  # a misspelt class
    (pred / A).write_text("\n".join(a) + "\n")
    (pred / B).write_text((gt / B).read_text())
    with caplog.at_level(logging.WARNING):
        r = ev.run(cfg_for(gt, pred, tmp_path / "eval", fps=FPS))
    # Predicted labels: SIL, take_cup, pour_cofee, pour_milk (A) and pour_coffee (B): 1 of 5 is no GT name.
    assert r.summary["label_mapping"] == "hungarian_video"
    assert (
        "1 of 5 predicted labels are not ground-truth names (pour_cofee)" in r.summary["label_mapping_reason"]
    )
    assert any("set label_mapping=none" in rec.getMessage() for rec in caplog.records)

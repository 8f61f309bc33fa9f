"""Evaluation metrics on hand-computed cases and real Breakfast ground truth (label files: test_labels.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import BREAKFAST, BREAKFAST_FPS
from helpers import label_run_lengths as runs

from laps_ray.core.metrics import (
    DEFAULT_MERGE_TOL_SEC,
    aggregate_boundary_metrics,
    average_precision,
    boundary_metrics,
    boundary_scores,
    detection_map,
    edit_score,
    hungarian_label_map,
    label_runs,
    levenshtein,
    match_boundaries,
    merge_tol_for_fps,
    segment_boundaries,
    segment_confidence,
    segmental_f1_counts,
    segmentation_metrics,
)
from laps_ray.io.labels import Segment, frames_to_segments, read_frame_labels

# ---------------------------------------------------------------- boundaries


def test_shared_boundary_of_adjacent_segments_counted_once():
    segs = [(0.0, 2.0), (2.0, 5.0), (5.0, 9.0)]  # tiles [0, 9]: two cuts, the edges are not boundaries
    assert segment_boundaries(segs, 9.0).tolist() == [2.0, 5.0]
    # within merge tolerance -> one boundary at the mean; beyond it -> two (a real gap)
    assert segment_boundaries([(0, 2.0), (2.01, 5)], 5.0, merge_tol_sec=0.02).tolist() == [
        pytest.approx(2.005)
    ]
    assert segment_boundaries([(0, 2.0), (2.5, 5)], 5.0, merge_tol_sec=0.02).tolist() == [2.0, 2.5]
    # a prediction that does not start at 0 / end at the duration contributes both of its ends
    assert segment_boundaries([(1.0, 4.0)], 10.0).tolist() == [1.0, 4.0]


def test_merge_tolerance_is_half_a_frame():
    assert merge_tol_for_fps(30.0) == DEFAULT_MERGE_TOL_SEC and merge_tol_for_fps(20.0) == 0.025
    # At 25 fps (0.02 s): touching segments share one cut; ends one frame (0.04 s) apart stay two.
    segs = [(0.0, 1.0), (1.0, 2.0), (2.04, 3.0)]
    assert segment_boundaries(segs, 4.0, merge_tol_for_fps(25.0)).tolist() == [1.0, 2.0, 2.04, 3.0]
    with pytest.raises(ValueError, match="fps must be > 0"):
        merge_tol_for_fps(0.0)


def test_breakfast_gt_boundaries_not_duplicated():
    gt = frames_to_segments(read_frame_labels(BREAKFAST / "P03_cam01_P03_coffee"), BREAKFAST_FPS)
    b = segment_boundaries(gt, 917 / BREAKFAST_FPS, merge_tol_sec=0.5 / BREAKFAST_FPS)
    # 5 contiguous runs -> 4 cuts at frames 38, 199, 378, 775 (the original counted 8)
    np.testing.assert_allclose(b, np.array([38, 199, 378, 775]) / 15)


def greedy_nearest_per_gt(pred, gt, tol):
    """The original evaluator's matching: each GT (ascending) takes its nearest unused prediction."""
    used, tp = set(), 0
    for g in sorted(gt):
        free = [i for i in range(len(pred)) if i not in used]
        if not free:
            break
        i = min(free, key=lambda k: abs(pred[k] - g))
        if abs(pred[i] - g) <= tol:
            used.add(i)
            tp += 1
    return tp


def test_optimal_matching_beats_greedy():
    # GT 5.0 and 6.5, predictions 4.0 and 5.6, tol 1.0.
    # Greedy: GT 5.0 takes its nearest 5.6 (0.6 < 1.0); GT 6.5 is left with 4.0 (2.5 > tol) -> 1 match.
    # Optimal: 5.0-4.0 (1.0, exactly at tolerance) and 6.5-5.6 (0.9) -> 2 matches.
    pred, gt = [4.0, 5.6], [5.0, 6.5]
    assert greedy_nearest_per_gt(pred, gt, 1.0) == 1
    pairs = match_boundaries(np.array(pred), np.array(gt), 1.0)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 0), (1, 1)]
    s = boundary_scores(np.array(pred), np.array(gt), 1.0)
    assert (s["tp"], s["fp"], s["fn"], s["f1"]) == (2, 0, 0, 1.0)


def test_matching_prefers_smaller_distance_among_maximum_matchings():
    # one GT, two predictions in range: the nearer one is taken (count is 1 either way)
    pairs = match_boundaries(np.array([4.5, 5.2]), np.array([5.0]), 1.0)
    assert pairs.tolist() == [[1, 0]]


def test_tolerance_is_inclusive():
    gt = np.array([5.0])
    assert boundary_scores(np.array([7.0]), gt, 2.0)["tp"] == 1  # |7 - 5| = 2 = tol
    assert boundary_scores(np.array([7.0001]), gt, 2.0)["tp"] == 0
    assert boundary_scores(np.array([3.0]), gt, 2.0)["tp"] == 1


def test_boundary_edge_case_conventions():
    nothing = boundary_scores(np.array([]), np.array([]), 2.0)
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (1.0, 1.0, 1.0)
    no_gt = boundary_scores(np.array([3.0, 4.0]), np.array([]), 2.0)
    assert (no_gt["precision"], no_gt["recall"], no_gt["f1"], no_gt["fp"]) == (0.0, 1.0, 0.0, 2)
    no_pred = boundary_scores(np.array([]), np.array([3.0]), 2.0)
    assert (no_pred["precision"], no_pred["recall"], no_pred["f1"], no_pred["fn"]) == (1.0, 0.0, 0.0, 1)


def test_boundary_metrics_keys_and_aggregation():
    gt = [(0, 10), (10, 20), (20, 30)]  # boundaries 10, 20
    v1 = boundary_metrics([(0, 11), (11, 30)], gt, 30.0, tolerances_sec=(2.0, 0.5))  # pred boundary 11
    # @2.0s: 11 matches 10 -> tp 1, fp 0, fn 1: P 1, R 0.5, F1 2/3; @0.5s: tp 0 -> P 0, R 0, F1 0
    assert v1["boundary/num_pred"] == 1 and v1["boundary/num_gt"] == 2
    assert (v1["boundary/precision@2.0s"], v1["boundary/recall@2.0s"]) == (1.0, 0.5)
    assert v1["boundary/f1@2.0s"] == pytest.approx(2 / 3)
    assert v1["boundary/f1@0.5s"] == 0.0
    # video 2: predictions 3, 5, 7 against GT 5 -> tp 1, fp 2, fn 0: P 1/3, R 1, F1 0.5
    v2 = boundary_metrics([(3, 5), (5, 7), (7, 9.5)], [(0, 5), (5, 9.5)], 9.5, tolerances_sec=(2.0, 0.5))
    # (7, 9.5) ends at the duration: no boundary there; 5 is shared -> boundaries 3, 5, 7
    assert v2["boundary/num_pred"] == 3
    assert v2["boundary/f1@2.0s"] == pytest.approx(0.5)
    agg = aggregate_boundary_metrics([v1, v2], tolerances_sec=(2.0, 0.5))
    assert agg["boundary/num_videos"] == 2
    assert agg["boundary/f1@2.0s"] == pytest.approx((2 / 3 + 0.5) / 2)  # unweighted mean over videos
    # pooled: tp 2, pred 4, gt 3 -> P 0.5, R 2/3, F1 = 2*0.5*(2/3)/(0.5+2/3) = 4/7
    assert agg["boundary/precision@2.0s_pooled"] == pytest.approx(0.5)
    assert agg["boundary/f1@2.0s_pooled"] == pytest.approx(4 / 7)


# ---------------------------------------------------------------- MS-TCN metrics, hand cases


def test_label_runs_and_levenshtein():
    labels, starts, ends = label_runs(list("aabbbxa"), bg_class=("x",))
    assert labels == ["a", "b", "a"] and starts.tolist() == [0, 2, 6] and ends.tolist() == [2, 5, 7]
    assert levenshtein(list("kitten"), list("sitting")) == 3
    assert levenshtein([], list("abc")) == 3


def test_edit_score_hand_cases():
    # runs a b c vs a c: one deletion over max(3, 2) -> (1 - 1/3) * 100
    assert edit_score(list("aabbcc"), list("aaaccc"), bg_class=()) == pytest.approx(200 / 3)
    # background runs vanish before comparing: a x a -> [a, a] vs [a] -> 50
    assert edit_score(["a", "background", "a"], ["a", "a", "a"]) == pytest.approx(50.0)
    assert edit_score(["background"] * 3, ["background"] * 3) == 100.0  # both empty: defined as 100


def test_segmental_f1_follows_ms_tcn_order_and_no_fallback():
    gt = ["a"] * 10 + ["b"] * 10
    pred = ["a"] * 4 + ["c"] + ["a"] * 5 + ["b"] * 10
    # the 'c' run splits: a[0,4) IoU 4/10, c[4,5) no same-label GT, a[5,10) IoU 5/10, b IoU 1
    assert segmental_f1_counts(pred, gt, 0.1, bg_class=()) == (2, 2, 0)  # 2nd 'a' hits a taken GT -> FP
    assert segmental_f1_counts(pred, gt, 0.5, bg_class=()) == (2, 2, 0)  # a[0,4) FP, a[5,10) TP, c FP, b TP
    assert segmental_f1_counts(pred, gt, 0.6, bg_class=()) == (1, 3, 1)
    assert segmental_f1_counts(["a"] * 3, ["background"] * 3, 0.1) == (0, 1, 0)  # no GT segment at all


def test_hungarian_map_one_to_one_with_distinct_unmatched_ids():
    gt = list("aaaabbbb")
    pred = list("xxxyzzzz")  # overlaps x-a 3, y-a 1, z-b 4: best one-to-one is x->a, z->b (7 frames)
    assert hungarian_label_map(pred, gt) == {"x": "a", "y": "unmatched:y", "z": "b"}
    m = segmentation_metrics([pred], [gt], bg_class=(), label_mapping="hungarian_video")
    assert m["mof"] == pytest.approx(87.5)  # 7 / 8
    assert m["edit"] == pytest.approx(100 * (1 - 1 / 3))  # [a, unmatched:y, b] vs [a, b]
    # two neighbouring unmatched ids stay two segments: [a, u:y, u:w] vs [a] -> 1 - 2/3
    m2 = segmentation_metrics([list("xxyw")], [list("aaaa")], bg_class=(), label_mapping="hungarian_video")
    assert m2["edit"] == pytest.approx(100 / 3)


# ---------------------------------------------------------------- MS-TCN metrics on real Breakfast GT


@pytest.fixture(scope="module")
def breakfast_pair():
    """Predictions derived from the real GT of P03 and P08 by known edits."""
    gt_a = np.array(read_frame_labels(BREAKFAST / "P03_cam01_P03_coffee"))
    gt_b = np.array(read_frame_labels(BREAKFAST / "P08_webcam01_P08_coffee"))
    pred_a = gt_a.copy()
    pred_a[38:48] = "SIL"  # boundary SIL|take_cup shifted +10 frames
    pred_a[765:775] = "SIL"  # boundary pour_milk|SIL shifted -10 frames
    pred_a[pred_a == "pour_coffee"] = "pour_milk"  # pour_coffee merged into pour_milk
    pred_b = gt_b.copy()
    pred_b[70:158] = "SIL"  # boundary pour_coffee|SIL shifted -88 frames
    assert runs(gt_b) == [("SIL", 2), ("pour_coffee", 156), ("SIL", 113)]
    assert runs(pred_a) == [("SIL", 48), ("take_cup", 151), ("pour_milk", 566), ("SIL", 152)]
    assert runs(pred_b) == [("SIL", 2), ("pour_coffee", 68), ("SIL", 201)]
    return [pred_a, pred_b], [gt_a, gt_b]


def test_breakfast_ms_tcn_metrics_default_background(breakfast_pair):
    preds, gts = breakfast_pair
    # Default bg_class = ["background"]: SIL is an ordinary class here.
    # MoF (pooled frames):
    #   A: wrong = 10 (38..48) + 179 (pour_coffee) + 10 (765..775) = 199 -> correct 917 - 199 = 718
    #   B: wrong = 88 (70..158) -> correct 271 - 88 = 183;   (718 + 183) / (917 + 271) = 901 / 1188
    # Edit (mean over videos):
    #   A: [SIL, take_cup, pour_milk, SIL] vs [SIL, take_cup, pour_coffee, pour_milk, SIL]: 1 edit / 5 -> 80
    #   B: identical label sequence -> 100;   mean 90
    # F1@k (counts pooled over videos), predicted segments in order (a sequence's last run ends at F - 1,
    # as MS-TCN's script ends it):
    #   A: SIL[0,48) vs SIL[0,38): 38/48 = .79 TP; take_cup[48,199) vs [38,199): 151/161 = .94 TP;
    #      pour_milk[199,765) vs [378,775): 387/576 = .67 TP; SIL[765,916) vs [775,916): 141/151 = .93 TP;
    #      GT pour_coffee unmatched -> FN.  A: tp 4, fp 0, fn 1 at every k.
    #   B: SIL[0,2) IoU 1 TP; pour_coffee[2,70) vs [2,158): 68/156 = .436 -> TP at .10/.25, FP at .50;
    #      SIL[70,270) vs [158,270): 112/200 = .56 TP.  B: (3,0,0) at .10/.25; (2,1,1) at .50.
    #   @10, @25: tp 7, fp 0, fn 1 -> F1 = 2*7 / (2*7 + 0 + 1) = 14/15
    #   @50:      tp 6, fp 1, fn 2 -> F1 = 12 / 15 = 0.8
    m = segmentation_metrics(preds, gts)
    assert m["mof"] == pytest.approx(100 * 901 / 1188)
    assert m["edit"] == pytest.approx(90.0)
    assert m["F1@10"] == pytest.approx(100 * 14 / 15)
    assert m["F1@25"] == pytest.approx(100 * 14 / 15)
    assert m["F1@50"] == pytest.approx(80.0)
    assert (m["num_videos"], m["num_frames"]) == (2, 1188)


def test_breakfast_ms_tcn_metrics_sil_as_background(breakfast_pair):
    preds, gts = breakfast_pair
    # bg_class = ["SIL"]: SIL runs leave Edit and F1 but still count in MoF.
    #   A: [take_cup, pour_milk] vs [take_cup, pour_coffee, pour_milk]: 1 edit / 3 -> 66.67; tp 2, fp 0, fn 1
    #   B: [pour_coffee] vs [pour_coffee] -> 100; (1,0,0) at .10/.25, (0,1,1) at .50
    #   Edit mean (66.67 + 100) / 2; @10: 2*3 / (6 + 0 + 1) = 6/7; @50: tp 2, fp 1, fn 2 -> 4 / 7
    m = segmentation_metrics(preds, gts, bg_class=("SIL",))
    assert m["mof"] == pytest.approx(100 * 901 / 1188)
    assert m["edit"] == pytest.approx((200 / 3 + 100) / 2)
    assert m["F1@10"] == pytest.approx(100 * 6 / 7)
    assert m["F1@50"] == pytest.approx(100 * 4 / 7)


@pytest.mark.parametrize("mapping", ["hungarian_video", "hungarian_global"])
def test_breakfast_hungarian_on_renamed_ids_gives_the_same_numbers(breakfast_pair, mapping):
    preds, gts = breakfast_pair
    # Unsupervised-style ids; hungarian_video renames each video separately (ids collide across videos).
    if mapping == "hungarian_video":
        renamed = []
        for p in preds:
            names = {lab: f"segment_{k:04d}" for k, lab in enumerate(dict.fromkeys(p.tolist()))}
            renamed.append(np.array([names[x] for x in p]))
    else:
        names = {
            lab: f"segment_{k:04d}" for k, lab in enumerate(dict.fromkeys(np.concatenate(preds).tolist()))
        }
        renamed = [np.array([names[x] for x in p]) for p in preds]
    # Hand check of A's overlaps: SIL->SIL 38+142 = 180 (vs 10 with take_cup / pour_milk),
    # take_cup->take_cup 151, pour_milk->pour_milk 387 (vs 179 with pour_coffee): identity is optimal.
    expected = segmentation_metrics(preds, gts)
    got = segmentation_metrics(renamed, gts, label_mapping=mapping)
    # Same frames, so every number agrees; only which MoF pooling is "mof" follows the protocol:
    # hungarian_video averages per-video accuracies (718/917 and 183/271), the others pool frames.
    pooling = "mof_video_mean" if mapping == "hungarian_video" else "mof_pooled"
    assert got["mof"] == pytest.approx(expected[pooling])
    assert expected["mof_video_mean"] == pytest.approx(100 * (718 / 917 + 183 / 271) / 2)
    assert {k: v for k, v in got.items() if k != "mof"} == pytest.approx(
        {k: v for k, v in expected.items() if k != "mof"}
    )
    assert segmentation_metrics(renamed, gts)["mof"] == 0.0  # unmapped ids never equal GT names


def test_breakfast_boundaries_from_frame_labels(breakfast_pair):
    preds, gts = breakfast_pair
    fps = BREAKFAST_FPS
    pred = frames_to_segments(preds[0], fps)
    gt = frames_to_segments(gts[0], fps)
    m = boundary_metrics(pred, gt, len(gts[0]) / fps, tolerances_sec=(2.0, 0.5), merge_tol_sec=0.5 / fps)
    # GT cuts at frames 38, 199, 378, 775; predicted at 48, 199, 765 (pour_coffee|pour_milk merged away).
    # @2.0s: 48-38 and 775-765 are 10 frames = 0.67 s -> tp 3, fp 0, fn 1: P 1, R .75, F1 6/7
    # @0.5s: only 199 matches -> tp 1, fp 2, fn 3: P 1/3, R 1/4, F1 2/7
    assert (m["boundary/num_pred"], m["boundary/num_gt"]) == (3, 4)
    assert m["boundary/f1@2.0s"] == pytest.approx(6 / 7)
    assert (m["boundary/precision@0.5s"], m["boundary/recall@0.5s"]) == pytest.approx((1 / 3, 1 / 4))
    assert m["boundary/f1@0.5s"] == pytest.approx(2 / 7)


# ---------------------------------------------------------------- mAP


def test_segment_confidence():
    assert segment_confidence(Segment(1.0, 4.0, "x", 0.7)) == 0.7
    assert segment_confidence(Segment(1.0, 4.0, "x")) == 3.0  # fallback: duration
    assert segment_confidence((1.0, 4.0)) == 3.0


def test_map_hand_computed():
    gt = [[(0, 10), (20, 30)]]
    pred = [[(0, 10, "A", 0.9), (24, 30, "B", 0.8), (1, 10, "C", 0.95)]]
    # by confidence: C (IoU .9 with GT1) TP; A (GT1 taken, GT2 IoU 0) FP; B (IoU 6/10 with GT2)
    # @0.5: TP FP TP -> precision 1, .5, 2/3 at recall .5, .5, 1; envelope 1 until recall .5, 2/3 to 1
    #       AP = .5 * 1 + .5 * 2/3 = 5/6
    # @0.75: TP FP FP -> recall stays .5: AP = .5 * 1
    assert detection_map(pred, gt) == pytest.approx({"mAP@0.5": 5 / 6, "mAP@0.75": 0.5})


def test_map_never_matches_across_videos_and_edge_cases():
    gt = [[(0, 10)], [(50, 60)]]
    pred = [[(50, 60, None, 1.0)], [(50, 60, None, 0.5)]]
    # the first prediction lies on video 2's GT but belongs to video 1 -> FP; then TP at recall .5
    # precision after rank 2 = 1/2 -> AP = .5 * .5
    assert average_precision(pred, gt, 0.5) == pytest.approx(0.25)
    assert average_precision([[]], [[]], 0.5) == 1.0
    assert average_precision([[(0, 1)]], [[]], 0.5) == 0.0
    assert average_precision([[]], [[(0, 1)]], 0.5) == 0.0

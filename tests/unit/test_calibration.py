"""Calibration: label rules (Otsu, log-energy Gaussian mixture) and the threshold search."""

from __future__ import annotations

import time

import numpy as np
import pytest

from laps_ray.core.calibration import (
    CalibrationError,
    active_runs,
    calibration_report,
    gt_window_labels,
    pooled_pseudo_labels,
    pseudo_labels,
    roc_auc,
    runs_to_frames,
    threshold_search,
)
from laps_ray.core.label_rules import DEFAULT_LABEL_METHOD, gmm_log_threshold, label_threshold, otsu_threshold


def rest_motion_energies(seed: int, n: int = 2000, motion_share: float = 0.2):
    """Log-normal rest / motion energies with class imbalance; returns (values, true motion labels)."""
    rng = np.random.default_rng(seed)
    motion = rng.random(n) < motion_share
    rest = rng.lognormal(np.log(0.005), 0.8, n)  # medians 0.005 vs 0.05, i.e. 10x apart
    move = rng.lognormal(np.log(0.05), 0.6, n)
    return np.where(motion, move, rest), motion


# ---------------------------------------------------------------- Otsu


def test_otsu_two_point_classes_cut_in_the_middle_of_the_gap():
    v = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
    # 256 bins on [0, 1]: every split after bins 0..254 separates {0} from {1} equally well;
    # the middle of that plateau is (edges[1] + edges[255]) / 2 = (1/256 + 255/256) / 2 = 0.5
    assert otsu_threshold(v) == pytest.approx(0.5)
    assert ((v >= otsu_threshold(v)) == np.array([0, 0, 0, 1, 1], bool)).all()


def test_otsu_on_bimodal_mixture_lands_between_the_modes():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.0, 0.1, 800), rng.normal(1.0, 0.1, 200)])
    thr = otsu_threshold(v)
    assert 0.3 < thr < 0.7
    separated = np.concatenate([rng.uniform(0, 1, 800), rng.uniform(3, 4, 200)])
    assert otsu_threshold(separated) == pytest.approx(2.0, abs=0.05)  # middle of the empty gap (1, 3)


@pytest.mark.parametrize(
    "bad,message", [([2.0, 2.0, 2.0], "equal"), ([], "empty"), ([1.0, np.nan], "non-finite")]
)
def test_otsu_degenerate_input_is_an_error(bad, message):
    with pytest.raises(CalibrationError, match=message):
        otsu_threshold(bad)


# ---------------------------------------------------------------- alternative label rule


def test_gmm_log_recovers_rest_motion_labels_better_than_otsu():
    # Measured on these seeds (accuracy / F1 of the motion class against the true labels):
    #   otsu     ~0.90-0.91 / 0.66-0.73  (cut ~0.045: rest's heavy right tail drags it into motion)
    #   gmm_log  ~0.95-0.96 / 0.88-0.90  (cut ~0.023)
    for seed in range(3):
        v, truth = rest_motion_energies(seed)
        scores = {}
        for method in ("otsu", "gmm_log"):
            labels, _ = pseudo_labels(v, method)
            acc = float((labels == truth).mean())
            f1 = 2 * float((labels & truth).sum()) / float(labels.sum() + truth.sum())
            scores[method] = (acc, f1)
        assert scores["gmm_log"][0] > scores["otsu"][0] + 0.02, (seed, scores)
        assert scores["gmm_log"][1] > scores["otsu"][1] + 0.1, (seed, scores)
        assert scores["gmm_log"][0] > 0.93
    assert DEFAULT_LABEL_METHOD == "gmm_log"


def test_gmm_log_cut_lies_between_the_class_medians_and_ignores_gated_zeros():
    v, truth = rest_motion_energies(7)
    thr = gmm_log_threshold(v)
    assert 0.005 < thr < 0.05
    with_zeros = np.concatenate([v, np.zeros(500)])  # gated windows: energy exactly 0
    thr0 = gmm_log_threshold(with_zeros)
    assert thr0 == pytest.approx(thr)  # zeros are left out of the fit ...
    assert not (np.zeros(1) >= thr0).any()  # ... and are rest
    with pytest.raises(CalibrationError, match="non-negative"):
        gmm_log_threshold(np.array([-1.0, 1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match="label method"):
        label_threshold(v, "kmeans")


# ---------------------------------------------------------------- threshold search


def test_threshold_search_hand_computed():
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    labels = np.array([0, 1, 0, 1])
    # candidates 1, 1.5, 2, 2.5, 3, 3.5, 4 with 'score >= thr':
    #   1:       tp 2 fp 2 -> F1 4/6,  J 1 - 1 = 0
    #   1.5, 2:  tp 2 fp 1 -> F1 4/5,  J 1 - .5 = .5   <- best F1 and best J (lowest threshold on ties)
    #   2.5, 3:  tp 1 fp 1 -> F1 2/4,  J .5 - .5 = 0
    #   3.5, 4:  tp 1 fp 0 -> F1 2/3,  J .5 - 0 = .5
    # AUC: pairs (pos, neg) (2,1) yes (2,3) no (4,1) yes (4,3) yes -> 3/4
    r = threshold_search(scores, labels)
    assert r["n_candidates"] == 7
    assert r["best_f1"] == pytest.approx(
        {
            "thr": 1.5,
            "tp": 2,
            "fp": 1,
            "tn": 1,
            "fn": 0,
            "precision": 2 / 3,
            "recall": 1.0,
            "fpr": 0.5,
            "f1": 0.8,
            "j": 0.5,
            "accuracy": 0.75,
        }
    )
    assert r["best_j"]["thr"] == 1.5
    assert r["auc"] == pytest.approx(0.75)
    assert r["separates"] is True and r["warning"] is None
    assert r["rule"] == "positive iff score >= thr"


def test_threshold_search_finds_a_separating_threshold_in_the_gap():
    rng = np.random.default_rng(1)
    neg = rng.uniform(0.0, 1.0, 300)
    pos = rng.uniform(2.0, 3.0, 100)
    r = threshold_search(np.concatenate([neg, pos]), np.r_[np.zeros(300), np.ones(100)].astype(bool))
    for best in (r["best_f1"], r["best_j"]):
        assert neg.max() < best["thr"] < pos.min()
        assert best["thr"] == pytest.approx((neg.max() + pos.min()) / 2)  # the gap's midpoint
        assert (best["f1"], best["j"], best["fp"], best["fn"]) == (1.0, 1.0, 0, 0)
    assert r["auc"] == 1.0


def test_threshold_search_matches_brute_force_with_ties():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 12, 80).astype(float)  # many ties
    labels = rng.random(80) < 0.4 + 0.04 * scores
    r = threshold_search(scores, labels)
    u = np.unique(scores)
    best_f1, best_j = -1.0, -2.0
    for thr in np.concatenate([u, (u[:-1] + u[1:]) / 2]):
        pred = scores >= thr
        tp, fp = int((pred & labels).sum()), int((pred & ~labels).sum())
        fn = int(labels.sum()) - tp
        best_f1 = max(best_f1, 2 * tp / (2 * tp + fp + fn))
        best_j = max(best_j, tp / labels.sum() - fp / (~labels).sum())
    assert r["best_f1"]["f1"] == pytest.approx(best_f1)
    assert r["best_j"]["j"] == pytest.approx(best_j)
    from sklearn.metrics import roc_auc_score

    assert r["auc"] == pytest.approx(roc_auc_score(labels, scores))


def test_threshold_search_is_vectorised():
    rng = np.random.default_rng(3)
    n = 200_000
    scores = rng.normal(size=n)
    labels = scores + rng.normal(size=n) > 0
    t0 = time.perf_counter()
    r = threshold_search(scores, labels)
    assert time.perf_counter() - t0 < 5.0  # an O(n^2) loop over 400k candidates would take minutes
    assert r["n_candidates"] == 2 * n - 1
    assert r["separates"]


def test_uninformative_energy_is_flagged():
    rng = np.random.default_rng(4)
    energy = rng.lognormal(size=3000)
    labels = rng.random(3000) < 0.2  # independent of the energy
    r = threshold_search(energy, labels)
    assert abs(r["auc"] - 0.5) < 0.05
    assert r["separates"] is False
    assert "does not separate the labels" in r["warning"] and "meaningless" in r["warning"]
    assert f"AUC {r['auc']:.2f}" in r["warning"]


def test_inverted_energy_is_flagged():
    rng = np.random.default_rng(5)
    labels = rng.random(500) < 0.3
    energy = np.where(labels, 1.0, 3.0) + rng.normal(0, 0.3, 500)  # motion has LOWER energy
    r = threshold_search(energy, labels)
    assert r["auc"] < 0.1 and r["separates"] is False
    assert "wrong class" in r["warning"]


def test_degenerate_search_inputs():
    with pytest.raises(CalibrationError, match="single class"):
        threshold_search([1.0, 2.0, 3.0], [True, True, True])
    with pytest.raises(CalibrationError, match="shape"):
        threshold_search([1.0, 2.0], [True])
    with pytest.raises(CalibrationError, match="non-finite"):
        threshold_search([1.0, np.inf], [True, False])
    r = threshold_search([2.0, 2.0, 2.0, 2.0], [0, 1, 0, 1])
    assert r["auc"] == 0.5 and r["separates"] is False and "constant" in r["warning"]
    assert r["best_f1"]["thr"] == 2.0 and np.isfinite(r["best_f1"]["f1"])
    assert roc_auc([1.0, 1.0], [False, True]) == 0.5  # a tie counts 1/2


# ---------------------------------------------------------------- proxy supervision end to end


def test_calibration_report_proxy_supervision():
    proxy, truth = rest_motion_energies(11)
    rng = np.random.default_rng(11)
    target = 3.0 * proxy * rng.lognormal(0.0, 0.1, proxy.size)  # informative target energy
    rep = calibration_report(target, proxy)
    assert rep["label_method"] == "gmm_log"
    assert rep["label_threshold"] == pytest.approx(gmm_log_threshold(proxy))
    assert rep["separates"] and rep["auc"] > 0.95
    assert 0.005 * 3 < rep["best_f1"]["thr"] < 0.05 * 3
    noise = rng.lognormal(size=proxy.size)
    bad = calibration_report(noise, proxy, label_method="otsu")
    assert bad["separates"] is False and "does not separate" in bad["warning"]


# ---------------------------------------------------------------- window labels (calibrate and sweeps)


def test_pooled_pseudo_labels_one_threshold_over_videos():
    # Video a is all rest, video b mixed: one cut fitted on the pooled windows labels both (a cut fitted
    # on a alone would split its rest windows into two classes).
    a = np.random.default_rng(5).lognormal(np.log(0.005), 0.8, 600)
    b, motion = rest_motion_energies(seed=6, n=1200)
    use_b = np.ones(b.size, bool)
    use_b[:10] = False  # windows that do not take part are never active
    labels, thr = pooled_pseudo_labels([a, b], [np.ones(a.size, bool), use_b], "gmm_log")
    assert thr == pseudo_labels(np.concatenate([a, b[use_b]]), "gmm_log")[1]
    assert labels[0].tolist() == (a >= thr).tolist() and labels[0].mean() < 0.05
    assert not labels[1][:10].any() and labels[1][10:].tolist() == (b[10:] >= thr).tolist()
    assert (labels[1][10:] == motion[10:]).mean() > 0.9
    with pytest.raises(CalibrationError, match="empty"):
        pooled_pseudo_labels([a], [np.zeros(a.size, bool)])


def test_gt_window_labels_mid_time_and_background():
    t_start = np.array([0.0, 0.2, 0.4, 0.6, 0.8])
    t_end = t_start + 0.75  # mid-times 0.375, 0.575, 0.775, 0.975, 1.175
    segs = [(0.0, 0.5, "SIL"), (0.5, 0.9, "cut"), (0.9, 1.1, None), (1.1, 2.0, "background")]
    got = gt_window_labels(t_start, t_end, segs, ["SIL", "background"])
    assert got.tolist() == [False, True, True, True, False]  # [start, end): 0.975 in [0.9, 1.1)
    assert gt_window_labels(t_start, t_end, segs, []).all()


def test_active_runs_and_their_frames():
    active = np.array([0, 1, 1, 0, 1, 0, 1, 1, 1], bool)
    assert active_runs(active) == [(1, 2), (4, 4), (6, 8)]
    assert active_runs(active, min_windows=2) == [(1, 2), (6, 8)]
    assert active_runs(np.zeros(3, bool)) == [] and active_runs(np.ones(3, bool), 3) == [(0, 2)]
    # T=16, stride=4: window w stands for frames [4w + 6, 4w + 9] around its centre 4w + 8.
    assert runs_to_frames([(1, 2), (6, 8)], 16, 4, num_frames=40) == [(10, 17), (30, 39)]  # 41 clamped
    assert runs_to_frames([(0, 0)], 4, 8, num_frames=40) == [(0, 5)]  # never before frame 0


def test_ki_log_cuts_between_a_narrow_rest_mode_and_a_broad_motion_mode():
    # Rest: a narrow log-normal mode; motion: slow and fast actions, a broad (bimodal) class. Otsu's
    # split of the log-values lands inside the broad class; the minimum-error rule, which fits each
    # class its own spread, cuts in the valley (the situation of the motion energy with every
    # distractor on, core.label_rules).
    from laps_ray.core.label_rules import ki_log_threshold, otsu_log_threshold

    rng = np.random.default_rng(0)
    rest = np.exp(rng.normal(np.log(0.005), 0.15, 600))
    slow = np.exp(rng.normal(np.log(0.012), 0.2, 250))
    fast = np.exp(rng.normal(np.log(0.05), 0.3, 250))
    values = np.concatenate([rest, slow, fast])
    truth = np.r_[np.zeros(600, bool), np.ones(500, bool)]
    ki, otsu = ki_log_threshold(values), otsu_log_threshold(values)
    acc = lambda thr: float(((values >= thr) == truth).mean())  # noqa: E731
    assert 0.006 < ki < 0.010 and acc(ki) > 0.95
    assert acc(otsu) < acc(ki)
    # zeros (gated windows) count as the quietest window; a split must keep 10 % on each side
    with_zeros = np.concatenate([np.zeros(300), values])
    assert ki_log_threshold(with_zeros) > 0.0
    with pytest.raises(CalibrationError, match="no split leaves both classes 50%"):
        ki_log_threshold(np.r_[np.full(99, 1.0), 2.0], min_class=0.5)
    assert label_threshold(values, "ki_log") == ki

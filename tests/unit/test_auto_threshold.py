"""THE automatic threshold (core.auto_threshold): pseudo-labels pooled over a scope, a threshold search
on the segmentation signal, and each video's reliability said out loud."""

from __future__ import annotations

import numpy as np
import pytest

from laps_ray.config import ConfigError
from laps_ray.core.auto_threshold import AutoThresholdConfig, auto_threshold, is_auto
from laps_ray.core.calibration import pooled_pseudo_labels, threshold_search
from laps_ray.pipeline.auto_calibration import AutoSeries, calibrate, threshold_record

CFG = AutoThresholdConfig()


def _video(rng, n=120, active=((20, 50), (70, 95)), signal_gap=1.0, proxy_gap=1.0):
    """A video whose planted active windows have a higher signal and proxy (log-normal noise)."""
    truth = np.zeros(n, dtype=bool)
    for a, b in active:
        truth[a:b] = True
    signal = np.exp(rng.normal(0, 0.3, n) + signal_gap * truth)
    proxy = np.exp(rng.normal(0, 0.3, n) + proxy_gap * 2 * truth) * 0.01
    return truth, signal, proxy


def test_planted_videos_get_a_threshold_between_rest_and_action():
    rng = np.random.default_rng(0)
    vids = [_video(rng) for _ in range(3)]
    res = auto_threshold([v[1] for v in vids], [v[2] for v in vids], [np.zeros(120, bool)] * 3, CFG)
    signal = np.concatenate([v[1] for v in vids])
    truth = np.concatenate([v[0] for v in vids])
    predicted = signal >= res.value
    assert (predicted == truth).mean() > 0.9
    assert res.evidence["auc"] > 0.9 and 0.3 < res.evidence["active_fraction"] < 0.7
    assert all(v["reliable"] and v["auc"] > 0.9 for v in res.videos)
    # it is exactly the search of the signal against the pooled pseudo-labels (one rule)
    labels, _ = pooled_pseudo_labels([v[2] for v in vids], [np.ones(120, bool)] * 3, CFG.label_method)
    assert res.value == threshold_search(signal, np.concatenate(labels))["best_f1"]["thr"]


def test_no_motion_means_no_segment_and_is_reliable():
    rng = np.random.default_rng(1)
    flat = [rng.normal(1.0, 0.01, 80) for _ in range(2)]
    proxies = [np.full(80, 0.001) for _ in range(2)]  # one value: the label rule finds no motion
    res = auto_threshold(flat, proxies, [np.zeros(80, bool)] * 2, CFG)
    assert res.value > max(f.max() for f in flat)
    assert all(v["reliable"] for v in res.videos)


def test_motion_everywhere_and_energy_that_does_not_separate_are_unreliable():
    rng = np.random.default_rng(2)
    _, signal, proxy = _video(rng)
    noise = rng.normal(1.0, 0.1, 120)  # the energy ignores the motion the proxy sees
    res = auto_threshold([signal, noise], [proxy, proxy], [np.zeros(120, bool)] * 2, CFG)
    assert res.videos[0]["reliable"] and not res.videos[1]["reliable"]
    assert "does not separate" in res.videos[1]["reason"]
    # a conveyor that never stops: the proxy is high in every window but a few
    busy = np.r_[np.full(3, 0.001), np.full(117, 0.05)] * np.exp(rng.normal(0, 0.05, 120))
    otsu = AutoThresholdConfig(scope="video", label_method="otsu_log")
    res = auto_threshold([signal], [busy], [np.zeros(120, bool)], otsu)
    assert not res.videos[0]["reliable"] and "moves all the time" in res.videos[0]["reason"]
    # ki_log (the default) keeps both classes >= 10 % of the windows, so it cannot label 97 % active;
    # the split it forces does not separate the energy, which marks the video unreliable instead
    res = auto_threshold([signal], [busy], [np.zeros(120, bool)], AutoThresholdConfig(scope="video"))
    assert not res.videos[0]["reliable"] and "does not separate" in res.videos[0]["reason"]


def test_pooling_does_not_depend_on_which_video_finished_first():
    rng = np.random.default_rng(3)
    series = [
        AutoSeries(f"v{i}", *_video(rng, signal_gap=0.5 + 0.3 * i)[1:], np.zeros(120, bool)) for i in range(3)
    ]
    a, ka = calibrate(series, CFG)
    b, kb = calibrate(series[::-1], CFG)
    assert a.value == b.value and ka == kb == ["v0", "v1", "v2"]
    rec = threshold_record(a, ka, "v1")
    assert rec["source"] == "auto" and rec["value"] == a.value and rec["video"] == a.videos[1]


def test_auto_config_values_and_spelling():
    assert is_auto("auto") and is_auto(None) and is_auto(" AUTO ") and not is_auto(0.5)
    with pytest.raises(ConfigError, match="segmentation.auto.scope"):
        AutoThresholdConfig(scope="dataset")
    with pytest.raises(ConfigError, match="segmentation.auto.proxy"):
        AutoThresholdConfig(proxy="speed")
    with pytest.raises(ConfigError, match="min_auc"):
        AutoThresholdConfig(min_auc=0.3)


def test_circular_auc_does_not_hide_an_energy_that_barely_separates():
    # The default proxy is the segmented energy itself, so the AUC is 1 by construction. A video
    # whose "active" windows sit barely above its rest (background motion dominating: a unimodal
    # log-normal energy, split anyway by the label rule) is caught by the active/rest contrast;
    # a planted video next to it is not.
    rng = np.random.default_rng(5)
    truth, planted, _ = _video(rng, signal_gap=2.0)
    busy = np.exp(rng.normal(0.0, 0.15, 120))  # contrast of a split of this: ~1.3
    cfg = AutoThresholdConfig(scope="video")  # one call per video, as the caller does per scope
    good = auto_threshold([planted], [planted], [np.zeros(120, bool)], cfg).videos[0]
    bad = auto_threshold([busy], [busy], [np.zeros(120, bool)], cfg).videos[0]
    assert good["reliable"] and good["contrast"] > cfg.min_contrast
    assert bad["auc"] > 0.99  # circular: not evidence
    assert not bad["reliable"] and "barely stand out" in bad["reason"]
    assert bad["contrast"] < cfg.min_contrast

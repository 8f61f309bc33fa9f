"""Energy formulas, gated-window rule, causal smoothing and the two gates on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from laps_ray.config import ConfigError
from laps_ray.core import gates, smoothing
from laps_ray.core.energy import (
    EnergyConfig,
    apply_gates,
    latent_energy,
    mean_speed,
    select_latent,
    window_energy,
)
from laps_ray.core.smoothing import SmoothingConfig
from laps_ray.pipeline.window_processor import gray_small

# ------------------------------------------------------------------------------------------ energy


def _two_token_windows() -> np.ndarray:
    # window 0: tokens 0, (3,4), (3,4) -> diffs 5, 0; window 1: constant token (1,0) -> diffs 0, 0
    return np.array(
        [
            [[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]],
            [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]],
        ]
    )


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token_diff_l2_mean", [2.5, 0.0]),  # mean of (5, 0) and of (0, 0)
        ("l2_mean", [10.0 / 3.0, 1.0]),  # mean of (0, 5, 5) and of (1, 1, 1)
    ],
)
def test_latent_energy_by_hand(mode, expected):
    z = _two_token_windows()
    for source in ("quantized", "prequant"):
        out = window_energy(z, None, source, mode)
        assert out.dtype == np.float64 and out.shape == (2,)
        np.testing.assert_allclose(out, expected)


def test_token_diff_is_within_window_not_across():
    # Two windows that are each constant but differ from each other: zero token-diff energy.
    z = np.stack([np.zeros((4, 3)), np.full((4, 3), 7.0)])
    np.testing.assert_allclose(latent_energy(z, "token_diff_l2_mean"), [0.0, 0.0])


def test_token_diff_falls_back_to_l2_mean_for_one_token():
    z = np.array([[[3.0, 4.0]]])  # (W=1, L=1, D=2)
    np.testing.assert_allclose(latent_energy(z, "token_diff_l2_mean"), [5.0])
    np.testing.assert_allclose(latent_energy(z, "l2_mean"), [5.0])


def test_velocity_energy_is_mean_speed_and_ignores_mode():
    vel = np.array([[[[0.3, 0.4], [0.0, 0.0]], [[0.6, 0.8], [0.0, 0.2]]]])  # (W=1, L=2, N=2, 2)
    expected = (0.5 + 0.0 + 1.0 + 0.2) / 4
    for mode in ("token_diff_l2_mean", "l2_mean"):
        np.testing.assert_allclose(window_energy(None, vel, "velocity", mode), [expected])
    np.testing.assert_allclose(mean_speed(vel[0]), expected)


def test_select_latent_and_missing_inputs():
    zp, zq = np.zeros((1, 2, 3)), np.ones((1, 2, 3))
    assert select_latent("quantized", zp, zq) is zq
    assert select_latent("prequant", zp, zq) is zp
    assert select_latent("velocity", zp, zq) is None
    with pytest.raises(ValueError, match="z_q"):
        select_latent("quantized", zp, None)
    with pytest.raises(ValueError, match="velocities"):
        window_energy(None, None, "velocity", "l2_mean")
    with pytest.raises(ValueError, match="latents"):
        window_energy(None, None, "prequant", "l2_mean")
    with pytest.raises(ConfigError, match="energy.source"):
        window_energy(zq, None, "optical_flow", "l2_mean")


def test_apply_gates_rule():
    energy = np.array([1.0, 2.0, 3.0, 4.0])
    gated = np.array([False, True, True, False])
    vel_e = np.array([0.1, np.nan, 0.7, 0.4])  # window 1 was pre-gated: never tracked
    np.testing.assert_array_equal(apply_gates(energy, gated, "quantized", vel_e), [1.0, 0.0, 0.0, 4.0])
    np.testing.assert_array_equal(apply_gates(energy, gated, "velocity", vel_e), [1.0, 0.0, 0.7, 4.0])
    np.testing.assert_array_equal(energy, [1.0, 2.0, 3.0, 4.0])  # input untouched
    with pytest.raises(ValueError, match="shape"):
        apply_gates(energy, gated[:2], "quantized")


def test_energy_config_validation():
    cfg = EnergyConfig()
    # The motion energy needs no smoothing (an EMA only delays ends); alpha is kept for ``ema``.
    assert (cfg.source, cfg.mode, cfg.smoothing.method, cfg.smoothing.alpha) == (
        "motion",
        "token_diff_l2_mean",
        "none",
        0.7,
    )
    with pytest.raises(ConfigError, match="energy.mode"):
        EnergyConfig(mode="diff")
    with pytest.raises(ConfigError, match="smoothing.alpha"):
        SmoothingConfig(alpha=0.0)
    with pytest.raises(ConfigError, match="smoothing.method"):
        SmoothingConfig(method="median")


# --------------------------------------------------------------------------------------- smoothing


@pytest.mark.parametrize(
    "cfg, expected",
    [
        (SmoothingConfig(method="ema", alpha=0.5), [1.0, 0.5, 0.25, 1.625]),
        (SmoothingConfig(method="ema", alpha=1.0), [1.0, 0.0, 0.0, 3.0]),
        (SmoothingConfig(method="ma", window=2), [1.0, 0.5, 0.0, 1.5]),
        (SmoothingConfig(method="ma", window=3), [1.0, 0.5, 1.0 / 3.0, 1.0]),
        (SmoothingConfig(method="none"), [1.0, 0.0, 0.0, 3.0]),
    ],
)
def test_smoothing_by_hand_and_streaming_equals_offline(cfg, expected):
    x = [1.0, 0.0, 0.0, 3.0]
    np.testing.assert_allclose(smoothing.smooth(np.array(x), cfg), expected)
    state = smoothing.init_smoother(cfg)
    streamed = []
    for v in x:
        new_state, y = smoothing.step(state, v)
        assert new_state is not state and state.count == len(streamed)  # pure: old state unchanged
        state = new_state
        streamed.append(y)
    np.testing.assert_allclose(streamed, expected)


def test_smoothing_is_causal_and_rejects_nan():
    rng = np.random.default_rng(0)
    x = rng.random(20)
    cfg = SmoothingConfig(method="ema", alpha=0.3)
    full = smoothing.smooth(x, cfg)
    np.testing.assert_allclose(smoothing.smooth(x[:7], cfg), full[:7])
    with pytest.raises(ValueError, match="not finite"):
        smoothing.smooth(np.array([1.0, np.nan]), cfg)
    assert smoothing.for_segmentation(1.0, 2.0, SmoothingConfig(use_for_seg=False)) == 1.0
    assert smoothing.for_segmentation(1.0, 2.0, SmoothingConfig()) == 2.0


# ------------------------------------------------------------------------------------------- gates


def _frames(values_per_frame: list[np.ndarray]) -> np.ndarray:
    return np.stack(values_per_frame).astype(np.uint8)


def test_pre_gate_static_window_is_dropped():
    g = np.full((4, 10, 10), 100, np.uint8)
    res = gates.pre_gate(g, gates.PreGateConfig())
    assert res == gates.GateResult(True, 0.0, 0.0)


def test_pre_gate_statistics_by_hand():
    # 10 of 100 pixels flash to 255 in the middle frame: both pairs have 10 px of |d| = 1.0.
    f0 = np.zeros((10, 10), np.uint8)
    f1 = f0.copy()
    f1[0, :] = 255
    res = gates.pre_gate(_frames([f0, f1, f0]), gates.PreGateConfig())
    assert not res.dropped
    assert res.value == pytest.approx(0.1) and res.active_ratio == pytest.approx(0.1)


@pytest.mark.parametrize(
    "step_value, region, dropped",
    [
        (1, None, True),  # uniform 1/255 per frame: MAD 0.0039 < 0.005 and no active pixel
        (2, None, False),  # uniform 2/255: MAD 0.0078 >= 0.005 although nothing is "active"
        (6, 10, False),  # 6/255 on 10 % of pixels: MAD 0.0024 < 0.005 but active 0.1 >= 0.05
        (6, 3, True),  # same change on 3 % of pixels: both below
    ],
)
def test_pre_gate_and_rule(step_value, region, dropped):
    # The original's thresholds (MAD 0.005, active 0.05) make the hand arithmetic above readable.
    original = gates.PreGateConfig(mad_thr=0.005, min_active_ratio=0.05)
    frames = []
    for i in range(5):
        f = np.full((10, 10), 50, np.uint8)
        if region is None:
            f[:] = 50 + i * step_value
        else:
            f.ravel()[:region] = 50 + (i % 2) * step_value
        frames.append(f)
    res = gates.pre_gate(_frames(frames), original)
    assert res.dropped is dropped
    assert gates.pre_gate(_frames(frames), gates.PreGateConfig(enable=False)).dropped is False


def test_pre_gate_batch_matches_single_and_rejects_bad_input():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 6, size=(3, 4, 8, 8)).astype(np.uint8)
    g[1] = 7
    batch = gates.pre_gate_batch(g, gates.PreGateConfig())
    for w in range(3):
        assert batch[w] == gates.pre_gate(g[w], gates.PreGateConfig())
    assert batch.dropped.tolist() == [False, True, False]
    with pytest.raises(ValueError, match="uint8"):
        gates.pre_gate(g[0].astype(np.float32), gates.PreGateConfig())
    with pytest.raises(ValueError, match="T>=2"):
        gates.pre_gate(g[0, :1], gates.PreGateConfig())


def test_gray_small_sizes_and_values():
    landscape = np.zeros((90, 160, 3), np.uint8)
    landscape[..., 1] = 200  # pure green -> gray 0.587 * 200
    out = gray_small(landscape, 128)
    assert out.shape == (128, 228) and out.dtype == np.uint8
    assert abs(int(out[5, 5]) - round(0.587 * 200)) <= 1
    portrait = np.zeros((400, 300, 3), np.uint8)
    assert gray_small(portrait, 128).shape == (171, 128)
    with pytest.raises(ValueError, match="uint8"):
        gray_small(np.zeros((10, 10, 4), np.uint8), 128)


@pytest.mark.parametrize(
    "speeds, dropped",
    [
        ("zero", True),
        ("uniform_slow", True),  # every point 0.01 < 0.02: mean and active ratio both low
        ("one_fast_point", False),  # mean 0.01 but 10 % of (step, point) pairs active
        ("uniform_fast", False),
    ],
)
def test_motion_gate_and_rule(speeds, dropped):
    original = gates.MotionGateConfig(vel_norm_thr=0.02, min_active_ratio=0.025)  # numbers in the table
    L, N = 2, 10
    vel = np.zeros((L, N, 2))
    if speeds == "uniform_slow":
        vel[..., 0] = 0.01
    elif speeds == "one_fast_point":
        vel[:, 0, 1] = 0.1
    elif speeds == "uniform_fast":
        vel[..., 0] = 0.05
    res = gates.motion_gate(vel, original)
    assert res.dropped is dropped
    assert res.value == pytest.approx(mean_speed(vel))
    if speeds == "one_fast_point":
        assert res.value == pytest.approx(0.01) and res.active_ratio == pytest.approx(0.1)
    batch = gates.motion_gate_batch(np.stack([vel, vel * 0]), original)
    assert batch.dropped.tolist() == [dropped, True]
    with pytest.raises(ValueError, match="T-1, N, 2"):
        gates.motion_gate(vel[..., :1], gates.MotionGateConfig())


def test_gate_config_validation():
    cfg = gates.GateConfig()
    assert cfg.pre_gate.mad_thr == 0.001 and cfg.motion_gate.min_active_ratio == 0.01
    with pytest.raises(ConfigError, match="pre_gate.mad_thr"):
        gates.PreGateConfig(mad_thr=2.0)
    with pytest.raises(ConfigError, match="motion_gate.vel_norm_thr"):
        gates.MotionGateConfig(vel_norm_thr=-1.0)

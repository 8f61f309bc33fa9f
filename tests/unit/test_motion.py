"""The ``motion`` energy (core/motion.py): each distractor rule removes what it claims to, and an
action that a small patch of points performs still scores.

Tracks are built directly (no video): a 20x20 grid in normalised units, T=16 frames, with the
motions written in closed form, so every expectation is worked out from the definition.
"""

from __future__ import annotations

import numpy as np
import pytest

from laps_ray.core.changepoint import ChangePointConfig, changepoint_scores, feature_r2_score
from laps_ray.core.motion import (
    FOREGROUND_FLOOR,
    MOTION_FEATURES,
    foreground_velocities,
    grid_median,
    motion_energy,
    motion_features,
    path_deviations,
    residual_velocities,
    top_mean,
    usable_times,
    window_motion,
)

G, T = 20, 16


def grid() -> np.ndarray:
    """(N, 2) row-major grid in [-0.95, 0.95]^2 (x fastest), like core.windows.grid_points."""
    xs = np.linspace(-0.95, 0.95, G)
    gx, gy = np.meshgrid(xs, xs)
    return np.stack([gx.ravel(), gy.ravel()], axis=-1)


def still(rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    """(T, N, 2) positions of a still scene, optionally with independent tracker jitter."""
    pos = np.repeat(grid()[None], T, axis=0)
    if rng is not None and noise > 0:
        pos = pos + rng.normal(0.0, noise, pos.shape)
    return pos


def patch(rows: range, cols: range) -> np.ndarray:
    """Indices of the grid points in a rectangle of the grid."""
    return np.array([r * G + c for r in rows for c in cols])


def circling(pos: np.ndarray, idx: np.ndarray, radius: float = 0.05, turns: float = 1.0) -> np.ndarray:
    """``pos`` with the points ``idx`` moving on a circle (an action: speed constant, direction not)."""
    out = pos.copy()
    th = 2 * np.pi * turns * np.arange(T) / (T - 1)
    out[:, idx, 0] += radius * (np.cos(th) - 1)[:, None]
    out[:, idx, 1] += radius * np.sin(th)[:, None]
    return out


def test_a_still_scene_scores_zero_and_a_small_acting_patch_scores_high():
    pos = still()
    act = circling(pos, patch(range(8, 12), range(8, 12)))  # 16 of 400 points (4 %)
    e = motion_energy(np.stack([pos, act]))
    assert e[0] == pytest.approx(0.0, abs=1e-12)
    # The mean over all points would be diluted 25x; the top 5 % keeps it near the patch's own score.
    patch_score = path_deviations(*residual_velocities(act[None]))[0, patch(range(9, 11), range(9, 11))]
    assert e[1] > 0.5 * patch_score.mean()
    assert e[1] > 0.02


def test_camera_shake_and_zoom_are_removed():
    base = circling(still(), patch(range(8, 12), range(8, 12)))
    rng = np.random.default_rng(0)
    shaken = base.copy()
    for t in range(T):  # a different rotation + zoom + translation of the whole frame every frame
        a, s = rng.normal(0, 0.01), 1 + rng.normal(0, 0.01)
        R = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        shaken[t] = base[t] @ R.T + rng.normal(0, 0.02, 2)
    e_base, e_shaken = motion_energy(np.stack([base, shaken]))
    assert e_shaken == pytest.approx(e_base, rel=0.05)
    e_still_shaken = motion_energy(np.stack([still() @ np.diag([1.01, 1.01]) + 0.03]))[0]
    assert e_still_shaken < 1e-9


def test_steady_motion_scores_nothing_but_a_start_or_a_turn_does():
    belt = still()
    band = patch(range(16, 19), range(G))  # a conveyor band of 60 points at constant speed
    belt[:, band, 0] += 0.01 * np.arange(T)[:, None]
    starting = belt.copy()  # the same band, still for half the window, then moving
    starting[:, band, 0] = still()[:, band, 0] + 0.02 * np.maximum(np.arange(T) - T // 2, 0)[:, None]
    e_belt, e_start = motion_energy(np.stack([belt, starting]))
    assert e_belt < 1e-9
    assert e_start > 0.01


def _resampled_times() -> np.ndarray:
    """(T,) times of the frames a 30 -> 20 fps resampling keeps: steps of 2 and 1 source frames in turn."""
    return np.array([k // 2 * 3 + 2 * (k % 2) for k in range(T)]) / 30.0


def test_steady_motion_on_unevenly_spaced_frames_is_fitted_on_the_frame_times():
    """A band crossing at constant speed, sampled at the frames a 30 -> 20 fps source keeps: against the
    frame index its path zig-zags (an action's level); against the frames' times it is a line."""
    times = _resampled_times()
    crossing = still()
    band = patch(range(4, 7), range(G))  # 15 % of the points: the camera fit rejects them
    crossing[:, band, 0] += 0.6 * times[:, None]  # 0.6 normalised units per second, ~0.03 per step
    act = circling(still(), patch(range(12, 16), range(12, 16)))
    pos = np.stack([crossing, act])
    on_index = motion_energy(pos)
    on_times = motion_energy(pos, times=np.stack([times, times]))
    assert on_index[0] > FOREGROUND_FLOOR  # the zig-zag passes for motion...
    assert on_times[0] < 1e-9  # ...a constant speed in time is not
    assert on_times[1] > 0.01 and on_times[1] > 20 * on_times[0]  # the action still scores
    # the tokenizer's foreground follows: the crossing band is fed as motion only on the frame index
    assert np.abs(foreground_velocities(crossing[None])[0][:, band]).max() > 0.02
    assert not foreground_velocities(crossing[None], times=times[None]).any()
    # evenly spaced times give exactly the frame-index rule
    np.testing.assert_allclose(
        motion_energy(act[None], times=np.arange(T)[None] * 0.05), motion_energy(act[None])
    )
    assert usable_times(times[None]) and not usable_times(np.zeros((1, T)))  # what the processor checks
    with pytest.raises(ValueError, match="strictly increasing"):
        motion_energy(act[None], times=np.zeros((1, T)))


def test_isolated_jitter_is_suppressed_by_the_grid_median():
    rng = np.random.default_rng(1)
    pos = still()
    lonely = rng.choice(G * G, 12, replace=False)  # 3 % of points, scattered: lost tracks
    pos[:, lonely] += rng.normal(0, 0.05, (T, lonely.size, 2))
    act = circling(still(), patch(range(3, 7), range(3, 7)))
    e_jitter, e_act = motion_energy(np.stack([pos, act]))
    assert e_jitter < 0.1 * e_act


def test_lost_points_are_held_and_count_as_a_kink():
    pos = still()
    idx = patch(range(8, 12), range(8, 12))
    pos[:, idx, 0] += 0.02 * np.arange(T)[:, None]  # constant speed: scores 0 while tracked
    vis = np.ones((T, G * G), dtype=bool)
    vis[T // 2 :, idx] = False  # lost halfway (the tracker then holds them)
    pos[T // 2 :, idx] = pos[T // 2 - 1, idx]
    assert motion_energy(pos[None])[0] > 0.01
    assert motion_energy(pos[None], vis[None])[0] > 0.01


def test_grid_median_and_top_mean_definitions():
    v = np.zeros((1, 400))
    v[0, 0] = 9.0  # one corner point: its 3x3 median (edges replicated) has 4 copies of 9 among 9
    assert grid_median(v)[0, 0] == 0.0
    block = np.zeros((20, 20))
    block[5:8, 5:8] = 1.0
    assert grid_median(block.reshape(1, 400))[0, 6 * 20 + 6] == 1.0
    odd = np.arange(7.0)  # not a square grid: unchanged
    np.testing.assert_array_equal(grid_median(odd), odd)
    assert top_mean(np.arange(100.0), 0.05) == pytest.approx(np.mean([95, 96, 97, 98, 99]))
    assert top_mean(np.array([3.0, 1.0]), 0.01) == 3.0


def test_energy_is_a_pure_function_of_each_window():
    rng = np.random.default_rng(2)
    wins = np.stack([circling(still(rng, 0.001), patch(range(i, i + 4), range(4, 8))) for i in range(5)])
    whole = motion_energy(wins)
    one_by_one = np.concatenate([motion_energy(wins[i : i + 1]) for i in range(5)])
    np.testing.assert_array_equal(whole, one_by_one)


# ------------------------------------------------------------------------------ motion change points


def sliding(pos: np.ndarray, idx: np.ndarray, dx: float, dy: float, phase: float = 0.0) -> np.ndarray:
    """``pos`` with the points ``idx`` pushed out and back along (dx, dy) (a slide or a lift)."""
    out = pos.copy()
    env = np.sin(np.pi * (np.arange(T) / (T - 1) + phase))
    out[:, idx, 0] += dx * env[:, None]
    out[:, idx, 1] += dy * env[:, None]
    return out


def shaking(pos: np.ndarray, idx: np.ndarray, amp: float = 0.01) -> np.ndarray:
    out = pos.copy()
    out[:, idx, 0] += amp * np.sin(2 * np.pi * 0.45 * np.arange(T))[:, None]
    return out


PATCH = patch(range(8, 12), range(8, 12))


def test_motion_features_tell_the_kinds_of_motion_apart():
    kinds = {
        "slide": sliding(still(), PATCH, 0.1, 0.0),
        "lift": sliding(still(), PATCH, 0.0, 0.1),
        "circle": circling(still(), PATCH),
        "shake": shaking(still(), PATCH),
    }
    f = dict(zip(kinds, motion_features(np.stack(list(kinds.values())))))
    h, turn, freq = (MOTION_FEATURES.index(n) for n in ("horizontal_share", "turning", "log_frequency"))
    assert f["slide"][h] > 0.95 and f["lift"][h] < 0.05  # direction
    assert f["circle"][turn] > 0.3 and f["slide"][turn] < 0.05  # rotation (sine of the turn per step)
    assert f["shake"][freq] > f["slide"][freq] + 1.0  # how fast the velocity changes
    # one pass gives the energy and the features of the same windows
    e, feats, _ = window_motion(np.stack(list(kinds.values())))
    np.testing.assert_array_equal(feats, motion_features(np.stack(list(kinds.values()))))
    np.testing.assert_array_equal(e, motion_energy(np.stack(list(kinds.values()))))


def _continuous(kinds: list[str], frames_each: int = 60, stride: int = 4) -> np.ndarray:
    """Windows (W, T, N, 2) cut every ``stride`` frames from one continuous video in which a patch
    does each kind of motion in turn, without a rest (the grid is re-seeded on each window)."""
    t = np.arange(frames_each)
    path = []
    for kind in kinds:
        if kind == "slide":  # out and back sideways, period 1.5 s at 20 fps
            path.append(np.stack([0.1 * np.sin(2 * np.pi * t / 30), 0 * t], 1))
        elif kind == "lift":
            path.append(np.stack([0 * t, 0.1 * np.sin(2 * np.pi * t / 30)], 1))
        else:  # circle, one turn per second
            th = 2 * np.pi * t / 20
            path.append(np.stack([0.05 * (np.cos(th) - 1), 0.05 * np.sin(th)], 1))
    offsets = np.concatenate(path)  # (F, 2)
    rng = np.random.default_rng(0)
    wins = []
    for s0 in range(0, len(offsets) - T + 1, stride):
        pos = still(rng, 0.0003)
        pos[:, PATCH] += (offsets[s0 : s0 + T] - offsets[s0])[:, None, :]
        wins.append(pos)
    return np.stack(wins)


def test_motion_change_points_split_one_action_turning_into_another_and_nothing_else():
    cp = ChangePointConfig(enable=True, method="motion", k=5, threshold=0.45)
    assert ChangePointConfig() == cp  # the default
    turning = motion_features(_continuous(["slide", "circle"]))  # the change at frame 60
    scores = changepoint_scores(None, None, cp, features=turning)
    peak = int(np.argmax(scores))
    # boundary c lies between windows c and c+1; window 11 starts at frame 44 and ends at 59
    assert scores[peak] >= cp.threshold and 10 <= peak <= 14, (peak, scores.round(2))
    for steady in (["slide", "slide"], ["circle", "circle"], ["lift", "lift"]):
        s = changepoint_scores(None, None, cp, features=motion_features(_continuous(steady)))
        assert s.max() < cp.threshold, (steady, s.round(2))
    # untracked windows (NaN rows) count as missing, like gated windows for the latent methods
    holes = turning.copy()
    holes[:3] = np.nan
    assert changepoint_scores(None, None, cp, features=holes)[:4].max() == 0.0  # < k/2 valid per block
    with pytest.raises(ValueError, match="needs features"):
        changepoint_scores(None, None, cp)


def test_feature_r2_score_definition():
    before = np.array([[0.0, 5.0], [2.0, 5.0]])
    after = np.array([[4.0, 5.0], [6.0, 5.0]])
    # feature 0: between = 2 * (1 - 3)^2 + 2 * (5 - 3)^2 = 16, within = 4 -> 0.8; feature 1 constant -> 0
    assert feature_r2_score(before, after) == pytest.approx(0.4)
    assert feature_r2_score(before, before) == 0.0


def test_foreground_keeps_the_acting_patch_and_stills_shake_belt_and_background():
    act_idx = patch(range(8, 12), range(8, 12))
    base = circling(still(), act_idx)
    band = patch(range(16, 19), range(G))  # a belt at constant speed
    base[:, band, 0] += 0.01 * np.arange(T)[:, None]
    rng = np.random.default_rng(1)
    shaken = base.copy()
    for t in range(T):  # camera shake: a new small translation + zoom every frame
        shaken[t] = base[t] * (1 + rng.normal(0, 0.005)) + rng.normal(0, 0.02, 2)
    fg = foreground_velocities(np.stack([base, shaken]))  # (2, L, N, 2)
    assert fg.shape == (2, T - 1, G * G, 2) and fg.dtype == np.float32
    moving = np.abs(fg).sum(axis=(1, 3)) > 1e-6  # (2, N) points the foreground moves
    for w in range(2):
        # The acting patch's interior keeps its motion (the grid median may trim its corners) ...
        assert moving[w, patch(range(9, 11), range(9, 11))].all()
        # ... the belt and the static background do not move at all.
        rest = np.setdiff1d(np.arange(G * G), patch(range(7, 13), range(7, 13)))
        assert not moving[w, rest].any()
    # Camera compensation: the shaken window's foreground is the still camera's, up to the fit.
    true_step = np.diff(base[:, act_idx], axis=0)
    np.testing.assert_allclose(
        fg[1][:, patch(range(9, 11), range(9, 11))], fg[0][:, patch(range(9, 11), range(9, 11))], atol=2e-3
    )
    np.testing.assert_allclose(fg[0][:, act_idx[5]], true_step[:, 5], atol=1e-3)  # robust fit, not exact


def test_foreground_is_the_one_rule_of_window_motion_and_still_for_a_still_scene():
    pos = np.stack([still(), circling(still(), patch(range(2, 6), range(3, 7)))])
    found = window_motion(pos, foreground=True)
    np.testing.assert_array_equal(found.foreground, foreground_velocities(pos))
    assert window_motion(pos).foreground is None
    np.testing.assert_array_equal(found.energy, motion_energy(pos))
    assert not found.foreground[0].any()


def test_foreground_of_tracker_jitter_is_still():
    """Below the noise floor nothing is foreground, however its points rank: a window at rest feeds
    the tokenizer zeros, not the jitter of its 'most moving' points."""
    rng = np.random.default_rng(3)
    jitter = still(rng, noise=0.0005)  # ~0.08 px at 320 px wide
    act = circling(jitter, patch(range(8, 12), range(8, 12)))
    fg = foreground_velocities(np.stack([jitter, act]))
    assert not fg[0].any()
    assert np.abs(fg[1]).sum(axis=(0, 2))[patch(range(9, 11), range(9, 11))].min() > 0
    assert FOREGROUND_FLOOR > 0

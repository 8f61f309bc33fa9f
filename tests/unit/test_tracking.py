"""Tracking layer: LK accuracy on warped textures, window sharing, and the CoTracker adapter.

The CoTracker tests use a tiny stand-in hub directory written to tmp_path (``helpers.write_fake_hub``:
no network, no weights): its modules have CoTracker's call signatures and an output that depends on the
input in a checkable way, so the adapter's scaling, layout, queries, batching, weight loading and
parsing are verified (on CUDA too: tests/gpu/).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import (
    FAKE_GAIN,
    check_offline_adapter,
    check_online_adapter,
    colour_frames,
    expected_tracks,
    write_cotracker_checkpoint,
    write_fake_hub,
)

from laps_ray.config import ConfigError
from laps_ray.core.windows import grid_points, window_starts
from laps_ray.tracking import TrackerConfig, make_tracker
from laps_ray.tracking.cotracker import visibility_to_bool
from laps_ray.tracking.lk import LKTracker

# ----------------------------------------------------------------------------------------------------
# synthetic video with known motion


def make_texture(height: int, width: int, seed: int) -> np.ndarray:
    """A real-looking RGB texture: multi-octave smooth noise plus random filled shapes and lines."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for octave in range(5):
        size = 2 ** (octave + 2)
        small = rng.random((max(height // size, 2), max(width // size, 2), 3)).astype(np.float32)
        img += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) * (0.6**octave)
    img = (img - img.min()) / (img.max() - img.min()) * 160 + 40
    for _ in range(60):
        color = tuple(float(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        kind = rng.integers(3)
        if kind == 0:
            cv2.circle(img, (x, y), int(rng.integers(3, 15)), color, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(
                img, (x, y), (x + int(rng.integers(4, 25)), y + int(rng.integers(4, 25))), color, -1
            )
        else:
            x2, y2 = x + int(rng.integers(-30, 30)), y + int(rng.integers(-30, 30))
            cv2.line(img, (x, y), (x2, y2), color, int(rng.integers(1, 4)), cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8)


def warped_clip(
    height: int, width: int, num_frames: int, shift: tuple[float, float], deg_per_frame: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (F, H, W, 3) of a texture moving by ``shift`` px and rotating per frame, and the affines.

    Frame k shows texture point q at ``A_k @ [q, 1]``; the texture has a 128-px margin around the
    frame, so no frame shows padding.

    Returns:
        frames (F, H, W, 3) uint8, affines (F, 3, 3) float64 (texture -> frame k).
    """
    margin = 128
    texture = make_texture(height + 2 * margin, width + 2 * margin, seed)
    centre = ((width - 1) / 2, (height - 1) / 2)
    frames, affines = [], []
    for k in range(num_frames):
        rot = np.eye(3)
        rot[:2] = cv2.getRotationMatrix2D(centre, deg_per_frame * k, 1.0)
        move = np.array([[1, 0, shift[0] * k - margin], [0, 1, shift[1] * k - margin], [0, 0, 1.0]])
        A = rot @ move
        frames.append(cv2.warpAffine(texture, A[:2], (width, height), flags=cv2.INTER_LINEAR))
        affines.append(A)
    return np.stack(frames), np.stack(affines)


def true_tracks(affines: np.ndarray, start: int, points: np.ndarray) -> np.ndarray:
    """Positions (T, N, 2) in frames start.. of the points seen at ``points`` in frame ``start``."""
    homog = np.concatenate([points, np.ones((len(points), 1))], axis=1).T  # (3, N)
    to_texture = np.linalg.inv(affines[start])
    return np.stack([(A @ to_texture @ homog)[:2].T for A in affines[start:]]).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# LK


def test_lk_tracks_translating_rotating_texture_subpixel():
    frames, affines = warped_clip(240, 320, 16, shift=(1.7, -0.9), deg_per_frame=0.3)
    tracker = make_tracker(TrackerConfig(name="lk"))
    tracks, vis = tracker.track(frames)
    assert tracks.shape == (16, 400, 2) and tracks.dtype == np.float32
    assert vis.shape == (16, 400) and vis.dtype == bool

    truth = true_tracks(affines, 0, grid_points(240, 320, 20))
    np.testing.assert_allclose(tracks[0], truth[0], atol=1e-4)  # seeded on the grid
    assert vis.mean() > 0.9, f"only {vis.mean():.2%} of point-frames visible on a fully textured clip"
    err = np.linalg.norm(tracks - truth, axis=-1)[vis]
    assert np.median(err) < 0.5, f"median error {np.median(err):.3f} px"
    assert np.percentile(err, 95) < 1.5, f"95th percentile error {np.percentile(err, 95):.3f} px"


def test_lk_gain_compensation_keeps_tracks_through_flicker():
    # The clip of the first test with a global brightness gain that jumps between frames (mains
    # flicker, auto exposure). Without matching each next frame's mean to the previous one, LK's
    # brightness-constancy error shifts matches and the forward-backward check drops points.
    frames, affines = warped_clip(240, 320, 16, shift=(1.7, -0.9), deg_per_frame=0.3)
    gains = np.array([1.0, 1.15, 0.88, 1.1, 0.9, 1.12, 0.86, 1.0, 1.14, 0.9, 1.1, 0.87, 1.13, 0.9, 1.1, 1.0])
    flicker = np.clip(frames.astype(np.float64) * gains[:, None, None, None], 0, 255).astype(np.uint8)
    tracker = make_tracker(TrackerConfig(name="lk"))
    tracks, vis = tracker.track(flicker)
    truth = true_tracks(affines, 0, grid_points(240, 320, 20))
    assert vis.mean() > 0.9, f"only {vis.mean():.2%} of point-frames visible under flicker"
    err = np.linalg.norm(tracks - truth, axis=-1)[vis]
    assert np.median(err) < 0.5, f"median error {np.median(err):.3f} px under flicker"


def test_lk_gain_match_is_exact_and_leaves_equal_frames_alone():
    from laps_ray.tracking.lk import LKFrame, match_gain

    rng = np.random.default_rng(0)
    gray = rng.integers(20, 200, (60, 80)).astype(np.uint8)
    ref = LKFrame(gray)
    assert ref.total == int(gray.astype(np.int64).sum())
    np.testing.assert_array_equal(match_gain(ref.total, LKFrame(gray.copy())), gray)
    darker = LKFrame((gray * 0.8).round().astype(np.uint8))
    matched = match_gain(ref.total, darker)
    assert abs(float(matched.mean()) - float(gray.mean())) < 0.6
    assert matched.dtype == np.uint8 and matched.shape == gray.shape


def test_lk_points_leaving_the_frame_become_invisible_and_hold_position():
    # 7 px/frame to the left on a 160-px-wide frame: the left ~60% of the grid exits within the window.
    frames, affines = warped_clip(120, 160, 16, shift=(-7.0, 0.0), deg_per_frame=0.0, seed=1)
    tracks, vis = make_tracker(TrackerConfig(name="lk")).track(frames)
    truth = true_tracks(affines, 0, grid_points(120, 160, 20))

    outside = (truth[..., 0] < -1) | (truth[..., 0] > 160) | (truth[..., 1] < -1) | (truth[..., 1] > 120)
    assert outside.any()
    assert not vis[outside].any(), "points outside the frame must be invisible"
    # Lost points stay lost and keep their last position (zero velocity) for the rest of the window.
    for t in range(1, 16):
        lost = ~vis[t]
        assert not vis[t:, lost].any()
        np.testing.assert_array_equal(
            tracks[t:, lost], np.broadcast_to(tracks[t - 1, lost], tracks[t:, lost].shape)
        )
    # Points that stay well inside are tracked.
    inside = (truth[..., 0] > 15).all(axis=0)
    assert vis[:, inside].mean() > 0.9
    assert np.median(np.linalg.norm(tracks - truth, axis=-1)[vis]) < 0.5


class CountingLK(LKTracker):
    """The real LK tracker, counting which frames it prepares."""

    def __init__(self, cfg: TrackerConfig) -> None:
        super().__init__(cfg)
        self.prepared: list[int] = []

    def prepare(self, frame: np.ndarray):
        self.prepared.append(frame.__array_interface__["data"][0])  # frames[f] is a view: address = frame id
        return super().prepare(frame)


def test_lk_overlapping_windows_match_one_by_one_and_prepare_once():
    frames, _ = warped_clip(96, 128, 30, shift=(0.8, 0.5), deg_per_frame=0.2, seed=2)
    T = 16
    starts = window_starts(len(frames), T, 4)  # [0, 4, 8, 12, 16]; the last runs past the end
    assert starts[-1] + T > len(frames)
    counting = CountingLK(TrackerConfig(name="lk", grid=10, batch_windows=2))
    tracks, vis = counting.track_windows(frames, starts, T)
    assert tracks.shape == (len(starts), T, 100, 2) and vis.shape == (len(starts), T, 100)
    assert len(counting.prepared) == len(frames) == len(set(counting.prepared))

    single = LKTracker(TrackerConfig(name="lk", grid=10))
    for w, s in enumerate(starts):
        tr, vi = single.track_windows(frames, [s], T)
        np.testing.assert_array_equal(tracks[w], tr[0])
        np.testing.assert_array_equal(vis[w], vi[0])
        if s + T <= len(frames):
            tr1, vi1 = single.track(frames[s : s + T])
            np.testing.assert_array_equal(tracks[w], tr1)
            np.testing.assert_array_equal(vis[w], vi1)
    # Padding past the last frame repeats it: no motion there.
    last = len(frames) - 1 - starts[-1]
    assert np.all(np.diff(tracks[-1, last:], axis=0) == 0)
    # A batch size of 8 (all windows in one chunk) gives the same result.
    tracks8, vis8 = LKTracker(TrackerConfig(name="lk", grid=10, batch_windows=8)).track_windows(
        frames, starts, T
    )
    np.testing.assert_array_equal(tracks, tracks8)
    np.testing.assert_array_equal(vis, vis8)


def test_track_windows_rejects_bad_input():
    tracker = make_tracker(TrackerConfig(name="lk", grid=4))
    frames = np.zeros((5, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        tracker.track_windows(frames.astype(np.float32), [0], 4)
    with pytest.raises(ValueError, match="outside"):
        tracker.track_windows(frames, [5], 4)
    with pytest.raises(ValueError, match="T must be"):
        tracker.track_windows(frames, [0], 1)


@pytest.mark.parametrize(
    "override, key",
    [({"name": "raft"}, "name"), ({"device": "gpu"}, "device"), ({"lk_win_size": 20}, "lk_win_size")],
)
def test_tracker_config_validation(override, key):
    with pytest.raises(ConfigError, match=key):
        TrackerConfig(**override)


# ----------------------------------------------------------------------------------------------------
# CoTracker adapter against a stand-in hub directory


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    return write_fake_hub(tmp_path / "co-tracker")


@pytest.mark.parametrize("form", ["plain_inner", "model_wrapped", "state_dict_outer"])
def test_cotracker_offline_adapter(hub_dir, tmp_path, form):
    ckpt = write_cotracker_checkpoint(tmp_path / "weights.pth", form)
    cfg = TrackerConfig(
        name="cotracker3_offline", grid=4, hub_dir=str(hub_dir), checkpoint=str(ckpt), batch_windows=2
    )
    tracker = make_tracker(cfg)
    assert tracker.model.source == str(hub_dir / "hubconf.py")  # loaded from the local directory
    np.testing.assert_array_equal(tracker.model.model.gain.detach().numpy(), FAKE_GAIN)  # checkpoint applied

    calls = check_offline_adapter(tracker)
    assert {c["device"] for c in calls} == {tracker.device.type}  # the CPU here, CUDA in tests/gpu/


def test_cotracker_online_adapter_chunks_one_window_at_a_time(hub_dir, tmp_path):
    ckpt = write_cotracker_checkpoint(tmp_path / "online.pth", "model_wrapped")
    cfg = TrackerConfig(name="cotracker3_online", grid=4, hub_dir=str(hub_dir), checkpoint=str(ckpt))
    check_online_adapter(make_tracker(cfg))


@pytest.mark.parametrize("layout", ["clone", "torch_hub_cache"])
def test_cotracker_without_checkpoint_asks_hub_for_pretrained_weights(tmp_path, layout):
    repo = (
        tmp_path / "cache" / "facebookresearch_co-tracker_main" if layout == "torch_hub_cache" else tmp_path
    )
    write_fake_hub(repo)
    hub_dir = tmp_path / "cache" if layout == "torch_hub_cache" else repo
    tracker = make_tracker(TrackerConfig(name="cotracker3_offline", grid=4, hub_dir=str(hub_dir)))
    assert tracker.model.source == str(repo / "hubconf.py")
    np.testing.assert_array_equal(tracker.model.model.gain.detach().numpy(), [0.5, 0.5])


def test_cotracker_halves_the_batch_on_out_of_memory(hub_dir, tmp_path):
    ckpt = write_cotracker_checkpoint(tmp_path / "w.pth", "plain_inner")
    cfg = TrackerConfig(
        name="cotracker3_offline", grid=4, hub_dir=str(hub_dir), checkpoint=str(ckpt), batch_windows=4
    )
    tracker = make_tracker(cfg)
    tracker.model.max_batch = 2
    frames, T, starts = colour_frames(14), 6, [0, 1, 2, 3, 4]
    tracks, _ = tracker.track_windows(frames, starts, T)
    assert [c["shape"][0] for c in tracker.model.calls] == [4, 2, 2, 1]
    np.testing.assert_allclose(tracks, expected_tracks(frames, starts, T, 4), atol=1e-4)


def test_cotracker_missing_hub_dir_or_checkpoint_is_a_clear_error(tmp_path, hub_dir):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(FileNotFoundError, match=r"no-such-dir.*does not exist.*git clone"):
        make_tracker(TrackerConfig(name="cotracker3_offline", hub_dir=str(missing)))
    with pytest.raises(FileNotFoundError, match="has no hubconf.py"):
        make_tracker(TrackerConfig(name="cotracker3_offline", hub_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match=r"nope\.pth.*scaled_online\.pth"):
        make_tracker(
            TrackerConfig(
                name="cotracker3_online", hub_dir=str(hub_dir), checkpoint=str(tmp_path / "nope.pth")
            )
        )


class _Touch:
    """A pickle payload that creates a file when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_cotracker_checkpoint_is_never_unpickled(hub_dir, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pth"
    torch.save({"model": {"gain": torch.ones(2)}, "extra": _Touch(marker)}, ckpt, pickle_module=pickle)
    with pytest.raises(RuntimeError, match="weights-only"):
        make_tracker(TrackerConfig(name="cotracker3_offline", hub_dir=str(hub_dir), checkpoint=str(ckpt)))
    assert not marker.exists()


def test_cotracker_checkpoint_with_wrong_keys_is_rejected(hub_dir, tmp_path):
    ckpt = tmp_path / "other.pth"
    torch.save({"backbone.weight": torch.ones(3)}, ckpt)
    with pytest.raises(RuntimeError, match=r"does not fit.*backbone\.weight"):
        make_tracker(TrackerConfig(name="cotracker3_offline", hub_dir=str(hub_dir), checkpoint=str(ckpt)))


def test_visibility_to_bool_handles_bool_probabilities_and_logits():
    assert visibility_to_bool(torch.tensor([True, False]), 0.5).tolist() == [True, False]
    assert visibility_to_bool(torch.tensor([0.9, 0.2]), 0.5).tolist() == [True, False]
    assert visibility_to_bool(torch.tensor([3.0, -2.0, 0.5]), 0.5).tolist() == [True, False, True]

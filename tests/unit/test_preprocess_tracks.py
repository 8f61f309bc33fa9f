"""Tracks of one video (no Ray): windows, times and motion; the preprocess CLI's help."""

from __future__ import annotations

import numpy as np
from helpers import job_help

from laps_ray.io.decode import DecodeConfig
from laps_ray.io.synthetic import make_action_video
from laps_ray.io.track_store import read_tracks
from laps_ray.tracking import make_tracker
from laps_ray.tracking.base import TrackerConfig
from laps_ray.tracking.video_tracks import track_video


def test_track_video_windows_times_and_motion(tmp_path):
    make_action_video(
        tmp_path / "v.mp4", duration_s=4, fps=30, size=(160, 120), bursts=[(1.5, 2.5, "slide")], seed=3
    )
    tracker = make_tracker(TrackerConfig(grid=10))
    rec = track_video(
        tmp_path / "v.mp4", tmp_path / "v.h5", tracker, DecodeConfig(resize_shorter=120), 16, 4, 10
    )
    tracks, vis, meta = read_tracks(tmp_path / "v.h5")
    # 4 s at 20 fps = 80 processed frames -> 1 + ceil((80 - 16) / 4) = 17 windows, none dropped.
    assert rec["frames"] == 80 and rec["windows"] == 17 and tracks.shape == (17, 16, 100, 2)
    assert (meta.height, meta.width, meta.fps, meta.source_fps) == (120, 160, 20.0, 30.0)
    import h5py

    with h5py.File(tmp_path / "v.h5") as f:
        t_start = f["root/default/t_start"][...]
        frame_index = f["root/default/frame_index"][...]
    np.testing.assert_allclose(t_start, np.arange(17) * 0.2, atol=1e-6)  # window w starts at 4w/20 s
    np.testing.assert_array_equal(frame_index, np.round(np.arange(17) * 0.2 * 30).astype(int))
    speed = np.linalg.norm(np.diff(tracks, axis=1), axis=-1).mean(axis=(1, 2))
    burst = (t_start + 0.4 > 1.5) & (t_start + 0.4 < 2.5)
    rest = (t_start + 0.75 < 1.5) | (t_start > 2.5)  # windows entirely outside the burst
    assert speed[burst].min() > 5 * speed[rest].max()  # motion only where planted
    assert vis.mean() > 0.9


def test_module_help_is_fast_and_lists_flags():
    out = job_help("preprocess")
    assert "--split-seconds" in out and "--check" in out

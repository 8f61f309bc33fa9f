"""The preprocess job: tracks from videos, bad inputs reported, resume, Ray local and ray job submit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_unlistable_folder

from laps_ray.config import load_config
from laps_ray.io.decode import DecodeConfig
from laps_ray.io.synthetic import make_action_video, make_bad_inputs
from laps_ray.io.track_store import read_tracks
from laps_ray.jobs.preprocess import PreprocessJobConfig, main, run
from laps_ray.tracking import make_tracker
from laps_ray.tracking.base import TrackerConfig
from laps_ray.tracking.video_tracks import track_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two good short videos (one with a name that needs care) and every kind of bad input."""
    d = tmp_path_factory.mktemp("videos")
    make_action_video(d / "a.mp4", duration_s=3, fps=30, size=(128, 96), bursts=[(1.0, 2.0, "slide")], seed=1)
    sub = d / "sub dir"
    sub.mkdir()
    make_action_video(sub / "b é.mp4", duration_s=2, fps=25, size=(96, 128), bursts=[(0.5, 1.5, "circle")])
    bad = make_bad_inputs(d / "bad")
    (d / "bad" / bad["unicode_name"].name).unlink()  # keep only the broken ones in bad/
    make_unlistable_folder(d / "locked")  # a sub-folder nobody can list: reported, not fatal
    return d


def _cfg(inp: Path, out: Path, *extra: str) -> PreprocessJobConfig:
    return load_config(
        PreprocessJobConfig,
        REPO / "configs" / "preprocess.yaml",
        [f"input={inp}", f"output={out}", "decode.resize_shorter=96", "resources.num_actors=2", *extra],
    )


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


def test_job_reports_every_bad_input_and_finishes_the_good_ones(ray_local, videos, tmp_path):
    out = tmp_path / "out"
    result = run(_cfg(videos, out))
    assert result.exit_code == 0
    manifest = json.loads((out / "run.json").read_text())
    items = manifest["items"]
    assert items["a.mp4"]["status"] == "done" and items["sub dir/b é.mp4"]["status"] == "done"
    bad = {k: v for k, v in items.items() if k.startswith("bad/")}
    assert len(bad) == 5 and all(v["status"] == "failed" for v in bad.values())
    reasons = " | ".join(v["reason"] for v in bad.values())
    for word in ("empty", "short", "audio"):
        assert word in reasons
    locked = [k for k in items if k.startswith("locked/")]
    assert len(locked) == 1 and locked[0].endswith("/") and items[locked[0]]["status"] == "failed"
    assert "directory not readable" in items[locked[0]]["reason"]
    assert (out / "sub dir" / "b é.h5").exists() and read_tracks(out / "a.h5")[0].shape[1:] == (16, 400, 2)
    assert manifest["config"]["tracker"]["name"] == "lk" and "ray" in manifest["versions"]
    assert not list(out.rglob(".*.tmp*"))

    # Re-run: complete outputs are skipped; a deleted output and a stale partial file are redone.
    (out / "a.h5").unlink()
    (out / ".a.deadbeef.tmp.h5").write_bytes(b"partial")
    before = (out / "sub dir" / "b é.h5").stat().st_mtime_ns
    again = run(_cfg(videos, out))
    assert again.skipped == 1 and (out / "a.h5").exists()
    assert (out / "sub dir" / "b é.h5").stat().st_mtime_ns == before
    assert not (out / ".a.deadbeef.tmp.h5").exists()
    # A changed window setting invalidates old outputs instead of silently reusing them.
    assert run(_cfg(videos, out, "stride=8")).skipped == 0


def test_cli_check_strict_and_errors(ray_local, videos, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--input", str(videos / "bad"), "--output", str(tmp_path / "c"), "--check", "--strict"])
    assert exc.value.code == 1
    text = capsys.readouterr().out
    assert "0 ok, 5 broken" in text and "zero" in text.lower() or "empty" in text
    with pytest.raises(SystemExit) as exc:
        main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    assert exc.value.code == 1 and "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--input", str(videos), "--output", str(tmp_path / "o"), "tracker.name=sift"])
    assert exc.value.code == 2 and "tracker.name" in capsys.readouterr().err


@pytest.mark.e2e
def test_ray_job_submit_against_ray_start(ray_head, videos, tmp_path):
    out = tmp_path / "submitted"
    cmd = [
        ray_head["ray"], "job", "submit", "--address", ray_head["url"], "--working-dir", str(REPO),
        "--", "python", "-m", "laps_ray.jobs.preprocess", "--input", str(videos / "a.mp4"),
        "--output", str(out), "decode.resize_shorter=96",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=ray_head["env"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in (proc.stdout + proc.stderr).lower()
    assert read_tracks(out / "a.h5")[0].shape == (12, 16, 400, 2)  # 3 s -> 60 frames -> 1 + ceil(44/4)
    assert json.loads((out / "run.json").read_text())["items"]["a.mp4"]["status"] == "done"


def test_module_help_is_fast_and_lists_flags():
    proc = subprocess.run(
        [sys.executable, "-m", "laps_ray.jobs.preprocess", "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert proc.returncode == 0 and "--split-seconds" in proc.stdout and "--check" in proc.stdout


def test_split_seconds_cuts_chunks_then_tracks_each(ray_local, videos, tmp_path):
    out = tmp_path / "split"
    result = run(_cfg(videos / "a.mp4", out, "split_seconds=1.0"))
    chunks = sorted((out / "chunks").glob("*.mp4"))
    assert [c.name for c in chunks] == ["a_part000.mp4", "a_part001.mp4", "a_part002.mp4"]
    assert result.done == 3 and not result.failed
    # Each 1 s chunk at 20 fps = 20 frames -> 1 + ceil(4/4) = 2 windows.
    assert all(read_tracks(out / c.with_suffix(".h5").name)[0].shape[0] == 2 for c in chunks)


def test_a_direct_run_names_its_ray_and_prints_no_noise(videos, tmp_path):
    """As from a user's shell (RAY_AUTH_MODE and RAY_ADDRESS unset): the job says which Ray it starts
    and why, token auth is on without a token file written into the home folder, and the terminal
    shows no warnings, only progress and the result."""
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="laps_rt_", dir="/tmp")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(HOME=str(tmp_path / "home"), RAY_TMPDIR=ray_tmp)
    cmd = [
        sys.executable, "-m", "laps_ray.jobs.preprocess", "--input", str(videos / "a.mp4"),
        "--output", str(tmp_path / "o"), "--num-actors", "1", "decode.resize_shorter=96",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    finally:
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    first = proc.stderr.splitlines()[0]  # the log's first line
    assert "starting a private local Ray (no --address, no RAY_ADDRESS and no `ray start`" in first, text
    assert not (tmp_path / "home" / ".ray" / "auth_token").exists()
    noise = [
        ln for ln in text.splitlines() if "WARN" in ln or "Warning" in ln or "Token authentication" in ln
    ]
    assert not noise, noise
    assert "preprocess: 1 done" in proc.stdout

"""The preprocess job as a user runs it: ``ray job submit`` against ``ray start --head``, and a direct
run from a shell that starts its own private Ray (what it says, and that it stays quiet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import submit_job

from laps_ray.io.track_store import read_tracks


def test_ray_job_submit_against_ray_start(ray_head, preprocess_videos, tmp_path):
    out = tmp_path / "submitted"
    args = ["--input", str(preprocess_videos / "a.mp4"), "--output", str(out), "decode.resize_shorter=96"]
    submit_job(ray_head, "preprocess", *args, timeout=240)
    assert read_tracks(out / "a.h5")[0].shape == (12, 16, 400, 2)  # 3 s -> 60 frames -> 1 + ceil(44/4)
    assert json.loads((out / "run.json").read_text())["items"]["a.mp4"]["status"] == "done"


def test_a_direct_run_names_its_ray_and_prints_no_noise(preprocess_videos, tmp_path):
    """As from a user's shell (RAY_AUTH_MODE and RAY_ADDRESS unset): the job says which Ray it starts
    and why, token auth is on without a token file written into the home folder, and the terminal
    shows no warnings, only progress and the result."""
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="laps_rt_", dir="/tmp")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(HOME=str(tmp_path / "home"), RAY_TMPDIR=ray_tmp)
    cmd = [
        sys.executable, "-m", "laps_ray.jobs.preprocess", "--input", str(preprocess_videos / "a.mp4"),
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

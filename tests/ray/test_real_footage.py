"""Real-footage tier: every real clip that registry packages ship (tests/real_footage.py) goes through
``segment_folder`` with segments forced to exist, and every clip is checked frame by frame.

Real footage has what generated videos lack: B-frames muxed with pts == dts and an edit list
(box.mp4), packed B-frames (Megamind.avi), AVI drop frames (tree.avi), negative dts (bikes.mp4), audio
tracks. The job runs with on-threshold 0 (every window is active) and a 1.5 s maximum duration, so
each video is cut into many segments; 5 s time shards make the actors seek, so ``params.timeline ==
"plan"`` also proves that the packet-only timeline plan agrees with the real (seeked) decodes.

Missing videos skip with the reason (install hints), or fail with ``LAPS_REQUIRE_REAL_FOOTAGE=1``
(``scripts/test.sh`` sets it when it installed them).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import real_footage
from helpers import CONFIGS, tiny_checkpoint

from laps_ray.config import load_config
from laps_ray.io.video import read_frames
from laps_ray.jobs.segment_folder import SegmentJobConfig, run, summary

pytestmark = pytest.mark.real
log = logging.getLogger(__name__)

CHECK_SHORTER = 64  # clips and sources are compared at this size (pixels, shorter side)
MAX_MEAN_DIFF = 4.0  # grey levels: one H.264 re-encode of the right frame (measured <= 2 on these)


def _need(name: str) -> None:
    """Fail (``LAPS_REQUIRE_REAL_FOOTAGE=1``) when ``name`` is missing; else it is skipped at
    collection (:func:`_videos`), before the Ray fixture starts."""
    reason = real_footage.missing_reason(name)
    if reason is not None:
        pytest.fail(f"{reason} ({real_footage.REQUIRE_ENV}=1)")


def _videos() -> list:
    """The tier's videos as test parameters; missing ones skip unless they are required."""
    params = []
    for name in real_footage.names():
        reason = real_footage.missing_reason(name)
        skip = reason is not None and not real_footage.required()
        params.append(pytest.param(name, marks=pytest.mark.skipif(skip, reason=reason or "")))
    return params


@pytest.fixture(scope="module")
def job(request, tmp_path_factory) -> dict:
    """One segment_folder run over every real video found (one folder), plus its timing."""
    root = tmp_path_factory.mktemp("real_footage")
    videos = real_footage.materialize(root / "gunzipped")
    if not videos:
        return {"videos": {}}
    request.getfixturevalue("ray_local")  # started only when there is footage to run
    folder = root / "videos"
    folder.mkdir()
    for name, path in videos.items():
        (folder / name).symlink_to(path)
    ckpt = tiny_checkpoint(root / "tok")  # energies do not matter here (threshold 0): a tiny random one
    cfg = load_config(
        SegmentJobConfig,
        CONFIGS / "segment_folder.yaml",
        [
            f"input={folder}",
            f"output={root / 'out'}",
            f"tokenizer.checkpoint={ckpt}",
            "decode.resize_shorter=120",  # cheap tracking; clips are cut at the source size
            "segmentation.threshold=0.0",  # every window is active: segments are forced to exist
            "segmentation.max_duration_sec=1.5",  # ... and cut into many pieces
            "segmentation.min_duration_sec=0.4",
            "segmentation.up_count=1",
            "segmentation.cooldown_windows=0",
            "shard_seconds=5",  # several shards per video: actors seek
            "resources.num_actors=2",
            "export.clip_preset=ultrafast",
            "export.plot=false",
        ],
    )
    t0 = time.perf_counter()
    result = run(cfg)
    seconds = time.perf_counter() - t0
    log.info("segment_folder on %d real videos: %.1f s", len(videos), seconds)
    return {"videos": videos, "out": root / "out", "result": result, "seconds": seconds}


@pytest.mark.parametrize("name", _videos())
def test_real_clips_are_frame_exact(job, name):
    _need(name)
    result, out = job["result"], job["out"]
    item = result.items.get(name, {})
    assert item.get("status") == "done", f"{name}: {item} ({summary(result)})"
    doc = json.loads((out / Path(name).stem / "segments.json").read_text())
    segments = doc["segments"]
    assert len(segments) >= 2, f"{name}: {len(segments)} segments"
    # The plan (packets only) matched every decoded frame of every shard, seeks included.
    assert doc["params"]["timeline"] == "plan", f"{name}: the timeline plan disagreed with decoding"

    images, index, t = read_frames(job["videos"][name], resize_shorter=CHECK_SHORTER)
    assert index.tolist() == list(range(len(index))) and (np.diff(t) > 0).all()
    assert segments[-1]["end_frame"] <= len(index) - 1
    for seg in segments:
        a, b = seg["start_frame"], seg["end_frame"]
        clip, _, clip_t = read_frames(out / Path(name).stem / seg["clip"], resize_shorter=CHECK_SHORTER)
        where = f"{name} {seg['label']} [{a}, {b}]"
        assert len(clip) == b - a + 1 == seg["clip_frames"], f"{where}: {len(clip)} frames"
        # At the source rate: clip frame j at the source time of frame a + j (from the clip's start).
        np.testing.assert_allclose(clip_t, t[a : b + 1] - t[a], atol=1e-3, err_msg=where)
        # The source's frames at those indices: close, and no closer one frame off.
        diff = np.abs(clip.astype(np.float32) - images[a : b + 1].astype(np.float32)).mean(axis=(1, 2, 3))
        assert diff.mean() < MAX_MEAN_DIFF, f"{where}: mean abs difference {diff.mean():.2f}"
        frames = np.arange(a, b + 1)
        for shift in (-1, 1):
            inside = (frames + shift >= 0) & (frames + shift < len(images))
            if inside.any():
                off = np.abs(clip[inside].astype(np.float32) - images[frames[inside] + shift]).mean()
                assert diff[inside].mean() <= off + 0.05, f"{where}: frames match better shifted by {shift}"


def test_real_footage_job_succeeds(job):
    if not job["videos"]:
        reason = "no real footage found: " + "; ".join(sorted({v for v in real_footage.INSTALL.values()}))
        if real_footage.required():
            pytest.fail(f"{reason} ({real_footage.REQUIRE_ENV}=1)")
        pytest.skip(reason)
    log.info("real-footage job: %.1f s for %d videos", job["seconds"], len(job["videos"]))
    assert job["result"].exit_code == 0 and not job["result"].failed, summary(job["result"])
    assert job["result"].done == len(job["videos"])

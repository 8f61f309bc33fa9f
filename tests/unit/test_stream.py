"""The ``stream`` job on a file equals segment_folder (hysteresis and change points); the queue's drop
policy and source naming. Live sources, SIGTERM and real-time pacing: tests/e2e/test_stream_live.py."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    STREAM_CHANGEPOINTS,
    check_segments,
    clip_frames,
    jsonl,
    npz_members,
    stream_cfg,
)

from laps_ray.config import load_config
from laps_ray.io import exports as ex
from laps_ray.jobs import segment_folder as sf
from laps_ray.jobs import stream
from laps_ray.pipeline import live
from laps_ray.pipeline.local import process_video_local
from laps_ray.pipeline.resolve import resolve_run, video_context
from laps_ray.pipeline.shards import plan_timeline, video_duration
from laps_ray.pipeline.window_processor import WindowProcessor
from laps_ray.tracking.windowed import Window


def _segment_folder_local(stream_assets, out: Path, *extra) -> Path:
    """segment_folder's per-video path without Ray, with the context its run() builds."""
    video = stream_assets["video"]
    cfg = load_config(
        sf.SegmentJobConfig, None, [*stream_assets["settings"], f"input={video}", f"output={out}", *extra]
    )
    run = resolve_run(cfg, cfg.report, cfg.report_key, load=False)
    wp = WindowProcessor(
        cfg.tracker,
        cfg.gates,
        cfg.energy,
        stream_assets["checkpoint"],
        T=cfg.T,
        stride=cfg.stride,
        tokenizer_batch=cfg.tokenizer.batch_size,
        device="cpu",
        num_threads=1,
    )
    plan = plan_timeline(video, cfg.decode.target_fps)
    ctx = video_context(run, video.name, str(video), out / video.stem, video_duration(plan))
    process_video_local(wp, ctx, batch_windows=cfg.batch_windows, resize_shorter=cfg.decode.resize_shorter)
    return out / video.stem


# ------------------------------------------------------------------------------------------ tests


# threshold auto with a warm-up longer than the file: calibrated on all its windows, as segment_folder's
# per-video scope (process_video_local) is. The proxy is the signal these assets segment (velocity), so
# the clip is reliable and the "done" path is compared.
STREAM_AUTO = [
    "segmentation.threshold=auto",
    "segmentation.auto.warmup_seconds=1000",
    "segmentation.auto.proxy=velocity",
]


@pytest.mark.parametrize("variant", ["hysteresis", "changepoints", "auto"])
def test_stream_on_a_file_equals_segment_folder(stream_assets, tmp_path, variant):
    extra = {"changepoints": STREAM_CHANGEPOINTS, "auto": STREAM_AUTO}.get(variant, [])
    res = stream.run(stream_cfg(stream_assets, stream_assets["video"], tmp_path / "stream", *extra))
    assert res.exit_code == 0 and res.summary.dropped == 0 and res.summary.gap_windows == 0
    ours = tmp_path / "stream" / stream_assets["video"].stem
    ref = _segment_folder_local(stream_assets, tmp_path / "folder", *extra)

    # energy.jsonl: byte-identical (window ids, frames, times, energies, smoothing, codes)
    assert (ours / "energy.jsonl").read_text() == (ref / "energy.jsonl").read_text()
    a, b = json.loads((ours / "segments.json").read_text()), json.loads((ref / "segments.json").read_text())
    assert a.pop("stream")["finished"] is True
    assert a == b  # segments, video, duration, fps, params and digests
    reasons = [s["end_reason"] for s in a["segments"]]
    assert reasons  # a real comparison: something was segmented
    if variant == "changepoints":
        assert "change" in reasons  # the lagged state machine split a segment, as the offline one
    if variant == "auto":  # the same threshold, calibrated and recorded the same way
        source = a["params"]["segmentation"]["threshold_source"]
        assert source["source"] == "auto" and source["scope"] == "video"
        run_json = json.loads((tmp_path / "stream" / "run.json").read_text())
        assert run_json["threshold"]["value"] == a["params"]["segmentation"]["threshold"]
    for s in a["segments"]:
        assert (ours / s["codes"]).read_text() == (ref / s["codes"]).read_text()
        assert np.array_equal(np.load(ours / s["vectors"]), np.load(ref / s["vectors"]))
        assert clip_frames(ours / s["clip"]) == clip_frames(ref / s["clip"])
    check_segments(ours, res.summary.windows)

    # timeline.npz: the same arrays, byte for byte, for every processed frame of the file (the stream
    # forgets old frames while it runs, so this also checks that it kept the whole timeline)
    assert npz_members(ours / ex.TIMELINE_FILE) == npz_members(ref / ex.TIMELINE_FILE)
    tl = ex.read_timeline(ours / ex.TIMELINE_FILE)
    assert tl.num_frames == a["params"]["num_frames"] == res.summary.frames

    run = json.loads((tmp_path / "stream" / "run.json").read_text())
    st = run["stream"]
    assert st["windows"] == st["computed"] == len(jsonl(ours / "energy.jsonl")) and st["dropped"] == 0
    lat = st["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["max"] and 0.0 <= st["budget_ok_ratio"] <= 1.0
    assert (
        st["budget_s"] == pytest.approx(0.2) and run["items"][stream_assets["video"].stem]["status"] == "done"
    )


# ------------------------------------------------------------------------------------ small parts


def _window(i: int) -> live.ReadyWindow:
    item = type("Item", (), {"index": 4 * i, "t": 0.2 * i})()
    win = Window(index=i, start=4 * i, items=[item], frame_index=4 * i, t_start=0.2 * i)
    return live.ReadyWindow(win, 0.0)


def test_queue_drops_the_oldest_window_in_place_and_keeps_order():
    q = live.WindowQueue(capacity=2)
    stop = threading.Event()
    for i in range(5):
        q.put_window(_window(i), drop=True, stop=stop)
    q.close()
    got = q.get_batch(max_windows=10)
    kinds = [
        (type(e).__name__, e.window if isinstance(e, live.SkippedWindow) else e.window.index) for e in got
    ]
    assert kinds == [
        ("SkippedWindow", 0),
        ("SkippedWindow", 1),
        ("SkippedWindow", 2),
        ("ReadyWindow", 3),
        ("ReadyWindow", 4),
    ]
    assert q.dropped == [0, 1, 2] and got[0].reason == "queue_full" and q.get_batch(10) is None


def test_queue_blocks_instead_of_dropping_for_files():
    q = live.WindowQueue(capacity=1)
    stop = threading.Event()
    q.put_window(_window(0), drop=False, stop=stop)
    t = threading.Thread(target=q.put_window, args=(_window(1), False, stop))
    t.start()
    time.sleep(0.2)
    assert t.is_alive()  # back-pressure: the reader waits
    assert [e.window.index for e in q.get_batch(1)] == [0]
    t.join(timeout=5)
    assert [e.window.index for e in q.get_batch(1)] == [1] and q.dropped == []


def test_source_names_and_redaction():
    assert live.source_name("/data/cam 1/clip.mp4") == "clip"
    assert live.source_name("/dev/video2") == "video2" and live.source_name("0") == "camera0"
    url = "rtsp://user:pw@10.0.0.5:554/Streaming/Channels/101"
    assert live.source_name(url) == "10.0.0.5_554_Streaming_Channels_101"
    assert live.redact("rtsp://user:pw@10.0.0.5:554/s") == "rtsp://10.0.0.5:554/s"
    assert live.is_live_source("http://x/y.ts") and live.is_live_source("/dev/video0")
    assert not live.is_live_source("videos/a.mp4")
    rc = live.ReconnectConfig(backoff_initial_s=0.5, backoff_max_s=3.0)
    assert [rc.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


def test_stream_assigns_each_closed_segment_like_segment_folder_clusters(stream_assets, tmp_path):
    """``stream --clusters RUN``: every segment gets the fitted model's answer as it closes — the same
    ``cluster`` / ``cluster_confidence`` / ``cluster_outlier`` that ``segment_folder --clusters`` writes."""
    from discovery_helpers import write_planted_outputs

    from laps_ray.jobs import cluster
    from laps_ray.pipeline.cluster_assignment import ASSIGNMENT_KEYS, assign_folder, check_cluster_model

    folder = tmp_path / "folder"
    ref = _segment_folder_local(stream_assets, folder)
    # a model fitted on other segments of a tokenizer with the same code count (1920): 4 planted kinds
    planted, _ = write_planted_outputs(tmp_path / "planted")
    fit = tmp_path / "fit"
    cluster.run(
        load_config(
            cluster.ClusterJobConfig,
            None,
            [f"segments={planted}", f"output={fit}", "backend=local", "cluster.k=4", "umap.enabled=false"],
        )
    )
    res = stream.run(stream_cfg(stream_assets, stream_assets["video"], tmp_path / "s", f"clusters={fit}"))
    assert res.exit_code == 0
    assign_folder(folder, check_cluster_model(fit))
    a = json.loads((tmp_path / "s" / stream_assets["video"].stem / "segments.json").read_text())
    b = json.loads((ref / "segments.json").read_text())
    assert a["clusters"] == b["clusters"] and len(a["segments"]) == len(b["segments"]) >= 2
    assigned = [{k: s[k] for k in ASSIGNMENT_KEYS} for s in a["segments"]]
    assert assigned == [{k: s[k] for k in ASSIGNMENT_KEYS} for s in b["segments"]]
    assert {s["cluster"] for s in a["segments"]} <= {
        0,
        1,
        2,
        3,
    }  # each segment got one of the fitted clusters

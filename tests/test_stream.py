"""The ``stream`` job: file == segment_folder, exact drop accounting, a live HTTP source that loses its
connection, SIGTERM mid-segment, latency statistics; plus the queue's drop policy and source naming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from live_server import HttpVideoServer, ffmpeg_path

from laps_ray.config import load_config
from laps_ray.io import exports as ex
from laps_ray.io.checkpoints import save_tokenizer
from laps_ray.io.synthetic import make_action_video
from laps_ray.jobs import segment_folder as sf
from laps_ray.jobs import stream
from laps_ray.models.tokenizer import MotionTokenizer
from laps_ray.models.tokenizer_config import named_config
from laps_ray.pipeline import live
from laps_ray.pipeline.local import process_video_local
from laps_ray.pipeline.resolve import resolve_run, video_context
from laps_ray.pipeline.shards import plan_timeline, video_duration
from laps_ray.pipeline.window_processor import WindowProcessor
from laps_ray.tracking.windowed import Window

# Two actions back to back (one object), rests at both ends: 6 s at 30 fps, 160x120.
BURSTS = [(1.0, 2.8, "slide"), (2.8, 4.8, "shake")]
# Segment on the mean point speed (meaningful with a random tokenizer); gates off so every window is
# tracked and tokenized, i.e. codes and quantized energies of every window are compared too.
SETTINGS = [
    "energy.source=velocity",
    "segmentation.threshold=0.0005",
    "gates.pre_gate.enable=false",
    "gates.motion_gate.enable=false",
    "tracker.grid=8",
    "decode.resize_shorter=120",
    "tokenizer.device=cpu",
]
# Change points with the lag path of the live state machine (the random tokenizer's latents change
# little, hence the tiny threshold; measured to split this video).
CHANGEPOINTS = [
    "segmentation.changepoint.enable=true",
    "segmentation.changepoint.method=latent_r2",
    "segmentation.changepoint.k=2",
    "segmentation.changepoint.threshold=0.001",
    "segmentation.changepoint.min_gap_windows=2",
    "segmentation.min_duration_sec=0.4",
]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream_assets")
    torch.manual_seed(0)
    tok = named_config("tiny", num_points=64)
    ckpt = save_tokenizer(root / "tokenizer", MotionTokenizer(tok), tok)
    video = root / "actions.mp4"
    make_action_video(video, duration_s=6, fps=30, size=(160, 120), bursts=BURSTS, seed=3, num_objects=1)
    return {"checkpoint": ckpt, "video": video, "settings": [*SETTINGS, f"tokenizer.checkpoint={ckpt}"]}


def _stream_cfg(assets, source, out, *extra) -> stream.StreamJobConfig:
    return load_config(
        stream.StreamJobConfig, None, [*assets["settings"], f"source={source}", f"output={out}", *extra]
    )


def _segment_folder_local(assets, out: Path, *extra) -> Path:
    """segment_folder's per-video path without Ray, with the context its run() builds."""
    video = assets["video"]
    cfg = load_config(
        sf.SegmentJobConfig, None, [*assets["settings"], f"input={video}", f"output={out}", *extra]
    )
    run = resolve_run(cfg, cfg.report, cfg.report_key, load=False)
    wp = WindowProcessor(
        cfg.tracker,
        cfg.gates,
        cfg.energy,
        assets["checkpoint"],
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


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _frames(path: Path) -> tuple[int, float]:
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        return sum(1 for _ in c.decode(st)), float(st.average_rate)


def _npz_members(path: Path) -> dict[str, bytes]:
    """The arrays of an ``.npz`` as their ``.npy`` bytes (the zip's own timestamps differ between runs)."""
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def _expand(ranges: list[list[int]]) -> list[int]:
    return [i for a, b in ranges for i in range(a, b + 1)]


def _check_segments(vdir: Path, num_windows: int) -> list[dict]:
    """Every referenced file exists; clips have exactly the segment's frames; segments are ordered and
    disjoint; sidecar windows have codes."""
    doc = json.loads((vdir / "segments.json").read_text())
    lines = _lines(vdir / "energy.jsonl")
    assert [r["window"] for r in lines] == list(range(num_windows))
    segs = doc["segments"]
    for k, s in enumerate(segs):
        assert s["label"] == f"segment_{k:04d}"
        n, _ = _frames(vdir / s["clip"])
        assert n == s["num_frames"] == s["end_frame"] - s["start_frame"] + 1 == s["clip_frames"]
        side = json.loads((vdir / s["codes"]).read_text())
        vec = np.load(vdir / s["vectors"])
        assert vec.shape[0] == len(side["windows"]) == len(side["codes"]) == s["num_code_windows"]
        for w, c in zip(side["windows"], side["codes"]):
            assert lines[w]["codes"] == c and not lines[w]["gated"]
        if k:
            assert s["start_frame"] > segs[k - 1]["end_frame"] and s["start_sec"] >= segs[k - 1]["end_sec"]
    return segs


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("variant", ["hysteresis", "changepoints"])
def test_stream_on_a_file_equals_segment_folder(assets, tmp_path, variant):
    extra = CHANGEPOINTS if variant == "changepoints" else []
    res = stream.run(_stream_cfg(assets, assets["video"], tmp_path / "stream", *extra))
    assert res.exit_code == 0 and res.summary.dropped == 0 and res.summary.gap_windows == 0
    ours = tmp_path / "stream" / assets["video"].stem
    ref = _segment_folder_local(assets, tmp_path / "folder", *extra)

    # energy.jsonl: byte-identical (window ids, frames, times, energies, smoothing, codes)
    assert (ours / "energy.jsonl").read_text() == (ref / "energy.jsonl").read_text()
    a, b = json.loads((ours / "segments.json").read_text()), json.loads((ref / "segments.json").read_text())
    assert a.pop("stream")["finished"] is True
    assert a == b  # segments, video, duration, fps, params and digests
    reasons = [s["end_reason"] for s in a["segments"]]
    assert reasons  # a real comparison: something was segmented
    if variant == "changepoints":
        assert "change" in reasons  # the lagged state machine split a segment, as the offline one
    for s in a["segments"]:
        assert (ours / s["codes"]).read_text() == (ref / s["codes"]).read_text()
        assert np.array_equal(np.load(ours / s["vectors"]), np.load(ref / s["vectors"]))
        assert _frames(ours / s["clip"]) == _frames(ref / s["clip"])
    _check_segments(ours, res.summary.windows)

    # timeline.npz: the same arrays, byte for byte, for every processed frame of the file (the stream
    # forgets old frames while it runs, so this also checks that it kept the whole timeline)
    assert _npz_members(ours / ex.TIMELINE_FILE) == _npz_members(ref / ex.TIMELINE_FILE)
    tl = ex.read_timeline(ours / ex.TIMELINE_FILE)
    assert tl.num_frames == a["params"]["num_frames"] == res.summary.frames

    run = json.loads((tmp_path / "stream" / "run.json").read_text())
    st = run["stream"]
    assert st["windows"] == st["computed"] == len(_lines(ours / "energy.jsonl")) and st["dropped"] == 0
    lat = st["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["max"] and 0.0 <= st["budget_ok_ratio"] <= 1.0
    assert st["budget_s"] == pytest.approx(0.2) and run["items"][assets["video"].stem]["status"] == "done"


def test_realtime_with_slow_compute_drops_windows_with_their_true_ids(assets, tmp_path):
    cfg = _stream_cfg(
        assets,
        assets["video"],
        tmp_path,
        "stream.realtime=true",
        "stream.debug_sleep_s=0.4",  # 2x the 0.2 s budget per window
        "stream.queue_windows=2",
        "stream.batch_windows=1",
    )
    s = stream.run(cfg).summary
    W = s.windows
    dropped = _expand(s.dropped_ids)
    assert 0 < s.dropped == len(dropped) == len(set(dropped)) and s.computed + s.dropped == W
    assert set(dropped) <= set(range(W)) and s.gap_windows == 0

    vdir = tmp_path / assets["video"].stem
    lines = _lines(vdir / "energy.jsonl")
    assert [r["window"] for r in lines] == list(range(W))  # every id exactly once, in order
    flagged = [r["window"] for r in lines if r.get("dropped")]
    assert flagged == dropped
    for r in lines:
        if r.get("dropped"):
            assert r["drop_reason"] == "queue_full" and r["gated"] and r["gate"] == "dropped"
            assert r["energy"] == 0.0 and r["codes"] is None and set(r["energies"].values()) == {0.0}
        else:
            assert "drop_reason" not in r and r["codes"] is not None
    # times follow the true ids: window w starts at processed frame 4w (20 fps)
    assert all(abs(r["t_start"] - 0.2 * r["window"]) < 0.04 for r in lines)
    st = json.loads((tmp_path / "run.json").read_text())["stream"]
    assert st["dropped"] == s.dropped and _expand(st["dropped_ids"]) == dropped
    assert st["latency_ms"]["p95"] > 400 and st["budget_ok_ratio"] < 1.0  # it really was too slow
    _check_segments(vdir, W)


@pytest.mark.skipif(ffmpeg_path() is None, reason="needs the ffmpeg command (apt-get install ffmpeg)")
def test_live_http_source_survives_a_dropped_connection(assets, tmp_path):
    server = HttpVideoServer(assets["video"]).start()
    stop = threading.Event()
    seen = {"windows": 0, "reconnects": 0}
    at_reconnect: list[int] = []

    def progress(p: dict) -> None:
        seen.update(p)
        if p["reconnects"] and not at_reconnect:
            at_reconnect.append(p["windows"])
        if at_reconnect and p["windows"] >= at_reconnect[0] + 22:
            stop.set()  # enough after the reconnect: end the stream gracefully

    cfg = _stream_cfg(
        assets,
        server.url,
        tmp_path,
        *CHANGEPOINTS,  # live clips across change-point splits (held-back frames)
        "stream.reconnect.max_retries=8",
        "stream.reconnect.backoff_initial_s=0.2",
        "stream.reconnect.backoff_max_s=0.5",
    )
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(r=stream.run(cfg, stop, progress)))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while seen["windows"] < 12 and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()  # the camera server dies mid-stream ...
        time.sleep(0.7)
        server.start()  # ... and comes back on the same URL
        worker.join(timeout=90)
    finally:
        stop.set()
        server.kill()
    assert not worker.is_alive()
    s = result["r"].summary
    assert s.reconnects >= 1 and s.end_reason == "stopped" and s.status == "done" and s.live
    assert s.windows > at_reconnect[0] >= 12 and s.dropped == 0

    vdir = tmp_path / s.output.rsplit("/", 1)[-1]
    assert vdir.name == f"127.0.0.1_{server.port}_live.ts"
    lines = _lines(vdir / "energy.jsonl")
    gaps = [r["window"] for r in lines if r.get("dropped")]
    assert (
        gaps == _expand(s.gap_ids)
        and gaps
        and {r["drop_reason"] for r in lines if r.get("dropped")} == {"reconnect"}
    )
    t = [r["t_start"] for r in lines]
    assert all(b > a for a, b in zip(t, t[1:]))  # one clock across the outage
    assert t[gaps[-1] + 1] - t[gaps[0] - 1] > 0.7  # ... which shows in the times
    segs = _check_segments(vdir, s.windows)
    assert segs and all(_frames(vdir / x["clip"])[1] == pytest.approx(30.0, abs=0.5) for x in segs)
    tl = ex.read_timeline(vdir / ex.TIMELINE_FILE)  # every processed frame, across the outage
    assert tl.num_frames == s.frames and np.all(np.diff(tl.index) > 0) and np.all(np.diff(tl.t) > 0)
    assert tl.source_fps == pytest.approx(30.0, abs=0.5) and tl.last_source_frame == s.source_frames - 1
    assert json.loads((vdir / "segments.json").read_text())["fps"] == pytest.approx(30.0, abs=0.5)
    st = json.loads((tmp_path / "run.json").read_text())["stream"]
    assert st["reconnects"] == s.reconnects and st["latency_ms"]["p95"] is not None


def test_sigterm_mid_segment_closes_it_with_clip_and_sidecar(assets, tmp_path):
    cmd = [sys.executable, "-m", "laps_ray.jobs.stream", "--source", str(assets["video"])]
    cmd += ["--output", str(tmp_path), "--realtime", *assets["settings"]]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    err: list[str] = []
    started = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            err.append(line)
            if "streaming (" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(60), "".join(err)
        time.sleep(3.0)  # video time ~3 s: inside the long action (1.0-4.8 s)
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()
        proc.wait(timeout=60)
        reader.join(timeout=10)  # every stderr line read
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(err)
    assert "stream:" in out and any("SIGTERM" in line for line in err)

    vdir = tmp_path / assets["video"].stem
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["finished"] and run["stream"]["end_reason"] == "stopped"
    segs = _check_segments(vdir, run["stream"]["windows"])
    last = segs[-1]
    assert last["end_reason"] == "end_of_stream" and last["end_sec"] < 4.5  # cut at the stop, not the action
    assert (vdir / last["codes"]).is_file() and (vdir / last["vectors"]).is_file()
    assert run["stream"]["latency_ms"]["p50"] > 0
    assert not [p for p in vdir.rglob(".*") if p.is_file()]  # no temporaries left behind


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

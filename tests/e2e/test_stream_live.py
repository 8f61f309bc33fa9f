"""The ``stream`` job live: an HTTP source (ffmpeg on loopback) that loses its connection, SIGTERM to a
running job process mid-segment, and real-time pacing with too-slow compute (exact drop accounting).
Wall-clock paced and multi-second, hence this tier; the file path is in tests/unit/test_stream.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import (
    STREAM_CHANGEPOINTS,
    check_segments,
    clip_frames,
    expand_ranges,
    jsonl,
    stream_cfg,
)
from live_server import HttpVideoServer, ffmpeg_path

from laps_ray.io import exports as ex
from laps_ray.jobs import stream


def test_realtime_with_slow_compute_drops_windows_with_their_true_ids(stream_assets, tmp_path):
    cfg = stream_cfg(
        stream_assets,
        stream_assets["video"],
        tmp_path,
        "stream.realtime=true",
        "stream.debug_sleep_s=0.4",  # 2x the 0.2 s budget per window
        "stream.queue_windows=2",
        "stream.batch_windows=1",
    )
    s = stream.run(cfg).summary
    W = s.windows
    dropped = expand_ranges(s.dropped_ids)
    assert 0 < s.dropped == len(dropped) == len(set(dropped)) and s.computed + s.dropped == W
    assert set(dropped) <= set(range(W)) and s.gap_windows == 0

    vdir = tmp_path / stream_assets["video"].stem
    lines = jsonl(vdir / "energy.jsonl")
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
    assert st["dropped"] == s.dropped and expand_ranges(st["dropped_ids"]) == dropped
    assert st["latency_ms"]["p95"] > 400 and st["budget_ok_ratio"] < 1.0  # it really was too slow
    check_segments(vdir, W)


@pytest.mark.skipif(ffmpeg_path() is None, reason="needs the ffmpeg command (apt-get install ffmpeg)")
def test_live_http_source_survives_a_dropped_connection(stream_assets, tmp_path):
    server = HttpVideoServer(stream_assets["video"]).start()
    stop = threading.Event()
    seen = {"windows": 0, "reconnects": 0}
    at_reconnect: list[int] = []

    def progress(p: dict) -> None:
        seen.update(p)
        if p["reconnects"] and not at_reconnect:
            at_reconnect.append(p["windows"])
        if at_reconnect and p["windows"] >= at_reconnect[0] + 22:
            stop.set()  # enough after the reconnect: end the stream gracefully

    cfg = stream_cfg(
        stream_assets,
        server.url,
        tmp_path,
        *STREAM_CHANGEPOINTS,  # live clips across change-point splits (held-back frames)
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
    lines = jsonl(vdir / "energy.jsonl")
    gaps = [r["window"] for r in lines if r.get("dropped")]
    assert (
        gaps == expand_ranges(s.gap_ids)
        and gaps
        and {r["drop_reason"] for r in lines if r.get("dropped")} == {"reconnect"}
    )
    t = [r["t_start"] for r in lines]
    assert all(b > a for a, b in zip(t, t[1:]))  # one clock across the outage
    assert t[gaps[-1] + 1] - t[gaps[0] - 1] > 0.7  # ... which shows in the times
    segs = check_segments(vdir, s.windows)
    assert segs and all(clip_frames(vdir / x["clip"])[1] == pytest.approx(30.0, abs=0.5) for x in segs)
    tl = ex.read_timeline(vdir / ex.TIMELINE_FILE)  # every processed frame, across the outage
    assert tl.num_frames == s.frames and np.all(np.diff(tl.index) > 0) and np.all(np.diff(tl.t) > 0)
    assert tl.source_fps == pytest.approx(30.0, abs=0.5) and tl.last_source_frame == s.source_frames - 1
    assert json.loads((vdir / "segments.json").read_text())["fps"] == pytest.approx(30.0, abs=0.5)
    st = json.loads((tmp_path / "run.json").read_text())["stream"]
    assert st["reconnects"] == s.reconnects and st["latency_ms"]["p95"] is not None


def test_sigterm_mid_segment_closes_it_with_clip_and_sidecar(stream_assets, tmp_path):
    cmd = [sys.executable, "-m", "laps_ray.jobs.stream", "--source", str(stream_assets["video"])]
    cmd += ["--output", str(tmp_path), "--realtime", *stream_assets["settings"]]
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

    vdir = tmp_path / stream_assets["video"].stem
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["finished"] and run["stream"]["end_reason"] == "stopped"
    segs = check_segments(vdir, run["stream"]["windows"])
    last = segs[-1]
    assert last["end_reason"] == "end_of_stream" and last["end_sec"] < 4.5  # cut at the stop, not the action
    assert (vdir / last["codes"]).is_file() and (vdir / last["vectors"]).is_file()
    assert run["stream"]["latency_ms"]["p50"] > 0
    assert not [p for p in vdir.rglob(".*") if p.is_file()]  # no temporaries left behind

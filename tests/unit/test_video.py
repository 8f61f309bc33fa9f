"""Tests for laps_ray.io.video (PyAV decode/encode) and laps_ray.io.synthetic (generated videos).

Every video here is generated on the fly (tiny sizes, ultrafast preset); nothing touches the network
except a connection attempt to a closed port on localhost. Files with the timestamp oddities of real
footage (B-frames muxed with pts == dts, edit lists, negative, repeated and missing timestamps, AVI
drop frames) are made with PyAV here; tests/ray/test_real_footage.py runs the real ones, and
tests/e2e/test_video_memory.py the 8K memory check.
"""

from __future__ import annotations

import gc
import os
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from laps_ray.io import synthetic as syn
from laps_ray.io.video import (
    FrameClock,
    VideoError,
    iter_frames,
    list_videos,
    probe,
    read_frames,
    split_video,
    write_clips,
    write_video,
)
from laps_ray.pipeline.shards import plan_timeline

W, H = 64, 48


def ramp_frames(n: int, w: int = W, h: int = H, seed: int = 0) -> list[np.ndarray]:
    """Textured frames whose per-channel means identify the frame (up to k = 419): red steps by 3 per
    frame and wraps every 60 frames, green steps by 30 at each wrap."""
    tex = syn.textured_image(h, w, seed).astype(np.int16) // 8 - 16
    offsets = [(40 + 3 * (k % 60), 40 + 30 * (k // 60), 120) for k in range(n)]
    return [np.clip(tex + np.array(o, np.int16), 0, 255).astype(np.uint8) for o in offsets]


def frame_means(images: np.ndarray) -> np.ndarray:
    """(F, 3) per-channel mean brightness."""
    return np.asarray(images).reshape(len(images), -1, 3).mean(axis=1)


def nearest_frames(images: np.ndarray, reference: np.ndarray) -> list[int]:
    """For each image, the index of the reference frame with the closest channel means. Compared as
    red-blue and green-blue: each H.264 re-encode darkens all channels alike by about 1 level."""

    def key(x: np.ndarray) -> np.ndarray:
        m = frame_means(x)
        return m[:, :2] - m[:, 2:]

    d = np.linalg.norm(key(images)[:, None] - key(reference)[None], axis=2)
    return d.argmin(axis=1).tolist()


@pytest.fixture(scope="module")
def vids(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("vids")
    out = {"ramp30": d / "ramp30.mp4", "long": d / "long.mp4"}
    write_video(out["ramp30"], ramp_frames(60), fps=30, crf=10, preset="ultrafast")
    write_video(out["long"], ramp_frames(300, seed=1), fps=30, preset="ultrafast")
    return out


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    return syn.make_bad_inputs(tmp_path_factory.mktemp("bad"))


def reference_resample(times: np.ndarray, target_fps: float) -> list[int]:
    """Straightforward restatement of the rule: keep i iff t_i >= next_t; then add 1/target_fps until
    next_t > t_i (written independently of the implementation, with a tiny float tolerance)."""
    kept, next_t = [], 0.0
    for i, t in enumerate(times):
        if t >= next_t - 1e-9:
            kept.append(i)
            while next_t <= t + 1e-9:
                next_t += 1.0 / target_fps
    return kept


# ------------------------------------------------------------------------------------- resampling


def test_resample_30_to_20_exact_indices_and_times(vids):
    images, idx, t = read_frames(vids["ramp30"], target_fps=20)
    expected = [i for i in range(60) if i % 3 != 1]  # 0, 2, 3, 5, 6, 8, 9, ...
    assert idx.tolist() == expected
    assert idx.tolist() == reference_resample(np.arange(60) / 30, 20)
    np.testing.assert_allclose(t, idx / 30.0, atol=1e-9)
    # The images are the source frames at those indices (means step by ~3 per source frame).
    all_images, all_idx, _ = read_frames(vids["ramp30"])
    assert all_idx.tolist() == list(range(60))
    np.testing.assert_allclose(frame_means(images), frame_means(all_images[idx]), atol=0.01)


@pytest.mark.parametrize("target, expected_step", [(30, 1), (60, 1), (10, 3), (15, 2)])
def test_resample_other_rates(vids, target, expected_step):
    _, idx, _ = read_frames(vids["ramp30"], target_fps=target)
    assert idx.tolist() == list(range(0, 60, expected_step))


def test_resample_vfr(tmp_path):
    ts = [0.0, 0.05, 0.07, 0.2, 0.21, 0.22, 0.5, 0.55, 0.6, 0.61]
    path = tmp_path / "vfr.mp4"
    syn.make_vfr_video(path, ts)
    _, idx, t = read_frames(path)
    np.testing.assert_allclose(t, ts, atol=1e-4)  # 1/90000 time base round trip
    images, idx, t = read_frames(path, target_fps=10)
    # slots 0, .1, .2, ...: 0 → 0.0; .1 → 0.2 (catch-up to .3); .3 → 0.5 (next .6); .6 → 0.6.
    assert idx.tolist() == [0, 3, 6, 8] == reference_resample(np.array(ts), 10)
    np.testing.assert_allclose(t, [0.0, 0.2, 0.5, 0.6], atol=1e-4)
    # make_vfr_video encodes frame k with mean brightness ~ (40 + 8k) + texture offset.
    means = images.reshape(len(images), -1).mean(axis=1)
    np.testing.assert_allclose(np.diff(means), 8 * np.diff(idx), atol=1.5)


def test_start_end_window_matches_full_decode(vids):
    _, full_idx, full_t = read_frames(vids["long"], target_fps=20)
    with iter_frames(vids["long"], target_fps=20, start_sec=3.0, end_sec=6.0) as it:
        part = list(it)
    sel = (full_t >= 3.0) & (full_t < 6.0)
    assert [f.index for f in part] == full_idx[sel].tolist()  # seek + resample grid = full decode
    np.testing.assert_allclose([f.t for f in part], full_t[sel], atol=1e-9)


# ------------------------------------------------------------------------------ resize and rotation


@pytest.mark.parametrize("size, shorter, expected_hw", [((96, 54), 32, (32, 57)), ((54, 96), 32, (57, 32))])
def test_resize_keeps_aspect(tmp_path, size, shorter, expected_hw):
    w, h = size
    path = tmp_path / "r.mp4"
    write_video(path, ramp_frames(4, w, h), fps=30, preset="ultrafast")
    images, _, _ = read_frames(path, resize_shorter=shorter)
    assert images.shape[1:3] == expected_hw
    assert read_frames(path, resize_shorter=min(w, h))[0].shape[1:3] == (h, w)  # no-op at that size


def _write_rotated(path: Path, img: np.ndarray, ccw_degrees: int, n: int = 3) -> None:
    """A file whose display matrix asks players to rotate by ``ccw_degrees`` (what phones write)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "10"})
        s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
        s.set_display_rotation(ccw_degrees)
        for _ in range(n):
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))


@pytest.mark.parametrize("ccw, cw", [(-90, 90), (90, 270), (180, 180)])
def test_rotation_metadata_honoured_end_to_end(tmp_path, ccw, cw):
    img = np.full((H, W, 3), 60, np.uint8)
    img[:12, :16] = 250  # a bright marker in the stored top-left corner
    path = tmp_path / f"rot{cw}.mp4"
    _write_rotated(path, img, ccw)
    info = probe(path)
    assert info.rotation == cw
    assert (info.height, info.width) == ((W, H) if cw in (90, 270) else (H, W))
    images, _, _ = read_frames(path, resize_shorter=24)
    shown = np.rot90(img, k=-cw // 90)  # what a player displays: rotated clockwise by cw
    assert images.shape[1:3] == (round(shown.shape[0] * 24 / 48), round(shown.shape[1] * 24 / 48))
    small = images[0][::1, ::1].astype(float)
    expected = shown[::2, ::2].astype(float)  # 48 → 24 on the shorter side: exactly 2x
    assert np.abs(small - expected).mean() < 6  # wrong orientation would differ by ~40 on average


# ------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "key, reason",
    [
        ("zero_byte", "empty file (0 bytes)"),
        ("text_as_mp4", "not a video file"),
        ("truncated", "truncated or corrupt"),
        ("one_frame", "too short: 1 frame"),
        ("audio_only", "no video stream (audio only)"),
    ],
)
@pytest.mark.parametrize("how", ["probe", "iter_threaded", "iter_plain", "read_frames"])
def test_bad_inputs_raise_video_error(bad, key, reason, how):
    path = bad[key]
    with pytest.raises(VideoError) as err:
        if how == "probe":
            probe(path)
        elif how == "read_frames":
            read_frames(path)
        else:
            frames = list(iter_frames(path, threaded=how == "iter_threaded"))
            assert not frames
    e = err.value
    assert e.source == str(path) and reason in e.reason
    assert str(e) == f"{path}: {e.reason}"


def test_one_frame_video_fails_before_yielding(bad):
    it = iter_frames(bad["one_frame"])
    with pytest.raises(VideoError, match="too short"):
        next(it)


def test_partially_truncated_file_raises_after_decoding(tmp_path):
    good = tmp_path / "good.mp4"
    write_video(good, ramp_frames(90), fps=30, preset="ultrafast")  # index at the front (faststart)
    cut = tmp_path / "cut.mp4"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert probe(cut).num_frames == 90  # the container still claims 90 frames
    for threaded in (True, False):
        with pytest.raises(VideoError, match=r"truncated or corrupt: decoded \d+ of 90 frames"):
            for _ in iter_frames(cut, threaded=threaded):
                pass


def test_missing_directory_camera_and_dead_server(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="is a directory"):
        iter_frames(tmp_path)
    missing_cam = next(str(i) for i in range(50, 100) if not Path(f"/dev/video{i}").exists())
    with pytest.raises(VideoError, match="no such camera device"):
        probe(missing_cam)
    t0 = time.monotonic()
    with pytest.raises(VideoError, match="cannot open"):  # port 9 (discard) is closed here
        probe("rtsp://127.0.0.1:9/stream")
    assert time.monotonic() - t0 < 15


def test_unicode_and_spaces_in_names(bad, tmp_path):
    path = bad["unicode_name"]
    assert path.name == "kitchen café 01.mp4"
    info = probe(path)
    assert info.source == str(path) and info.fps == 30.0 and info.num_frames == 30
    images, idx, _ = read_frames(path, target_fps=15)
    assert len(images) == 15 and idx.tolist() == list(range(0, 30, 2))
    assert path in list_videos(path.parent)
    out = tmp_path / "clips ü" / "séance 1.mp4"
    assert write_clips(path, [(3, 12)], [out]) == [10]
    assert probe(out).num_frames == 10


# ---------------------------------------------------------------------------------- thread hygiene


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("laps-decode")]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_early_close_stops_thread_and_closes_file(vids):
    base_threads, base_fds = threading.active_count(), _open_fds()
    it = iter_frames(vids["long"], queue_size=4)
    first = [next(it) for _ in range(3)]
    assert [f.index for f in first] == [0, 1, 2]
    assert len(_decode_threads()) == 1  # the producer really is a thread
    it.close()
    assert _decode_threads() == [] and threading.active_count() == base_threads
    assert _open_fds() == base_fds

    it = iter_frames(vids["long"], queue_size=2)  # abandoned without close(): GC must clean up
    next(it)
    del it
    gc.collect()
    deadline = time.monotonic() + 5
    while _decode_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _decode_threads() == [] and _open_fds() == base_fds

    it = iter_frames(vids["long"])  # closed before iterating: the container must still be released
    it.close()
    assert _open_fds() == base_fds


def test_threaded_and_plain_decode_agree(vids):
    a = list(iter_frames(vids["long"], target_fps=20, resize_shorter=24, threaded=True, queue_size=3))
    b = list(iter_frames(vids["long"], target_fps=20, resize_shorter=24, threaded=False))
    assert [f.index for f in a] == [f.index for f in b] and len(a) == 200
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------- writing


def test_write_video_odd_size_and_vfr(tmp_path):
    frames = ramp_frames(5, 65, 49)
    assert write_video(tmp_path / "odd.mp4", frames, fps=25, preset="ultrafast") == 5
    images, _, t = read_frames(tmp_path / "odd.mp4")
    assert images.shape == (5, 50, 66, 3)  # padded to even sizes by edge replication
    assert np.abs(images[:, :49, :65].astype(float) - np.stack(frames)).mean() < 3
    np.testing.assert_allclose(t, np.arange(5) / 25, atol=1e-6)
    assert probe(tmp_path / "odd.mp4").fps == 25.0
    with pytest.raises(ValueError, match="timestamps must increase"):
        write_video(tmp_path / "bad.mp4", frames[:3], fps=30, timestamps=[0, 0.1, 0.1])
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # failed write leaves no temp
    assert not (tmp_path / "bad.mp4").exists()


def test_write_clips_frames_fps_and_content(vids, tmp_path):
    src = vids["ramp30"]
    all_images, _, _ = read_frames(src)
    ranges = [(20, 35), (0, 9), (30, 31), (5, 24)]  # any order, overlapping
    outs = [tmp_path / f"segment_{k:04d}.mp4" for k in range(len(ranges))]
    counts = write_clips(src, ranges, outs)
    assert counts == [b - a + 1 for a, b in ranges]
    for (a, b), out in zip(ranges, outs):
        info = probe(out)
        assert info.fps == 30.0 and info.num_frames == b - a + 1  # source rate, not target_fps
        assert info.duration == pytest.approx((b - a + 1) / 30, abs=1e-6)
        images, _, t = read_frames(out)
        np.testing.assert_allclose(t, np.arange(b - a + 1) / 30, atol=1e-6)
        assert nearest_frames(images, all_images) == list(range(a, b + 1))  # the right source frames


def test_write_clips_resized_and_range_past_end(vids, tmp_path):
    out = tmp_path / "small.mp4"
    assert write_clips(vids["ramp30"], [(10, 19)], [out], resize_shorter=24) == [10]
    assert (probe(out).height, probe(out).width) == (24, 32)
    with pytest.raises(VideoError, match="past the end"):
        write_clips(vids["ramp30"], [(0, 5), (50, 70)], [tmp_path / "a.mp4", tmp_path / "b.mp4"])
    assert (tmp_path / "a.mp4").exists() and not (tmp_path / "b.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_split_video_chunks_and_resume(tmp_path):
    src = tmp_path / "src.mp4"
    write_video(src, ramp_frames(105), fps=30, preset="ultrafast")  # 3.5 s
    parts = split_video(src, tmp_path / "parts", seconds=1.0)
    assert [p.name for p in parts] == [f"src_part{k:03d}.mp4" for k in range(4)]
    infos = [probe(p) for p in parts]
    assert [i.num_frames for i in infos] == [30, 30, 30, 15]
    assert [i.duration for i in infos] == pytest.approx([1.0, 1.0, 1.0, 0.5], abs=1e-6)
    assert all(i.fps == 30.0 for i in infos)
    assert nearest_frames(read_frames(parts[2])[0], read_frames(src)[0]) == list(range(60, 90))
    mtimes = [p.stat().st_mtime_ns for p in parts]
    assert split_video(src, tmp_path / "parts", seconds=1.0) == parts  # complete: skipped
    assert [p.stat().st_mtime_ns for p in parts] == mtimes
    parts[1].unlink()  # incomplete: redone
    assert split_video(src, tmp_path / "parts", seconds=1.0) == parts and parts[1].exists()


def test_split_video_lone_tail_frame_joins_previous(tmp_path):
    src = tmp_path / "tail.mp4"
    write_video(src, ramp_frames(61), fps=30, preset="ultrafast")
    parts = split_video(src, tmp_path / "p", seconds=1.0)
    assert [probe(p).num_frames for p in parts] == [30, 31]


# --------------------------------------------------------------------- real-footage timestamp oddities


def _pts_from_dts(packet: av.Packet) -> None:
    packet.pts = packet.dts  # opencv's box.mp4: B-frames muxed with pts == dts (decode order)


def _repeat_frame_10_time(packet: av.Packet) -> None:
    """Frame 11 gets frame 10's timestamp (no B-frames: pts == dts), the others keep theirs."""
    if packet.pts is not None and round(packet.pts * packet.time_base * 30) == 11:
        packet.pts -= round(1 / (30 * packet.time_base))
        packet.dts = packet.pts


_DROP_PTS = [0, 1, 2, 5, 6, 7, 8, 12, 13, 14, 15, 16, 20, 21, 22, 23, 24, 25, 26, 30, 31, 32, 33, 34, 35]
_DROP_PTS += [40, 41, 42, 43, 44]  # gaps: the AVI muxer writes empty drop-frame chunks (tree.avi)
# kind -> how to make it, which source frames survive in display order (None: not predictable, as
# when an edit list discards decode-order packets), their true times (None: unknown) and whether
# timestamps are regular enough for a seeked decode to derive source indices from them.
ODD: dict[str, dict] = {
    "bframes_pts_eq_dts": dict(ext="mp4", bf=2, packet=_pts_from_dts, shown=None),
    "edit_list": dict(ext="mp4", bf=2, first_pts=-5, shown=list(range(5, 30)), times=np.arange(25) / 30),
    "negative_ts": dict(
        ext="ts",
        fmt="mpegts",
        bf=2,
        first_pts=-5,
        opts={"avoid_negative_ts": "disabled"},
        times=np.arange(30) / 30,
    ),
    "no_timestamps": dict(ext="mkv", bf=2, first_pts=-5, opts={"avoid_negative_ts": "disabled"}),
    "repeated_ts": dict(ext="mkv", bf=0, packet=_repeat_frame_10_time, times=np.arange(30) / 30),
    "avi_bframes": dict(ext="avi", codec="mpeg4", bf=2, times=np.arange(30) / 30),
    "avi_drop_frames": dict(
        ext="avi", codec="mpeg4", bf=0, pts=_DROP_PTS, times=np.array(_DROP_PTS) / 30, regular=False
    ),
}


def make_odd_video(path: Path, kind: str, n: int = 30) -> Path:
    """``ramp_frames(n)`` at 30 fps in a file with the timestamp oddity ``kind`` (:data:`ODD`)."""
    spec = ODD[kind]
    codec = spec.get("codec", "libx264")
    with av.open(str(path), "w", format=spec.get("fmt"), options=spec.get("opts", {})) as c:
        s = c.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.time_base = Fraction(1, 30)
        if codec == "libx264":
            s.options = {"preset": "veryfast", "crf": "10", "bf": str(spec["bf"])}
        else:
            s.codec_context.max_b_frames = spec["bf"]
            s.options = {"qmin": "1", "qmax": "2"}
        packets = []
        for i, img in enumerate(ramp_frames(n)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = spec["pts"][i] if "pts" in spec else i + spec.get("first_pts", 0)
            frame.time_base = Fraction(1, 30)
            packets += s.encode(frame)
        packets += s.encode(None)
        for packet in packets:
            if "packet" in spec:
                spec["packet"](packet)
            c.mux(packet)
    return path


def clock_restatement(path: Path) -> np.ndarray:
    """Frame times (s) by the documented rule, restated from packet timestamps: frame k gets the k-th
    smallest timestamp (pts, else dts) of the non-empty, non-discarded packets; one that does not
    increase, or a missing one, becomes the previous one plus one nominal period."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        tb, step = s.time_base, round(1 / (s.average_rate * s.time_base))
        kept = [p for p in c.demux(s) if p.size and not p.is_discard]
    stamps = sorted(p.pts if p.pts is not None else p.dts for p in kept if (p.pts, p.dts) != (None, None))
    out: list[int] = []
    for k in range(len(kept)):
        x = stamps[k] if k < len(stamps) else None
        if out and (x is None or x <= out[-1]):
            x = out[-1] + step
        out.append(x)
    return np.array([float((x - out[0]) * tb) for x in out])


@pytest.fixture(scope="module")
def odd(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("odd")
    return {kind: make_odd_video(d / f"{kind}.{spec['ext']}", kind) for kind, spec in ODD.items()}


@pytest.mark.parametrize("kind", list(ODD))
def test_odd_timestamps_decode_plan_seek_and_clips(odd, kind, tmp_path):
    path, spec = odd[kind], ODD[kind]
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        carriers = sum(1 for p in c.demux(s) if p.size and not p.is_discard)
    images, idx, t = read_frames(path)
    # One frame per frame-carrying packet, numbered in order, strictly increasing times by the rule.
    assert idx.tolist() == list(range(carriers)) and (np.diff(t) > 0).all()
    np.testing.assert_allclose(t, clock_restatement(path), atol=1e-9)
    if spec.get("times") is not None:  # and they are the times the frames were written with
        np.testing.assert_allclose(t, spec["times"] - spec["times"][0], atol=0.5 / 30)
    shown = nearest_frames(images, np.stack(ramp_frames(30)))  # source frame numbers, display order
    if "shown" in spec and spec["shown"] is None:
        assert shown == sorted(set(shown))
    else:
        assert shown == spec.get("shown", list(range(30)))

    # The timeline plan (packets only) predicts a real decode exactly, so segment_folder can shard it.
    plan = plan_timeline(path, 20)
    _, idx20, t20 = read_frames(path, target_fps=20)
    assert plan is not None and plan.num_source_frames == carriers
    assert plan.index.tolist() == idx20.tolist()
    np.testing.assert_allclose(plan.t, t20, atol=1e-9)
    # A seeked decode (a time shard) keeps the frames a full decode keeps, at the same times.
    with iter_frames(path, target_fps=20, start_sec=0.3) as it:
        part = list(it)
    np.testing.assert_allclose([f.t for f in part], t20[t20 >= 0.3], atol=1e-9)
    if spec.get("regular", True):  # source indices from timestamps need regular ones
        assert [f.index for f in part] == idx20[t20 >= 0.3].tolist()

    # Clips: frame-exact, the right frames, the source's times from the clip's first frame.
    ranges = [(2, 9), (10, carriers - 1), (0, 3)]
    outs = [tmp_path / f"clip{k}.mp4" for k in range(len(ranges))]
    assert write_clips(path, ranges, outs, preset="ultrafast") == [b - a + 1 for a, b in ranges]
    for (a, b), out in zip(ranges, outs):
        clip, _, clip_t = read_frames(out)
        assert len(clip) == b - a + 1
        assert nearest_frames(clip, images) == list(range(a, b + 1))
        np.testing.assert_allclose(clip_t, t[a : b + 1] - t[a], atol=1e-6)


def test_frame_clock_rule():
    clock = FrameClock(step=10)
    for ts in (40, 0, 30, 20, 20, 35):  # decode order; 20 twice
        clock.add(ts)
    clock.remove(35)  # its packet failed to decode
    clock.start_at(0)  # the first frame out has pts 0: nothing below it
    got = [clock.next() for _ in range(7)]
    assert got == [0, 20, 30, 40, 50, 60, 70]  # 20 repeated -> 30; 30, 40 do not increase -> bumped
    after_seek = FrameClock(step=5)
    for ts in (100, 90, 95, 110, 105):  # 90, 95: leading frames the decoder drops after a seek
        after_seek.add(ts)
    after_seek.start_at(100)
    assert [after_seek.next() for _ in range(3)] == [100, 105, 110]
    untimed = FrameClock(step=3)
    assert [untimed.next() for _ in range(3)] == [0, 3, 6]  # no timestamps at all: one period apart


def _patch_codec_tag(path: Path, codec: str, old: bytes, new: bytes, fmt: str | None = None) -> Path:
    """A valid 5-frame file whose codec tag is then overwritten with one no decoder knows."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(5):
            img = np.full((32, 32, 3), 40 * i, np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new))
    return path


@pytest.mark.parametrize(
    "name, codec, old, new",
    [
        ("tag.avi", "mjpeg", b"MJPG", b"QQZZ"),
        ("tag.mp4", "libx264", b"avc1", b"qqzz"),
        ("tag.mkv", "libx264", b"V_MPEG4/ISO/AVC", b"V_QQZZZ/ISO/AVC"),
    ],
)
def test_unknown_codec_tag_is_unsupported_codec(tmp_path, name, codec, old, new):
    path = _patch_codec_tag(tmp_path / name, codec, old, new)
    want = f"unsupported codec (no decoder for codec tag {new.decode()!r} in this FFmpeg build)"
    for read in (probe, read_frames, lambda p: list(iter_frames(p)), lambda p: plan_timeline(p, 20)):
        with pytest.raises(VideoError) as err:
            read(path)
        assert err.value.source == str(path) and err.value.reason == want
    with pytest.raises(VideoError, match="unsupported codec"):
        write_clips(path, [(0, 2)], [tmp_path / "clip.mp4"])
    assert not (tmp_path / "clip.mp4").exists()


# ---------------------------------------------------------------------------------------- listing


def test_list_videos_sorting_and_filtering(tmp_path):
    for name in ["b.mov", "a.MP4", "sub/c.mkv", "sub/deeper/d.webm", ".hidden.mp4", ".x.1234.tmp.mp4",
                 "notes.txt", ".cache/e.mp4", "f.mp4.tmp"]:  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in list_videos(tmp_path)]
    assert got == ["a.MP4", "b.mov", "sub/c.mkv", "sub/deeper/d.webm"]
    assert [p.name for p in list_videos(tmp_path, recursive=False)] == ["a.MP4", "b.mov"]
    assert list_videos(tmp_path / "notes.txt") == [tmp_path / "notes.txt"]  # an explicit file is kept
    assert [p.name for p in list_videos(tmp_path, exts=(".mkv",))] == ["c.mkv"]
    with pytest.raises(VideoError, match="no such file or directory") as err:
        list_videos(tmp_path / "missing")
    assert err.value.source == str(tmp_path / "missing")


def _list_as(paths: list[Path], uid: int | None) -> list[str]:
    """list_videos on each path, as user ``uid`` in a forked child (None: in this process)."""

    def run() -> list[str]:
        out = []
        for p in paths:
            try:
                out.append(f"listed {len(list_videos(p))}")
            except VideoError as e:
                out.append(f"error {e.source} | {e.reason}")
        return out

    if uid is None:
        return run()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop root, list, report through the pipe, exit without pytest's cleanup
        try:
            os.close(r)
            os.setgid(uid)
            os.setuid(uid)
            os.write(w, "\n".join(run()).encode())
        except BaseException as e:
            os.write(w, f"child failed: {e!r}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return text.splitlines()


def test_list_videos_unreadable_directory():
    # chmod 000 does not stop root, and tests usually run as root: then the listing runs as user
    # 'nobody' in a forked child. The folders live in a world-traversable temp dir so only they block.
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        os.chmod(top, 0o755)
        locked, open_dir = Path(top) / "locked", Path(top) / "open"
        (locked / "sub").mkdir(parents=True)
        (locked / "v.mp4").write_bytes(b"x")
        (open_dir / "private").mkdir(parents=True)
        (open_dir / "v.mp4").write_bytes(b"x")
        os.chmod(locked, 0)
        os.chmod(open_dir / "private", 0)
        try:
            lines = _list_as([locked, open_dir], 65534 if os.geteuid() == 0 else None)
        finally:
            os.chmod(locked, 0o755)
            os.chmod(open_dir / "private", 0o755)
        if lines and lines[0].startswith("child failed"):
            pytest.skip(f"running as root and cannot become user 'nobody' to test permissions: {lines[0]}")
        assert lines[0] == f"error {locked} | directory not readable"
        # an unreadable sub-folder is an error naming it, not silently skipped
        assert lines[1].startswith(f"error {open_dir / 'private'} | directory not readable")
        assert _list_as([locked, open_dir], None) != lines or os.geteuid() != 0  # root itself can read


# -------------------------------------------------------------------------------------- synthetic


def test_textured_image_is_deterministic_and_has_corners():
    import cv2

    a, b = syn.textured_image(96, 128, seed=3), syn.textured_image(96, 128, seed=3)
    assert a.shape == (96, 128, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, syn.textured_image(96, 128, seed=4))
    gray = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    corners = cv2.goodFeaturesToTrack(gray, 400, 0.01, 4)
    assert corners is not None and len(corners) > 100
    # corners spread over the whole image, not one region: every quadrant has many
    q = (corners[:, 0, 0] > 64).astype(int) + 2 * (corners[:, 0, 1] > 48).astype(int)
    assert np.bincount(q, minlength=4).min() > 15


def test_translate_rotate_ground_truth_is_subpixel():
    # A single bright Gaussian spot: its intensity centroid is where the spot is, to ~0.01 px.
    base = np.zeros((160, 200, 3), np.uint8)
    yy, xx = np.mgrid[:160, :200]
    p_base = np.array([117.3, 71.6])
    base[...] = (220 * np.exp(-((xx - p_base[0]) ** 2 + (yy - p_base[1]) ** 2) / (2 * 2.5**2)))[..., None]
    f = 6
    shifts = np.stack([np.linspace(0, 7.3, f), np.linspace(0, -4.1, f)], axis=1)
    angles = np.linspace(0, 12, f)
    frames, affines = syn.translate_rotate_frames(base, shifts, angles, out_size=(120, 96))
    assert frames.shape == (f, 96, 120, 3) and affines.shape == (f, 2, 3)
    p0 = affines[0, :, :2] @ p_base + affines[0, :, 2]  # the spot's position in frame 0
    truth = syn.true_positions(affines, p0[None])[:, 0]
    np.testing.assert_allclose(truth[0], p0, atol=1e-9)
    for img, (x, y) in zip(frames, truth):
        g = img[..., 0].astype(float)
        g = np.where(g > 5, g, 0)
        cx, cy = (g * np.mgrid[:96, :120][1]).sum() / g.sum(), (g * np.mgrid[:96, :120][0]).sum() / g.sum()
        assert abs(cx - x) < 0.05 and abs(cy - y) < 0.05


def test_default_bursts_schedule():
    for seed in range(5):
        bursts = syn.default_bursts(20, seed)
        assert bursts[0][0] >= 1.0 and bursts[-1][1] <= 19.0
        assert all(a < b for a, b, _ in bursts)
        assert all(k in syn.BURST_KINDS for _, _, k in bursts)
        gaps = [b2[0] - b1[1] for b1, b2 in zip(bursts, bursts[1:])]
        assert min(gaps) >= 0 and any(g == 0 for g in gaps) and any(g >= 1.5 for g in gaps)
        pair = next(i for i, g in enumerate(gaps) if g == 0)
        assert bursts[pair][2] != bursts[pair + 1][2]


def test_make_action_video_motion_only_in_bursts(tmp_path):
    bursts = [(1.0, 2.0, "slide"), (2.0, 3.0, "shake"), (4.0, 5.0, "circle"), (5.5, 6.5, "lift")]
    gt = syn.make_action_video(
        tmp_path / "act.mp4", duration_s=7.5, fps=20, size=(160, 120), bursts=bursts, noise_std=0, crf=0
    )  # lossless and noise-free, so "nothing moves" can be checked exactly
    assert gt == {
        "video": "act.mp4",
        "video_duration_sec": 7.5,
        "fps": 20.0,
        "segments": [{"start_sec": a, "end_sec": b, "label": k} for a, b, k in bursts],
    }
    images, _, t = read_frames(tmp_path / "act.mp4")
    assert images.shape == (150, 120, 160, 3)
    diff = np.abs(np.diff(images.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    mid = (t[1:] + t[:-1]) / 2
    in_burst = np.zeros(len(mid), bool)
    for a, b, _ in bursts:
        in_burst |= (mid > a + 0.1) & (mid < b - 0.1)  # skip the slow-start/stop ends of the envelope
    rest = np.ones(len(mid), bool)
    for a, b, _ in bursts:
        rest &= (mid < a - 0.05) | (mid > b + 0.05)
    assert diff[rest].max() == 0  # static background and props: nothing moves at rest
    assert diff[in_burst].min() > 0.05
    for a, b, _ in bursts:  # every burst produces clear motion, including the back-to-back pair
        assert diff[(mid > a + 0.1) & (mid < b - 0.1)].mean() > 1.0


def test_vfr_generator_time_base():
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "v.mp4"
        syn.make_vfr_video(path, [0, 0.1, 0.15, 0.4])
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            assert s.time_base == Fraction(1, 90000)
            assert [round(float(f.pts * s.time_base), 4) for f in c.decode(s)] == [0, 0.1, 0.15, 0.4]

"""The segmentation pipeline without Ray: window processor, timeline/shards, segmentation, exports."""

from __future__ import annotations

import dataclasses
import filecmp
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SMALL_SCENE_GATES, tiny_checkpoint

from laps_ray.core.changepoint import ChangePointConfig
from laps_ray.core.energy import ENERGY_SOURCES, EnergyConfig, mean_speed
from laps_ray.core.motion import MOTION_FEATURES
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.core.smoothing import SmoothingConfig
from laps_ray.io.checkpoints import load_tokenizer
from laps_ray.io.energy_store import read_energy_jsonl
from laps_ray.io.exports import ExportConfig
from laps_ray.io.synthetic import make_action_video, make_vfr_video
from laps_ray.io.video import iter_frames, probe, read_frames
from laps_ray.pipeline.local import process_video_local
from laps_ray.pipeline.merge import VideoWindows, merge_shards
from laps_ray.pipeline.outputs import VideoContext
from laps_ray.pipeline.segment import segment_video
from laps_ray.pipeline.shard_run import run_shard
from laps_ray.pipeline.shards import make_shards, plan_timeline
from laps_ray.pipeline.window_processor import WindowProcessor
from laps_ray.tracking.base import TrackerConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("pipeline")
    out = {"dir": d, "tok16": tiny_checkpoint(d / "tok16", T=16), "tok8": tiny_checkpoint(d / "tok8", T=8)}
    out["v30"] = d / "v30.mp4"
    out["gt30"] = make_action_video(
        out["v30"], duration_s=8, fps=30, size=(160, 120), bursts=[(1.5, 3.5, "circle"), (5.0, 6.5, "shake")]
    )
    out["v15"] = d / "v15.mp4"
    make_action_video(out["v15"], duration_s=6, fps=15, size=(160, 120), bursts=[(2.0, 4.0, "shake")], seed=2)
    return out


def _processor(ckpt: Path, T: int = 16, energy: EnergyConfig | None = None) -> WindowProcessor:
    return WindowProcessor(
        TrackerConfig(), SMALL_SCENE_GATES, energy or EnergyConfig(), ckpt, T=T, tokenizer_batch=8
    )


def _ctx(source: Path, out: Path, energy: EnergyConfig, seg: SegmentationConfig, T: int = 16) -> VideoContext:
    return VideoContext(
        key=source.name,
        source=str(source),
        out_dir=str(out),
        energy=energy,
        segmentation=seg,
        export=ExportConfig(clip_preset="ultrafast"),
        T=T,
        stride=4,
        target_fps=20.0,
        params={"T": T, "stride": 4, "target_fps": 20.0},
        checkpoint_sha256="ckpt",
        config_sha256="cfg",
    )


# ------------------------------------------------------------------------------------ processor


def test_window_processor_gates_tokens_and_energies(data):
    wp = _processor(data["tok16"])
    with iter_frames(data["v30"], target_fps=20, resize_shorter=120) as frames:
        res = list(wp.iter_results(frames, batch_windows=5))
    # 8 s at 20 fps = 160 processed frames -> 1 + ceil((160 - 16) / 4) = 37 windows, none dropped.
    assert [r.window for r in res] == list(range(37)) and [r.start for r in res] == list(range(0, 148, 4))
    np.testing.assert_allclose([r.t_start for r in res], np.arange(37) * 0.2, atol=1e-9)
    assert [r.frame_index for r in res] == [round(r.t_start * 30) for r in res]
    assert res[-1].end_frame_index == 239  # processed frame 159 = slot 7.95 s -> first source frame after it
    kinds = {r.gated for r in res}
    assert kinds >= {"pre", None}
    model, cfg = load_tokenizer(data["tok16"])
    for r in res:
        assert set(r.energies) == set(ENERGY_SOURCES)
        if r.gated is None:
            assert r.codes.shape == (15,) and r.zq.shape == (15, cfg.hidden_dim) and r.zq.dtype == np.float32
            # the stored vectors are exactly the FSQ codes of the stored ids
            zq = model.ids_to_codes(torch.from_numpy(r.codes)[None])[0].detach().numpy()
            np.testing.assert_allclose(r.zq, zq, atol=1e-5)
            assert r.energies["quantized"] > 0 and r.energies["velocity"] > 0
        else:
            assert r.codes is None and r.zq is None
            assert r.energies["quantized"] == r.energies["prequant"] == 0.0
        if r.gated == "pre":
            assert r.energies["velocity"] == 0.0 and r.stats["speed"] is None
        if r.gated == "motion":  # a motion-gated window keeps its velocity energy (core.energy rule)
            assert r.energies["velocity"] == pytest.approx(r.stats["speed"])
    # rest windows (entirely outside both bursts) are gated; windows inside a burst are not
    inside = [r for r in res if 1.5 <= r.t_start and r.t_end <= 3.5]
    rest = [r for r in res if r.t_end < 1.4 or 3.7 < r.t_start < 4.8 - 0.75 or r.t_start > 6.7]
    assert inside and rest and all(r.gated is None for r in inside) and all(r.gated for r in rest)

    # velocity energy = mean speed of the tracked velocities, one implementation; the motion energy is
    # core.motion's, fitted on the kept frames' own times (30 -> 20 fps keeps them unevenly spaced)
    w = next(r for r in res if r.gated is None)
    images, _, times = read_frames(data["v30"], target_fps=20, resize_shorter=120)
    frames = images[w.start : w.start + 16]
    tracks, vis = wp.tracker.track(frames)
    from laps_ray.core.motion import motion_energy

    win_times = times[w.start : w.start + 16]
    assert len(set(np.round(np.diff(win_times), 6))) == 2  # steps of 2 and 1 source frames
    pos = tracks[None] * np.array([2.0 / 160, 2.0 / 120])
    want = motion_energy(pos, vis[None], times=win_times[None])[0]
    assert w.energies["motion"] == pytest.approx(want, rel=1e-6)
    from laps_ray.core.windows import normalized_velocities

    speed = mean_speed(normalized_velocities(tracks, 120, 160)[None])[0]
    assert w.energies["velocity"] == pytest.approx(speed, rel=1e-6)


def test_window_processor_feeds_the_tokenizer_the_velocities_or_the_foreground(data):
    """``motion_input``: ``auto`` follows the checkpoint (this one says velocity); ``foreground`` feeds
    core.motion.foreground_velocities of the same tracks; the energies do not depend on it."""
    from laps_ray.core.motion import foreground_velocities
    from laps_ray.core.windows import normalized_velocities
    from laps_ray.models.inference import tokenize

    fg = WindowProcessor(TrackerConfig(), SMALL_SCENE_GATES, EnergyConfig(), data["tok16"], tokenizer_batch=8,
                         motion_input="foreground")  # fmt: skip
    vel = _processor(data["tok16"])
    assert (vel.motion_input, fg.motion_input) == ("velocity", "foreground")
    with iter_frames(data["v30"], target_fps=20, resize_shorter=120, end_sec=3.0) as frames:
        res_fg = list(fg.iter_results(frames, batch_windows=5))
    with iter_frames(data["v30"], target_fps=20, resize_shorter=120, end_sec=3.0) as frames:
        res_vel = list(vel.iter_results(frames, batch_windows=5))
    model, _ = load_tokenizer(data["tok16"])
    frames_all, _, times_all = read_frames(data["v30"], target_fps=20, resize_shorter=120)
    checked = 0
    for a, b in zip(res_vel, res_fg):
        assert a.energies["motion"] == b.energies["motion"] and a.gated == b.gated
        if a.gated is not None:
            continue
        tracks, vis = vel.tracker.track(frames_all[a.start : a.start + 16])
        scale = np.array([2.0 / 160, 2.0 / 120])
        times = times_all[a.start : a.start + 16][None]  # 30 -> 20 fps: unevenly spaced frames
        want_fg = tokenize(model, foreground_velocities(tracks[None] * scale, vis[None], times=times), 8)[2][
            0
        ]
        want_vel = tokenize(model, normalized_velocities(tracks, 120, 160)[None], 8)[2][0]
        np.testing.assert_array_equal(b.codes, want_fg)
        np.testing.assert_array_equal(a.codes, want_vel)
        checked += 1
    assert checked >= 3 and any(
        (a.codes != b.codes).any() for a, b in zip(res_vel, res_fg) if a.codes is not None
    )


@pytest.fixture
def torch_threads():
    """Set torch's intra-op thread count for a test and restore it afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_tokenizer_results_do_not_depend_on_threads_or_batching(data, torch_threads):
    """A window's energies, codes and latents are bit-identical at 1 and 2 torch threads and at two
    window batch sizes (fails on machines where oneDNN/MKL split small GEMMs by thread count unless
    the inference path fixes its threads; the tiny model on 2 threads does here)."""
    wp = _processor(data["tok16"])
    runs = {}
    for threads in (1, 2):
        torch_threads(threads)
        for batch_windows in (3, 11):
            with iter_frames(data["v30"], target_fps=20, resize_shorter=120, end_sec=4.0) as frames:
                runs[threads, batch_windows] = list(wp.iter_results(frames, batch_windows=batch_windows))
    ref = runs[1, 3]
    assert sum(x.gated is None for x in ref) >= 5  # the circle burst at 1.5-3.5 s is tokenized
    for key, got in runs.items():
        for x, y in zip(ref, got, strict=True):
            assert x.energies == y.energies and x.gated == y.gated, key
            assert (x.codes is None and y.codes is None) or np.array_equal(x.codes, y.codes), key
            assert (x.zq is None and y.zq is None) or np.array_equal(x.zq, y.zq), key
    assert torch.get_num_threads() == 2  # the inference path restores the caller's thread count


def test_tokenize_is_row_independent_at_any_thread_count(data, torch_threads):
    """The one inference function: a row's latents do not depend on its batch company or threads."""
    from laps_ray.models.inference import tokenize

    model, _ = load_tokenizer(data["tok16"])
    vel = np.random.default_rng(0).normal(0, 0.02, size=(13, 15, 400, 2)).astype(np.float32)
    torch_threads(1)
    ref = [tokenize(model, vel[i : i + 1], batch_rows=8)[0] for i in range(13)]
    for threads in (1, 2):
        torch_threads(threads)
        for start in (0, 5):
            z, zq, ids = tokenize(model, vel[start:], batch_rows=8)
            assert z.shape == (13 - start, 15, model.cfg.hidden_dim) and ids.dtype == np.int64
            for i in range(13 - start):
                assert np.array_equal(z[i], ref[start + i][0]), (threads, start, i)


# ------------------------------------------------------------------------------ timeline, shards


@pytest.mark.parametrize("video, src_fps", [("v30", 30), ("v15", 15)])
def test_plan_and_every_shard_match_a_full_decode(data, video, src_fps):
    """30 -> 20 fps drops every third frame; 15 fps is below target, so every frame is kept."""
    _, idx, t = read_frames(data[video], target_fps=20)
    plan = plan_timeline(data[video], 20)
    assert plan is not None and plan.source_fps == src_fps
    np.testing.assert_array_equal(plan.index, idx)
    np.testing.assert_allclose(plan.t, t, atol=1e-12)
    if src_fps == 15:
        np.testing.assert_array_equal(idx, np.arange(idx.size))
    else:
        assert idx.size == 2 * plan.num_source_frames // 3
    shards = make_shards("k", str(data[video]), data["dir"] / "w", plan, 16, 4, 3, 20.0, 0)
    assert [s.first_window for s in shards] == list(range(0, 3 * len(shards), 3))
    for s in shards:  # each shard's seeked decode reads exactly its planned frames
        with iter_frames(data[video], target_fps=20, start_sec=s.start_sec, end_sec=s.end_sec) as it:
            got = [(f.index, f.t) for f in it]
        assert [i for i, _ in got] == s.expect_index.tolist()
        np.testing.assert_allclose([x for _, x in got], s.expect_t, atol=1e-9)
        assert s.expect_index[0] == idx[s.first_window * 4]  # starts on a global window start


@pytest.mark.parametrize("video", ["v30", "v15"])
def test_sharded_equals_unsharded_byte_for_byte(data, tmp_path, video, torch_threads):
    """Unsharded at 2 torch threads, 3 windows per shard at 1 thread: the same bytes."""
    energy = EnergyConfig(source="quantized")
    seg = SegmentationConfig(threshold=0.3)
    wp = _processor(data["tok16"], energy=energy)
    outs = {}
    for per, threads in ((0, 2), (3, 1)):
        torch_threads(threads)
        outs[per] = tmp_path / f"s{per}"
        rec = process_video_local(
            wp, _ctx(data[video], outs[per], energy, seg), per_shard=per, resize_shorter=120
        )
        assert rec["status"] == "done" and not (outs[per] / ".work").exists()
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file() and p.suffix != ".mp4")
    assert {"energy.jsonl", "segments.json"} <= {str(f) for f in files} and any(
        f.suffix == ".npy" for f in files
    )
    for per in (3,):
        for f in files:
            if f.suffix != ".png":
                assert filecmp.cmp(outs[0] / f, outs[per] / f, shallow=False), f"{f} differs with {per}/shard"


def test_variable_frame_rate_falls_back_to_one_shard(data, tmp_path):
    rng = np.random.default_rng(0)
    ts = np.cumsum(rng.choice([0.03, 0.05, 0.07], size=90))
    path = tmp_path / "vfr.mp4"
    make_vfr_video(path, np.round(ts - ts[0], 4), size=(96, 72))
    energy = EnergyConfig(source="velocity")
    wp = _processor(data["tok16"], energy=energy)
    seg = SegmentationConfig(threshold=1.0)
    a = process_video_local(wp, _ctx(path, tmp_path / "a", energy, seg), per_shard=2)
    b = process_video_local(wp, _ctx(path, tmp_path / "b", energy, seg), per_shard=0)
    assert a["status"] == b["status"] == "done" and a["windows"] == b["windows"]
    assert filecmp.cmp(tmp_path / "a/energy.jsonl", tmp_path / "b/energy.jsonl", shallow=False)
    # A seek into a VFR file derives indices from timestamps, which differ from the plan: the sharded
    # run was redone as one shard on its decoded timeline; the unsharded run matched the plan.
    timeline = {
        d: json.loads((tmp_path / d / "segments.json").read_text())["params"]["timeline"] for d in "ab"
    }
    assert timeline == {"a": "decoded", "b": "plan"}
    _, idx, _ = read_frames(path, target_fps=20)
    track = read_energy_jsonl(tmp_path / "a/energy.jsonl")
    assert track.start_frame.tolist() == idx[track.window * 4].tolist()  # decoded source indices


# ---------------------------------------------------------------------------------- segmentation


def test_planted_bursts_are_found_within_half_a_second(data, tmp_path):
    """Planted bursts (rests between, one back-to-back pair) -> segments within 0.5 s of the truth.

    Velocity energy (the tracked motion itself; the tokenizer here is untrained), no smoothing,
    up/down count 1. T=8 windows (0.35 s at 20 fps): the state machine ENDs a segment at the last frame
    of its first low window, so ends land ~(1 - theta/plateau) windows after the motion stops; with
    T=16 (0.75 s) that alone is 0.3-0.75 s, which the tolerance could not absorb. The threshold is
    0.4 x the median energy of windows lying inside a burst (any factor in 0.2-0.6 passes here).
    The back-to-back pair (circle then shake, no rest) is one energy segment; the default change
    points (``motion``: the kind of motion changes) split it, within the same 0.5 s.
    """
    bursts = [(1.5, 3.5, "circle"), (5.0, 6.5, "shake"), (8.0, 9.5, "circle"), (9.5, 11.0, "shake")]
    video = tmp_path / "bursts.mp4"
    gt = make_action_video(video, duration_s=12, fps=30, size=(160, 120), bursts=bursts)
    energy = EnergyConfig(source="velocity", smoothing=SmoothingConfig(method="none"))
    wp = _processor(data["tok8"], T=8, energy=energy)
    plan = plan_timeline(video, 20.0)
    shards = make_shards("b", str(video), tmp_path / "w", plan, 8, 4, 0, 20.0, 120)
    vw = merge_shards([run_shard(wp, s) for s in shards], plan, 8, 4)
    e = vw.energy("velocity")
    inside = np.array([any(a <= s and t <= b for a, b, _ in bursts) for s, t in zip(vw.t_start, vw.t_end)])
    rest = np.array([all(t < a or s > b for a, b, _ in bursts) for s, t in zip(vw.t_start, vw.t_end)])
    assert e[rest].max() < 0.1 * np.median(e[inside])  # rest is (nearly) still, bursts are not
    seg = SegmentationConfig(
        threshold=0.4 * float(np.median(e[inside])), up_count=1, down_count=1, cooldown_windows=0
    )
    found = segment_video(vw, energy, seg, 8, 4, 20.0).segments
    truth = [(1.5, 3.5), (5.0, 6.5), (8.0, 9.5), (9.5, 11.0)]
    assert len(found) == len(truth), [(s.start_sec, s.end_sec) for s in found]
    for s, (a, b) in zip(found, truth):
        assert abs(s.start_sec - a) <= 0.5 and abs(s.end_sec - b) <= 0.5, (s.start_sec, s.end_sec, a, b)
        # seconds and source frames agree (30 fps source, frames inclusive)
        assert s.start_frame == round(s.start_sec * 30) and s.end_frame == round(s.end_sec * 30) - 1
    assert gt["segments"][0]["start_sec"] == 1.5


def test_changepoint_scores_split_an_active_run(data):
    """The state machine gets core.changepoint scores from the codes: a code switch inside one
    high-energy run splits it into two contiguous segments when enabled, and not otherwise."""
    W, T, stride = 40, 16, 4
    F = (W - 1) * stride + T
    codes = np.where(np.arange(W)[:, None] < 20, 7, 300).repeat(15, axis=1).astype(np.int64)
    energies = np.zeros((W, 3))
    energies[5:35, 0] = 1.0  # quantized energy high from window 5 to 34
    gate = np.where(energies[:, 0] > 0, 0, 1).astype(np.int8)
    codes[gate != 0] = -1
    start = np.arange(W) * stride
    idx = np.arange(F) * 3 // 2  # a 30 -> 20 fps timeline
    t = np.arange(F) / 20.0
    last = np.minimum(start + 15, F - 1)
    vw = VideoWindows(
        window=np.arange(W), start=start, frame_index=idx[start], end_frame_index=idx[last],
        t_start=t[start], t_end=t[last], gate=gate, energies=energies, codes=codes,
        timeline_index=idx, timeline_t=t, last_source_frame=int(idx[-1]) + 1, source_fps=30.0,
    )  # fmt: skip
    energy = EnergyConfig(source="quantized", smoothing=SmoothingConfig(method="none"))
    off = SegmentationConfig(threshold=0.5, align="center")
    on = dataclasses.replace(
        off, changepoint=ChangePointConfig(enable=True, method="code_mmd", k=4, threshold=0.5)
    )
    assert len(segment_video(vw, energy, off, T, stride, 20.0).segments) == 1
    res = segment_video(vw, energy, on, T, stride, 20.0)
    assert res.changes is not None and int(np.argmax(res.changes)) == 19  # boundary between windows 19/20
    a, b = res.segments
    assert b.start_frame == a.end_frame + 1 and b.start_sec == a.end_sec  # contiguous, no gap or overlap
    assert b.processed[0] == 19 * stride + 10  # midway between the centres of windows 19 and 20
    assert [s.label for s in res.segments] == ["segment_0000", "segment_0001"]


# --------------------------------------------------------------------------------------- exports


def test_exports_contract(data, tmp_path):
    energy = EnergyConfig(source="quantized")
    # One segment per burst: the subject is the files; change points have their own tests (with them,
    # this untrained 16-point tokenizer's video splits 0.4 s before the circle's end).
    seg = SegmentationConfig(threshold=0.3, changepoint=ChangePointConfig(enable=False))
    wp = _processor(data["tok16"], energy=energy)
    out = tmp_path / "v30"
    process_video_local(wp, _ctx(data["v30"], out, energy, seg), per_shard=3, resize_shorter=120)
    doc = json.loads((out / "segments.json").read_text())
    assert doc["video"] == "v30.mp4" and doc["fps"] == 30.0 and doc["video_duration_sec"] == 8.0
    assert doc["checkpoint_sha256"] == "ckpt" and doc["config_sha256"] == "cfg"
    assert doc["params"]["num_windows"] == 37 and doc["params"]["timeline"] == "plan"
    segs = doc["segments"]
    assert [s["label"] for s in segs] == [f"segment_{k:04d}" for k in range(len(segs))] and len(segs) == 2

    lines = [json.loads(x) for x in (out / "energy.jsonl").read_text().splitlines()]
    assert [x["window"] for x in lines] == list(range(37))  # every window, in order
    for x in lines:
        assert set(x) == {"window", "start_frame", "end_frame", "t_start", "t_end", "energy", "energy_smooth",
                          "gated", "gate", "codes", "energies", "features"}  # fmt: skip
        assert set(x["energies"]) == {"quantized", "prequant", "velocity", "motion"}
        # motion features for every tracked window (the pre-gate drops untracked ones)
        assert (x["features"] is None) == (x["gate"] == "pre")
        assert x["features"] is None or len(x["features"]) == len(MOTION_FEATURES)
        assert x["gated"] == (x["gate"] is not None) and (x["codes"] is None) == x["gated"]
        assert x["energy"] == x["energies"]["quantized"]
    track = read_energy_jsonl(out / "energy.jsonl")  # the calibration engineer's reader accepts it
    assert track.num_windows == 37
    assert track.features.shape == (37, len(MOTION_FEATURES))

    model, cfg = load_tokenizer(data["tok16"])
    for s in segs:
        info = probe(out / s["clip"])
        n = sum(1 for _ in iter_frames(out / s["clip"]))
        assert n == s["end_frame"] - s["start_frame"] + 1 == s["clip_frames"]  # exact source frame range
        assert info.fps == pytest.approx(30.0)  # the SOURCE rate, not target_fps
        assert s["end_sec"] - s["start_sec"] == pytest.approx(n / 30.0)
        side = json.loads((out / s["codes"]).read_text())
        vec = np.load(out / s["vectors"])
        assert vec.dtype == np.float32 and vec.shape == (len(side["windows"]), 15, cfg.hidden_dim)
        assert side["windows"] and side["T"] == 16 and side["stride"] == 4 and side["target_fps"] == 20.0
        assert side["windows"] == sorted(side["windows"]) and side["checkpoint_sha256"] == "ckpt"
        a, b = s["processed_frames"]
        for w, codes, frames in zip(side["windows"], side["codes"], side["window_frames"]):
            assert lines[w]["codes"] == codes and [lines[w]["start_frame"], lines[w]["end_frame"]] == frames
            overlap = min(w * 4 + 15, b) - max(w * 4, a) + 1
            assert overlap >= 8  # the documented rule: at least half of the window inside the segment
        zq = model.ids_to_codes(torch.tensor(side["codes"])).detach().numpy()
        np.testing.assert_allclose(vec, zq, atol=1e-5)  # vectors are those windows' quantized latents
    assert (out / "energy.png").stat().st_size > 10_000
    assert not list(out.rglob(".*.tmp*"))


def test_energy_plot_of_a_one_window_video_is_quiet(tmp_path):
    """A sub-second video has one window: the plot is written without matplotlib's xlim warning."""
    import warnings

    from laps_ray.io.exports import plot_energy

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_energy(
            tmp_path / "e.png",
            np.array([0.4]),
            np.array([0.2]),
            np.array([0.2]),
            0.1,
            0.095,
            [],
            np.array([False]),
        )
    assert (tmp_path / "e.png").stat().st_size > 1000


def test_timeline_file_reproduces_every_segment_boundary(data, tmp_path):
    """segment_folder writes the video's timeline; THE frames→seconds rule applied to it gives back
    exactly the frames and seconds of every segment in segments.json (what sweeps rely on)."""
    from laps_ray.io.exports import read_timeline

    energy = EnergyConfig(source="velocity")
    seg = SegmentationConfig(threshold=0.0, max_duration_sec=1.3)  # several segments, odd frame ends
    wp = _processor(data["tok16"], energy=energy)
    out = tmp_path / "o"
    assert (
        process_video_local(wp, _ctx(data["v30"], out, energy, seg), resize_shorter=120)["status"] == "done"
    )
    timeline = read_timeline(out / "timeline.npz")
    doc = json.loads((out / "segments.json").read_text())
    assert timeline.num_frames == doc["params"]["num_frames"] and len(doc["segments"]) >= 4
    for s in doc["segments"]:
        a, b = s["processed_frames"]
        assert timeline.to_source(a, b) == (s["start_frame"], s["end_frame"], s["start_sec"], s["end_sec"])
    assert timeline.end_sec() == pytest.approx(doc["video_duration_sec"])
    assert read_timeline(tmp_path / "missing.npz") is None

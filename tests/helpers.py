"""Helpers shared by the test tiers (``from helpers import ...``; ``tests/`` is on ``sys.path``
because ``tests/conftest.py`` lives there).

One copy of each: paths, the tiny random tokenizer checkpoint, the small-scene gate settings, the
inputs of each job's tests (videos, track files, stream assets), segment_folder-style outputs written
with the production writers (``laps_ray.io.exports``), output comparisons, the CoTracker stand-in hub
directory, ``ray job submit`` and ``--help`` subprocesses. Nothing here is a test; fixtures live in
``tests/conftest.py`` (shared) or in the test modules (their own).
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from laps_ray.config import load_config
from laps_ray.core.changepoint import ChangePointConfig
from laps_ray.core.energy import apply_gates
from laps_ray.core.gates import GateConfig, MotionGateConfig, PreGateConfig
from laps_ray.core.metrics import label_runs
from laps_ray.core.segmentation import SegmentationConfig, WindowGeometry, segment_offline
from laps_ray.core.smoothing import SmoothingConfig, smooth
from laps_ray.core.timeline import SourceTimeline
from laps_ray.core.windows import grid_points, window_frame_indices
from laps_ray.io import exports as ex
from laps_ray.io.checkpoints import save_tokenizer
from laps_ray.io.synthetic import make_action_video, make_bad_inputs
from laps_ray.io.track_store import TrackMeta, write_tracks
from laps_ray.models.tokenizer import MotionTokenizer
from laps_ray.models.tokenizer_config import named_config

# ------------------------------------------------------------------------------------------ paths

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CONFIGS = REPO / "configs"
DATA = TESTS / "data"
BREAKFAST = DATA / "labels_mstcn" / "breakfast"  # real Breakfast GT (MS-TCN per-frame label files)
BREAKFAST_FPS = 15.0


def label_run_lengths(frames) -> list[tuple[str, int]]:
    """(label, number of frames) of each run of equal per-frame labels, background included."""
    labels, starts, ends = label_runs(frames, bg_class=())
    return [(lab, int(e - s)) for lab, s, e in zip(labels, starts, ends)]


def make_unlistable_folder(parent: Path, name: str = "deep") -> Path:
    """A sub-folder of ``parent`` that ``os.walk`` cannot list, even as root.

    Tests usually run as root, for whom ``chmod 000`` changes nothing, and the interpreter may live
    where another user cannot run it. A chain of folders whose full path exceeds PATH_MAX (4096
    bytes) fails to list for everyone with ENAMETOOLONG, a real OS error of the same kind. The chain
    is built with ``dir_fd`` (relative ``mkdir``), since no single path to its end may be used.

    Returns:
        ``parent / name``, the top of the chain (listable itself; its deepest part is not).
    """
    top = parent / name
    top.mkdir(parents=True)
    fd = os.open(top, os.O_RDONLY)
    try:
        for level in range(18):  # 18 x 242 bytes > 4096
            child = f"{level:02d}" + "d" * 240
            os.mkdir(child, dir_fd=fd)
            nxt = os.open(child, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    return top


# The gpu tier's modules: ``pytestmark = needs_cuda`` (they still import and are collected anywhere).
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (run by hand on a GPU machine: pytest tests/gpu)"
)


# ---------------------------------------------------------------------- tokenizer, scene settings


def tiny_checkpoint(path: Path, num_points: int = 400, T: int = 16, seed: int = 0) -> Path:
    """A ``tiny`` tokenizer with random weights (seeded; no trained model in tests), saved with the
    production writer. The global torch RNG is left as it was."""
    cfg = named_config("tiny", num_points=num_points, T=T)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MotionTokenizer(cfg)
    return save_tokenizer(path, model, cfg)


# The synthetic scenes are small (96-160 px) with one small moving object: gates scaled to them (the
# defaults come from the reference's hand-sized motion at 320 px).
SMALL_SCENE_GATES = GateConfig(
    PreGateConfig(mad_thr=0.0004, min_active_ratio=0.001),
    MotionGateConfig(vel_norm_thr=0.002, min_active_ratio=0.01),
)
SMALL_SCENE = [  # the same gates as job overrides
    f"gates.pre_gate.mad_thr={SMALL_SCENE_GATES.pre_gate.mad_thr}",
    f"gates.pre_gate.min_active_ratio={SMALL_SCENE_GATES.pre_gate.min_active_ratio}",
    f"gates.motion_gate.vel_norm_thr={SMALL_SCENE_GATES.motion_gate.vel_norm_thr}",
    f"gates.motion_gate.min_active_ratio={SMALL_SCENE_GATES.motion_gate.min_active_ratio}",
]


# ------------------------------------------------------- segment_folder-style outputs (no video)


def write_segments_doc(
    video_dir: Path,
    stem: str,
    duration: float,
    fps: float,
    segments: list[dict[str, Any]],
    params: dict[str, Any],
) -> Path:
    """``<video_dir>/segments.json`` of video ``<stem>.mp4`` through the production writer."""
    video_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "video": f"{stem}.mp4",
        "video_duration_sec": duration,
        "fps": fps,
        "segments": segments,
        "params": params,
        "checkpoint_sha256": "0" * 64,
        "config_sha256": "0" * 64,
    }
    ex.write_segments_json(video_dir / ex.SEGMENTS_FILE, doc)
    return video_dir / ex.SEGMENTS_FILE


def write_energy_outputs(
    root: Path,
    stem: str,
    energies: dict[str, np.ndarray],
    *,
    gated: np.ndarray | None = None,
    codes: np.ndarray | None = None,
    smoothing: SmoothingConfig | None = None,
    params: dict[str, Any] | None = None,
    T: int = 16,
    stride: int = 4,
    fps: float = 20.0,
) -> Path:
    """A segment_folder-style ``<root>/<stem>/`` (``energy.jsonl``, ``timeline.npz``, ``segments.json``
    with no segments) from per-window energies, written with the production writers.

    Source fps = target fps, so source frames are processed frames: window ``w`` covers frames
    ``stride*w .. stride*w + T - 1``. ``energies`` holds one (W,) series per source written (``quantized``
    must be there); gated windows follow the production rule (``core.energy.apply_gates``: latent
    energies 0, velocity kept) and have no codes. ``codes`` (W, T-1) defaults to ``w % 7``.
    ``energy`` is the quantized series, ``energy_smooth`` its ``smoothing`` (default: the production EMA).
    """
    d = root / stem
    d.mkdir(parents=True, exist_ok=True)
    W = len(energies["quantized"])
    gated = np.zeros(W, bool) if gated is None else np.asarray(gated, bool)
    velocity = energies.get("velocity")
    series = {k: apply_gates(np.asarray(v, float), gated, k, velocity) for k, v in energies.items()}
    energy_smooth = smooth(series["quantized"], smoothing or SmoothingConfig())
    records = []
    for w in range(W):
        c = None if gated[w] else (codes[w] if codes is not None else [w % 7] * (T - 1))
        sf = w * stride
        records.append(
            ex.energy_record(
                window=w, start_frame=sf, end_frame=sf + T - 1, t_start=sf / fps, t_end=(sf + T - 1) / fps,
                energy=series["quantized"][w], energy_smooth=energy_smooth[w],
                gate="motion" if gated[w] else None, codes=c, energies={k: v[w] for k, v in series.items()},
            )
        )  # fmt: skip
    ex.write_jsonl_atomic(d / ex.ENERGY_FILE, records)
    F = (W - 1) * stride + T
    ex.write_timeline(d / ex.TIMELINE_FILE, SourceTimeline(np.arange(F), np.arange(F) / fps, F - 1, fps))
    base = {"T": T, "stride": stride, "target_fps": fps}
    base["energy"] = {"source": "quantized", "mode": "token_diff_l2_mean"}
    write_segments_doc(d, stem, F / fps, fps, [], {**base, **(params or {})})
    return d


# ---------------------------------------------------------------------------- output comparisons


def output_files(root: Path) -> dict[str, Path]:
    """Per-video output files of a job's output folder (not the run-level run.json / config.yaml)."""
    return {str(p.relative_to(root)): p for p in sorted(root.glob("*/**/*")) if p.is_file()}


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file below ``root``: relative path -> (mtime in ns, content)."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in root.rglob("*")
        if p.is_file()
    }


def assert_same_bytes(ref: dict[str, Path], got: dict[str, Path]) -> None:
    """The same file names, and every file byte for byte the same."""
    assert sorted(got) == sorted(ref)
    for name in ref:
        assert filecmp.cmp(ref[name], got[name], shallow=False), name


def jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------- job subprocesses


def job_help(module: str) -> str:
    """``python -m laps_ray.jobs.<module> --help``: must exit 0 within a minute (a CLI that pays for
    Ray or heavy imports before parsing would not); returns what it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", f"laps_ray.jobs.{module}", "--help"],
        capture_output=True, text=True, env=dict(os.environ), timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def submit_job(head, module: str, *args: str, timeout: float = 300) -> str:
    """``ray job submit --working-dir <repo> -- python -m laps_ray.jobs.<module> ARGS`` against a
    ``ray start`` head (conftest's ``ray_head``); asserts that it succeeded and returns its output."""
    cmd = [
        head["ray"], "job", "submit", "--address", head["url"], "--working-dir", str(REPO),
        "--", "python", "-m", f"laps_ray.jobs.{module}", *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=head["env"], capture_output=True, text=True, timeout=timeout)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-6000:]
    assert "succeeded" in text.lower(), text[-3000:]
    return text


# ------------------------------------------------------------------------------ preprocess inputs


def make_preprocess_videos(d: Path) -> Path:
    """Two good short videos (one with a name that needs care) and every kind of bad input."""
    make_action_video(d / "a.mp4", duration_s=3, fps=30, size=(128, 96), bursts=[(1.0, 2.0, "slide")], seed=1)
    sub = d / "sub dir"
    sub.mkdir()
    make_action_video(sub / "b é.mp4", duration_s=2, fps=25, size=(96, 128), bursts=[(0.5, 1.5, "circle")])
    bad = make_bad_inputs(d / "bad")
    (d / "bad" / bad["unicode_name"].name).unlink()  # keep only the broken ones in bad/
    make_unlistable_folder(d / "locked")  # a sub-folder nobody can list: reported, not fatal
    return d


def preprocess_cfg(inp: Path, out: Path, *extra: str):
    """The preprocess job's config for tests (shipped YAML, 96 px, two actors)."""
    from laps_ray.jobs.preprocess import PreprocessJobConfig

    return load_config(
        PreprocessJobConfig,
        CONFIGS / "preprocess.yaml",
        [f"input={inp}", f"output={out}", "decode.resize_shorter=96", "resources.num_actors=2", *extra],
    )


# -------------------------------------------------------------------------- segment_folder inputs


def make_segment_folder_inputs(d: Path) -> dict[str, Path]:
    """Videos (two good ones, every kind of bad input, an unlistable folder), ``good/`` (the two
    good ones only) and a tiny random tokenizer: ``{"dir", "videos", "good", "tok", "unicode"}``."""
    vids = d / "videos"
    make_action_video(vids / "a.mp4", 6, 30, (160, 120), [(1.0, 2.5, "circle"), (3.5, 5.0, "shake")])
    make_action_video(vids / "sub" / "b.mp4", 4, 15, (160, 120), [(1.5, 3.0, "shake")], seed=2)
    bad = make_bad_inputs(vids / "bad")  # 5 broken files + "kitchen café 01.mp4" (good, 1 s)
    make_unlistable_folder(vids / "locked")  # a sub-folder nobody can list: reported, not fatal
    good = d / "good"
    (good / "sub").mkdir(parents=True)
    shutil.copy(vids / "a.mp4", good / "a.mp4")
    shutil.copy(vids / "sub" / "b.mp4", good / "sub" / "b.mp4")
    ckpt = tiny_checkpoint(d / "tok")  # random weights: the trained checkpoint ships separately
    return {"dir": d, "videos": vids, "good": good, "tok": ckpt, "unicode": bad["unicode_name"]}


def segment_folder_cfg(inputs: dict[str, Path], inp: Path, out: Path, *extra: str):
    """segment_folder's config for tests: the shipped YAML, full-size small scenes, threshold 0.01."""
    from laps_ray.jobs.segment_folder import SegmentJobConfig

    return load_config(
        SegmentJobConfig,
        CONFIGS / "segment_folder.yaml",
        [
            f"input={inp}",
            f"output={out}",
            f"tokenizer.checkpoint={inputs['tok']}",
            "decode.resize_shorter=0",
            "segmentation.threshold=0.01",
            "resources.num_actors=2",
            "export.clip_preset=ultrafast",
            *SMALL_SCENE,
            *extra,
        ],
    )


def segment_folder_args(
    inputs: dict[str, Path],
    out: Path,
    *flags: str,
    source: Path | None = None,
    checkpoint: Path | None = None,
) -> list[str]:
    """Command-line arguments of a segment_folder run for tests (``python -m laps_ray.jobs.segment_folder
    ARGS``): ``good/`` (or ``source``), the inputs' tokenizer (or ``checkpoint``), ``flags``, then threshold
    0.01 (motion) and full-size small scenes as ``key=value`` overrides."""
    return [
        "--input", str(source or inputs["good"]), "--output", str(out),
        "--checkpoint", str(checkpoint or inputs["tok"]), *flags,
        "segmentation.threshold=0.01", "decode.resize_shorter=0", *SMALL_SCENE,
    ]  # fmt: skip


# ------------------------------------------------------------------------------- training inputs

TRACK_GRID = 4  # tiny model: 16 points
# Per motion kind: per-step (dx, dy) in px and which grid rows move (planted, learnable patterns).
TRACK_KINDS = [((0, 0), []), ((2, 0), [0, 1]), ((0, -3), [2, 3]), ((-1, 1), [1, 2])]


def write_synthetic_tracks(folder: Path, num_videos: int = 6, windows: int = 16, seed: int = 0) -> Path:
    """Track files for a ``tiny`` model (production track store): 4x4 grids in two frame sizes, four
    planted motion kinds."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = TRACK_GRID * TRACK_GRID
    for v in range(num_videos):
        h, w = (48, 64) if v % 2 == 0 else (64, 48)
        base = grid_points(h, w, TRACK_GRID) + 0.25  # (16, 2) row-major; off the .5 rounding edges
        tracks = np.zeros((windows, 16, n, 2), np.float32)
        for i in range(windows):
            (dx, dy), rows = TRACK_KINDS[int(rng.integers(0, len(TRACK_KINDS)))]
            moving = np.isin(np.arange(n) // TRACK_GRID, rows)[None, :, None]
            steps = np.arange(16, dtype=np.float32)[:, None, None] * np.array([dx, dy], np.float32)
            tracks[i] = base + steps * moving + rng.normal(0, 0.05, (16, n, 2))
        vis = rng.random((windows, 16, n)) > 0.03
        meta = TrackMeta(
            height=h, width=w, fps=20.0, source_fps=30.0, stride=4, T=16, grid=TRACK_GRID,
            tracker="synthetic", source=f"video_{v}.mp4",
        )  # fmt: skip
        write_tracks(folder / f"video_{v}.h5", tracks, vis, meta)
    return folder


def train_cfg(tracks: Path, out: Path, *extra: str):
    """train_tokenizer's config for tests: the shipped YAML with the tiny model and small batches."""
    from laps_ray.training.config import load_train_config

    return load_train_config(
        CONFIGS / "train_tokenizer.yaml",
        [
            f"tracks={tracks}", f"output={out}", "model=tiny", "batch_size=16", "optim.lr=3e-3",
            "val_fraction=0.34", "log_every_steps=2", "train_metrics_every=1", "threads=1", *extra,
        ],
    )  # fmt: skip


# ------------------------------------------------------------------ sweep_thresholds: planted optimum

SWEEP_T, SWEEP_STRIDE, SWEEP_FPS = 16, 4, 20.0  # source fps = target fps: source frame = processed frame
# Defaults otherwise (ratio .95, up 2, down 2, cooldown 1), except no change points: planted energies
# have code ids, not the motion features the default change points compare.
PLANTED = SegmentationConfig(threshold=1.0, changepoint=ChangePointConfig(enable=False, method="code_mmd"))
SWEEP_GRID = {"threshold": [0.5, 1.0, 1.6], "max_duration_sec": [0.0, 3.0]}


def blocks_energy(rng, spec: list[tuple[str, int]]) -> np.ndarray:
    """Piecewise energy: rest ~0.2, medium 0.7 (on only for thresholds < 0.7), low motion 1.3, high 1.8."""
    level = {"rest": 0.2, "medium": 0.7, "low": 1.3, "high": 1.8}
    return np.concatenate([level[k] + rng.uniform(-0.08, 0.08, n) for k, n in spec])


def write_sweep_energies(root: Path, stem: str, energy: np.ndarray, codes: np.ndarray) -> Path:
    """Cached energies of one video as segment_folder writes them (velocity = energy / 20)."""
    energies = {"quantized": energy, "prequant": np.zeros_like(energy), "velocity": energy / 20}
    geometry = {"T": SWEEP_T, "stride": SWEEP_STRIDE, "fps": SWEEP_FPS}
    return write_energy_outputs(root, stem, energies, codes=codes, **geometry)


def segments_in_seconds(segs) -> list[dict]:
    """Processed frames -> seconds as segment_folder maps them (source = processed frames at 20 fps: a
    segment ends where the next frame starts)."""
    return [{"start_sec": s.start_frame / SWEEP_FPS, "end_sec": (s.end_frame + 1) / SWEEP_FPS} for s in segs]


def make_planted_sweep(tmp_path: Path) -> tuple[Path, Path]:
    """Two videos of cached energies + GT made by the :data:`PLANTED` settings; (energy_dir, gt_dir)."""
    rng = np.random.default_rng(7)
    specs = {
        # long 'high' blocks (> 3 s) are split by max_duration 3 s; 'medium' blocks appear at thr 0.5;
        # 'low' blocks vanish at thr 1.6.
        "cam_a": [("rest", 12), ("high", 30), ("rest", 15), ("medium", 10), ("rest", 12), ("low", 14)]
        + [("rest", 15), ("high", 20), ("rest", 12)],
        "cam_b": [("rest", 10), ("low", 12), ("rest", 14), ("high", 35), ("rest", 10), ("medium", 9)]
        + [("rest", 14), ("low", 18), ("rest", 10)],
    }
    energy_dir, gt_dir = tmp_path / "out", tmp_path / "gt"
    gt_dir.mkdir()
    geom = WindowGeometry(SWEEP_T, SWEEP_STRIDE, SWEEP_FPS)
    for stem, spec in specs.items():
        e = blocks_energy(rng, spec)
        W = e.size
        write_sweep_energies(energy_dir, stem, e, rng.integers(0, 50, (W, SWEEP_T - 1)))
        segs = segment_offline(smooth(e, SmoothingConfig()), PLANTED, geom)
        assert len(segs) == 3  # the high and low blocks of each video, nothing else
        doc = {"video": f"{stem}.mp4", "video_duration_sec": ((W - 1) * SWEEP_STRIDE + SWEEP_T) / SWEEP_FPS}
        doc["segments"] = segments_in_seconds(segs)
        (gt_dir / f"{stem}_segments.json").write_text(json.dumps(doc))
    return energy_dir, gt_dir


def sweep_cfg(energy_dir, gt_dir, out, **space):
    """sweep_thresholds' config over ``space`` (swept names -> values), GT scored at 0.5 s and 2 s.

    The planted runs are smoothed with the EMA and labelled from ``velocity`` (they have no motion
    energy), so the config says so instead of taking the job's motion-energy defaults."""
    from laps_ray.core.smoothing import SmoothingConfig
    from laps_ray.jobs import sweep_thresholds as sw

    return sw.SweepJobConfig(
        input=str(energy_dir),
        smoothing=SmoothingConfig(),
        segmentation=SegmentationConfig(changepoint=PLANTED.changepoint),
        pseudo=sw.PseudoLabelConfig(proxy="velocity", method="gmm_log"),
        gt=str(gt_dir) if gt_dir else "",
        output=str(out),
        tolerance_sec=0.5,
        tolerances_sec=[0.5, 2.0],
        space=sw.SweepSpaceConfig(**space),
    )


# ----------------------------------------------------------------------------------- stream assets

# Two actions back to back (one object), rests at both ends: 6 s at 30 fps, 160x120.
STREAM_BURSTS = [(1.0, 2.8, "slide"), (2.8, 4.8, "shake")]
# Segment on the mean point speed (meaningful with a random tokenizer); gates off so every window is
# tracked and tokenized, i.e. codes and quantized energies of every window are compared too.
STREAM_SETTINGS = [
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
STREAM_CHANGEPOINTS = [
    "segmentation.changepoint.enable=true",
    "segmentation.changepoint.method=latent_r2",
    "segmentation.changepoint.k=2",
    "segmentation.changepoint.threshold=0.001",
    "segmentation.changepoint.min_gap_windows=2",
    "segmentation.min_duration_sec=0.4",
]


def make_stream_assets(root: Path) -> dict[str, Any]:
    """The stream tests' video, tokenizer (64 points for the 8x8 grid) and settings."""
    ckpt = tiny_checkpoint(root / "tokenizer", num_points=64)
    video = root / "actions.mp4"
    make_action_video(
        video, duration_s=6, fps=30, size=(160, 120), bursts=STREAM_BURSTS, seed=3, num_objects=1
    )
    return {
        "checkpoint": ckpt,
        "video": video,
        "settings": [*STREAM_SETTINGS, f"tokenizer.checkpoint={ckpt}"],
    }


def stream_cfg(assets: dict[str, Any], source, out: Path, *extra: str):
    """The stream job's config on ``source`` with the assets' settings."""
    from laps_ray.jobs import stream

    return load_config(
        stream.StreamJobConfig, None, [*assets["settings"], f"source={source}", f"output={out}", *extra]
    )


def clip_frames(path: Path) -> tuple[int, float]:
    """(decoded frames, average frame rate) of a clip."""
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        return sum(1 for _ in c.decode(st)), float(st.average_rate)


def npz_members(path: Path) -> dict[str, bytes]:
    """The arrays of an ``.npz`` as their ``.npy`` bytes (the zip's own timestamps differ between runs)."""
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def expand_ranges(ranges: list[list[int]]) -> list[int]:
    """``[[a, b], ...]`` inclusive ranges -> every id in them."""
    return [i for a, b in ranges for i in range(a, b + 1)]


def check_segments(vdir: Path, num_windows: int) -> list[dict]:
    """A video's outputs are consistent: every window once in energy.jsonl; every referenced file
    exists; clips have exactly the segment's frames; segments are ordered and disjoint; sidecar windows
    have codes. Returns the segments."""
    doc = json.loads((vdir / "segments.json").read_text())
    lines = jsonl(vdir / "energy.jsonl")
    assert [r["window"] for r in lines] == list(range(num_windows))
    segs = doc["segments"]
    for k, s in enumerate(segs):
        assert s["label"] == f"segment_{k:04d}"
        n, _ = clip_frames(vdir / s["clip"])
        assert n == s["num_frames"] == s["end_frame"] - s["start_frame"] + 1 == s["clip_frames"]
        side = json.loads((vdir / s["codes"]).read_text())
        vec = np.load(vdir / s["vectors"])
        assert vec.shape[0] == len(side["windows"]) == len(side["codes"]) == s["num_code_windows"]
        for w, c in zip(side["windows"], side["codes"]):
            assert lines[w]["codes"] == c and not lines[w]["gated"]
        if k:
            assert s["start_frame"] > segs[k - 1]["end_frame"] and s["start_sec"] >= segs[k - 1]["end_sec"]
    return segs


# ------------------------------------------------------------- CoTracker stand-in hub directory

FAKE_HUBCONF = '''
"""Stand-in for facebookresearch/co-tracker's hubconf: CoTracker's call signatures, checkable output."""
import torch
from torch import nn

dependencies = ["torch"]
SOURCE = __file__


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.zeros(2))


def motion(net, video):
    """(B, T, 3, H, W) -> (B, T, 2): per-frame mean of channels R, G / 255, times the gain, in px."""
    return video.mean(dim=(3, 4))[:, :, :2] / 255.0 * net.gain


def seen(video, **extra):
    """What a call saw: shape, dtype, device and whether autocast was on for that device."""
    kind = video.device.type
    return {"shape": tuple(video.shape), "dtype": video.dtype, "device": kind,
            "autocast": torch.is_autocast_enabled(kind), **extra}


class FakeOffline(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = Net()
        self.calls = []
        self.max_batch = None
        self.source = SOURCE

    def forward(self, video, queries=None, segm_mask=None, grid_size=0, grid_query_frame=0,
                backward_tracking=False):
        assert video.dim() == 5 and video.shape[2] == 3, video.shape
        self.calls.append(seen(video, queries=queries.cpu().clone()))
        if self.max_batch is not None and video.shape[0] > self.max_batch:
            raise torch.cuda.OutOfMemoryError("fake OOM")
        tracks = queries[:, None, :, 1:] + motion(self.model, video)[:, :, None, :]
        prob = torch.where(queries[:, :, 1] < video.shape[-1] / 2, 0.95, 0.05)
        return tracks, prob[:, None, :].expand(-1, video.shape[1], -1).clone()


class FakeOnline(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = Net()
        self.step = 4
        self.calls = []
        self.source = SOURCE

    def forward(self, video_chunk, is_first_step=False, queries=None, grid_size=5, grid_query_frame=0,
                add_support_grid=False):
        assert video_chunk.dim() == 5 and video_chunk.shape[2] == 3, video_chunk.shape
        self.calls.append(seen(video_chunk, first=is_first_step,
                               queries=None if queries is None else queries.cpu().clone()))
        if is_first_step:
            self.queries, self.ind, self.tracks = queries.clone(), 0, None
            return None, None
        assert video_chunk.shape[1] <= 2 * self.step
        new = self.queries[:, None, :, 1:] + motion(self.model, video_chunk)[:, :, None, :]
        self.tracks = new if self.tracks is None else torch.cat([self.tracks[:, : self.ind], new], dim=1)
        self.ind += self.step
        return self.tracks, torch.ones(self.tracks.shape[:3], dtype=torch.bool, device=self.tracks.device)


def _build(cls, pretrained):
    model = cls()
    if pretrained:  # stands for the downloaded weights
        with torch.no_grad():
            model.model.gain.fill_(0.5)
    return model


def cotracker3_offline(*, pretrained=True, **kwargs):
    return _build(FakeOffline, pretrained)


def cotracker3_online(*, pretrained=True, **kwargs):
    return _build(FakeOnline, pretrained)
'''

FAKE_GAIN = (1.0, 2.0)  # the checkpoint's value; the stand-in's default is 0 (unloaded) or 0.5 ("pretrained")


def write_fake_hub(d: Path) -> Path:
    """A local torch.hub directory ``d`` whose hubconf is the CoTracker stand-in (no network, no weights):
    its modules have CoTracker's call signatures and an output that depends on the input in a checkable
    way (:func:`expected_tracks`), and they record every call (shape, dtype, device, autocast, queries)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "hubconf.py").write_text(textwrap.dedent(FAKE_HUBCONF))
    return d


def write_cotracker_checkpoint(path: Path, form: str) -> Path:
    """The stand-in's weights (gain = :data:`FAKE_GAIN`) in one of CoTracker's checkpoint layouts."""
    gain = torch.tensor(FAKE_GAIN)
    state = {
        "plain_inner": {"gain": gain},
        "model_wrapped": {"model": {"gain": gain}, "step": 1000},
        "state_dict_outer": {"state_dict": {"model.gain": gain}},
    }[form]
    torch.save(state, path)
    return path


def colour_frames(num_frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames whose mean R and G encode the frame index; B is noise (must not be read as R)."""
    rng = np.random.default_rng(0)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for f in range(num_frames):
        frames[f, ..., 0] = 10 + 7 * f
        frames[f, ..., 1] = 200 - 5 * f
        frames[f, ..., 2] = rng.integers(0, 256, (height, width))
    return frames


def expected_tracks(frames: np.ndarray, starts, T: int, grid: int, gain=FAKE_GAIN) -> np.ndarray:
    """What the stand-in should return after the adapter's parsing: grid + gain * (R, G) / 255."""
    height, width = frames.shape[1:3]
    pts = grid_points(height, width, grid)
    out = []
    for s in starts:
        idx = window_frame_indices(s, len(frames), T)
        rg = frames[idx][..., :2].reshape(T, -1, 2).mean(axis=1) / 255.0 * np.asarray(gain)  # (T, 2)
        tr = pts[None] + rg[:, None, :]
        tr[0] = pts  # frame 0 is the seed grid
        out.append(tr)
    return np.stack(out).astype(np.float32)


def check_offline_adapter(tracker) -> list[dict]:
    """Run the offline CoTracker adapter (``batch_windows=2``, grid 4) on :func:`colour_frames` and check
    what the stand-in saw and what the adapter returned; returns the stand-in's calls."""
    frames, T, starts = colour_frames(14), 6, [0, 2, 4, 6, 8, 11]
    tracks, vis = tracker.track_windows(frames, starts, T)
    assert tracks.shape == (6, T, 16, 2) and tracks.dtype == np.float32
    assert vis.shape == (6, T, 16) and vis.dtype == bool

    calls = tracker.model.calls
    assert [c["shape"] for c in calls] == [(2, T, 3, 48, 64)] * 3  # batches of 2 windows, (B, T, 3, H, W)
    assert all(c["dtype"] == torch.float32 for c in calls)  # 0-255 floats, on the tracker's device, under
    assert all(c["device"] == tracker.device.type for c in calls)  # autocast where it has an AMP dtype
    assert all(c["autocast"] == (tracker.amp_dtype is not None) for c in calls)
    pts = torch.from_numpy(grid_points(48, 64, 4))
    for c in calls:  # our grid, queried at t=0, same for every window of the batch
        np.testing.assert_array_equal(c["queries"][..., 0].numpy(), 0)
        np.testing.assert_allclose(c["queries"][..., 1:].numpy(), pts.expand(2, -1, -1).numpy())

    # Output = grid + gain * mean(R, G)/255 with 0-255 input (fed [0, 1] it would be 255x smaller). The
    # stand-in computes it in float32 (autocast leaves reductions in float32) on any device.
    np.testing.assert_allclose(tracks, expected_tracks(frames, starts, T, 4), atol=1e-4)
    # Float visibility probabilities are thresholded: 0.95 left half, 0.05 right half; frame 0 visible.
    left = (grid_points(48, 64, 4)[:, 0] < 32)[None, None].repeat(6, 0).repeat(T - 1, 1)
    np.testing.assert_array_equal(vis[:, 1:], left)
    assert vis[:, 0].all()
    return calls


def check_online_adapter(tracker) -> list[dict]:
    """Run the online CoTracker adapter (grid 4) on :func:`colour_frames` and check its chunking, queries
    and output; returns the stand-in's calls."""
    frames, T, starts = colour_frames(16), 10, [0, 3]
    tracks, vis = tracker.track_windows(frames, starts, T)
    # Per window: register the queries, then chunks of 2*step frames moving by step (4): 0-7, 4-9.
    calls = tracker.model.calls
    per_window = [(True, (1, T)), (False, (1, 8)), (False, (1, 6))]
    assert [(c["first"], c["shape"][:2]) for c in calls] == per_window * 2
    assert all(c["device"] == tracker.device.type for c in calls)
    np.testing.assert_allclose(calls[0]["queries"][0, :, 1:].numpy(), grid_points(48, 64, 4))
    assert all(c["queries"] is None for c in calls if not c["first"])
    np.testing.assert_allclose(tracks, expected_tracks(frames, starts, T, 4), atol=1e-4)
    assert vis.all()
    # One window via track() gives the same as via track_windows.
    tr1, vi1 = tracker.track(frames[3:13])
    np.testing.assert_allclose(tr1, tracks[1], atol=1e-6)
    np.testing.assert_array_equal(vi1, vis[1])
    return calls

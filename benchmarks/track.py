"""Benchmark: decode-only vs LK tracking speed (the preprocess path), written as JSON.

    python benchmarks/track.py --output bench_out/track.json [--seconds 20] [--threads 1]

For a generated 640x480 30 fps video and the real sample videos of a registry package
(benchmarks/samples.py), measures:
  * decode: decode + timestamp resampling to 20 fps + resize to the processed size (frames/s);
  * track: the full preprocess path (decode + LK on every window + HDF5 write) (frames/s);
  * ratio track/decode, and video-seconds processed per wall-second.
Frames/s count processed frames (after resampling to target_fps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from laps_ray.io.decode import DecodeConfig
from laps_ray.io.synthetic import make_action_video
from laps_ray.io.video import iter_frames, probe
from laps_ray.tracking import make_tracker
from laps_ray.tracking.base import TrackerConfig
from laps_ray.tracking.video_tracks import track_video


def bench_video(path: Path, decode: DecodeConfig, threads: int, repeats: int) -> dict:
    info = probe(path)
    best_dec = best_trk = float("inf")
    frames = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        frames = sum(
            1 for _ in iter_frames(path, target_fps=decode.target_fps, resize_shorter=decode.resize_shorter)
        )
        best_dec = min(best_dec, time.perf_counter() - t0)
    tracker = make_tracker(TrackerConfig(name="lk", num_threads=threads))
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0 = time.perf_counter()
            rec = track_video(path, Path(tmp) / "t.h5", tracker, decode, T=16, stride=4, grid=20)
            best_trk = min(best_trk, time.perf_counter() - t0)
    video_s = rec["video_seconds"]
    return {
        "video": path.name,
        "source": f"{info.width}x{info.height} @ {info.fps:.2f} fps, {info.duration:.1f} s",
        "processed": f"{rec['width']}x{rec['height']} @ {decode.target_fps:g} fps",
        "frames": frames,
        "windows": rec["windows"],
        "decode_fps": round(frames / best_dec, 1),
        "track_fps": round(frames / best_trk, 1),
        "track_over_decode": round(best_dec / best_trk, 3),
        "decode_realtime_x": round(video_s / best_dec, 2),
        "track_realtime_x": round(video_s / best_trk, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, default=None, help="JSON file (default: stdout)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the generated video")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads for LK (1 = one Ray actor's CPU)")
    ap.add_argument("--resize-shorter", type=int, default=DecodeConfig().resize_shorter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-samples", action="store_true", help="skip the registry sample videos")
    args = ap.parse_args()
    decode = DecodeConfig(resize_shorter=args.resize_shorter)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp) / "generated_640x480_30fps.mp4"
        make_action_video(gen, duration_s=args.seconds, fps=30, size=(640, 480), seed=0)
        results.append(bench_video(gen, decode, args.threads, args.repeats))
    if not args.no_samples:
        from samples import registry_sample_videos

        for p in registry_sample_videos():
            if p.name in ("world.mp4", "a.mp4"):
                results.append(bench_video(p, decode, args.threads, args.repeats))
    out = {
        "benchmark": "track",
        "command": "python benchmarks/track.py "
        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if v not in (None, False)),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "threads": args.threads,
        "results": results,
    }
    text = json.dumps(out, indent=2)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""Micro-benchmark: LK tracker throughput on a synthetic moving texture (no files, no network).

Usage:
    python benchmarks/track_lk_micro.py [--frames 64] [--threads 1 2] [--batch 1 8]

Reports processed frames per second for ``track_windows`` with T=16, stride=4 (every frame lies in
up to four windows, each seeded afresh with the 20x20 grid), per frame size, thread count and
``batch_windows`` (1 = no cross-window sharing of frame pairs).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from laps_ray.core.windows import window_starts
from laps_ray.tracking import TrackerConfig, make_tracker


def moving_texture(height: int, width: int, num_frames: int, seed: int = 0) -> np.ndarray:
    """(F, H, W, 3) uint8: smooth multi-scale noise translating and rotating slightly each frame."""
    rng = np.random.default_rng(seed)
    big_h, big_w = height + 256, width + 256
    tex = np.zeros((big_h, big_w, 3), np.float32)
    for octave in range(5):
        size = 2 ** (octave + 2)
        small = rng.random((big_h // size, big_w // size, 3)).astype(np.float32)
        tex += cv2.resize(small, (big_w, big_h), interpolation=cv2.INTER_CUBIC) * 0.6**octave
    tex = ((tex - tex.min()) / (tex.max() - tex.min()) * 255).astype(np.uint8)
    frames = []
    for k in range(num_frames):
        rot = cv2.getRotationMatrix2D((width / 2, height / 2), 0.2 * k, 1.0)
        rot[:, 2] += (1.3 * k - 128, -0.7 * k - 128)
        frames.append(cv2.warpAffine(tex, rot, (width, height)))
    return np.stack(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    T, stride = 16, 4
    for height, width in [(240, 320), (480, 640)]:
        frames = moving_texture(height, width, args.frames)
        starts = window_starts(len(frames), T, stride)
        for threads in args.threads:
            for batch in args.batch:
                tracker = make_tracker(TrackerConfig(name="lk", num_threads=threads, batch_windows=batch))
                best = float("inf")
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    _, vis = tracker.track_windows(frames, starts, T)
                    best = min(best, time.perf_counter() - t0)
                fps = len(frames) / best
                print(
                    f"{width}x{height} threads={threads} batch_windows={batch}: {fps:7.1f} frames/s "
                    f"({len(starts) / best:6.1f} windows/s, {best:.2f} s for {len(frames)} frames, "
                    f"visible {vis.mean():.1%})"
                )


if __name__ == "__main__":
    main()

"""How long ``cluster`` takes on 10,000 segments (target: under a minute), measured on generated sidecars.

    .venv/bin/python benchmarks/cluster_scale.py [--segments 10000] [--workdir /tmp/laps_cluster_bench]
        [--output FILE.json] [--runs NAME,...]   (default: every run below)

The sidecars imitate segment_folder's: 20 videos, segments of 2-8 windows of 15 codes (stride 4) drawn
from 8 Markov generators over partly shared codes of the 1920 true codes, with 128-wide quantized
vectors (``codes/segment_XXXX.json`` + ``.npy``), plus ``labels.csv`` with each segment's generator.
They are written once into ``--workdir`` and reused.

Each run is the real command line in a subprocess (``python -m laps_ray.jobs.cluster ...``), so its
wall time includes Python and library imports, reading every sidecar, the features, k selection
(2..10 by silhouette), stability fits, UMAP (on a 2000-segment sample), plots and report.html; the
JSON gets the wall time and ``metrics.json``'s own breakdown (embed / cluster / plots / report) and its
label scores. ``umap_full`` times UMAP on all segments instead of the sample, to justify the sample.
The load average is recorded: the machine may be shared.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

L, STRIDE, CODES, DIM, KINDS, VIDEOS = 15, 4, 1920, 128, 8, 20


def generate(root: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """``n`` planted segments under ``root/segments`` and ``root/labels.csv`` (kept when complete)."""
    seg_root, labels = root / "segments", root / "labels.csv"
    done = root / f"complete_{n}"
    if done.exists():
        return seg_root, labels
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    pool = rng.permutation(CODES)
    gens = []
    for k in range(KINDS):
        codes = np.concatenate([pool[:10], pool[10 + 30 * k : 10 + 30 * (k + 1)]])
        gens.append((codes, rng.dirichlet(np.full(len(codes), 0.3), size=len(codes))))
    table = rng.normal(0, 0.3, (CODES, DIM)).astype(np.float32)
    rows = []
    for v in range(VIDEOS):
        vdir = seg_root / f"video_{v:02d}"
        (vdir / "codes").mkdir(parents=True)
        segments, t = [], 0.0
        for j, i in enumerate(range(v, n, VIDEOS)):
            kind = i % KINDS
            codes_k, trans = gens[kind]
            length = L + STRIDE * (int(rng.integers(2, 9)) - 1)
            state, seq = int(rng.integers(len(codes_k))), np.empty(length, np.int64)
            cum = trans.cumsum(1)
            for s in range(length):
                seq[s] = codes_k[state]
                state = min(int(np.searchsorted(cum[state], rng.random())), len(codes_k) - 1)
            windows = np.stack([seq[STRIDE * w : STRIDE * w + L] for w in range((length - L) // STRIDE + 1)])
            label = f"segment_{j:04d}"
            np.save(vdir / "codes" / f"{label}.npy", table[windows])
            side = {
                "format": "laps_ray.codes/1",
                "segment": label,
                "windows": list(range(len(windows))),
                "codes": windows.tolist(),
                "vectors": f"{label}.npy",
            }
            (vdir / "codes" / f"{label}.json").write_text(json.dumps(side))
            segments.append(
                {
                    "start_sec": t,
                    "end_sec": t + 1.0,
                    "label": label,
                    "codes": f"codes/{label}.json",
                    "clip": None,
                }
            )
            rows.append((f"video_{v:02d}.mp4", label, f"kind_{kind}"))
            t += 1.5
        doc = {
            "video": f"video_{v:02d}.mp4",
            "video_duration_sec": t,
            "segments": segments,
            "params": {"stride": STRIDE, "tokenizer": {"codebook_size": 2048}},
        }
        (vdir / "segments.json").write_text(json.dumps(doc))
    with open(labels, "w", newline="") as f:
        csv.writer(f).writerows([("video", "segment", "label"), *rows])
    done.touch()
    return seg_root, labels


RUNS = {
    "local_tfidf": ["--local", "features=tfidf"],
    "ray_tfidf": ["features=tfidf", "--address", "local"],
    "local_mean": ["--local", "features=mean"],
    "local_transformer": ["--local", "features=transformer", "cluster.k=8"],
    "local_transformer_1thread": ["--local", "features=transformer", "cluster.k=8", "threads=1"],
    "ray_transformer": ["features=transformer", "cluster.k=8", "--address", "local"],
    "umap_full": ["--local", "features=tfidf", "cluster.k=8", "umap.max_points=1000000"],
}


def run(name: str, segments: Path, labels: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "laps_ray.jobs.cluster", "--segments", str(segments), "--output", str(out)]
    cmd += ["--labels", str(labels), "--log-level", "WARNING", *RUNS[name]]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"}
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1:], "wall_s": round(wall, 1)}
    m = json.loads((out / "metrics.json").read_text())
    return {
        "wall_s": round(wall, 1),
        "timings": m["timings"],
        "k": m["k"],
        "features": m["features"],
        "ari": round(m["labels"]["ari"], 3),
        "nmi": round(m["labels"]["nmi"], 3),
        "hungarian_accuracy": round(m["labels"]["hungarian_accuracy"], 3),
        "silhouette": m["internal"]["silhouette"],
        "stability_ari": m["internal"]["stability_ari"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=10_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/laps_cluster_bench"))
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--runs", default=",".join(RUNS))
    args = ap.parse_args()
    t0 = time.perf_counter()
    segments, labels = generate(args.workdir / f"data_{args.segments}", args.segments)
    result: dict = {
        "segments": args.segments,
        "generate_s": round(time.perf_counter() - t0, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": {},
    }
    for name in args.runs.split(","):
        load = os.getloadavg()[0]
        result["runs"][name] = {
            "load_avg_1min_before": round(load, 2),
            **run(name, segments, labels, args.workdir / name),
        }
        print(name, json.dumps(result["runs"][name]), flush=True)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

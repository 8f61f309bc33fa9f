"""Discovery benchmark: segment_folder → cluster on generated videos with K known motion kinds, every
feature path next to a raw-motion baseline.

    python benchmarks/discovery.py --output bench_out/discovery [--videos 6] [--duration 30] \
        [--setting all] [--features tfidf,bow,mean,transformer,lstm] [--reuse-project] \
        [--project-overrides k=v ...]

1. Videos: the segment-quality benchmark's scenes (``benchmarks/quality/scenes.py``,
   ``laps_ray.io.synthetic_scenes``): photographs performing planted primitives (slide, circle, shake,
   lift: K = 4) with rests and back-to-back changes; ``--setting`` picks the distractors (``all`` =
   every distractor on, the default). Ground truth: one LAPS JSON per video with each action's kind.
2. ``segment_folder`` with its unsupervised default (``quality/project.py``: a private local Ray).
3. ``cluster`` (``--local``, in a subprocess, default settings: k chosen by silhouette) for every
   feature path; ``lstm`` first trains ``train_embedder --local`` on the same segments. Each predicted
   segment's reference label = the ground-truth action it overlaps most (``--labels gt/``; segments
   over rests only are unlabelled and not scored).
4. Raw-motion baseline, on the same segments and labels: each segment's frames are decoded at the
   project's rate and size, a 20×20 grid is tracked frame to frame with OpenCV Lucas–Kanade, and the
   segment becomes a histogram of displacement directions (8 bins, weighted by speed) and speeds
   (8 log bins); clustered by the same ``core.clustering.cluster`` with the same defaults.

Writes ``<out>/results.json`` and ``<out>/results.md`` (ARI / NMI / Hungarian accuracy / k per path).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the quality/ modules beside this script

from quality.project import run_project  # noqa: E402
from quality.scenes import gt_dir, make_videos, video_dir  # noqa: E402

from laps_ray.core.cluster_metrics import label_metrics  # noqa: E402
from laps_ray.core.clustering import ClusteringConfig, cluster  # noqa: E402
from laps_ray.io.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from laps_ray.io.cluster_labels import read_labels  # noqa: E402
from laps_ray.io.segment_codes import SegmentRef, find_segments  # noqa: E402

log = logging.getLogger("bench.discovery")
REPO = Path(__file__).resolve().parents[1]
FEATURES = ("tfidf", "bow", "mean", "transformer", "lstm")


def _job(module: str, *args: str, log_file: Path) -> None:
    cmd = [sys.executable, "-m", f"laps_ray.jobs.{module}", *args]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}\n")
    if proc.returncode:
        raise RuntimeError(f"{module} failed (log {log_file}): {proc.stderr.strip().splitlines()[-1:]}")


def motion_histogram(
    video: Path, start: float, end: float, fps: float, shorter: int, bins: int = 8
) -> np.ndarray:
    """Direction (speed-weighted) and log-speed histograms of a grid tracked frame to frame. → (2·bins,)."""
    import cv2

    from laps_ray.core.windows import grid_points
    from laps_ray.io.video import iter_frames

    prev, dirs, speeds = None, [], []
    for frame in iter_frames(video, target_fps=fps, resize_shorter=shorter, start_sec=start, end_sec=end):
        grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
        if prev is not None:
            pts = grid_points(*grey.shape, grid=20).reshape(-1, 1, 2)
            nxt, ok, _ = cv2.calcOpticalFlowPyrLK(prev, grey, pts, None, winSize=(15, 15), maxLevel=2)
            d = (nxt - pts).reshape(-1, 2)[ok.ravel() == 1]
            speed = np.linalg.norm(d, axis=1)
            dirs.append(np.arctan2(d[:, 1], d[:, 0]))
            speeds.append(speed)
        prev = grey
    if not speeds:
        return np.zeros(2 * bins, np.float32)
    ang, sp = np.concatenate(dirs), np.concatenate(speeds)
    h_dir, _ = np.histogram(ang, bins=bins, range=(-np.pi, np.pi), weights=sp)
    h_sp, _ = np.histogram(np.log1p(sp), bins=bins, range=(0.0, np.log1p(20.0)))
    h = np.concatenate([h_dir / max(h_dir.sum(), 1e-9), h_sp / max(h_sp.sum(), 1e-9)])
    return h.astype(np.float32)


def raw_motion_baseline(refs: list[SegmentRef], videos: Path, labels: list[str | None]) -> dict:
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    x = np.stack(
        [motion_histogram(videos / refs[i].video, refs[i].start_sec, refs[i].end_sec, 20, 240) for i in keep]
    )
    res = cluster(x, ClusteringConfig(), dense=True)
    truth = np.array([labels[i] for i in keep])
    return {"k": res.k, **{k: v for k, v in label_metrics(res.labels, truth).items() if k != "mapping"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--setting", default="all")
    ap.add_argument("--features", default=",".join(FEATURES))
    ap.add_argument("--reuse-project", action="store_true")
    ap.add_argument("--project-overrides", nargs="*", default=[], metavar="k=v", help="for segment_folder")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out: Path = args.output.resolve()
    t0 = time.time()
    make_videos(out, [args.setting], args.videos, args.duration)
    videos, gt = video_dir(out, args.setting), gt_dir(out, args.setting)
    stems = [f"scene_{k:02d}" for k in range(args.videos)]
    project_out = out / "project"
    if not (args.reuse_project and (project_out / "segments").is_dir()):
        run_project(videos, project_out, ["export.clips=true", *args.project_overrides], stems)
    segments = project_out / "segments"
    refs, _ = find_segments(segments)
    labels = read_labels(gt, refs)
    results: dict = {
        "videos": args.videos,
        "duration_s": args.duration,
        "setting": args.setting,
        "project_overrides": args.project_overrides,
        "segments": len(refs),
        "labelled_segments": sum(lab is not None for lab in labels),
        "label_counts": {k: labels.count(k) for k in sorted({lab for lab in labels if lab})},
        "paths": {},
    }
    for feat in args.features.split(","):
        extra = []
        if feat == "lstm":
            emb = out / "embedder"
            if not (emb / "best").is_dir():
                _job("train_embedder", "--segments", str(segments), "--output", str(emb), "--local",
                     "threads=1", log_file=out / "logs" / "train_embedder.log")  # fmt: skip
            extra = ["--embedder", str(emb)]
        dest = out / f"cluster_{feat}"
        _job("cluster", "--segments", str(segments), "--output", str(dest), "--labels", str(gt), "--local",
             f"features={feat}", *extra,
             log_file=out / "logs" / f"cluster_{feat}.log")  # fmt: skip
        m = json.loads((dest / "metrics.json").read_text())
        lab = m["labels"]
        results["paths"][feat] = {
            "k": m["k"],
            **{k: lab[k] for k in ("n", "ari", "nmi", "purity", "hungarian_accuracy")},
            "report": str(dest / "report.html"),
        }
        log.info("%s: %s", feat, results["paths"][feat])
    results["paths"]["raw_motion_baseline"] = raw_motion_baseline(refs, videos, labels)
    results["wall_s"] = round(time.time() - t0, 1)
    write_json_atomic(out / "results.json", results)
    lines = [
        f"Discovery on {args.videos} generated videos x {args.duration:g} s (setting `{args.setting}`), "
        f"{results['labelled_segments']} labelled segments of {len(refs)}; k chosen by silhouette.",
        "",
        "| features | k | ARI | NMI | purity | Hungarian acc. |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results["paths"].items():
        scores = " | ".join(f"{r[k]:.3f}" for k in ("ari", "nmi", "purity", "hungarian_accuracy"))
        lines.append(f"| {name} | {r['k']} | {scores} |")
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

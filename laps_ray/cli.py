"""``laps <job> [args]``: the console-script front end; each job is also ``python -m laps_ray.jobs.<job>``."""

from __future__ import annotations

import importlib
import sys

JOBS = {
    "preprocess": "videos → point tracks (HDF5) for tokenizer training",
    "train_tokenizer": "tracks → motion tokenizer checkpoint (Ray Train)",
    "evaluate_tokenizer": "a checkpoint on tracks → accuracy on moving points, ΔAUC, codebook use",
    "sweep_codebook": "Ray Tune over codebook size (and learning rate)",
    "import_checkpoint": "convert an original AMPLIFY/LAPS checkpoint to ours",
    "segment_folder": "videos → action clips, latent action codes, segments.json",
    "stream": "live segmentation of a camera / RTSP / HTTP source or a file",
    "calibrate": "energy.jsonl → threshold report (pseudo-labels or ground truth)",
    "sweep_thresholds": "Ray Tune over segmentation settings on cached energies",
    "evaluate": "segments vs ground truth: boundary F1, F1@k, Edit, MoF, mAP",
    "train_embedder": "segments' codes → LSTM sequence embedder (Ray Train)",
    "cluster": "segments → clusters of action primitives, metrics, report.html",
    "demo": "end to end on generated sample videos",
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, JOBS))
        print("usage: laps <job> [--help] [args ...]\n\njobs:")
        for name, text in JOBS.items():
            print(f"  {name:<{width}}  {text}")
        sys.exit(0)
    name = argv[0].replace("-", "_")
    if name not in JOBS:
        print(f"laps: unknown job {argv[0]!r}; choose one of: {', '.join(JOBS)}", file=sys.stderr)
        sys.exit(2)
    try:
        module = importlib.import_module(f"laps_ray.jobs.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"laps_ray.jobs.{name}":
            print(f"laps: job {name!r} is not available in this version", file=sys.stderr)
            sys.exit(2)
        raise
    module.main(argv[1:])


if __name__ == "__main__":
    main()

"""Segment quality benchmark: the project's unsupervised default and simple peers on videos with known
ground truth, real photographs and switchable distractors.

    python benchmarks/segment_quality.py --output bench_out/quality [--videos 8] [--duration 45] \
        [--distractors none,conveyor,crossing,shake,flicker,compression,all] \
        [--project-overrides k=v ...] [--methods project,framediff,flow,pelt] [--quick] [--jobs 2] \
        [--reuse-project]

Per distractor setting (``laps_ray.io.synthetic_scenes``: ``none``, each distractor alone, ``all``) the
same ``--videos`` scenes (video k has seed k: same photographs, object and schedule in every setting)
are generated into ``<out>/videos/<setting>/`` with ground truth in ``<out>/gt/<setting>/`` (re-used
when present with the same spec). Then, on the same videos:

* ``project``: ``segment_folder`` as a user runs it, with its unsupervised default
  (``quality/project.py``: one pass, ``segmentation.threshold=auto``), outputs in
  ``<out>/project/<setting>/``;
* ``framediff`` / ``flow``: per-frame mean absolute frame difference / DIS optical-flow magnitude at
  the project's frame rate and size, averaged into the project's windows, smoothed like the project's
  energy and cut by the project's state machine at an unsupervised threshold (``--peer-rule``: by
  default the project's own label rule, ki_log, on the pooled signal);
* ``pelt``: ruptures PELT change points on the flow energy, pieces kept where their mean flow energy
  is above the same kind of threshold (``quality/peers.py``).

Every method is also scored with one threshold per setting chosen on the ground truth (upper bound).
Metrics (``quality/scoring.py``): boundary P/R/F1 at 0.5/1/2 s, median start/end error, back-to-back
recall, predicted / GT segments. Writes ``<out>/results.json`` and ``<out>/results.md`` and prints the
table. ``--quick``: 3 videos x 20 s, settings ``none,all`` (unless given). The project is recomputed
on every run (``--overwrite``) unless ``--reuse-project``; peer energies are cached per video.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the quality/ modules beside this script

# Only modules that do not load laps_ray's segmentation or metrics here: those are imported after the
# project's jobs ran (see main), so in a checkout that is being edited both sides use the same code.
from quality import PEERS, project, report  # noqa: E402
from quality.scenes import BenchVideo, make_videos  # noqa: E402

from laps_ray.io.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from laps_ray.io.synthetic_scenes import SETTINGS  # noqa: E402

log = logging.getLogger("bench.quality")
METHODS = ("project", *PEERS)
QUICK = {"videos": 3, "duration": 20.0, "distractors": "none,all"}
DEFAULTS = {"videos": 8, "duration": 45.0, "distractors": ",".join(SETTINGS)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (module docstring); ``--quick`` fills what was not given explicitly."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, type=Path, help="output folder")
    p.add_argument("--videos", type=int, default=None, help="videos per setting (default 8)")
    p.add_argument("--duration", type=float, default=None, help="seconds per video (default 45)")
    p.add_argument("--distractors", default=None, help=f"comma list of settings from {', '.join(SETTINGS)}")
    p.add_argument("--project-overrides", nargs="*", default=[], metavar="k=v", help="for segment_folder")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    p.add_argument("--quick", action="store_true", help="3 videos x 20 s, settings none,all")
    p.add_argument("--jobs", type=int, default=2, help="processes for generation and peer energies")
    p.add_argument(
        "--reuse-project",
        action="store_true",
        help="keep the project's complete outputs of an earlier run (default: recompute with --overwrite)",
    )
    p.add_argument(
        "--peer-rule",
        default="ki_log",
        help="the peers' label rule (default the project's own: ki_log; or otsu_log, gmm_log, otsu)",
    )
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.settings = [s.strip() for s in args.distractors.split(",") if s.strip()]
    args.method_list = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [s for s in args.settings if s not in SETTINGS] + [m for m in args.method_list if m not in METHODS]
    if bad:
        p.error(f"unknown setting or method: {', '.join(bad)}")
    return args


def scorer(videos: list[BenchVideo]) -> Callable[[list[list[tuple[float, float]]]], dict[str, Any]]:
    """``preds -> scores`` for one setting's videos (in order)."""
    from quality import scoring

    def run(preds: list[list[tuple[float, float]]]) -> dict[str, Any]:
        return scoring.score(
            preds,
            [v.segments for v in videos],
            [v.duration for v in videos],
            [v.back_to_back for v in videos],
            [float(v.gt["fps"]) for v in videos],
        )

    return run


def _rounded(segments: list[tuple[float, float]]) -> list[list[float]]:
    return [[round(float(a), 4), round(float(b), 4)] for a, b in segments]


def run_projects(args: argparse.Namespace, bench: dict[str, list[BenchVideo]], timing: dict) -> dict:
    """The project's jobs on every setting (subprocesses only): setting -> ProjectRun or an error."""
    runs: dict[str, Any] = {}
    for setting in args.settings:
        videos, t1 = bench[setting], time.time()
        try:
            runs[setting] = project.run_project(
                videos[0].video.parent,
                args.output / "project" / setting,
                list(args.project_overrides),
                [v.stem for v in videos],
                reuse=args.reuse_project,
            )
        except project.ProjectRunError as exc:
            log.error("%s: project failed: %s", setting, exc)
            runs[setting] = exc
        timing[f"project_{setting}_s"] = time.time() - t1
    return runs


def eval_project(run: project.ProjectRun, setting: str, videos: list[BenchVideo]) -> dict[str, Any]:
    """The project on one setting: its unsupervised scores and the GT-chosen threshold."""
    from quality import scoring

    stems = [v.stem for v in videos]
    score = scorer(videos)
    out: dict[str, Any] = {
        "route": run.route,
        "commands": run.commands,
        "seconds": run.seconds,
        "videos": run.videos,
        "unsupervised": score([run.segments[s] for s in stems]),
        "predictions": {s: _rounded(run.segments[s]) for s in stems},
        "unreliable_videos": sorted(s for s, f in run.videos.items() if f.get("reliable") is False),
    }
    try:
        ps = project.project_signals(run.output, stems)
        # The upper bound re-segments the cached signal; at the run's own threshold it must give back
        # exactly what segment_folder wrote, or the bound would be of something else.
        differ = [
            s
            for i, s in enumerate(stems)
            if isinstance(run.videos[s].get("threshold"), (int, float))
            and _rounded(project.project_segments(ps, i, run.videos[s]["threshold"]))
            != _rounded(run.segments[s])
        ]
        if differ:  # e.g. laps_ray changed on disk between the job and this process's imports
            log.warning("%s: re-segmenting the cached energies does not reproduce %s", setting, differ)
        out["resegment_reproduces_run"] = not differ
        out["resegment_differs"] = differ
        out["upper_bound"] = scoring.best_threshold(
            ps.signals, lambda i, t: project.project_segments(ps, i, t), score
        )
    except (ValueError, OSError) as exc:  # e.g. a failed video: no cached energies to re-segment
        log.warning("%s: no upper bound for the project (%s)", setting, exc)
        out["upper_bound_error"] = str(exc)
    return out


def eval_peers(args: argparse.Namespace, setting: str, videos: list[BenchVideo]) -> dict[str, dict[str, Any]]:
    """Every requested peer on one setting."""
    from quality import peers, scoring

    from laps_ray.core.changepoint import ChangePointConfig
    from laps_ray.core.segmentation import SegmentationConfig
    from laps_ray.core.smoothing import SmoothingConfig

    wanted = [m for m in args.method_list if m in PEERS]
    if not wanted:
        return {}
    cache = args.output / "peers" / setting
    energies = peers.frame_energies([(v.video, cache / f"{v.stem}.npz") for v in videos], args.jobs)
    score = scorer(videos)
    # The project's state machine, with the smoothing and alignment it documents for window-mean energies;
    # the peers have no motion features to compare, so no change points (PELT makes its own).
    seg = SegmentationConfig(align="center", changepoint=ChangePointConfig(enable=False))
    sm = SmoothingConfig(method="ema")
    out = {}
    for method in wanted:
        t0 = time.time()
        pr = peers.run_peer(method, energies, seg, sm, args.peer_rule)
        out[method] = {
            "threshold": pr.threshold,
            "unsupervised": score(pr.segments),
            "predictions": {v.stem: _rounded(s) for v, s in zip(videos, pr.segments)},
            "upper_bound": scoring.best_threshold(pr.signals, pr.segment, score),
            "seconds": time.time() - t0,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    os.environ["RAY_AUTH_MODE"] = "disabled"
    t0 = time.time()
    args.output.mkdir(parents=True, exist_ok=True)
    timing: dict[str, Any] = {"load_at_start": os.getloadavg()[0]}
    bench = make_videos(args.output, args.settings, args.videos, args.duration, jobs=args.jobs)
    timing["generate_s"] = time.time() - t0
    runs = run_projects(args, bench, timing) if "project" in args.method_list else {}
    results: dict[str, Any] = {"settings": {}}
    for setting in args.settings:
        videos = bench[setting]
        methods: dict[str, Any] = {}
        run = runs.get(setting)
        if isinstance(run, project.ProjectRunError):
            methods["project"] = {"error": str(run)}
        elif run is not None:
            methods["project"] = eval_project(run, setting, videos)
        t1 = time.time()
        methods.update(eval_peers(args, setting, videos))
        timing[f"peers_{setting}_s"] = time.time() - t1
        results["settings"][setting] = {m: methods[m] for m in args.method_list if m in methods}
        log.info("%s scored (%.0f s so far)", setting, time.time() - t0)
    timing["total_s"] = time.time() - t0
    timing["load_at_end"] = os.getloadavg()[0]
    from quality import scoring

    results = {
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "config": {
            "peer_rule": args.peer_rule,
            "videos": args.videos,
            "duration": args.duration,
            "settings": args.settings,
            "methods": args.method_list,
            "project_overrides": list(args.project_overrides),
            "bench_overrides": list(project.BENCH_OVERRIDES),
            "tolerances_sec": list(scoring.TOLERANCES),
            "match_iou": scoring.MATCH_IOU,
            "quantiles": [float(q) for q in scoring.QUANTILES],
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "timing": timing,
        **results,
    }
    write_json_atomic(args.output / "results.json", results)
    md = report.markdown(results)
    write_text_atomic(args.output / "results.md", md)
    print(md)
    print(
        f"results: {args.output / 'results.json'}, {args.output / 'results.md'} ({timing['total_s']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

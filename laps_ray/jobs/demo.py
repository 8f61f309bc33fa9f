"""demo: the whole pipeline end to end on generated sample videos (nothing is downloaded).

Local::

    python -m laps_ray.jobs.demo --output demo_out            # or: bash scripts/demo.sh

On a cluster (same command after ``--``)::

    ray job submit --working-dir . -- python -m laps_ray.jobs.demo --output /shared/demo_out

Steps, each a real job run in this process on one Ray instance (outputs under ``--output``):

1. ``videos/`` + ``gt/``: sample videos of a static scene whose objects perform planted motion
   primitives (with rests, and back-to-back changes), and their ground truth (LAPS JSON).
2. ``tracks/``: ``preprocess`` — point tracks for tokenizer training.
3. ``tokenizer/`` (only with ``--train``): ``train_tokenizer`` on those tracks; otherwise the shipped
   ``small`` checkpoint is used.
4. ``segments/``: ``segment_folder`` in one pass — its threshold is calibrated inside the run
   without labels (``segmentation.threshold: auto``) — clips, codes, segments.json.
5. ``eval/``: ``evaluate`` against the ground truth (boundary F1, F1@k, Edit, MoF, mAP).
6. ``sweep/``: ``sweep_thresholds`` — Ray Tune over segmentation settings on the cached energies
   with the ground truth (no video decoded again) → ``best.yaml``.
7. ``clusters/``: ``cluster`` — the segments' latent action codes grouped into primitives (k chosen
   by silhouette), scored against the planted kinds, and ``report.html`` with the clips per cluster.

A re-run reuses every step whose outputs exist.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laps_ray.config import check, load_config
from laps_ray.core.energy import EnergyConfig
from laps_ray.io.atomic import prepare_output_dir, write_json_atomic, write_text_atomic
from laps_ray.jobs._cli import Flag, run_job

log = logging.getLogger("laps_ray.demo")


@dataclass
class DemoJobConfig:
    """Settings of the demo.

    Attributes:
        output: output folder.
        videos: number of sample videos.
        seconds: length of each video.
        width, height, fps: sample video geometry.
        seed: first random seed (video k uses ``seed + k``).
        train: train a tokenizer on the sample tracks instead of using the shipped checkpoint.
        train_epochs: epochs for ``--train``.
        energy_source: energy the segmentation uses (default segment_folder's, ``motion``;
            ``quantized`` = the latent action energy).
        sweep_trials: Tune trials of the threshold sweep.
        num_actors: actors for preprocess/segment_folder (0 = fill the cluster).
    """

    output: str = "demo_out"
    videos: int = 4
    seconds: float = 24.0
    width: int = 320
    height: int = 240
    fps: float = 30.0
    seed: int = 100
    train: bool = False
    train_epochs: int = 3
    energy_source: str = EnergyConfig.source
    sweep_trials: int = 12
    num_actors: int = 0

    def __post_init__(self) -> None:
        check(self.videos >= 1, "videos", f"must be >= 1, got {self.videos}")
        check(
            self.seconds >= 12,
            "seconds",
            f"must be >= 12 (room for rests and a back-to-back pair), got {self.seconds}",
        )


@dataclass
class DemoResult:
    output: Path
    steps: dict[str, dict[str, Any]]
    metrics: dict[str, Any]
    seconds: float
    exit_code: int = 0


def _sample_videos(cfg: DemoJobConfig, out: Path) -> dict[str, Any]:
    from laps_ray.io.synthetic import default_bursts, make_action_video

    vdir, gdir = out / "videos", out / "gt"
    made = 0
    for k in range(cfg.videos):
        stem = f"demo_{k:02d}"
        video, gt = vdir / f"{stem}.mp4", gdir / f"{stem}.json"
        if video.exists() and gt.exists():
            continue
        truth = make_action_video(
            video,
            duration_s=cfg.seconds,
            fps=cfg.fps,
            size=(cfg.width, cfg.height),
            bursts=default_bursts(cfg.seconds, seed=cfg.seed + k),
            seed=cfg.seed + k,
        )
        write_json_atomic(gt, truth)
        made += 1
    return {"videos": str(vdir), "gt": str(gdir), "generated": made}


def run(cfg: DemoJobConfig) -> DemoResult:
    """Run every step (see the module docstring); the first Ray step starts (or joins) Ray."""
    from laps_ray.jobs import cluster, evaluate, preprocess, segment_folder, sweep_thresholds

    t0 = time.time()
    out = prepare_output_dir(cfg.output)
    steps: dict[str, dict[str, Any]] = {}
    actors = [f"resources.num_actors={cfg.num_actors}"]

    log.info("1/7 sample videos")
    steps["videos"] = _sample_videos(cfg, out)
    videos, gt = out / "videos", out / "gt"

    log.info("2/7 preprocess (point tracks)")
    pre = preprocess.run(
        load_config(
            preprocess.PreprocessJobConfig, None, [f"input={videos}", f"output={out / 'tracks'}", *actors]
        )
    )
    steps["preprocess"] = {"output": str(pre.output), "done": pre.done, "failed": len(pre.failed)}

    checkpoint = ""
    if cfg.train:
        from laps_ray.jobs import train_tokenizer

        log.info("3/7 train_tokenizer")
        tcfg = load_config(
            train_tokenizer.TrainTokenizerConfig,
            None,
            [f"tracks={out / 'tracks'}", f"output={out / 'tokenizer'}", f"epochs={cfg.train_epochs}"],
        )
        tres = train_tokenizer.run(tcfg)
        checkpoint = str(tres.output / "best")
        steps["train_tokenizer"] = {"checkpoint": checkpoint}
    else:
        steps["train_tokenizer"] = {"checkpoint": "shipped laps_ray/assets/tokenizer_small"}

    common = [f"energy.source={cfg.energy_source}", *actors]
    if checkpoint:
        common.append(f"tokenizer.checkpoint={checkpoint}")
    log.info("4/7 segment_folder (one pass: the threshold is calibrated in the run, no labels)")
    seg = segment_folder.run(
        load_config(
            segment_folder.SegmentJobConfig,
            None,
            [f"input={videos}", f"output={out / 'segments'}", *common],
        )
    )
    threshold = json.loads((out / "segments" / "run.json").read_text()).get("threshold", {})
    steps["segment_folder"] = {
        "output": str(out / "segments"),
        "done": seg.done,
        "failed": len(seg.failed),
        "threshold": threshold,
    }

    log.info("5/7 evaluate against the ground truth")
    ev = evaluate.run(
        load_config(
            evaluate.EvaluateJobConfig,
            None,
            [f"pred={out / 'segments'}", f"gt={gt}", f"output={out / 'eval'}"],
        )
    )
    metrics = dict(ev.summary)
    steps["evaluate"] = {"output": str(out / "eval"), "metrics_md": str(out / "eval" / "metrics.md")}

    log.info("6/7 sweep_thresholds on cached energies (Ray Tune, ground truth)")
    sw = sweep_thresholds.run(
        load_config(
            sweep_thresholds.SweepJobConfig,
            None,
            [
                f"input={out / 'segments'}",
                f"gt={gt}",
                f"output={out / 'sweep'}",
                "search=random",
                f"num_samples={cfg.sweep_trials}",
            ],
        )
    )
    steps["sweep_thresholds"] = {"best_yaml": str(out / "sweep" / "best.yaml"), "best": sw.best}

    log.info("7/7 cluster the segments' latent action codes (report.html)")
    cl = cluster.run(
        load_config(
            cluster.ClusterJobConfig,
            None,
            [f"segments={out / 'segments'}", f"output={out / 'clusters'}", f"labels={gt}", *actors],
        )
    )
    labels = cl.metrics.get("labels") or {}
    steps["cluster"] = {
        "report": str(out / "clusters" / "report.html"),
        "k": cl.metrics.get("k"),
        "ari": labels.get("ari"),
        "silhouette": (cl.metrics.get("internal") or {}).get("silhouette"),
    }

    result = DemoResult(out, steps, metrics, time.time() - t0)
    write_json_atomic(
        out / "demo_summary.json", {"steps": steps, "metrics": metrics, "seconds": result.seconds}
    )
    write_text_atomic(out / "demo_summary.md", summary(result) + "\n")
    return result


def summary(r: DemoResult) -> str:
    """What ran, where it went, and the headline numbers."""
    s, m = r.steps, r.metrics
    thr = s["segment_folder"].get("threshold", {})
    auc = thr.get("auc")
    lines = [
        f"demo finished in {r.seconds:.0f}s -> {r.output}",
        f"  videos:      {s['videos']['videos']} (ground truth in {s['videos']['gt']})",
        f"  tracks:      {s['preprocess']['output']} ({s['preprocess']['done']} videos)",
        f"  tokenizer:   {s['train_tokenizer']['checkpoint']}",
        f"  threshold:   auto {thr.get('value', float('nan')):.4g} ({thr.get('scope', '?')}; active/rest "
        f"contrast {thr.get('contrast') or float('nan'):.1f}x, "
        f"{100 * thr.get('active_fraction', 0):.0f}% active)"
        if auc is not None
        else f"  threshold:   {thr}",
        f"  segments:    {s['segment_folder']['output']} (clips, codes, segments.json, energy.jsonl)",
        f"  evaluation:  {s['evaluate']['metrics_md']}",
    ]
    for key in sorted(m):
        if key.startswith(("boundary/f1@", "F1@", "edit", "mof", "mAP")):
            value = m[key]
            lines.append(
                f"      {key:<22} {value:.3f}" if isinstance(value, float) else f"      {key:<22} {value}"
            )
    best = s["sweep_thresholds"].get("best") or {}
    lines.append(
        f"  sweep:       {s['sweep_thresholds']['best_yaml']} {json.dumps(best.get('score', best))[:200]}"
    )
    c = s.get("cluster")
    if c:
        ari = "n/a" if c["ari"] is None else f"{c['ari']:.2f}"
        lines.append(f"  clusters:    {c['report']} (k={c['k']}, ARI vs the planted kinds {ari})")
    return "\n".join(lines)


FLAGS = (
    Flag("--output", "output", "output folder (default demo_out)"),
    Flag("--videos", "videos", "number of sample videos", type=int),
    Flag("--train", "train", "train a tokenizer instead of the shipped one", switch=True),
)


def main(argv: list[str] | None = None) -> None:
    run_job("demo", __doc__, FLAGS, DemoJobConfig, run, summary, argv)


if __name__ == "__main__":
    main()

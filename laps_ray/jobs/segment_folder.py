"""segment_folder: a folder of videos → action segments, clips, latent action codes and energies.

Local (starts or joins a Ray instance on this machine)::

    python -m laps_ray.jobs.segment_folder --input videos/ --output out/ segmentation.threshold=0.5

On a cluster (same command after ``--``)::

    ray job submit --working-dir . -- python -m laps_ray.jobs.segment_folder --input /data/videos \
        --output /data/out --report calib/report.json --report-key quantized.smoothed.best_f1.thr

Flags: ``--checkpoint DIR`` (default the shipped ``laps_ray/assets/tokenizer_small``), ``--report FILE
--report-key KEY`` or ``segmentation.threshold=X`` (never both, never a silent default), ``--config FILE``
(``configs/segment_folder.yaml``, or sweep_thresholds' ``best.yaml``), ``--num-actors N``,
``--shard-seconds S`` (0 = one shard per video), ``--strict``, ``--overwrite``, ``--clusters RUN_DIR``
(a ``cluster`` run: every segment gets ``cluster``, ``cluster_confidence`` and ``cluster_outlier`` in
segments.json from its fitted model), ``key.sub=value``.

Work: everything is checked first (threshold, checkpoint loaded once, input, output), then Ray starts.
Complete videos (``segments.json`` with the same digests) are skipped; the others are planned from
packet timestamps and cut into time shards (``laps_ray.pipeline.shards``) that a pool of actors runs
(``laps_ray.actors.pool.ActorPool``: retry, replacement, cluster loss); when all shards of a video are
back, one actor merges them, segments the video once and writes its outputs (``segments.json`` last;
sharded = unsharded, byte for byte). A video's old outputs are deleted only when it is recomputed; a
failed video is recorded in ``run.json`` and the job goes on. This module keeps only the per-video
bookkeeping (shards back → export; timeline mismatch → one unsharded shard).

Outputs: ``<out>/<stem>/{segments.json, energy.jsonl, energy.png, timeline.npz, clips/, codes/}``
(``laps_ray.io.exports``), ``<out>/run.json`` and ``<out>/config.yaml``. Two inputs with the same stem
get ``<relative/path>`` with ``/`` replaced by ``__`` as their folder name.

Metrics for the dashboard: ``laps_ray.actors.segment_actor`` (the actors' and this driver's).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from laps_ray.actors.segment_actor import FaultInjectionConfig
from laps_ray.config import ResourcesConfig, check
from laps_ray.io.atomic import prepare_output_dir
from laps_ray.io.run_manifest import RunManifest
from laps_ray.jobs import _cli as cli
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs import _segment_run as sr
from laps_ray.jobs._cli import Flag, run_job
from laps_ray.pipeline.cluster_assignment import assign_folder, check_cluster_model
from laps_ray.pipeline.config import PipelineConfig
from laps_ray.pipeline.resolve import resolve_run

log = logging.getLogger("laps_ray.segment_folder")


@dataclass
class SegmentJobConfig(PipelineConfig):
    """Settings of the segment_folder job (``configs/segment_folder.yaml``): the pipeline's sections
    (``laps_ray.pipeline.config``) plus what this job adds."""

    input: str = ""
    output: str = ""
    shard_seconds: float = 60.0
    report: str = ""
    report_key: str = ""
    strict: bool = False
    overwrite: bool = False
    clusters: str = ""
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    testing: FaultInjectionConfig = field(default_factory=FaultInjectionConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.shard_seconds >= 0,
            "shard_seconds",
            f"must be >= 0 (0 = no sharding), got {self.shard_seconds}",
        )


@dataclass
class SegmentResult:
    output: Path
    done: int
    skipped: int
    failed: dict[str, str]
    windows: int
    seconds: float
    exit_code: int = 0
    items: dict[str, dict] = field(default_factory=dict)
    clusters: dict[str, int] | None = None


def output_names(videos: list[Path], root: Path) -> dict[Path, str]:
    """Output folder name per video: the stem, or the relative path (``/`` -> ``__``) on a stem clash."""
    stems: dict[str, int] = {}
    for v in videos:
        stems[v.stem] = stems.get(v.stem, 0) + 1
    out = {}
    for v in videos:
        if stems[v.stem] == 1:
            out[v] = v.stem
        else:
            rel = v.relative_to(root) if root.is_dir() and v.is_relative_to(root) else Path(v.name)
            out[v] = "__".join(rel.with_suffix("").parts)
    return out


def run(cfg: SegmentJobConfig) -> SegmentResult:
    """Validate everything, then start (or join) Ray and run the job (see module docstring).

    Raises:
        JobError, ConfigError, CheckpointError: a bad threshold, checkpoint, input or output — before
            Ray starts and before any existing output is touched.
    """
    check(bool(cfg.input), "input", "is required (--input DIR_OR_FILE)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    t0 = time.time()
    resolved = resolve_run(cfg, cfg.report, cfg.report_key)  # loads the checkpoint once: fails here
    clusters = check_cluster_model(cfg.clusters) if cfg.clusters else None  # fails before Ray too
    root = Path(cfg.input)
    listing = rt.list_inputs(root, cfg.decode.exts, cfg.decode.recursive)
    out_dir = prepare_output_dir(cfg.output)
    rt.init_ray()
    manifest = RunManifest.create(
        out_dir,
        "segment_folder",
        replace(cfg, segmentation=resolved.segmentation),
        input=str(root),
        checkpoint=str(resolved.checkpoint),
        checkpoint_sha256=resolved.checkpoint_sha256,
        config_sha256=resolved.config_sha256,
        threshold={"value": resolved.segmentation.threshold, **resolved.threshold_source},
    )
    rt.record_unreadable(manifest, listing, root)
    names = output_names(listing.videos, root)
    keyed = [(rt.item_key(v, root), v, out_dir / names[v]) for v in listing.videos]
    todo, skipped = sr.select(cfg, resolved, keyed, manifest)
    planned = sr.plan(cfg, todo, manifest)
    job = sr.SegmentRun(cfg, resolved, manifest, planned, skipped, t0)
    try:
        if planned:
            job.execute()
    finally:
        manifest.extra.update(
            windows=job.windows,
            windows_per_second=round(job.windows / max(time.time() - t0, 1e-9), 3),
        )
        manifest.write(finished=True)
    failed, code = manifest.not_done(), manifest.exit_code(cfg.strict)
    done = len(manifest.items) - len(failed)
    assigned = assign_folder(out_dir, clusters) if clusters is not None else None
    return SegmentResult(
        out_dir, done, len(skipped), failed, job.windows, time.time() - t0, code, manifest.items, assigned
    )


def summary(r: SegmentResult) -> str:
    """The one-line summary (plus one line per video that is not done, with its status and reason)."""
    wps = r.windows / max(r.seconds, 1e-9)
    statuses = [r.items.get(k, {}).get("status", "failed") for k in r.failed]
    unreliable = statuses.count("unreliable")
    others = f", {unreliable} unreliable" if unreliable else ""
    head = (
        f"segment_folder: {r.done} done ({r.skipped} skipped){others}, {len(r.failed) - unreliable} failed; "
        f"{r.windows} windows in {r.seconds:.1f}s ({wps:.1f} windows/s) -> {r.output} (run.json)"
    )
    lines = [head]
    if r.clusters is not None:
        c = r.clusters
        lines.append(
            f"  clusters: {c['assigned']} segments of {c['videos']} videos assigned "
            f"({c['outliers']} outliers) -> cluster, cluster_confidence, cluster_outlier in segments.json"
        )
    for k, why in sorted(r.failed.items()):
        lines.append(f"  {r.items.get(k, {}).get('status', 'failed')}: {k}: {why}")
    return "\n".join(lines)


FLAGS = (
    cli.INPUT,
    cli.OUTPUT,
    cli.CHECKPOINT,
    cli.REPORT,
    cli.REPORT_KEY,
    cli.NUM_ACTORS,
    Flag("--shard-seconds", "shard_seconds", "time shard length (0 = none)", type=float),
    cli.STRICT,
    cli.OVERWRITE,
    cli.CLUSTERS,
)


def main(argv: list[str] | None = None) -> None:
    run_job("segment_folder", __doc__, FLAGS, SegmentJobConfig, run, summary, argv)


if __name__ == "__main__":
    main()

"""segment_folder: a folder of videos → action segments, clips, latent action codes and energies.

Local (starts or joins a Ray instance on this machine)::

    python -m laps_ray.jobs.segment_folder --input videos/ --output out/ segmentation.threshold=0.5

On a cluster (same command after ``--``)::

    ray job submit --working-dir . -- python -m laps_ray.jobs.segment_folder --input /data/videos \
        --output /data/out --report calib/report.json --report-key quantized.smoothed.best_f1.thr

Flags: ``--checkpoint DIR`` (default the shipped ``laps_ray/assets/tokenizer_small``), ``--report FILE
--report-key KEY`` or ``segmentation.threshold=X`` (never both, never a silent default), ``--config FILE``
(``configs/segment_folder.yaml``, or sweep_thresholds' ``best.yaml``), ``--num-actors N``,
``--shard-seconds S`` (0 = one shard per video), ``--strict``, ``--overwrite``, ``key.sub=value``.

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
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from laps_ray.actors.pool import (
    ActorPool,
    ActorStartError,
    ClusterLost,
    Task,
    TaskFailed,
    actor_options,
    pool_size,
)
from laps_ray.actors.segment_actor import FaultInjectionConfig, SegmentJobMetrics, SegmentWorker
from laps_ray.config import ResourcesConfig, check
from laps_ray.io import exports as ex
from laps_ray.io.atomic import prepare_output_dir
from laps_ray.io.run_manifest import RunManifest
from laps_ray.io.video import VideoError
from laps_ray.jobs import _cli as cli
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import Flag, run_job
from laps_ray.pipeline.config import PipelineConfig
from laps_ray.pipeline.resolve import ResolvedRun, default_checkpoint, resolve_run, video_context
from laps_ray.pipeline.shard_run import ShardResult
from laps_ray.pipeline.shards import ShardSpec, make_shards, plan_timeline, video_duration, windows_per_shard

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
    todo, skipped = _todo(cfg, resolved, listing.videos, root, out_dir, manifest)
    planned = _plan(cfg, todo, manifest)
    job = _Job(cfg, resolved, manifest, planned, t0)
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
    return SegmentResult(out_dir, done, skipped, failed, job.windows, time.time() - t0, code, manifest.items)


@dataclass
class _Video:
    """Driver-side state of one video in progress."""

    key: str
    source: Path
    out_dir: Path
    plan: Any = None
    specs: list = field(default_factory=list)
    results: dict[int, Any] = field(default_factory=dict)
    outstanding: int = 0
    failed: str | None = None
    mismatch: bool = False
    fallback_done: bool = False
    cleared: bool = False
    compute_seconds: float = 0.0
    t0: float = field(default_factory=time.time)


def _todo(
    cfg: SegmentJobConfig,
    resolved: ResolvedRun,
    videos: list[Path],
    root: Path,
    out_dir: Path,
    manifest: RunManifest,
) -> tuple[list[_Video], int]:
    """Videos to compute; complete ones (same digests) are recorded as done and skipped."""
    names = output_names(videos, root)
    previous = rt.previous_items(out_dir)
    todo: list[_Video] = []
    skipped = 0
    for v in videos:
        key, vdir = rt.item_key(v, root), out_dir / names[v]
        if not cfg.overwrite and ex.is_complete(vdir, resolved.checkpoint_sha256, resolved.config_sha256):
            # also the record of a video a killed run finished after its driver died
            manifest.items[key] = {
                **previous.get(key, {}),
                "status": "done",
                "output": str(vdir),
                "skipped": True,
            }
            skipped += 1
            continue
        todo.append(_Video(key=key, source=v, out_dir=vdir))
    manifest.write()
    return todo, skipped


def _plan(cfg: SegmentJobConfig, todo: list[_Video], manifest: RunManifest) -> list[_Video]:
    """Each video's planned timeline and shards; unreadable videos are recorded as failed."""
    per_shard = windows_per_shard(cfg.shard_seconds, cfg.decode.target_fps, cfg.stride)
    planned: list[_Video] = []
    for video in todo:
        try:
            video.plan = plan_timeline(video.source, cfg.decode.target_fps)
        except VideoError as exc:
            _clear(video)  # nothing of a failed video is kept (a stale energy.jsonl would feed calibration)
            manifest.record(video.key, {"status": "failed", "reason": exc.reason})
            continue
        video.specs = _shards(cfg, video, video.plan, per_shard)
        planned.append(video)
    return planned


def _shards(cfg: SegmentJobConfig, video: _Video, plan: Any, per_shard: int) -> list[ShardSpec]:
    return make_shards(
        video.key,
        str(video.source),
        video.out_dir / ex.WORK_DIR,
        plan,
        cfg.T,
        cfg.stride,
        per_shard,
        cfg.decode.target_fps,
        cfg.decode.resize_shorter,
    )


def _clear(video: _Video) -> None:
    """Delete a video's previous (partial, stale or --overwrite) outputs: only right before the
    video is recomputed, so a job that stops early leaves every other video's outputs as they were."""
    if not video.cleared:
        video.cleared = True
        if video.out_dir.exists():
            shutil.rmtree(video.out_dir)


class _Job:
    """The per-video bookkeeping around the actor pool: all shards back → export; a timeline mismatch
    → the video again as one unsharded shard."""

    def __init__(
        self,
        cfg: SegmentJobConfig,
        resolved: ResolvedRun,
        manifest: RunManifest,
        videos: list[_Video],
        t0: float,
    ) -> None:
        self.cfg, self.resolved, self.manifest, self.t0 = cfg, resolved, manifest, t0
        self.by_key = {v.key: v for v in videos}
        self.windows = 0
        self.bar: rt.Progress | None = None
        self.metrics: SegmentJobMetrics | None = None

    def execute(self) -> None:
        """Run every shard and every per-video export on a pool of segment actors."""
        cfg, res = self.cfg, self.cfg.resources
        videos = list(self.by_key.values())
        n_items = sum(len(v.specs) for v in videos)
        size = pool_size(res.num_actors, res.cpus_per_actor, res.gpus_per_actor, n_items)
        opts = actor_options(res.cpus_per_actor, res.gpus_per_actor, res.max_retries)
        # The shipped checkpoint is resolved by each actor on its own copy of the package.
        ckpt = self.resolved.checkpoint
        ckpt_arg = None if ckpt == default_checkpoint() else str(ckpt.resolve())
        args = (self.resolved.pipeline, ckpt_arg, res.cpus_per_actor, cfg.testing)
        pool = ActorPool(SegmentWorker, args, opts, size, "segment")
        log.info(
            "%d videos, %d shards, %d actors (%s)",
            len(videos),
            n_items,
            size,
            {k: v for k, v in opts.items() if k.startswith("num_")},
        )
        t_start = time.time()
        try:
            pool.start()  # weights load once per actor; a load error stops the job here
        except ActorStartError as exc:
            raise rt.JobError(str(exc)) from None
        t_ready = time.time()
        self.manifest.extra.update(actors=size, startup_seconds=round(t_ready - t_start, 3))
        self.metrics = SegmentJobMetrics()
        self.bar = rt.Progress(len(videos), "segment_folder")
        for v in videos:
            v.outstanding = len(v.specs)
        tasks = [Task("process_shard", (s,), tag=v.key) for v in videos for s in v.specs]
        try:
            pool.run(tasks, self.on_result, on_start=self.on_start)
        except ClusterLost as lost:
            self.bar.close()
            raise rt.record_lost(
                self.manifest, sorted({t.tag for t in lost.unfinished}), lost.address
            ) from None
        finally:
            self.bar.close()
            pool.close()
        processing = time.time() - t_ready
        self.manifest.extra.update(
            processing_seconds=round(processing, 3),
            processing_windows_per_second=round(self.windows / max(processing, 1e-9), 3),
        )

    def on_start(self, task: Task) -> None:
        if task.method == "process_shard":
            _clear(self.by_key[task.tag])  # first shard of a video: its old outputs go now

    def on_result(self, task: Task, out: Any) -> list[Task]:
        video = self.by_key[task.tag]
        if isinstance(out, TaskFailed):
            out = {"status": "failed", "reason": out.reason}
        if task.method == "finalize":
            self.close(video, out)
            return []
        video.outstanding -= 1
        if isinstance(out, ShardResult):
            video.results[out.shard] = out
            video.compute_seconds += out.seconds
            self.windows += out.num_windows
            self.metrics.windows_per_second.set(self.windows / max(time.time() - self.t0, 1e-9))
        elif out.get("status") == "mismatch" and not video.fallback_done:
            video.mismatch = True
        elif video.failed is None:
            video.failed = str(out.get("reason", "unknown error"))
        if video.outstanding:
            return []
        if video.failed is not None:
            self.close(video, {"status": "failed", "reason": video.failed})
            return []
        if video.mismatch and not video.fallback_done:
            # Variable frame rate or damaged packets: the plan cannot place shards; redo unsharded.
            log.info("%s: frames differ from the planned timeline; processing it as one shard", video.key)
            shutil.rmtree(video.out_dir / ex.WORK_DIR, ignore_errors=True)
            video.fallback_done, video.results = True, {}
            video.specs = _shards(self.cfg, video, None, 0)
            video.outstanding = len(video.specs)
            return [Task("process_shard", (s,), tag=video.key) for s in video.specs]
        ctx = video_context(
            self.resolved, video.key, str(video.source), video.out_dir, video_duration(video.plan)
        )
        results = [video.results[k] for k in sorted(video.results)]
        return [Task("finalize", (results, video.plan, ctx), tag=video.key)]  # outputs early

    def close(self, video: _Video, record: dict[str, Any]) -> None:
        record.setdefault("shards", len(video.specs))
        record["wall_seconds"] = round(time.time() - video.t0, 3)
        if record["status"] == "done":
            shards = list(video.results.values())
            record["compute_seconds"] = round(video.compute_seconds, 3)
            record["cpu_seconds"] = round(sum(r.cpu_seconds for r in shards), 3)
            record["windows_per_second"] = round(record["windows"] / max(video.compute_seconds, 1e-9), 3)
            record["shard_peak_rss_mb"] = round(max(r.peak_rss_mb for r in shards), 1)
        else:  # nothing of a failed video is kept: a stray energy.jsonl would feed calibration
            shutil.rmtree(video.out_dir, ignore_errors=True)
        self.manifest.record(video.key, record)
        self.metrics.videos.inc(tags={"status": record["status"]})
        self.bar.update(f"{video.source.name}: {record['status']}")


def summary(r: SegmentResult) -> str:
    """The one-line summary (plus one line per failed video)."""
    wps = r.windows / max(r.seconds, 1e-9)
    head = (
        f"segment_folder: {r.done} done ({r.skipped} skipped), {len(r.failed)} failed; {r.windows} windows "
        f"in {r.seconds:.1f}s ({wps:.1f} windows/s) -> {r.output} (run.json)"
    )
    return "\n".join([head] + [f"  failed: {k}: {why}" for k, why in sorted(r.failed.items())])


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
)


def main(argv: list[str] | None = None) -> None:
    run_job("segment_folder", __doc__, FLAGS, SegmentJobConfig, run, summary, argv)


if __name__ == "__main__":
    main()

"""segment_folder's bookkeeping around the actor pool: which videos to compute, their shards, the
automatic threshold, and each video's export (shared only with ``segment_folder``).

Per video: plan → shards on the pool (``laps_ray.actors.pool.ActorPool``) → when all are back, the
threshold is known (fixed, from a report, or ``auto``) → one ``finalize`` task writes its outputs. A
timeline mismatch sends the video again as one unsharded shard.

``segmentation.threshold: auto`` (``laps_ray.core.auto_threshold``): with ``scope: video`` a video is
calibrated on its own windows as soon as its shards are back; with ``scope: folder`` (default) the
exports wait until every video's shards are back, and one threshold is calibrated on the windows of
all of them — the videos computed now and the complete ones skipped (read from their cached
``energy.jsonl``), so a resumed run pools exactly the windows an uninterrupted one would. A skipped
video whose recorded threshold differs (new videos joined the folder) is computed again.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
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
from laps_ray.actors.segment_actor import SegmentJobMetrics, SegmentWorker
from laps_ray.core.auto_threshold import AutoThreshold, is_auto
from laps_ray.io import exports as ex
from laps_ray.io.run_manifest import RunManifest
from laps_ray.io.video import VideoError
from laps_ray.jobs import _runtime as rt
from laps_ray.pipeline.auto_calibration import (
    AutoSeries,
    calibrate,
    series_from_cache,
    series_from_shards,
    threshold_record,
)
from laps_ray.pipeline.resolve import ResolvedRun, default_checkpoint, video_context
from laps_ray.pipeline.shard_run import ShardResult
from laps_ray.pipeline.shards import ShardSpec, make_shards, plan_timeline, video_duration, windows_per_shard

log = logging.getLogger("laps_ray.segment_folder")


@dataclass
class Video:
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
    waiting: bool = False  # every shard back; the folder's threshold is not known yet
    closed: bool = False  # its run.json record is written (exported or failed)
    compute_seconds: float = 0.0
    t0: float = field(default_factory=time.time)


def select(
    cfg: Any, run: ResolvedRun, keyed: list[tuple[str, Path, Path]], manifest: RunManifest
) -> tuple[list[Video], list[Video]]:
    """``(todo, skipped)`` of ``(key, source, out_dir)`` videos: complete ones (same digests) are
    recorded as done and skipped; everything else is to be computed."""
    previous = rt.previous_items(Path(cfg.output))
    todo, skipped = [], []
    for key, source, vdir in keyed:
        video = Video(key=key, source=source, out_dir=vdir)
        if not cfg.overwrite and ex.is_complete(vdir, run.checkpoint_sha256, run.config_sha256):
            doc = ex.read_segments_json(vdir / ex.SEGMENTS_FILE) or {}
            status = "done" if doc.get("reliable", True) else "unreliable"
            # also the record of a video a killed run finished after its driver died
            entry = {**previous.get(key, {}), "status": status, "output": str(vdir), "skipped": True}
            if status == "unreliable":
                entry["reason"] = doc.get("unreliable_reason") or "unreliable"
            manifest.items[key] = entry
            skipped.append(video)
            continue
        todo.append(video)
    manifest.write()
    return todo, skipped


def plan(cfg: Any, todo: list[Video], manifest: RunManifest) -> list[Video]:
    """Each video's planned timeline and shards; unreadable videos are recorded as failed."""
    per_shard = windows_per_shard(cfg.shard_seconds, cfg.decode.target_fps, cfg.stride)
    planned: list[Video] = []
    for video in todo:
        try:
            video.plan = plan_timeline(video.source, cfg.decode.target_fps)
        except VideoError as exc:
            clear(video)  # nothing of a failed video is kept (a stale energy.jsonl would feed calibration)
            manifest.record(video.key, {"status": "failed", "reason": exc.reason})
            continue
        video.specs = shards_of(cfg, video, video.plan, per_shard)
        planned.append(video)
    return planned


def shards_of(cfg: Any, video: Video, plan: Any, per_shard: int) -> list[ShardSpec]:
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


def clear(video: Video) -> None:
    """Delete a video's previous (partial, stale or --overwrite) outputs: only right before the
    video is recomputed, so a job that stops early leaves every other video's outputs as they were."""
    if not video.cleared:
        video.cleared = True
        if video.out_dir.exists():
            shutil.rmtree(video.out_dir)


class SegmentRun:
    """The per-video bookkeeping around the actor pool (module docstring)."""

    def __init__(
        self,
        cfg: Any,
        run: ResolvedRun,
        manifest: RunManifest,
        videos: list[Video],
        skipped: list[Video],
        t0: float,
    ) -> None:
        self.cfg, self.run, self.manifest, self.t0 = cfg, run, manifest, t0
        self.by_key = {v.key: v for v in videos}
        self.skipped = {v.key: v for v in skipped}
        self.windows = 0
        self.bar: rt.Progress | None = None
        self.metrics: SegmentJobMetrics | None = None
        seg = run.segmentation
        self.auto = seg.auto if is_auto(seg.threshold) else None
        self.folder: tuple[AutoThreshold, list[str]] | None = None  # the folder's calibrated threshold

    def execute(self) -> None:
        """Run every shard and every per-video export on a pool of segment actors."""
        cfg, res = self.cfg, self.cfg.resources
        videos = list(self.by_key.values())
        n_items = sum(len(v.specs) for v in videos)
        size = pool_size(res.num_actors, res.cpus_per_actor, res.gpus_per_actor, max(n_items, 1))
        opts = actor_options(res.cpus_per_actor, res.gpus_per_actor, res.max_retries)
        # The shipped checkpoint is resolved by each actor on its own copy of the package.
        ckpt = self.run.checkpoint
        ckpt_arg = None if ckpt == default_checkpoint() else str(ckpt.resolve())
        pool = ActorPool(
            SegmentWorker,
            (self.run.pipeline, ckpt_arg, res.cpus_per_actor, cfg.testing),
            opts,
            size,
            "segment",
        )
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
            keys = sorted(
                {t.tag for t in lost.unfinished} | {v.key for v in self.by_key.values() if v.waiting}
            )
            raise rt.record_lost(self.manifest, keys, lost.address) from None
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
            clear(self.by_key[task.tag])  # first shard of a video: its old outputs go now

    def on_result(self, task: Task, out: Any) -> list[Task]:
        video = self.by_key[task.tag]
        if isinstance(out, TaskFailed):
            out = {"status": "failed", "reason": out.reason}
        if task.method == "finalize":
            self.close(video, out)
            return self._release() if self.waiting_for_folder() else []
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
            return self._release() if self.waiting_for_folder() else []
        if video.mismatch and not video.fallback_done:
            # Variable frame rate or damaged packets: the plan cannot place shards; redo unsharded.
            log.info("%s: frames differ from the planned timeline; processing it as one shard", video.key)
            shutil.rmtree(video.out_dir / ex.WORK_DIR, ignore_errors=True)
            video.fallback_done, video.results = True, {}
            video.specs = shards_of(self.cfg, video, None, 0)
            video.outstanding = len(video.specs)
            return [Task("process_shard", (s,), tag=video.key) for s in video.specs]
        if self.auto is None:
            return [self._finalize(video)]  # outputs early, before more shards
        if self.folder is not None:  # a video computed again after the folder was calibrated
            return [self._finalize(video, self.folder)]
        if self.auto.scope == "video":
            result, keys = calibrate([self._series(video)], self.auto)
            return [self._finalize(video, (result, keys))]
        video.waiting = True
        return self._release()

    def waiting_for_folder(self) -> bool:
        return self.auto is not None and self.auto.scope == "folder" and self.folder is None

    def _release(self) -> list[Task]:
        """Once every video's shards are back (or it failed): calibrate the folder and export them all;
        complete videos made with another threshold are computed again."""
        if not all(v.waiting for v in self._open()):
            return []
        series = [self._series(v) for v in self.by_key.values() if v.waiting]
        series += [
            series_from_cache(k, v.out_dir, self.run.pipeline.energy, self.auto.proxy)
            for k, v in self.skipped.items()
        ]
        if not series:
            return []
        self.folder = calibrate(series, self.auto)
        result, keys = self.folder
        self.manifest.extra["threshold"] = {"value": result.value, "source": "auto", **result.evidence}
        log.info("threshold auto (folder, %d videos): %.6g (%s)", len(keys), result.value, _evidence(result))
        tasks = [self._finalize(v, self.folder) for v in self.by_key.values() if v.waiting]
        return tasks + self._recompute_stale(result.value)

    def _open(self) -> list[Video]:
        return [v for v in self.by_key.values() if not v.closed]

    def _recompute_stale(self, value: float) -> list[Task]:
        stale = []
        for key, video in self.skipped.items():
            doc = ex.read_segments_json(video.out_dir / ex.SEGMENTS_FILE) or {}
            recorded = (doc.get("params") or {}).get("segmentation", {}).get("threshold")
            if isinstance(recorded, int | float) and abs(recorded - value) <= 1e-12 * max(1.0, abs(value)):
                continue
            log.info(
                "%s: its threshold %s differs from the folder's %.6g now; computing it again",
                key,
                recorded,
                value,
            )
            stale.append(video)
        for video in plan(self.cfg, stale, self.manifest):
            video.outstanding = len(video.specs)
            self.by_key[video.key] = video
            self.bar.total = (self.bar.total or 0) + 1
        return [
            Task("process_shard", (s,), tag=v.key) for v in stale if v.key in self.by_key for s in v.specs
        ]

    def _series(self, video: Video) -> AutoSeries:
        return series_from_shards(
            video.key, list(video.results.values()), self.run.pipeline.energy, self.auto.proxy
        )

    def _finalize(self, video: Video, auto: tuple[AutoThreshold, list[str]] | None = None) -> Task:
        video.waiting = False
        value = None if auto is None else (auto[0].value, threshold_record(auto[0], auto[1], video.key))
        ctx = video_context(
            self.run, video.key, str(video.source), video.out_dir, video_duration(video.plan), value
        )
        results = [video.results[k] for k in sorted(video.results)]
        return Task("finalize", (results, video.plan, ctx), tag=video.key)

    def close(self, video: Video, record: dict[str, Any]) -> None:
        video.closed = True
        record.setdefault("shards", len(video.specs))
        record["wall_seconds"] = round(time.time() - video.t0, 3)
        if record["status"] in ("done", "unreliable"):
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


def _evidence(result: AutoThreshold) -> str:
    ev = result.evidence
    auc, contrast = ev.get("auc"), ev.get("contrast")
    if auc is None:
        return str(ev.get("reason"))
    shown = f"active/rest contrast {contrast:.1f}x, " if contrast is not None else ""
    return f"{shown}{100 * ev.get('active_fraction', 0):.0f}% active, AUC vs pseudo-labels {auc:.2f}"

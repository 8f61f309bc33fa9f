"""preprocess: a folder of videos → one HDF5 file of point tracks per video (tokenizer training data).

Local (starts or joins a Ray instance on this machine)::

    python -m laps_ray.jobs.preprocess --input videos/ --output tracks/

On a cluster (same command after ``--``)::

    ray job submit --working-dir . -- python -m laps_ray.jobs.preprocess --input videos/ --output tracks/

Options: ``--config configs/preprocess.yaml``, ``key.sub=value`` overrides (e.g. ``tracker.name=lk
decode.target_fps=20``), ``--split-seconds S`` (cut long videos into S-second chunks first),
``--check`` (only validate the videos and list broken ones), ``--strict`` (exit non-zero if any
video failed). Outputs: ``<output>/<relative path>.h5`` and ``<output>/run.json``. A re-run skips
complete outputs and redoes partial ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
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
from laps_ray.actors.preprocess_actor import PreprocessWorker
from laps_ray.config import ResourcesConfig, check
from laps_ray.io.atomic import prepare_output_dir
from laps_ray.io.run_manifest import RunManifest
from laps_ray.io.track_store import SUFFIX, TrackStoreError, is_complete, read_meta
from laps_ray.jobs import _cli as cli
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import Flag, run_job
from laps_ray.pipeline.config import WindowingConfig, section

log = logging.getLogger("laps_ray.preprocess")


@dataclass
class PreprocessJobConfig(WindowingConfig):
    """Settings of the preprocess job (``configs/preprocess.yaml``): the pipeline's windowing
    sections (``laps_ray.pipeline.config``) plus what this job adds."""

    input: str = ""
    output: str = ""
    view: str = "default"
    split_seconds: float = 0.0
    check_only: bool = False
    strict: bool = False
    overwrite: bool = False
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.split_seconds >= 0, "split_seconds", f"must be >= 0, got {self.split_seconds}")


@dataclass
class PreprocessResult:
    output: Path
    done: int
    skipped: int
    failed: dict[str, str]
    seconds: float
    exit_code: int = 0
    items: dict[str, dict] = field(default_factory=dict)
    check_only: bool = False


def output_path(out_dir: Path, video: Path, root: Path) -> Path:
    """``<out>/<path relative to the input root>.h5`` (file names are data: kept as they are)."""
    rel = video.relative_to(root) if root.is_dir() else Path(video.name)
    return out_dir / rel.with_suffix(SUFFIX)


def run(cfg: PreprocessJobConfig) -> PreprocessResult:
    """Validate the input and output, then start (or join) Ray and run the job (see :func:`main`)."""
    check(bool(cfg.input), "input", "is required (--input DIR_OR_FILE)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    t0 = time.time()
    root = Path(cfg.input)
    listing = rt.list_inputs(root, cfg.decode.exts, cfg.decode.recursive)
    videos = listing.videos
    out_dir = prepare_output_dir(cfg.output)
    rt.init_ray()
    _remove_stale_temporaries(out_dir)
    manifest = RunManifest.create(out_dir, "preprocess", cfg, input=str(root))
    rt.record_unreadable(manifest, listing, root)

    res = cfg.resources
    size = pool_size(res.num_actors, res.cpus_per_actor, res.gpus_per_actor, len(videos))
    opts = actor_options(res.cpus_per_actor, res.gpus_per_actor, res.max_retries)
    args = (section(cfg, WindowingConfig), cfg.view, cfg.check_only)
    pool = ActorPool(PreprocessWorker, args, opts, size, "preprocess")
    log.info("%d videos, %d actors (%s)", len(videos), size, {k: v for k, v in opts.items() if "num_" in k})
    try:
        pool.start()
        if cfg.check_only:
            return _check(cfg, videos, root, pool, manifest, t0)
        if cfg.split_seconds > 0:
            videos, root = _split(cfg, videos, root, out_dir, pool, manifest)
        return _track(cfg, videos, root, out_dir, pool, manifest, t0)
    except ActorStartError as exc:
        raise rt.JobError(str(exc)) from None
    except ClusterLost as lost:
        keys = sorted({rt.item_key(Path(t.tag), root) for t in lost.unfinished})
        raise rt.record_lost(manifest, keys, lost.address) from None
    finally:
        pool.close()


def _map(
    pool: ActorPool,
    method: str,
    items: Sequence[tuple],
    desc: str,
    on_each: Callable[[str, Any], str],
) -> None:
    """``actor.<method>(*item)`` for every item on the pool; ``on_each(source, result)`` records a
    result (a :class:`TaskFailed` when Ray could not run it) and returns its status for the bar."""
    bar = rt.Progress(len(items), desc)

    def done(task: Task, result: Any) -> None:
        status = on_each(task.tag, result)
        bar.update(f"{Path(task.tag).name}: {status}")

    try:
        pool.run([Task(method, item, tag=item[0]) for item in items], done)
    finally:
        bar.close()


def _track(cfg, videos, root, out_dir, pool, manifest, t0) -> PreprocessResult:
    todo, skipped = [], 0
    previous = rt.previous_items(out_dir)
    for v in videos:
        key = rt.item_key(v, root)
        out = output_path(out_dir, v, root)
        if not cfg.overwrite and _reusable(out, cfg):
            entry = dict(previous.get(key, {}))
            entry.update(status="done", output=str(out), skipped=True)
            manifest.items[key] = entry
            skipped += 1
        else:
            todo.append((str(v), str(out)))
    manifest.write()

    def record(source: str, rec: Any) -> str:
        if isinstance(rec, TaskFailed):  # the actor itself died beyond its retries
            rec = {"status": "failed", "reason": rec.reason}
        manifest.record(rt.item_key(Path(source), root), rec)
        return rec["status"]

    _map(pool, "process", todo, "preprocess", record)
    manifest.write(finished=True)
    failed, code = manifest.not_done(), manifest.exit_code(cfg.strict)
    done = len(manifest.items) - len(failed)
    return PreprocessResult(out_dir, done, skipped, failed, time.time() - t0, code, manifest.items)


def _check(cfg, videos, root, pool, manifest, t0) -> PreprocessResult:
    def record(source: str, rec: Any) -> str:
        if isinstance(rec, TaskFailed):
            rec = {"status": "broken", "reason": rec.reason}
        manifest.record(rt.item_key(Path(source), root), rec)
        return rec["status"]

    _map(pool, "check", [(str(v),) for v in videos], "check", record)
    manifest.write(finished=True)
    broken = {k: e.get("reason", "") for k, e in manifest.items.items() if e["status"] != "ok"}
    ok = len(manifest.items) - len(broken)
    code = 1 if cfg.strict and broken else 0
    return PreprocessResult(Path(cfg.output), ok, 0, broken, time.time() - t0, code, manifest.items, True)


def _split(cfg, videos, root, out_dir, pool, manifest) -> tuple[list[Path], Path]:
    chunk_root = out_dir / "chunks"
    items = []
    for v in videos:
        rel = v.relative_to(root) if root.is_dir() else Path(v.name)
        items.append((str(v), str(chunk_root / rel.parent), float(cfg.split_seconds)))
    chunks: list[Path] = []

    def record(source: str, rec: Any) -> str:
        if isinstance(rec, TaskFailed) or rec["status"] != "done":
            reason = rec.reason if isinstance(rec, TaskFailed) else rec["reason"]
            manifest.record(
                rt.item_key(Path(source), root), {"status": "failed", "reason": f"split: {reason}"}
            )
            return "failed"
        chunks.extend(Path(c) for c in rec["chunks"])
        return "done"

    _map(pool, "split", items, "split", record)
    return sorted(chunks), chunk_root


def _reusable(out: Path, cfg: PreprocessJobConfig) -> bool:
    """A complete output made with the same window/tracker settings (else it is redone)."""
    if not out.exists() or not is_complete(out):
        return False
    try:
        meta = read_meta(out)
    except TrackStoreError:
        return False
    same = (meta.T, meta.stride, meta.tracker, meta.grid) == (
        cfg.T,
        cfg.stride,
        cfg.tracker.name,
        cfg.tracker.grid,
    )
    return same and abs(meta.fps - cfg.decode.target_fps) < 1e-6


def _remove_stale_temporaries(out_dir: Path) -> None:
    # Left by a killed run; their final names were never created, so deleting them loses nothing.
    for tmp in out_dir.rglob(f".*.tmp{SUFFIX}"):
        tmp.unlink(missing_ok=True)


def summary(r: PreprocessResult) -> str:
    """The one-line summary (plus one line per failed video)."""
    if r.check_only:
        head = (
            f"check: {r.done} ok, {len(r.failed)} broken in {r.seconds:.1f}s; report {r.output / 'run.json'}"
        )
    else:
        head = (
            f"preprocess: {r.done} done ({r.skipped} skipped), {len(r.failed)} failed in {r.seconds:.1f}s "
            f"-> {r.output} (run.json)"
        )
    word = "broken" if r.check_only else "failed"
    lines = [head] + [f"  {word}: {k}: {why}" for k, why in sorted(r.failed.items())]
    return "\n".join(lines)


FLAGS = (
    cli.INPUT,
    Flag("--output", "output", "output folder for .h5 track files"),
    Flag("--split-seconds", "split_seconds", "cut videos into chunks first", type=float),
    Flag("--check", "check_only", "only validate videos, list broken ones", switch=True),
    cli.STRICT,
    cli.NUM_ACTORS,
)


def main(argv: list[str] | None = None) -> None:
    run_job("preprocess", __doc__, FLAGS, PreprocessJobConfig, run, summary, argv)


if __name__ == "__main__":
    main()

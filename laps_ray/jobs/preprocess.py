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

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laps_ray.config import ResourcesConfig, check, to_yaml
from laps_ray.core.windows import DEFAULT_STRIDE, DEFAULT_T
from laps_ray.io.atomic import write_text_atomic
from laps_ray.io.decode import DecodeConfig
from laps_ray.io.track_store import SUFFIX, TrackStoreError, is_complete, read_meta
from laps_ray.jobs import _runtime as rt
from laps_ray.tracking.base import TrackerConfig

log = logging.getLogger("laps_ray.preprocess")


@dataclass
class PreprocessJobConfig:
    """Settings of the preprocess job (``configs/preprocess.yaml``)."""

    input: str = ""
    output: str = ""
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    T: int = DEFAULT_T
    stride: int = DEFAULT_STRIDE
    view: str = "default"
    batch_windows: int = 8
    split_seconds: float = 0.0
    check_only: bool = False
    strict: bool = False
    overwrite: bool = False
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)

    def __post_init__(self) -> None:
        check(self.T >= 2, "T", f"must be >= 2, got {self.T}")
        check(self.stride >= 1, "stride", f"must be >= 1, got {self.stride}")
        check(self.batch_windows >= 1, "batch_windows", f"must be >= 1, got {self.batch_windows}")
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
    out_dir = rt.prepare_output_dir(cfg.output)
    rt.init_ray()
    _remove_stale_temporaries(out_dir)
    write_text_atomic(out_dir / "config.yaml", to_yaml(cfg))
    manifest = rt.RunManifest.create(out_dir, "preprocess", cfg, input=str(root))
    rt.record_unreadable(manifest, listing, root)

    from laps_ray.actors.preprocess_actor import remote_worker

    res = cfg.resources
    n_actors = rt.default_num_actors(res.num_actors, res.cpus_per_actor, res.gpus_per_actor, len(videos))
    opts = rt.actor_options(res.cpus_per_actor, res.gpus_per_actor, res.max_retries)
    actors = [remote_worker(opts).remote(cfg) for _ in range(n_actors)]
    log.info(
        "%d videos, %d actors (%s)", len(videos), n_actors, {k: v for k, v in opts.items() if "num_" in k}
    )
    try:
        rt.wait_ready(actors, "preprocess")
        if cfg.check_only:
            return _check(cfg, videos, root, actors, manifest, t0)
        if cfg.split_seconds > 0:
            videos, root = _split(cfg, videos, root, out_dir, actors, manifest)
        return _track(cfg, videos, root, out_dir, actors, manifest, t0)
    except rt.ClusterLost as lost:
        keys = [_key(Path(_source_of(item)), root) for item in lost.unfinished]
        raise rt.ClusterLost.for_items(manifest, keys) from None
    finally:
        rt.kill_actors(actors)


def _source_of(item: Any) -> str:
    """The video path of a work item (a path, or a tuple whose first element is the path)."""
    return item[0] if isinstance(item, tuple) else item


def _track(cfg, videos, root, out_dir, actors, manifest, t0) -> PreprocessResult:
    todo, skipped = [], 0
    previous = _previous_items(out_dir)
    for v in videos:
        key = _key(v, root)
        out = output_path(out_dir, v, root)
        if not cfg.overwrite and _reusable(out, cfg):
            entry = dict(previous.get(key, {}))
            entry.update(status="done", output=str(out), skipped=True)
            manifest.items[key] = entry
            skipped += 1
        else:
            todo.append((str(v), str(out)))
    manifest.write()
    bar = rt.Progress(len(todo), "preprocess")
    for (source, _), rec in rt.map_unordered(actors, "process", todo):
        if isinstance(rec, Exception):  # the actor itself died beyond its retries
            rec = {"status": "failed", "reason": f"worker error: {type(rec).__name__}: {rec}"}
        manifest.record(_key(Path(source), root), rec)
        bar.update(f"{Path(source).name}: {rec['status']}")
    bar.close()
    manifest.write(finished=True)
    failed = {k: e.get("reason", "") for k, e in manifest.items.items() if e.get("status") != "done"}
    done = len(manifest.items) - len(failed)
    code = 1 if done == 0 or (cfg.strict and failed) else 0
    return PreprocessResult(out_dir, done, skipped, failed, time.time() - t0, code, manifest.items)


def _check(cfg, videos, root, actors, manifest, t0) -> PreprocessResult:
    bar = rt.Progress(len(videos), "check")
    for source, rec in rt.map_unordered(actors, "check", [str(v) for v in videos]):
        if isinstance(rec, Exception):
            rec = {"status": "broken", "reason": f"worker error: {rec}"}
        manifest.record(_key(Path(source), root), rec)
        bar.update()
    bar.close()
    manifest.write(finished=True)
    broken = {k: e.get("reason", "") for k, e in manifest.items.items() if e["status"] != "ok"}
    ok = len(manifest.items) - len(broken)
    code = 1 if cfg.strict and broken else 0
    return PreprocessResult(Path(cfg.output), ok, 0, broken, time.time() - t0, code, manifest.items, True)


def _split(cfg, videos, root, out_dir, actors, manifest) -> tuple[list[Path], Path]:
    chunk_root = out_dir / "chunks"
    items = []
    for v in videos:
        rel = v.relative_to(root) if root.is_dir() else Path(v.name)
        items.append((str(v), str(chunk_root / rel.parent), float(cfg.split_seconds)))
    chunks: list[Path] = []
    bar = rt.Progress(len(items), "split")
    for (source, _, _), rec in rt.map_unordered(actors, "split", items):
        if isinstance(rec, Exception) or rec["status"] != "done":
            reason = str(rec) if isinstance(rec, Exception) else rec["reason"]
            manifest.record(_key(Path(source), root), {"status": "failed", "reason": f"split: {reason}"})
        else:
            chunks.extend(Path(c) for c in rec["chunks"])
        bar.update()
    bar.close()
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


def _previous_items(out_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((out_dir / "run.json").read_text()).get("items", {})
    except (OSError, ValueError):
        return {}


def _remove_stale_temporaries(out_dir: Path) -> None:
    # Left by a killed run; their final names were never created, so deleting them loses nothing.
    for tmp in out_dir.rglob(f".*.tmp{SUFFIX}"):
        tmp.unlink(missing_ok=True)


def _key(video: Path, root: Path) -> str:
    return str(video.relative_to(root)) if root.is_dir() and video.is_relative_to(root) else video.name


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="laps preprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", help="video file or folder")
    parser.add_argument("--output", help="output folder for .h5 track files")
    parser.add_argument("--split-seconds", type=float, default=None, help="cut videos into chunks first")
    parser.add_argument("--check", action="store_true", help="only validate videos, list broken ones")
    parser.add_argument("--strict", action="store_true", help="exit non-zero if any video failed")
    parser.add_argument("--num-actors", type=int, default=None, help="actors (default: fill the cluster)")
    rt.add_config_args(parser)
    args = rt.parse_cli(parser, argv)
    flags = {
        "input": args.input,
        "output": args.output,
        "split_seconds": args.split_seconds,
        "check_only": args.check or None,
        "strict": args.strict or None,
        "resources.num_actors": args.num_actors,
    }

    def body() -> PreprocessResult:
        cfg = rt.parse_job_config(PreprocessJobConfig, args, flags)
        return run(cfg)  # validates the input and output before it starts Ray

    rt.job_main(body, summary)


if __name__ == "__main__":
    main()

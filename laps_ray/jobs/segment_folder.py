"""segment_folder: a folder of videos → action segments, clips, latent action codes and energies.

Local (starts or joins a Ray instance on this machine)::

    python -m laps_ray.jobs.segment_folder --input videos/ --output out/ segmentation.threshold=0.5

On a cluster (same command after ``--``)::

    ray job submit --working-dir . -- python -m laps_ray.jobs.segment_folder --input /data/videos \
        --output /data/out --report calib/report.json --report-key quantized.smoothed.best_f1.thr

Flags: ``--checkpoint DIR`` (tokenizer; default the shipped ``laps_ray/assets/tokenizer_small``),
``--report FILE --report-key KEY`` (threshold from a calibration report; a missing key is an error that
lists the keys the report has), ``--config FILE`` (e.g. ``configs/segment_folder.yaml`` or the
``best.yaml`` of sweep_thresholds, whose top-level ``energy:``/``segmentation:`` keys are this config's),
``--num-actors N``, ``--shard-seconds S`` (0 = one shard per video), ``--strict`` (exit 1 if any video
failed), ``--overwrite``, and ``key.sub=value`` overrides. The threshold is either fixed
(``segmentation.threshold``) or from a report, never both, never a silent default.

Work: the driver lists the videos, skips complete ones (``segments.json`` with the same checkpoint and
config digests), deletes partial ones, predicts each video's processed-frame timeline from packet
timestamps and cuts it into time shards of ``shard_seconds`` (shard boundaries on global window
starts, shards overlapping by one window; see ``laps_ray.pipeline.video_segments``). A pool of actors
(one tracker + tokenizer each; a GPU each only when the cluster has GPUs) runs the shards; when all
shards of a video are back, one actor merges them and runs smoothing, change points and the state
machine once for the video and writes its outputs (``segments.json`` last). Sharded and unsharded runs
write identical outputs. A failed video is recorded in ``run.json`` and the job goes on; a killed
actor is restarted by Ray and its call retried (outputs are atomic, shard files are rewritten whole).

Outputs: ``<out>/<stem>/{segments.json, energy.jsonl, energy.png, clips/, codes/}`` (formats in
``laps_ray.io.exports``), ``<out>/run.json`` (config, versions, checkpoint digest, per-video status,
timings, windows/s) and ``<out>/config.yaml``. Two inputs with the same stem get
``<relative/path>`` with ``/`` replaced by ``__`` as their folder name.

Driver metrics (``ray.util.metrics``, next to the actors' ones in ``laps_ray.actors.segment_actor``):
``laps_segment_videos_total`` (counter, tag ``status`` = ``done`` | ``failed``) and
``laps_segment_windows_per_second`` (gauge: windows computed / wall seconds of this run so far).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laps_ray.config import ResourcesConfig, check, to_dict, to_yaml
from laps_ray.core.energy import ENERGY_SOURCES, EnergyConfig
from laps_ray.core.gates import GateConfig
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.core.windows import DEFAULT_STRIDE, DEFAULT_T
from laps_ray.io import exports as ex
from laps_ray.io.atomic import write_text_atomic
from laps_ray.io.decode import DecodeConfig
from laps_ray.io.video import VideoError
from laps_ray.jobs import _runtime as rt
from laps_ray.tracking.base import TrackerConfig

if TYPE_CHECKING:
    from laps_ray.pipeline.video_segments import VideoContext

log = logging.getLogger("laps_ray.segment_folder")


@dataclass
class TokenizerRunConfig:
    """The tokenizer at inference.

    Attributes:
        checkpoint: checkpoint directory; "" = the shipped ``laps_ray/assets/tokenizer_small``.
        batch_size: rows of every tokenizer forward call (fixed: results do not depend on batching).
        device: ``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:K``.
        amp: fp16 autocast on CUDA.
    """

    checkpoint: str = ""
    batch_size: int = 32
    device: str = "auto"
    amp: bool = True

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")


@dataclass
class FaultInjectionConfig:
    """Test-only: make an actor process exit (``os._exit``) once, to test restart + retry for real.

    Attributes:
        crash_after_windows: crash after this many windows in one actor process (0 = never).
        marker: file created just before the crash; while it exists no actor crashes again.
    """

    crash_after_windows: int = 0
    marker: str = ""


@dataclass
class SegmentJobConfig:
    """Settings of the segment_folder job (``configs/segment_folder.yaml``)."""

    input: str = ""
    output: str = ""
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    export: ex.ExportConfig = field(default_factory=ex.ExportConfig)
    tokenizer: TokenizerRunConfig = field(default_factory=TokenizerRunConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    T: int = DEFAULT_T
    stride: int = DEFAULT_STRIDE
    batch_windows: int = 8
    shard_seconds: float = 60.0
    report: str = ""
    report_key: str = ""
    strict: bool = False
    overwrite: bool = False
    testing: FaultInjectionConfig = field(default_factory=FaultInjectionConfig)

    def __post_init__(self) -> None:
        check(self.T >= 2, "T", f"must be >= 2, got {self.T}")
        check(self.stride >= 1, "stride", f"must be >= 1, got {self.stride}")
        check(self.batch_windows >= 1, "batch_windows", f"must be >= 1, got {self.batch_windows}")
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


# ------------------------------------------------------------------------------------ resolution


def resolve_threshold(cfg: SegmentJobConfig) -> tuple[float, dict[str, Any]]:
    """The on-threshold and where it came from: ``segmentation.threshold`` or ``--report/--report-key``.

    Raises:
        ConfigError: neither or both given, or a report key for another energy source.
        laps_ray.io.reports.ReportError: unreadable report or missing key (lists the keys it has).
    """
    fixed = cfg.segmentation.threshold
    if cfg.report or cfg.report_key:
        check(bool(cfg.report), "report", "--report-key needs --report FILE")
        check(bool(cfg.report_key), "report_key", "--report needs --report-key KEY")
        check(
            fixed is None,
            "segmentation.threshold",
            f"is {fixed} and a report is given too (--report {cfg.report}); use one of them",
        )
        head = cfg.report_key.split(".")[0]
        check(
            head not in ENERGY_SOURCES or head == cfg.energy.source,
            "report_key",
            f"{cfg.report_key!r} is a threshold for {head!r} energy but energy.source is "
            f"{cfg.energy.source!r}",
        )
        from laps_ray.io.reports import read_report_threshold

        thr = read_report_threshold(cfg.report, cfg.report_key)
        return thr, {"source": "report", "report": str(Path(cfg.report).resolve()), "key": cfg.report_key}
    check(
        fixed is not None,
        "segmentation.threshold",
        "is not set: give a fixed threshold (segmentation.threshold=X) or --report FILE --report-key KEY",
    )
    return float(fixed), {"source": "fixed"}


def resolve_checkpoint(cfg: SegmentJobConfig) -> Path:
    """The tokenizer checkpoint directory (the shipped one by default); error naming the path if missing."""
    from laps_ray.actors.segment_actor import default_checkpoint

    path = Path(cfg.tokenizer.checkpoint) if cfg.tokenizer.checkpoint else default_checkpoint()
    if not (path / "model.safetensors").is_file() and not (path.is_file() and path.suffix == ".safetensors"):
        what = "the shipped default tokenizer checkpoint" if not cfg.tokenizer.checkpoint else "checkpoint"
        raise rt.JobError(
            f"{what} {path} is missing (no model.safetensors); train one with train_tokenizer or pass "
            "--checkpoint DIR"
        )
    return path


def _check_tokenizer(cfg: SegmentJobConfig, checkpoint: Path, load: bool = False) -> Any:
    """The checkpoint's tokenizer config, checked against the job's window and grid settings.

    With ``load`` the weights are loaded once on the CPU too (files, header, config against weights),
    so a checkpoint that cannot work stops the job here, before outputs are deleted or Ray starts.
    """
    from laps_ray.io.checkpoints import CheckpointError, load_tokenizer_config, verify_tokenizer

    try:
        tok = verify_tokenizer(checkpoint) if load else load_tokenizer_config(checkpoint)
    except CheckpointError as exc:
        raise rt.JobError(str(exc)) from exc
    check(tok.T == cfg.T, "T", f"is {cfg.T} but the tokenizer {checkpoint} was built for T={tok.T}")
    check(
        tok.num_points == cfg.tracker.grid**2,
        "tracker.grid",
        f"{cfg.tracker.grid} gives {cfg.tracker.grid**2} points; the tokenizer {checkpoint} takes "
        f"{tok.num_points}",
    )
    return tok


def segments_params(
    cfg: SegmentJobConfig, seg: SegmentationConfig, source: dict[str, Any], tok: Any
) -> dict[str, Any]:
    """The ``params`` block of every segments.json of this run."""
    return {
        "T": cfg.T,
        "stride": cfg.stride,
        "target_fps": cfg.decode.target_fps,
        "resize_shorter": cfg.decode.resize_shorter,
        "energy": to_dict(cfg.energy),
        "segmentation": {**to_dict(seg), "threshold_source": source},
        "gates": to_dict(cfg.gates),
        "tracker": {"name": cfg.tracker.name, "grid": cfg.tracker.grid},
        "tokenizer": {"name": tok.name, "codebook_size": tok.codebook_size, "hidden_dim": tok.hidden_dim},
        "codes_min_overlap": cfg.export.codes_min_overlap,
    }


def output_digest(cfg: SegmentJobConfig, params: dict[str, Any]) -> str:
    """Digest of every setting that changes a video's outputs (not paths, actors or shard size:
    sharded and unsharded runs produce the same files)."""
    relevant = {
        "params": params,
        "tracker": to_dict(cfg.tracker),
        "export": to_dict(cfg.export),
        "tokenizer": {"batch_size": cfg.tokenizer.batch_size, "amp": cfg.tokenizer.amp},
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def video_context(
    cfg: SegmentJobConfig,
    seg: SegmentationConfig,
    key: str,
    source: str,
    out_dir: str | Path,
    params: dict[str, Any],
    checkpoint_sha256: str,
    config_sha256: str,
    duration_sec: float | None = None,
) -> VideoContext:
    """The per-video output context of this job's settings (also ``stream``'s: same sections).

    Args:
        cfg: the job config (``energy``, ``export``, ``T``, ``stride``, ``decode.target_fps``).
        seg: ``cfg.segmentation`` with its threshold resolved.
        key, source, out_dir: the video's run.json key, input and output folder.
        params: :func:`segments_params`; checkpoint_sha256, config_sha256: provenance digests.
        duration_sec: ``video_duration_sec`` (None = from the timeline at the end).
    """
    from laps_ray.pipeline.video_segments import VideoContext

    return VideoContext(
        key=key,
        source=source,
        out_dir=str(out_dir),
        energy=cfg.energy,
        segmentation=seg,
        export=cfg.export,
        T=cfg.T,
        stride=cfg.stride,
        target_fps=cfg.decode.target_fps,
        params=params,
        checkpoint_sha256=checkpoint_sha256,
        config_sha256=config_sha256,
        duration_sec=duration_sec,
    )


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


def _key(video: Path, root: Path) -> str:
    return str(video.relative_to(root)) if root.is_dir() and video.is_relative_to(root) else video.name


# -------------------------------------------------------------------------------------------- run


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


class _DriverMetrics:
    def __init__(self) -> None:
        from ray.util.metrics import Counter, Gauge

        self.videos = Counter(
            "laps_segment_videos_total", description="videos finished by segment_folder", tag_keys=("status",)
        )
        self.windows_per_second = Gauge(
            "laps_segment_windows_per_second", description="windows computed per wall second of the run"
        )


def run(cfg: SegmentJobConfig) -> SegmentResult:
    """Validate everything, then start (or join) Ray and run the job (see module docstring).

    Raises:
        JobError, ConfigError: a bad threshold, checkpoint, input or output — before Ray starts and
            before any existing output is touched.
    """
    check(bool(cfg.input), "input", "is required (--input DIR_OR_FILE)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    t0 = time.time()
    threshold, source = resolve_threshold(cfg)  # before any work: a bad report key stops here
    checkpoint = resolve_checkpoint(cfg)
    tok = _check_tokenizer(cfg, checkpoint, load=True)
    from laps_ray.io.checkpoints import checkpoint_sha256

    ckpt_sha = checkpoint_sha256(checkpoint)
    seg = replace(cfg.segmentation, threshold=threshold)
    params = segments_params(cfg, seg, source, tok)
    cfg_sha = output_digest(cfg, params)

    root = Path(cfg.input)
    listing = rt.list_inputs(root, cfg.decode.exts, cfg.decode.recursive)
    videos = listing.videos
    out_dir = rt.prepare_output_dir(cfg.output)
    rt.init_ray()
    write_text_atomic(out_dir / "config.yaml", to_yaml(replace(cfg, segmentation=seg)))
    manifest = rt.RunManifest.create(
        out_dir,
        "segment_folder",
        replace(cfg, segmentation=seg),
        input=str(root),
        checkpoint=str(checkpoint),
        checkpoint_sha256=ckpt_sha,
        config_sha256=cfg_sha,
        threshold={"value": threshold, **source},
    )
    rt.record_unreadable(manifest, listing, root)
    names = output_names(videos, root)

    from laps_ray.pipeline import video_segments as vs

    todo: list[_Video] = []
    skipped = 0
    previous = _previous_items(out_dir)
    for v in videos:
        key, vdir = _key(v, root), out_dir / names[v]
        if not cfg.overwrite and ex.is_complete(vdir, ckpt_sha, cfg_sha):
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

    per_shard = vs.windows_per_shard(cfg.shard_seconds, cfg.decode.target_fps, cfg.stride)
    planned: list[_Video] = []
    for video in todo:
        try:
            video.plan = vs.plan_timeline(video.source, cfg.decode.target_fps)
        except VideoError as exc:
            _clear(video)  # nothing of a failed video is kept (a stale energy.jsonl would feed calibration)
            manifest.record(video.key, {"status": "failed", "reason": exc.reason})
            continue
        video.specs = _shards(video, video.plan, per_shard, cfg)
        planned.append(video)

    windows_total = 0
    try:
        if planned:
            windows_total = _execute(cfg, planned, checkpoint, params, seg, ckpt_sha, cfg_sha, manifest, t0)
    finally:
        manifest.extra.update(
            windows=windows_total,
            windows_per_second=round(windows_total / max(time.time() - t0, 1e-9), 3),
        )
        manifest.write(finished=True)
    failed = {k: e.get("reason", "") for k, e in manifest.items.items() if e.get("status") != "done"}
    done = len(manifest.items) - len(failed)
    code = 1 if done == 0 or (cfg.strict and failed) else 0
    return SegmentResult(
        out_dir, done, skipped, failed, windows_total, time.time() - t0, code, manifest.items
    )


def _clear(video: _Video) -> None:
    """Delete a video's previous (partial, stale or --overwrite) outputs: only right before the
    video is recomputed, so a job that stops early leaves every other video's outputs as they were."""
    if not video.cleared:
        video.cleared = True
        if video.out_dir.exists():
            shutil.rmtree(video.out_dir)


def _shards(video: _Video, plan: Any, per_shard: int, cfg: SegmentJobConfig) -> list:
    from laps_ray.pipeline import video_segments as vs

    return vs.make_shards(
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


def _execute(cfg, videos, checkpoint, params, seg, ckpt_sha, cfg_sha, manifest, t0) -> int:
    """Run every shard and every per-video finalize on an actor pool; returns windows computed."""
    import ray

    from laps_ray.actors.segment_actor import default_checkpoint, remote_worker
    from laps_ray.pipeline import video_segments as vs

    res = cfg.resources
    n_items = sum(len(v.specs) for v in videos)
    n_actors = rt.default_num_actors(res.num_actors, res.cpus_per_actor, res.gpus_per_actor, n_items)
    opts = rt.actor_options(res.cpus_per_actor, res.gpus_per_actor, res.max_retries)
    # The shipped checkpoint is resolved by each actor on its own copy of the package.
    ckpt_arg = None if checkpoint == default_checkpoint() else str(checkpoint.resolve())
    actors = [remote_worker(opts).remote(cfg, ckpt_arg) for _ in range(n_actors)]
    log.info(
        "%d videos, %d shards, %d actors (%s)",
        len(videos),
        n_items,
        n_actors,
        {k: v for k, v in opts.items() if k.startswith("num_")},
    )
    t_start = time.time()
    rt.wait_ready(actors, "segment")  # weights load once per actor; a load error stops the job here
    t_ready = time.time()
    manifest.extra.update(actors=n_actors, startup_seconds=round(t_ready - t_start, 3))
    metrics = _DriverMetrics()
    by_key = {v.key: v for v in videos}
    queue: deque[tuple[str, Any]] = deque(("shard", s) for v in videos for s in v.specs)
    for v in videos:
        v.outstanding = len(v.specs)
    pending: dict[Any, tuple[str, Any, Any]] = {}
    free = list(actors)
    bar = rt.Progress(len(videos), "segment_folder")
    windows = replacements = 0

    def close(video: _Video, record: dict[str, Any]) -> None:
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
        manifest.record(video.key, record)
        metrics.videos.inc(tags={"status": record["status"]})
        bar.update(f"{video.source.name}: {record['status']}")

    try:
        while queue or pending:
            while queue and free:
                kind, item = queue.popleft()
                actor = free.pop(0)
                if kind == "shard":
                    _clear(by_key[item.key])  # first shard of a video: its old outputs go now
                    ref = actor.process_shard.remote(item)
                else:
                    video = by_key[item]
                    ctx = video_context(
                        cfg,
                        seg,
                        video.key,
                        str(video.source),
                        video.out_dir,
                        params,
                        ckpt_sha,
                        cfg_sha,
                        duration_sec=vs.video_duration(video.plan),
                    )
                    results = [video.results[k] for k in sorted(video.results)]
                    ref = actor.finalize.remote(results, video.plan, ctx)
                pending[ref] = (kind, item, actor)
            if not pending:  # every actor died for good: nothing can run the rest
                stranded = {(item.key if kind == "shard" else item) for kind, item in queue}
                for key in sorted(stranded):
                    reason = by_key[key].failed or "no worker left (actors kept dying)"
                    close(by_key[key], {"status": "failed", "reason": reason})
                break
            [ref], _ = ray.wait(list(pending), num_returns=1)
            kind, item, actor = pending.pop(ref)
            try:
                out = ray.get(ref)
                free.append(actor)
            except ray.exceptions.RayActorError as exc:  # died beyond its restarts: replace it
                if not rt.cluster_alive():
                    lost = {(i.key if k == "shard" else i) for k, i, _ in pending.values()}
                    lost |= {(i.key if k == "shard" else i) for k, i in queue}
                    lost.add(item.key if kind == "shard" else item)
                    raise rt.ClusterLost.for_items(manifest, sorted(lost), bar) from exc
                out = {"status": "failed", "reason": f"worker died: {type(exc).__name__}"}
                log.error("an actor died and could not be restarted: %s", exc)
                if replacements < n_actors:
                    replacements += 1
                    actors.append(remote_worker(opts).remote(cfg, ckpt_arg))
                    free.append(actors[-1])
            except ray.exceptions.RayError as exc:
                out = {"status": "failed", "reason": f"worker error: {type(exc).__name__}: {exc}"}
                free.append(actor)

            if kind == "finalize":
                video = by_key[item]
                close(video, out)
                continue
            video = by_key[item.key]
            video.outstanding -= 1
            if isinstance(out, vs.ShardResult):
                video.results[out.shard] = out
                video.compute_seconds += out.seconds
                windows += out.num_windows
                metrics.windows_per_second.set(windows / max(time.time() - t0, 1e-9))
            elif out.get("status") == "mismatch" and not video.fallback_done:
                video.mismatch = True
            elif video.failed is None:
                video.failed = str(out.get("reason", "unknown error"))
            if video.outstanding:
                continue
            if video.failed is not None:
                close(video, {"status": "failed", "reason": video.failed})
            elif video.mismatch and not video.fallback_done:
                # Variable frame rate or damaged packets: the plan cannot place shards; redo unsharded.
                log.info("%s: frames differ from the planned timeline; processing it as one shard", video.key)
                shutil.rmtree(video.out_dir / ex.WORK_DIR, ignore_errors=True)
                video.fallback_done, video.results = True, {}
                video.specs = _shards(video, None, 0, cfg)
                video.outstanding = len(video.specs)
                queue.extendleft(("shard", s) for s in reversed(video.specs))
            else:
                queue.appendleft(("finalize", video.key))  # outputs early, before more shards
    finally:
        bar.close()
        rt.kill_actors(actors)
    processing = time.time() - t_ready
    manifest.extra.update(
        processing_seconds=round(processing, 3),
        processing_windows_per_second=round(windows / max(processing, 1e-9), 3),
    )
    return windows


def _previous_items(out_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((out_dir / "run.json").read_text()).get("items", {})
    except (OSError, ValueError):
        return {}


def summary(r: SegmentResult) -> str:
    """The one-line summary (plus one line per failed video)."""
    wps = r.windows / max(r.seconds, 1e-9)
    head = (
        f"segment_folder: {r.done} done ({r.skipped} skipped), {len(r.failed)} failed; {r.windows} windows "
        f"in {r.seconds:.1f}s ({wps:.1f} windows/s) -> {r.output} (run.json)"
    )
    return "\n".join([head] + [f"  failed: {k}: {why}" for k, why in sorted(r.failed.items())])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="laps segment_folder", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", help="video file or folder")
    parser.add_argument("--output", help="output folder")
    parser.add_argument("--checkpoint", help="tokenizer checkpoint dir (default: the shipped one)")
    parser.add_argument("--report", help="calibration report (JSON) to read the threshold from")
    parser.add_argument(
        "--report-key", help="dotted key of the threshold, e.g. quantized.smoothed.best_f1.thr"
    )
    parser.add_argument("--num-actors", type=int, default=None, help="actors (default: fill the cluster)")
    parser.add_argument("--shard-seconds", type=float, default=None, help="time shard length (0 = none)")
    parser.add_argument("--strict", action="store_true", help="exit non-zero if any video failed")
    parser.add_argument("--overwrite", action="store_true", help="redo complete videos too")
    rt.add_config_args(parser)
    args = rt.parse_cli(parser, argv)
    flags = {
        "input": args.input,
        "output": args.output,
        "tokenizer.checkpoint": args.checkpoint,
        "report": args.report,
        "report_key": args.report_key,
        "resources.num_actors": args.num_actors,
        "shard_seconds": args.shard_seconds,
        "strict": args.strict or None,
        "overwrite": args.overwrite or None,
    }

    def body() -> SegmentResult:
        cfg = rt.parse_job_config(SegmentJobConfig, args, flags)
        return run(cfg)  # validates everything before it starts Ray

    rt.job_main(body, summary)


if __name__ == "__main__":
    main()

"""stream: live segmentation of a camera, an RTSP/HTTP stream or a file, window by window.

Local (one process, no Ray needed: a live source is one stream)::

    python -m laps_ray.jobs.stream --source rtsp://camera.local/stream1 --output out/ \
        --report calib/report.json --report-key quantized.smoothed.best_f1.thr
    python -m laps_ray.jobs.stream --source video.mp4 --output out/ --realtime segmentation.threshold=0.5

On a cluster (a plain entrypoint; it does not need ``ray.init``)::

    ray job submit --working-dir . -- python -m laps_ray.jobs.stream --source rtsp://... --output /data/out

Flags: ``--source`` (``rtsp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``/dev/videoN`` or a file),
``--output DIR``, ``--checkpoint DIR`` (default: the shipped tokenizer), ``--report FILE --report-key KEY``
or ``segmentation.threshold=X`` (exactly one, as ``segment_folder``), ``--realtime`` (pace a file like a
camera: frames released at their timestamps, windows dropped when compute falls behind),
``--max-seconds S`` (stop after S seconds of video), ``--name NAME`` (output folder name),
``--overwrite``, ``--clusters RUN_DIR`` (a ``cluster`` run: each segment is assigned to its fitted
clusters as it closes — ``cluster``, ``cluster_confidence``, ``cluster_outlier`` in segments.json),
``--config FILE`` (``configs/stream.yaml``) and ``key.sub=value`` overrides.

Outputs: ``<output>/<name>/`` with segment_folder's layout (``segments.json``, ``energy.jsonl`` with every
window id once — dropped ones flagged ``"dropped": true`` —, ``clips/``, ``codes/``, ``energy.png``,
``timeline.npz``),
``<output>/config.yaml`` and ``<output>/run.json`` whose ``stream`` block has windows computed and
dropped (with their true ids), reconnects, per-window latency p50/p95/max and the budget ok-ratio.
``name`` is the file's stem, or the URL's host/port/path (``/dev/video0`` -> ``video0``).

Stopping: Ctrl-C (SIGINT) or SIGTERM (``ray job stop``, ``docker stop``, ``kill``) ends the stream
gracefully: the windows already read are computed, the open segment is closed with its clip and codes
sidecar, every output is written, then the process exits with **0 after SIGTERM** (a requested stop is a
normal end) and **130 after SIGINT** (the shell's convention for an interrupted command). A second
SIGINT aborts at once (outputs in progress are discarded; finished files stay). Exit 1: the source
could not be read, failed mid-way, or a live source was lost for good after ``stream.reconnect.max_retries``
attempts (outputs up to that point are complete). Exit 2: a configuration error.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from laps_ray.config import check
from laps_ray.io import exports as ex
from laps_ray.io.atomic import prepare_output_dir
from laps_ray.io.run_manifest import RunManifest
from laps_ray.io.video import VideoError
from laps_ray.jobs import _cli as cli
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import Flag, run_job
from laps_ray.pipeline.config import PipelineConfig
from laps_ray.pipeline.live import LiveConfig, LiveSummary, is_live_source, redact, source_name
from laps_ray.pipeline.resolve import resolve_run, video_context

log = logging.getLogger("laps_ray.stream")


@dataclass
class StreamJobConfig(PipelineConfig):
    """Settings of the stream job (``configs/stream.yaml``): the pipeline's sections (the meaning and
    defaults of ``segment_folder``'s, so the same settings give the same windows, energies and
    segments) plus ``stream`` and the job's own keys."""

    source: str = ""
    output: str = ""
    name: str = ""
    report: str = ""
    report_key: str = ""
    overwrite: bool = False
    clusters: str = ""
    stream: LiveConfig = field(default_factory=LiveConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check("/" not in self.name and self.name not in (".", ".."), "name", f"bad folder name {self.name!r}")


@dataclass
class StreamResult:
    output: Path
    summary: LiveSummary
    signal: str | None = None
    exit_code: int = 0


def run(
    cfg: StreamJobConfig,
    stop: threading.Event | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> StreamResult:
    """Run one stream to its end (source end, ``max_seconds``, or ``stop`` set); no Ray needed.

    ``on_progress`` is called after every compute iteration with counters (``windows``, ``dropped``,
    ``reconnects``, ...).

    Raises:
        ConfigError: bad settings (threshold neither fixed nor from a report, T/grid vs tokenizer, ...).
        laps_ray.jobs._runtime.JobError: missing checkpoint, existing outputs without ``overwrite``,
            or a source that delivered no video.
    """
    check(bool(cfg.source), "source", "is required (--source URL|/dev/videoN|FILE)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    resolved = resolve_run(cfg, cfg.report, cfg.report_key, load=False)  # the processor loads it below
    cfg = replace(cfg, segmentation=resolved.segmentation)
    assigner = None
    if cfg.clusters:  # a bad cluster model fails here, before anything is deleted
        from laps_ray.pipeline.cluster_assignment import SegmentAssigner, check_cluster_model

        assigner = SegmentAssigner(check_cluster_model(cfg.clusters))

    from laps_ray.pipeline.live import run_live
    from laps_ray.pipeline.window_processor import WindowProcessor

    # Built before anything is deleted: a checkpoint that cannot load leaves earlier outputs alone.
    processor = WindowProcessor.from_config(
        resolved.pipeline, resolved.checkpoint, num_threads=cfg.stream.torch_threads
    )
    out_dir = prepare_output_dir(cfg.output)
    name = cfg.name or source_name(cfg.source)
    vdir = out_dir / name
    if (vdir / ex.SEGMENTS_FILE).exists() and not cfg.overwrite:
        raise rt.JobError(f"{vdir} already holds outputs of a stream; use --overwrite, --output or --name")
    if vdir.exists():
        shutil.rmtree(vdir)  # partial outputs of a killed run, or --overwrite
    manifest = RunManifest.create(
        out_dir,
        "stream",
        cfg,
        source=redact(cfg.source),
        checkpoint=str(resolved.checkpoint),
        checkpoint_sha256=resolved.checkpoint_sha256,
        config_sha256=resolved.config_sha256,
        threshold={"value": resolved.segmentation.threshold, **resolved.threshold_source},
    )
    live = is_live_source(cfg.source)
    ctx = video_context(resolved, name, cfg.source, vdir)
    video_name = name if live else Path(cfg.source).name
    try:
        summary = run_live(processor, ctx, cfg.decode, cfg.stream, video_name, stop, on_progress, assigner)
    except VideoError as exc:
        manifest.record(name, {"status": "failed", "reason": exc.reason})
        manifest.write(finished=True)
        raise rt.JobError(f"{redact(cfg.source)}: {exc.reason}") from exc
    record = summary.record()
    manifest.extra["stream"] = {k: v for k, v in record.items() if k not in ("source", "output", "status")}
    doc = ex.read_segments_json(vdir / ex.SEGMENTS_FILE) or {}
    used = (doc.get("params") or {}).get("segmentation", {})
    if "threshold" in used:  # `auto` was calibrated on the warm-up: record the value it got
        manifest.extra["threshold"] = {"value": used["threshold"], **used.get("threshold_source", {})}
    status = summary.status
    if status == "done" and doc.get("reliable") is False:
        status, summary.error = "unreliable", doc.get("unreliable_reason") or "unreliable"
    manifest.record(name, {"status": status, "output": str(vdir), "reason": summary.error})
    manifest.write(finished=True)
    code = 1 if summary.status != "done" else 0
    return StreamResult(out_dir, summary, exit_code=code)


def summary(r: StreamResult) -> str:
    """The one-line summary."""
    s = r.summary
    lat = s.latency_ms
    head = (
        f"stream: {s.windows} windows ({s.computed} computed, {s.dropped} dropped, {s.gap_windows} gap), "
        f"{s.segments} segments, {s.reconnects} reconnects, latency p50 {lat['p50']} ms p95 {lat['p95']} ms "
        f"(budget {s.budget_s * 1000:.0f} ms), ended: {s.end_reason} -> {s.output} (run.json in {r.output})"
    )
    return head if not s.error else f"{head}\n  error: {s.error}"


class _Stopper:
    """SIGINT/SIGTERM -> a graceful stop (first signal); a second SIGINT aborts at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.event.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            log.warning("%s again: still finishing the outputs", name)
            return
        log.warning("%s: stopping the stream; closing the open segment and writing the outputs", name)
        self.signal = name
        self.event.set()

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_until_signalled(cfg: StreamJobConfig) -> StreamResult:
    """:func:`run` with SIGINT/SIGTERM turned into a graceful stop (exit 130 after SIGINT)."""
    with _Stopper() as stopper:
        result = run(cfg, stopper.event)
    result.signal = stopper.signal
    if stopper.signal == "SIGINT" and result.exit_code == 0:
        result.exit_code = 130
    return result


FLAGS = (
    Flag("--source", "source", "rtsp://... | http://... | /dev/videoN | video file"),
    cli.OUTPUT,
    Flag("--name", "name", "output sub-folder name (default: from the source)"),
    cli.CHECKPOINT,
    cli.REPORT,
    cli.REPORT_KEY,
    Flag("--realtime", "stream.realtime", "pace a file like a camera (drops allowed)", switch=True),
    Flag("--max-seconds", "stream.max_seconds", "stop after S seconds of video", type=float),
    cli.OVERWRITE,
    cli.CLUSTERS,
)


def main(argv: list[str] | None = None) -> None:
    run_job("stream", __doc__, FLAGS, StreamJobConfig, run_until_signalled, summary, argv)


if __name__ == "__main__":
    main()

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
``--overwrite``, ``--config FILE`` (``configs/stream.yaml``) and ``key.sub=value`` overrides.

Outputs: ``<output>/<name>/`` with segment_folder's layout (``segments.json``, ``energy.jsonl`` with every
window id once — dropped ones flagged ``"dropped": true`` —, ``clips/``, ``codes/``, ``energy.png``),
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

import argparse
import logging
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from laps_ray.config import check, to_yaml
from laps_ray.core.energy import EnergyConfig
from laps_ray.core.gates import GateConfig
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.core.windows import DEFAULT_STRIDE, DEFAULT_T
from laps_ray.io import exports as ex
from laps_ray.io.atomic import write_text_atomic
from laps_ray.io.decode import DecodeConfig
from laps_ray.io.video import VideoError
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs import segment_folder as sf
from laps_ray.pipeline.live import LiveConfig, LiveSummary, is_live_source, redact, source_name
from laps_ray.tracking.base import TrackerConfig

log = logging.getLogger("laps_ray.stream")


@dataclass
class StreamJobConfig:
    """Settings of the stream job (``configs/stream.yaml``).

    Every section except ``stream`` has the meaning (and the defaults) of ``segment_folder``'s, so the
    same settings give the same windows, energies and segments.
    """

    source: str = ""
    output: str = ""
    name: str = ""
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    export: ex.ExportConfig = field(default_factory=ex.ExportConfig)
    tokenizer: sf.TokenizerRunConfig = field(default_factory=sf.TokenizerRunConfig)
    T: int = DEFAULT_T
    stride: int = DEFAULT_STRIDE
    report: str = ""
    report_key: str = ""
    overwrite: bool = False
    stream: LiveConfig = field(default_factory=LiveConfig)

    def __post_init__(self) -> None:
        check(self.T >= 2, "T", f"must be >= 2, got {self.T}")
        check(self.stride >= 1, "stride", f"must be >= 1, got {self.stride}")
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
    threshold, thr_source = sf.resolve_threshold(cfg)
    checkpoint = sf.resolve_checkpoint(cfg)
    seg = replace(cfg.segmentation, threshold=threshold)
    cfg = replace(cfg, segmentation=seg)

    out_dir = Path(cfg.output)
    name = cfg.name or source_name(cfg.source)
    vdir = out_dir / name
    if (vdir / ex.SEGMENTS_FILE).exists() and not cfg.overwrite:
        raise rt.JobError(f"{vdir} already holds outputs of a stream; use --overwrite, --output or --name")
    if vdir.exists():
        shutil.rmtree(vdir)  # partial outputs of a killed run, or --overwrite

    from laps_ray.io.checkpoints import checkpoint_sha256
    from laps_ray.pipeline.live import run_live
    from laps_ray.pipeline.window_processor import WindowProcessor

    try:
        processor = WindowProcessor.from_job_config(cfg, checkpoint, num_threads=cfg.stream.torch_threads)
    except ValueError as exc:  # tokenizer and T/grid do not fit: names the keys
        raise rt.JobError(str(exc)) from exc
    params = sf.segments_params(cfg, seg, thr_source, processor.tokenizer_config)
    ckpt_sha = checkpoint_sha256(checkpoint)
    cfg_sha = sf.output_digest(cfg, params)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.yaml", to_yaml(cfg))
    manifest = rt.RunManifest.create(
        out_dir,
        "stream",
        cfg,
        source=redact(cfg.source),
        checkpoint=str(checkpoint),
        checkpoint_sha256=ckpt_sha,
        config_sha256=cfg_sha,
        threshold={"value": threshold, **thr_source},
    )
    live = is_live_source(cfg.source)
    ctx = sf.video_context(cfg, seg, name, cfg.source, vdir, params, ckpt_sha, cfg_sha)
    video_name = name if live else Path(cfg.source).name
    try:
        summary = run_live(processor, ctx, cfg.decode, cfg.stream, video_name, stop, on_progress)
    except VideoError as exc:
        manifest.record(name, {"status": "failed", "reason": exc.reason})
        manifest.write(finished=True)
        raise rt.JobError(f"{redact(cfg.source)}: {exc.reason}") from exc
    record = summary.record()
    manifest.extra["stream"] = {k: v for k, v in record.items() if k not in ("source", "output", "status")}
    manifest.record(name, {"status": summary.status, "output": str(vdir), "reason": summary.error})
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="laps stream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="rtsp://... | http://... | /dev/videoN | video file")
    parser.add_argument("--output", help="output folder")
    parser.add_argument("--name", help="output sub-folder name (default: from the source)")
    parser.add_argument("--checkpoint", help="tokenizer checkpoint dir (default: the shipped one)")
    parser.add_argument("--report", help="calibration report (JSON) to read the threshold from")
    parser.add_argument("--report-key", help="dotted key of the threshold in the report")
    parser.add_argument("--realtime", action="store_true", help="pace a file like a camera (drops allowed)")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop after S seconds of video")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs of this name")
    rt.add_config_args(parser)
    args = rt.parse_cli(parser, argv)
    flags = {
        "source": args.source,
        "output": args.output,
        "name": args.name,
        "tokenizer.checkpoint": args.checkpoint,
        "report": args.report,
        "report_key": args.report_key,
        "stream.realtime": args.realtime or None,
        "stream.max_seconds": args.max_seconds,
        "overwrite": args.overwrite or None,
    }

    def body() -> StreamResult:
        cfg = rt.parse_job_config(StreamJobConfig, args, flags)
        with _Stopper() as stopper:
            result = run(cfg, stopper.event)
        result.signal = stopper.signal
        if stopper.signal == "SIGINT" and result.exit_code == 0:
            result.exit_code = 130
        return result

    rt.job_main(body, summary)


if __name__ == "__main__":
    main()

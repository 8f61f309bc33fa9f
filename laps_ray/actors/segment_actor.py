"""Ray actor for segment_folder: holds tracker + tokenizer once, runs time shards and per-video exports.

Thin by design: the work is :func:`laps_ray.pipeline.shard_run.run_shard` and
:func:`laps_ray.pipeline.outputs.finalize_video`; this class loads the weights once, turns
errors into plain records (a bad video never kills the actor) and records the actor-side metrics.

Metrics (``ray.util.metrics``; Prometheus names get Ray's ``ray_`` prefix on the metrics endpoint):

* ``laps_segment_windows_total`` (counter, tag ``gate`` = ``none`` | ``pre`` | ``motion``): windows
  computed; the gated ratio over any period is ``sum(gate!="none") / sum(all)``.
* ``laps_segment_actor_windows_per_second`` (gauge): throughput of this actor's last shard.
* ``laps_segment_gated_ratio`` (gauge): fraction of gated windows in this actor's last shard.

And the driver's (:class:`SegmentJobMetrics`, recorded by ``segment_folder``):

* ``laps_segment_videos_total`` (counter, tag ``status`` = ``done`` | ``failed``).
* ``laps_segment_windows_per_second`` (gauge): windows computed / wall seconds of the run so far.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any

from laps_ray.io.video import VideoError
from laps_ray.pipeline.config import PipelineConfig
from laps_ray.pipeline.merge import merge_shards
from laps_ray.pipeline.outputs import VideoContext, finalize_video
from laps_ray.pipeline.resolve import default_checkpoint
from laps_ray.pipeline.shard_run import GATE_NAMES, ShardMismatch, ShardResult, run_shard
from laps_ray.pipeline.shards import ShardSpec, TimelinePlan

log = logging.getLogger(__name__)


class _ActorMetrics:
    def __init__(self) -> None:
        from ray.util.metrics import Counter, Gauge

        self.windows = Counter(
            "laps_segment_windows_total", description="windows computed by segment actors", tag_keys=("gate",)
        )
        self.windows_per_second = Gauge(
            "laps_segment_actor_windows_per_second", description="windows/s of the actor's last shard"
        )
        self.gated_ratio = Gauge("laps_segment_gated_ratio", description="gated fraction of the last shard")

    def record(self, result: ShardResult) -> None:
        n = result.num_windows
        for code, name in enumerate(GATE_NAMES):
            k = int((result.gate == code).sum())
            if k:
                self.windows.inc(k, tags={"gate": name or "none"})
        if result.seconds > 0:
            self.windows_per_second.set(n / result.seconds)
        if n:
            self.gated_ratio.set(float((result.gate != 0).mean()))


@dataclass
class FaultInjectionConfig:
    """Test-only: make an actor process exit (``os._exit``) once, to test restart + retry for real.

    Attributes:
        crash_after_windows: crash after this many windows in one actor process (0 = never).
        marker: file created just before the crash; while it exists no actor crashes again.
    """

    crash_after_windows: int = 0
    marker: str = ""


class SegmentJobMetrics:
    """The segment_folder driver's metrics (see the module docstring)."""

    def __init__(self) -> None:
        from ray.util.metrics import Counter, Gauge

        self.videos = Counter(
            "laps_segment_videos_total", description="videos finished by segment_folder", tag_keys=("status",)
        )
        self.windows_per_second = Gauge(
            "laps_segment_windows_per_second", description="windows computed per wall second of the run"
        )


class SegmentWorker:
    """One tracker + tokenizer; every method returns a plain record and never raises for bad input.

    Args:
        pipeline: the pipeline settings (threshold resolved).
        checkpoint: tokenizer checkpoint directory; None = the shipped default (resolved here, on
            the worker's own copy of the package, so it works with ``ray job submit --working-dir``).
        cpus: CPUs reserved for this actor (its torch/OpenCV thread budget).
        testing: the test-only crash hook.
    """

    def __init__(
        self,
        pipeline: PipelineConfig,
        checkpoint: str | None,
        cpus: float = 1.0,
        testing: FaultInjectionConfig | None = None,
    ) -> None:
        from laps_ray.pipeline.window_processor import WindowProcessor

        self.pipeline = pipeline
        self.testing = testing or FaultInjectionConfig()
        self.processor = None
        self.error: str | None = None
        ckpt = checkpoint or str(default_checkpoint())
        try:
            self.processor = WindowProcessor.from_config(pipeline, ckpt, num_threads=max(1, int(cpus)))
        except Exception as exc:  # noqa: BLE001 - reported by ready(): a load that failed is not retried
            log.error("cannot load the tokenizer or tracker: %s", traceback.format_exc())
            self.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
        self.metrics = _ActorMetrics()
        self._windows_in_process = 0  # for the test-only crash hook

    def ready(self) -> str | None:
        """None when the weights are loaded, else why they could not be (the driver stops the job)."""
        return self.error

    def process_shard(self, spec: ShardSpec) -> ShardResult | dict[str, Any]:
        """Run one shard: a :class:`ShardResult`, or ``{"status": "failed"|"mismatch", "reason"}``."""
        t0 = time.perf_counter()
        try:
            result = run_shard(self.processor, spec, self.pipeline.batch_windows, self._on_window)
        except VideoError as exc:
            return {"status": "failed", "reason": exc.reason, "seconds": round(time.perf_counter() - t0, 3)}
        except ShardMismatch as exc:
            return {"status": "mismatch", "reason": str(exc)}
        except Exception as exc:  # noqa: BLE001 - one bad video never stops the job
            log.error("%s shard %d: %s", spec.source, spec.shard, traceback.format_exc())
            return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        self.metrics.record(result)
        return result

    def finalize(
        self, results: list[ShardResult], plan: TimelinePlan | None, ctx: VideoContext
    ) -> dict[str, Any]:
        """Merge a video's shards, segment it and write its outputs: a run.json record."""
        try:
            vw = merge_shards(results, plan, ctx.T, ctx.stride)
            return finalize_video(vw, ctx)
        except VideoError as exc:
            return {"status": "failed", "reason": f"export: {exc.reason}"}
        except Exception as exc:  # noqa: BLE001 - reported per video, the job goes on
            log.error("%s: %s", ctx.source, traceback.format_exc())
            return {"status": "failed", "reason": f"export: {type(exc).__name__}: {exc}"}

    def _on_window(self, _done_in_shard: int) -> None:
        self._windows_in_process += 1
        fi = self.testing
        if fi.crash_after_windows and self._windows_in_process >= fi.crash_after_windows and fi.marker:
            try:  # the marker makes it crash once per run, not on every restart
                fd = os.open(fi.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            log.warning("testing.crash_after_windows: killing this actor process now")
            os._exit(1)

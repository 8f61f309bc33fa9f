"""One video end to end in this process, without Ray (tests, benchmarks, demos): plan, every shard,
merge and finalize, with the same fallback to one unsharded shard as ``segment_folder``."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from laps_ray.core.auto_threshold import is_auto
from laps_ray.io import exports as ex
from laps_ray.pipeline.auto_calibration import calibrate, series_from_shards, threshold_record
from laps_ray.pipeline.merge import merge_shards
from laps_ray.pipeline.outputs import VideoContext, finalize_video, with_threshold
from laps_ray.pipeline.shard_run import ShardMismatch, run_shard
from laps_ray.pipeline.shards import make_shards, plan_timeline, video_duration
from laps_ray.pipeline.window_processor import WindowProcessor

log = logging.getLogger(__name__)


def process_video_local(
    processor: WindowProcessor,
    ctx: VideoContext,
    per_shard: int = 0,
    batch_windows: int = 8,
    resize_shorter: int = 0,
) -> dict[str, Any]:
    """Plan, run every shard in this process, and finalize one video (no Ray: tests, benchmarks, demos).

    Args:
        processor: holds tracker + tokenizer.
        ctx: the video and its output settings; ``duration_sec`` None = from the plan; a threshold
            ``auto`` is calibrated on the video's own windows (``segment_folder``'s ``scope: video``).
        per_shard: windows per shard (0 = one shard), to exercise sharding without actors.
        batch_windows: windows per processor call.
        resize_shorter: shorter side of the processed frame in pixels (0 = keep).

    Returns:
        :func:`~laps_ray.pipeline.outputs.finalize_video`'s run.json record.

    Raises:
        VideoError: unreadable input.
    """
    plan = plan_timeline(ctx.source, ctx.target_fps)
    work = Path(ctx.out_dir) / ex.WORK_DIR
    specs = make_shards(
        ctx.key, ctx.source, work, plan, ctx.T, ctx.stride, per_shard, ctx.target_fps, resize_shorter
    )
    try:
        results = [run_shard(processor, s, batch_windows) for s in specs]
    except ShardMismatch:
        log.info("%s: timeline differs from the plan; processing it as one shard", ctx.source)
        specs = make_shards(
            ctx.key, ctx.source, work, None, ctx.T, ctx.stride, 0, ctx.target_fps, resize_shorter
        )
        results = [run_shard(processor, s, batch_windows) for s in specs]
    vw = merge_shards(results, plan, ctx.T, ctx.stride)
    if is_auto(ctx.segmentation.threshold):  # one video: calibrated on its own windows (scope video)
        auto = dataclasses.replace(ctx.segmentation.auto, scope="video")
        result, keys = calibrate([series_from_shards(ctx.key, results, ctx.energy, auto.proxy)], auto)
        ctx = with_threshold(ctx, result.value, threshold_record(result, keys, ctx.key))
    if ctx.duration_sec is None:
        ctx = dataclasses.replace(ctx, duration_sec=video_duration(plan))
    return finalize_video(vw, ctx)

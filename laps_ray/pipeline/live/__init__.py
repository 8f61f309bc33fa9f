"""Live segmentation of one source (camera, URL, or a file read like one): the ``stream`` job's engine.

No Ray: a live source is one stream, served by one process. One file per room:

* :mod:`.config` — :class:`LiveConfig` and :class:`ReconnectConfig` (the ``stream:`` settings).
* :mod:`.source` — naming a source (:func:`is_live_source`, :func:`redact`, :func:`source_name`), the
  reader thread (:class:`SourceReader`: decode, resample, reconnect, windows) and the stream's
  processed-frame timeline (:class:`LiveTimeline`).
* :mod:`.queue` — the bounded :class:`WindowQueue` and its drop policy, and what travels on it
  (:class:`ReadyWindow`, :class:`SkippedWindow`, :class:`FramesDone`).
* :mod:`.clips` — live clips: the ring of recent source frames (:class:`FrameRing`) and one encoder
  thread per clip (:class:`ClipJob`).
* :mod:`.segmenter` — :class:`LiveSegmenter`, the incremental smoothing, change points, state machine
  and outputs; with its mixins :mod:`.source_view` (``segment_folder``'s mapping rules on the held
  windows) and :mod:`.closing` (ended segments, live clip bookkeeping, forgetting).
* :mod:`.loop` — :func:`run_live`, the compute loop that ties them together, and :class:`LiveSummary`.

A file streamed without ``realtime`` writes the same ``energy.jsonl``, ``segments.json`` (plus its
``stream`` block), clips, sidecars and ``timeline.npz`` as ``segment_folder``.
"""

from laps_ray.pipeline.live.clips import ClipJob, FrameRing
from laps_ray.pipeline.live.config import LiveConfig, ReconnectConfig
from laps_ray.pipeline.live.loop import LiveSummary, run_live
from laps_ray.pipeline.live.queue import (
    DROP_QUEUE_FULL,
    DROP_RECONNECT,
    GATE_DROPPED,
    FramesDone,
    ReadyWindow,
    SkippedWindow,
    WindowQueue,
    as_ranges,
    skipped_from,
)
from laps_ray.pipeline.live.segmenter import LiveSegmenter
from laps_ray.pipeline.live.source import LiveTimeline, SourceReader, is_live_source, redact, source_name

__all__ = [
    "DROP_QUEUE_FULL",
    "DROP_RECONNECT",
    "GATE_DROPPED",
    "ClipJob",
    "FrameRing",
    "FramesDone",
    "LiveConfig",
    "LiveSegmenter",
    "LiveSummary",
    "LiveTimeline",
    "ReadyWindow",
    "ReconnectConfig",
    "SkippedWindow",
    "SourceReader",
    "WindowQueue",
    "as_ranges",
    "is_live_source",
    "redact",
    "run_live",
    "skipped_from",
    "source_name",
]

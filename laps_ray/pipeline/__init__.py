"""Shared per-window and per-video pipeline steps (no Ray): used by ``segment_folder`` and ``stream``.

* :mod:`laps_ray.pipeline.window_processor`: windows of prepared frames → gates, tracks, tokens and
  energies (:class:`~laps_ray.pipeline.window_processor.WindowProcessor`).
* :mod:`laps_ray.pipeline.video_segments`: the processed-frame timeline of a file and its time shards,
  running one shard, merging shards, smoothing + change points + the state machine once per video,
  mapping processed frames to source frames/seconds, and writing a video's outputs.
"""

"""Shared per-window and per-video pipeline steps (no Ray): used by ``segment_folder``, ``stream``,
the actors and the sweeps. One room per responsibility:

* :mod:`~laps_ray.pipeline.config`: the typed pipeline config the jobs compose into theirs.
* :mod:`~laps_ray.pipeline.resolve`: what a run settles first (threshold, checkpoint, params, digests).
* :mod:`~laps_ray.pipeline.window_processor`: windows of prepared frames → gates, tracks, tokens and
  energies (:class:`~laps_ray.pipeline.window_processor.WindowProcessor`).
* :mod:`~laps_ray.pipeline.shards`: a file's planned processed-frame timeline and its time shards.
* :mod:`~laps_ray.pipeline.shard_run`: running one shard in an actor.
* :mod:`~laps_ray.pipeline.merge`: a video's shards merged into
  :class:`~laps_ray.pipeline.merge.VideoWindows`.
* :mod:`~laps_ray.pipeline.segment`: smoothing + change points + the state machine once per video,
  segments in source frames/seconds (THE rule: :mod:`laps_ray.core.timeline`).
* :mod:`~laps_ray.pipeline.outputs`: a video's outputs (segments.json last).
* :mod:`~laps_ray.pipeline.local`: one video end to end in this process (tests, benchmarks).
* :mod:`~laps_ray.pipeline.live`: the same for a live source, window by window (``stream``).
"""

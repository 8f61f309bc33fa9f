"""Video decode/encode with PyAV: frame timestamps, resampling, resize, rotation, clips and chunks.

Everything that reads a video goes through one decode loop, so each rule lives in one place:

* :mod:`~laps_ray.io.video.errors`: :class:`VideoError`, the one error for an unreadable source,
  always naming the source and a specific reason.
* :mod:`~laps_ray.io.video.source`: opening files, cameras and network streams, :func:`probe`
  (:class:`VideoInfo`), codec-tag detection.
* :mod:`~laps_ray.io.video.clock`: THE frame timestamp rule (:class:`FrameClock`) and THE resampling
  rule (:class:`Resampler`), shared with the timeline plan of ``segment_folder`` and ``stream``.
* :mod:`~laps_ray.io.video.frames`: :class:`Frame`, display rotation and shorter-side resize.
* :mod:`~laps_ray.io.video.decode_loop`: THE decode loop (seek, look-ahead, damaged packets, counts).
* :mod:`~laps_ray.io.video.decode`: :func:`iter_frames` (its producer thread) and :func:`read_frames`.
* :mod:`~laps_ray.io.video.encode`: :func:`write_video` and the H.264 writer.
* :mod:`~laps_ray.io.video.clips`: :func:`write_clips` and :func:`split_video` (source rate and
  timestamps, frame-exact).
* :mod:`~laps_ray.io.video.listing`: :func:`scan_videos` and :func:`list_videos`.

Memory is bounded by frame size, not by video length or core count (decode queue bounded in bytes,
decoder threads, x264 threads and look-ahead capped for very large frames).

No Ray and no torch here: this package is used by actors, jobs, tests and the synthetic-data generator.
Import the public names from ``laps_ray.io.video``; the sub-modules are its internal layout.
"""

from __future__ import annotations

from laps_ray.io.video.clips import split_video, write_clips
from laps_ray.io.video.clock import FrameClock, Resampler, packet_timestamp, stream_timing
from laps_ray.io.video.decode import iter_frames, read_frames
from laps_ray.io.video.encode import write_video
from laps_ray.io.video.errors import VideoError
from laps_ray.io.video.frames import Frame, resize_shorter_side, resized_size
from laps_ray.io.video.listing import VideoListing, list_videos, scan_videos
from laps_ray.io.video.source import VideoInfo, probe, video_stream

__all__ = [
    "Frame",
    "FrameClock",
    "Resampler",
    "VideoError",
    "VideoInfo",
    "VideoListing",
    "iter_frames",
    "list_videos",
    "packet_timestamp",
    "probe",
    "read_frames",
    "resize_shorter_side",
    "resized_size",
    "scan_videos",
    "split_video",
    "stream_timing",
    "video_stream",
    "write_clips",
    "write_video",
]

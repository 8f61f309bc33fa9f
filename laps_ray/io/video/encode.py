"""Encoding H.264 video atomically: :func:`write_video` for RGB frames, and the writer that
:mod:`laps_ray.io.video.clips` feeds with decoded frames.

Memory is bounded by frame size, not by core count: x264's threads and look-ahead are capped for very
large frames (cutting clips from an 8K video stays near 1 GB).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from laps_ray.io.atomic import atomic_path
from laps_ray.io.video.clock import _VFR_TIME_BASE

_ENCODER_BYTES = 768 * 2**20  # x264's frames in flight (threads + look-ahead + references)
_X264_BYTES_PER_PIXEL = 6  # one x264 frame: planes, half-pel planes, low-res copies (measured at 8K)
_X264_MIN_FRAMES = 3  # frames one x264 encoder holds at the least (input, reconstruction, reference)


def _x264_params(width: int, height: int, share: int = 1) -> str | None:
    """x264 thread and look-ahead caps that keep the frames in flight of ``share`` encoders open at
    once within ``_ENCODER_BYTES`` (None when x264's defaults fit). Its defaults grow with the cores
    (1.5 threads per core plus up to 60 frames of look-ahead): at 8K that is 2 GB even on 2 cores;
    capped it is 2 threads and no look-ahead (~0.6 GB)."""
    alive = _ENCODER_BYTES // (max(1, share) * _X264_BYTES_PER_PIXEL * max(1, width * height))
    cpu = os.cpu_count() or 1
    if alive >= 2 * cpu + 12:  # the defaults of the fast presets fit
        return None
    threads = max(1, min(cpu, alive // 2))
    lookahead = max(0, min(10, alive - threads - 2))
    return f"threads={threads}:rc-lookahead={lookahead}:sync-lookahead=0"


class _Writer:
    """One H.264/yuv420p output written atomically; frames are padded to even sizes (libx264 needs)."""

    def __init__(self, path, width, height, rate: Fraction, time_base: Fraction, codec, crf, preset, share=1):
        self.stack = ExitStack()
        tmp = self.stack.enter_context(atomic_path(path))
        # movie_timescale = the stream clock, so mp4 durations are exact rather than in milliseconds.
        opts = {"movflags": "+faststart", "movie_timescale": str(time_base.denominator)}
        try:
            self.container = av.open(str(tmp), "w", options=opts)
        except BaseException:
            self.stack.close()
            raise
        self.stream = self.container.add_stream(codec, rate=rate)
        self.size = (height, width)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = time_base
        self.stream.time_base = time_base
        if codec in ("libx264", "libx265"):
            options = {"crf": str(crf), "preset": preset}
            caps = _x264_params(self.stream.width, self.stream.height, share)
            if codec == "libx264" and caps:
                options["x264-params"] = caps
            self.stream.options = options
        # No B-frames: with frame reordering the mp4 edit list shifts variable-rate timestamps and
        # misreports durations; clips are short, so the few % of extra size do not matter.
        self.stream.codec_context.max_b_frames = 0
        self.count = 0
        self.last_pts: int | None = None
        # An explicit nominal duration: without it the muxer sometimes guessed a short last frame.
        self.period = max(1, round(1 / (rate * time_base)))

    def _check_pts(self, pts: int) -> None:
        if self.last_pts is not None and pts <= self.last_pts:
            raise ValueError(f"frame {self.count}: timestamps must increase ({pts} after {self.last_pts})")

    def add(self, img: np.ndarray, pts: int) -> None:
        """Encode an RGB uint8 image (H, W, 3) of the writer's size at ``pts`` (time-base ticks)."""
        if img.ndim != 3 or img.shape != (*self.size, 3) or img.dtype != np.uint8:
            want = (*self.size, 3)
            raise ValueError(f"frame {self.count}: expected uint8 {want}, got {img.dtype} {img.shape}")
        self._check_pts(pts)
        if img.shape[0] % 2 or img.shape[1] % 2:
            img = cv2.copyMakeBorder(img, 0, img.shape[0] % 2, 0, img.shape[1] % 2, cv2.BORDER_REPLICATE)
        self._encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24"), pts)

    def add_frame(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode a yuv420p frame of the stream's (even) size at ``pts`` (time-base ticks), as is."""
        want = (self.stream.width, self.stream.height)
        if frame.format.name != "yuv420p" or (frame.width, frame.height) != want:
            got = f"{frame.format.name} {frame.width}x{frame.height}"
            raise ValueError(f"frame {self.count}: expected yuv420p {want[0]}x{want[1]}, got {got}")
        self._check_pts(pts)
        # A decoded frame keeps its I/P/B type, which libx264 would take as forced frame types.
        frame.pict_type = av.video.frame.PictureType.NONE
        self._encode(frame, pts)

    def _encode(self, frame: av.VideoFrame, pts: int) -> None:
        frame.pts, frame.time_base, frame.duration = pts, self.stream.codec_context.time_base, self.period
        self.container.mux(self.stream.encode(frame))
        self.count, self.last_pts = self.count + 1, pts

    def close(self) -> int:
        self.container.mux(self.stream.encode(None))  # flush delayed frames
        self.container.close()
        self.stack.close()  # rename temp → final
        return self.count

    def abort(self) -> None:
        self.container.close()
        # Unwind atomic_path as if an error happened inside it: it deletes the temp, renames nothing.
        self.stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


def _rate(fps: float) -> Fraction:
    if not fps or fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return Fraction(fps).limit_denominator(1001)  # 29.97... → 30000/1001


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    codec: str = "libx264",
    crf: int = 20,
    timestamps: Sequence[float] | None = None,
    preset: str = "veryfast",
) -> int:
    """Encode RGB uint8 frames (H, W, 3) to ``path`` atomically; returns the number of frames written.

    ``timestamps`` (seconds, increasing) make a variable-frame-rate file on a 1/90000 time base;
    otherwise frames are ``1 / fps`` apart.
    """
    rate = _rate(fps)
    tb = _VFR_TIME_BASE if timestamps is not None else 1 / rate
    writer: _Writer | None = None
    try:
        for i, img in enumerate(frames):
            if writer is None:
                writer = _Writer(path, img.shape[1], img.shape[0], rate, tb, codec, crf, preset)
            if timestamps is not None and i >= len(timestamps):
                raise ValueError(f"{path}: more frames than timestamps ({len(timestamps)})")
            writer.add(img, round(timestamps[i] / tb) if timestamps is not None else i)
        if writer is None:
            raise ValueError(f"{path}: no frames to write")
        if timestamps is not None and writer.count != len(timestamps):
            raise ValueError(f"{path}: {writer.count} frames but {len(timestamps)} timestamps")
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return writer.close()

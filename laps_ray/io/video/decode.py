"""Decoding a video into RGB frames resampled by timestamp (:func:`iter_frames`, :func:`read_frames`).

:func:`iter_frames` runs :func:`~laps_ray.io.video.decode_loop._decode_range` and converts its frames
to RGB in a producer thread (:func:`_threaded`) feeding a queue bounded in frames and in bytes, so
decoding overlaps the consumer's work while memory stays bounded by frame size.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from laps_ray.io.video.decode_loop import _decode_range
from laps_ray.io.video.errors import VideoError, _av_reason
from laps_ray.io.video.frames import Frame, _rotation_cw, _to_rgb
from laps_ray.io.video.source import _NET_TIMEOUT_S, _open

log = logging.getLogger(__name__)

_QUEUE_BYTES = 128 * 2**20  # decoded frames waiting in iter_frames' queue (one always may, however big)


def iter_frames(
    source: str | Path,
    target_fps: float | None = None,
    resize_shorter: int | None = None,
    start_sec: float | None = None,
    end_sec: float | None = None,
    threaded: bool = True,
    queue_size: int = 64,
    queue_bytes: int = _QUEUE_BYTES,
) -> Iterator[Frame]:
    """Decode ``source`` into RGB frames resampled by timestamp to ``target_fps``.

    The source is opened now (so an unopenable source raises here); decoding starts on first ``next``.
    Frame times follow :class:`FrameClock` (strictly increasing seconds since the first frame).
    Frames have ``start_sec <= t < end_sec``; with ``start_sec`` a file is seeked and ``index`` is
    derived from the timestamp (exact for constant-rate files). Without seeking ``index`` counts
    decoded frames. With ``threaded`` a producer thread decodes and converts into a queue bounded by
    ``queue_size`` frames and ``queue_bytes`` bytes (one frame may always wait), so memory is bounded
    by frame size; closing the iterator stops the thread and closes the container.

    Raises:
        VideoError: unopenable source, no video stream, unsupported codec, fewer than 2 frames in
            range (raised before any frame is yielded), a decode failure, or a file that ends well
            before its frame count.
    """
    if target_fps is not None and target_fps <= 0:
        raise ValueError(f"target_fps must be > 0, got {target_fps}")
    container, stream, src, live = _open(source)
    gen = _decode(container, stream, src, live, target_fps, resize_shorter, start_sec, end_sec)
    return _FrameIterator(_threaded(gen, src, queue_size, queue_bytes) if threaded else gen, container)


class _FrameIterator(Iterator[Frame]):
    """The iterator :func:`iter_frames` returns: also a context manager, and ``close()`` releases the
    container even when iteration never started (a never-started generator's ``finally`` never runs)."""

    def __init__(self, gen: Iterator[Frame], container) -> None:
        self._gen, self._container, self._started = gen, container, False

    def __next__(self) -> Frame:
        self._started = True
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()  # a started generator stops (and joins) the producer, which closes the container
        if not self._started:  # never started: nothing else owns the container yet
            self._container.close()

    def __enter__(self) -> _FrameIterator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode(container, stream, src, live, target_fps, shorter, start_sec, end_sec) -> Iterator[Frame]:
    """:func:`_decode_range` as RGB :class:`Frame` s (display orientation, shorter side resized)."""
    frames = _decode_range(container, stream, src, live, target_fps, start_sec, end_sec)
    rotation = None
    try:
        for d in frames:
            if rotation is None:
                rotation = _rotation_cw(d.frame, stream)
            try:
                image = _to_rgb(d.frame, rotation, shorter)
            except (av.error.FFmpegError, OSError) as e:
                raise VideoError(src, f"decode failed ({_av_reason(e)})") from None
            yield Frame(image, d.index, d.t)
    finally:
        frames.close()


_END = object()


def _threaded(gen: Iterator[Frame], src: str, queue_size: int, queue_bytes: int) -> Iterator[Frame]:
    """Run ``gen`` in a producer thread feeding a queue bounded in frames and in bytes (a frame may
    always wait when the queue is empty, however large); re-raise its errors here."""
    q: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
    stop = threading.Event()
    room = threading.Condition()
    queued = [0]  # bytes of the frames in the queue

    def put(item) -> bool:
        size = item.image.nbytes if isinstance(item, Frame) else 0
        with room:
            while queued[0] and queued[0] + size > queue_bytes and not stop.is_set():
                room.wait(0.1)  # timeout: notice a consumer that went away
            queued[0] += size
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for frame in gen:
                if not put(frame):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, which raises it
            put(e)
        finally:
            gen.close()  # closes the container (the generator's finally)

    def take():
        item = q.get()
        if isinstance(item, Frame):
            with room:
                queued[0] -= item.image.nbytes
                room.notify()
        return item

    def consume() -> Iterator[Frame]:
        thread = threading.Thread(target=produce, name=f"laps-decode:{Path(src).name}", daemon=True)
        thread.start()
        try:
            while True:
                item = take()
                if item is _END:
                    return
                if isinstance(item, VideoError):
                    raise item
                if isinstance(item, Exception):
                    raise VideoError(src, f"decode thread failed ({type(item).__name__}: {item})") from item
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while not q.empty():  # unblock a producer waiting on a full queue
                take()
            thread.join(timeout=_NET_TIMEOUT_S + 5)
            if thread.is_alive():
                log.warning("%s: decode thread did not stop in time", src)

    return consume()


def read_frames(
    source: str | Path, target_fps: float | None = None, resize_shorter: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole (short) video in memory: images (F, H, W, 3) uint8, indices (F,) int64, times (F,) float64."""
    with iter_frames(source, target_fps, resize_shorter, threaded=False) as it:
        frames = list(it)
    images = np.stack([f.image for f in frames])
    return images, np.array([f.index for f in frames], np.int64), np.array([f.t for f in frames], np.float64)

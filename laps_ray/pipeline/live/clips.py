"""Clips of a live source: the ring buffer of recent source frames and one encoder thread per clip.

A file is re-readable: its clips are cut at the end with ``laps_ray.pipeline.outputs.write_file_clips``
(exactly ``segment_folder``'s). A live source is not: the reader pushes every decoded *source* frame
into a :class:`FrameRing` and each segment is encoded incrementally, at the source frame rate, by a
:class:`ClipJob` as its frames become final. Which frames the ring must keep, and when a frame is final,
is the segmenter's bookkeeping (:mod:`.closing`); this module only holds frames and encodes them.
``ring_max_seconds`` caps the ring (a warning; that clip then misses its oldest frames).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from laps_ray.io.video import write_video


class FrameRing:
    """Recent source frames ``(source index, t, image)`` of a live source, for its clips (thread-safe).

    Args:
        max_seconds: on push, frames more than this many seconds (source clock) older than the pushed
            one are dropped (the two newest always stay).
    """

    def __init__(self, max_seconds: float) -> None:
        self._lock = threading.Lock()
        self._frames: deque[tuple[int, float, np.ndarray]] = deque()
        self.max_seconds = max_seconds

    def push(self, index: int, t: float, image: np.ndarray) -> None:
        """Add source frame ``index`` at ``t`` seconds; ``image`` is (H, W, 3) uint8 RGB."""
        with self._lock:
            self._frames.append((int(index), float(t), image))
            while len(self._frames) > 2 and t - self._frames[0][1] > self.max_seconds:
                self._frames.popleft()  # the cap: a clip that still wanted it records the loss

    def forget_before(self, index: int) -> None:
        """Drop source frames below ``index`` (no clip can need them any more)."""
        with self._lock:
            while self._frames and self._frames[0][0] < index:
                self._frames.popleft()

    def take(self, lo: int, hi: int) -> list[tuple[int, float, np.ndarray]]:
        """Frames with ``lo <= index < hi``, in order."""
        with self._lock:
            return [f for f in self._frames if lo <= f[0] < hi]

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


class _ClipAborted(Exception):
    pass


_CLIP_END = object()
_CLIP_ABORT = object()


class ClipJob:
    """One live clip encoded incrementally by its own thread (``write_video`` fed from a queue).

    The clip is written (atomically) to a hidden ``.segment_wNNNNNN.tmp.mp4`` because its label is only
    known when the segment is kept; the segmenter renames it once the encoder is done.

    Args:
        path: the temporary clip file.
        fps: frame rate of the clip (the live source's measured rate).
        crf, preset: x264 settings (``export.clip_crf`` / ``export.clip_preset``).
        first_src: source frame index of the clip's first frame.

    Attributes:
        next_src: next source frame index to send; end_src: last one (None while the segment is open).
        sent: frames sent to the encoder; count: frames it wrote; missing: frames lost to the ring's cap.
        error: why the encoder failed (None: it did not).
    """

    def __init__(self, path: Path, fps: float, crf: int, preset: str, first_src: int) -> None:
        self.path = path
        self.next_src = first_src
        self.end_src: int | None = None
        self.sent = 0
        self.missing = 0
        self.count = 0
        self.error: BaseException | None = None
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._ended = False
        self._thread = threading.Thread(
            target=self._run, args=(fps, crf, preset), name="laps-stream-clip", daemon=True
        )
        self._thread.start()

    def _frames(self) -> Iterator[np.ndarray]:
        while True:
            item = self._q.get()
            if item is _CLIP_END:
                return
            if item is _CLIP_ABORT:
                raise _ClipAborted()
            yield item

    def _run(self, fps: float, crf: int, preset: str) -> None:
        try:
            self.count = write_video(self.path, self._frames(), fps, crf=crf, preset=preset)
        except _ClipAborted:
            return  # given up on purpose: write_video discarded its temporary, nothing to report
        except BaseException as exc:  # reported by the segmenter when it collects the clip
            self.error = exc

    def add(self, image: np.ndarray) -> None:
        """Send one (H, W, 3) uint8 RGB frame to the encoder."""
        self._q.put(image)
        self.sent += 1

    def end(self) -> None:
        """No more frames: finish the file (or abort it if it got none)."""
        if not self._ended:
            self._ended = True
            self._q.put(_CLIP_END if self.sent else _CLIP_ABORT)

    def abort(self) -> None:
        """Give the clip up: the encoder stops and the temporary file is discarded."""
        if not self._ended:
            self._ended = True
            self._q.put(_CLIP_ABORT)

    def done(self) -> bool:
        """The encoder thread has finished (written, failed or aborted)."""
        return not self._thread.is_alive()

    def join(self) -> None:
        """Wait for the encoder thread."""
        self._thread.join()

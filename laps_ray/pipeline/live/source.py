"""Reading a source: naming and redacting it, the reader thread, and the stream's frame timeline.

The *reader* thread (:class:`SourceReader`) opens the source, decodes and resamples frames (by
timestamp, the one rule of ``laps_ray.io.video``), prepares each processed frame once for the tracker
and the pre-gate, and forms the windows (``core.windows.push_item``, the same windows as
``segment_folder``) onto the :class:`~.queue.WindowQueue`. Files are decoded with ``iter_frames``;
with ``realtime`` each frame is released at its timestamp, as a camera would deliver it. Every
processed frame's source index and time go to the :class:`LiveTimeline`; every decoded frame of a live
source goes to the clip ring (:class:`~.clips.FrameRing`).

**Reconnect** (URLs and cameras): when the connection ends or fails, the reader re-opens the source with
exponential back-off (``backoff_initial_s · 2^(n-1)``, at most ``backoff_max_s``) and gives up after
``max_retries`` consecutive failed attempts. Frame numbers (processed and source) and window ids continue
monotonically. Times: each connection's timestamps restart at 0, so the reader maps them to the stream's
clock as ``t = t_last + gap + t_conn`` where ``gap`` is the wall-clock time between the last frame before
the outage and the first frame after it; the outage therefore appears in ``t_start``/``t_end`` and in
segment seconds, while processed-frame numbers stay contiguous (window geometry is in frames). Windows
that span a reconnect are skipped (reason ``reconnect``).
"""

from __future__ import annotations

import array
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from laps_ray.core.windows import WindowBuffer, flush_windows, push_item
from laps_ray.io.decode import DecodeConfig
from laps_ray.io.video import Frame, Resampler, VideoError, iter_frames, resize_shorter_side
from laps_ray.pipeline.live.clips import FrameRing
from laps_ray.pipeline.live.config import LiveConfig
from laps_ray.pipeline.live.queue import DROP_RECONNECT, FramesDone, ReadyWindow, WindowQueue, skipped_from
from laps_ray.pipeline.shard_run import matches_plan
from laps_ray.pipeline.shards import TimelinePlan
from laps_ray.tracking.windowed import Window

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- names


def is_live_source(source: str) -> bool:
    """URLs (``scheme://``) and cameras (``/dev/videoN`` or an index) are live; anything else is a file."""
    s = str(source)
    return "://" in s or s.startswith("/dev/video") or s.isdigit()


def redact(source: str) -> str:
    """``source`` without a URL's ``user:password@`` (for logs and outputs)."""
    s = str(source)
    if "://" not in s:
        return s
    parts = urlsplit(s)
    if parts.username is None and parts.password is None:
        return s
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def source_name(source: str) -> str:
    """Output folder name of a source: a file's stem; ``video0`` for ``/dev/video0``; ``camera3`` for
    ``3``; for a URL its host, port and path with every other character replaced by ``_``."""
    s = str(source)
    if s.isdigit():
        return f"camera{s}"
    if s.startswith("/dev/"):
        return Path(s).name
    if "://" not in s:
        return Path(s).stem
    parts = urlsplit(s)
    raw = "_".join(x for x in (parts.hostname, str(parts.port or ""), parts.path.strip("/")) if x)
    if parts.query:
        raw += "_" + parts.query
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", raw).strip("._")
    return name or "stream"


# ---------------------------------------------------------------------------------------- timeline


class LiveTimeline:
    """Processed frame -> (source frame index, seconds) of the whole stream, thread-safe.

    The reader appends; the compute loop looks frames up. Every frame is kept, compactly (two typed
    arrays: 16 bytes per processed frame, ~28 MB for a day at 20 fps), because the stream's
    ``timeline.npz`` needs all of them at the end (:meth:`full`). Look-ups (:meth:`get`,
    :meth:`arrays`) are limited to the frames not yet forgotten (:meth:`forget_before`): a segment
    that reaches for a frame the segmenter declared unneeded is a bug, and raises.

    Attributes:
        base: first processed frame that may still be looked up.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index = array.array("q")  # int64 source frame index of processed frame p
        self._t = array.array("d")  # float64 its time in seconds
        self.base = 0

    @property
    def count(self) -> int:
        """Processed frames appended so far."""
        with self._lock:
            return len(self._index)

    def append(self, index: int, t: float) -> int:
        """Add the next processed frame (source ``index``, ``t`` seconds); returns its processed number."""
        with self._lock:
            self._index.append(int(index))
            self._t.append(float(t))
            return len(self._index) - 1

    def get(self, p: int) -> tuple[int, float]:
        """(source index, seconds) of processed frame ``p``."""
        with self._lock:
            if not self.base <= p < len(self._index):
                raise IndexError(
                    f"processed frame {p} is not held (held: {self.base}..{len(self._index) - 1})"
                )
            return self._index[p], self._t[p]

    def arrays(self, p0: int) -> tuple[np.ndarray, np.ndarray]:
        """(index, t) of processed frames ``p0 ..`` (all read so far): (n,) int64 and (n,) float64."""
        with self._lock:
            if p0 < self.base:
                raise IndexError(f"processed frame {p0} was forgotten (held from {self.base})")
            return self._copy(p0)

    def full(self) -> tuple[np.ndarray, np.ndarray]:
        """(index, t) of every processed frame of the stream: (F,) int64 and (F,) float64."""
        with self._lock:
            return self._copy(0)

    def _copy(self, p0: int) -> tuple[np.ndarray, np.ndarray]:
        # slicing copies the arrays: numpy never holds a view of them (an exported buffer would make the
        # reader's next append fail)
        return np.frombuffer(self._index[p0:], dtype=np.int64), np.frombuffer(self._t[p0:], dtype=np.float64)

    def forget_before(self, p: int) -> None:
        """Frames below ``p`` will not be looked up any more (they stay for :meth:`full`)."""
        with self._lock:
            self.base = max(self.base, min(p, len(self._index)))


# ------------------------------------------------------------------------------------------ reader


class SourceReader(threading.Thread):
    """Decode → resample → prepare → windows → :class:`~.queue.WindowQueue` (module docstring).

    Args:
        source: file path, URL or camera.
        decode: ``target_fps`` and ``resize_shorter`` of the processed frames.
        live: loop settings (``realtime``, ``max_seconds``, ``reconnect``, clip size).
        T, stride: window geometry.
        prepare: per-frame work (``WindowProcessor.prepare``), run once per processed frame.
        out: the window queue.
        timeline: receives every processed frame's source index and time.
        ring: receives every decoded source frame of a live source (None: files, or no clips).
        stop: set to stop reading.
        plan: a file's planned timeline (``laps_ray.pipeline.shards.plan_timeline``), checked frame by frame.
    """

    def __init__(
        self,
        source: str,
        decode: DecodeConfig,
        live: LiveConfig,
        T: int,
        stride: int,
        prepare: Callable[[Frame], Any],
        out: WindowQueue,
        timeline: LiveTimeline,
        ring: FrameRing | None,
        stop: threading.Event,
        plan: TimelinePlan | None = None,
    ) -> None:
        super().__init__(name="laps-stream-reader", daemon=True)
        self.source, self.decode, self.live = source, decode, live
        self.T, self.stride = T, stride
        self.prepare, self.out, self.timeline, self.ring, self.stop = prepare, out, timeline, ring, stop
        self.is_live = is_live_source(source)
        self.drop = self.is_live or live.realtime
        self.plan = plan
        self.matches_plan = plan is not None
        self.error: BaseException | None = None
        self.end_reason = "end_of_file"
        self.reconnects = 0
        self.failed_attempts = 0
        self.connections = 0
        self.gap_ids: list[int] = []
        self.source_frames = 0  # source frames decoded
        self._conn_starts: list[int] = []  # processed index of the first frame of every later connection
        self._last_src = -1
        self._fps = 0.0

    @property
    def fps(self) -> float:
        """Measured source frame rate of a live source so far (0 = unknown yet; 0 for files)."""
        return self._fps

    # -- thread body

    def run(self) -> None:
        buf = WindowBuffer(T=self.T, stride=self.stride)
        n = 0
        try:
            for frame, t_ready in self._frames():
                p = self.timeline.append(frame.index, frame.t)
                if self.matches_plan:
                    self._check_plan(p, frame)
                for start, items in push_item(buf, self.prepare(frame)):
                    self._emit(n, start, items, t_ready, None)
                    n += 1
        except BaseException as exc:  # handed to the compute loop, which reports it
            self.error = exc
            self.end_reason = f"error: {exc}"
        finally:
            try:
                F = buf.count
                if self.matches_plan and F != self.plan.num_frames:
                    self.matches_plan = False
                done = FramesDone(F, self._last_src, self._fps, self.end_reason, self.matches_plan)
                self.out.put(done)
                if F >= 2:
                    for start, items in flush_windows(buf):
                        self._emit(n, start, items, time.monotonic(), F)
                        n += 1
            finally:
                self.out.close()

    def _emit(self, n: int, start: int, items: list, t_ready: float, final_frames: int | None) -> None:
        win = Window(index=n, start=start, items=items, frame_index=items[0].index, t_start=items[0].t)
        last = start + self.T - 1 if final_frames is None else min(start + self.T - 1, final_frames - 1)
        if any(start < b <= last for b in self._conn_starts):
            self.gap_ids.append(n)
            self.out.put(skipped_from(win, DROP_RECONNECT))
        else:
            self.out.put_window(ReadyWindow(win, t_ready), self.drop, self.stop)

    def _check_plan(self, p: int, frame: Frame) -> None:
        plan = self.plan
        ok = p < plan.num_frames and matches_plan(plan.index[p], plan.t[p], frame.index, frame.t)
        self.matches_plan = bool(ok)

    # -- frames

    def _frames(self) -> Iterator[tuple[Frame, float]]:
        return self._live_frames() if self.is_live else self._file_frames()

    def _file_frames(self) -> Iterator[tuple[Frame, float]]:
        shorter = self.decode.resize_shorter or None
        frames = iter_frames(self.source, self.decode.target_fps, shorter, threaded=True)
        self.connections = 1
        wall0 = None
        with frames:
            for fr in frames:
                if self.stop.is_set():
                    self.end_reason = "stopped"
                    return
                if self.live.max_seconds and fr.t >= self.live.max_seconds:
                    self.end_reason = "max_seconds"
                    return
                now = time.monotonic()
                if self.live.realtime:  # release the frame at its timestamp, like a camera
                    if wall0 is None:
                        wall0 = now - fr.t
                    due = wall0 + fr.t
                    if due > now and self.stop.wait(due - now):
                        self.end_reason = "stopped"
                        return
                    now = due
                self._last_src = fr.index
                self.source_frames = fr.index + 1
                yield fr, now

    def _live_frames(self) -> Iterator[tuple[Frame, float]]:
        # io.video's resampling rule, applied on the stream's clock (times continue across reconnects).
        # Every decoded frame goes to the ring buffer for clips; only kept frames are processed.
        target = self.decode.target_fps
        resampler = Resampler(target, 0.0, 0.25 / target)  # live tolerance: a quarter period
        clip_shorter = self.live.clip_resize_shorter or None
        rc = self.live.reconnect
        failures = 0
        last_t: float | None = None
        last_wall = 0.0
        recent_dt: deque[float] = deque(maxlen=64)
        while not self.stop.is_set():
            try:
                frames = iter_frames(self.source, None, clip_shorter, threaded=False)
            except VideoError as exc:
                failures += 1
                self.failed_attempts += 1
                if failures > rc.max_retries:
                    self.end_reason = f"source_lost: {exc.reason}"
                    return
                delay = rc.delay(failures)
                log.warning(
                    "%s: %s; retry %d/%d in %.1fs",
                    redact(self.source),
                    exc.reason,
                    failures,
                    rc.max_retries,
                    delay,
                )
                self.stop.wait(delay)
                continue
            if self.connections:
                self.reconnects += 1
                log.warning("%s: reconnected (reconnect #%d)", redact(self.source), self.reconnects)
            self.connections += 1
            first, got = True, 0
            try:
                with frames:
                    for fr in frames:
                        if self.stop.is_set():
                            self.end_reason = "stopped"
                            return
                        now = time.monotonic()
                        if first:
                            # map this connection's clock onto the stream's (module docstring)
                            gap = 0.0 if last_t is None else max(now - last_wall, 1.0 / target)
                            offset = (0.0 if last_t is None else last_t + gap) - fr.t
                            first = False
                            if last_t is not None:
                                self._conn_starts.append(self.timeline.count)
                        t = offset + fr.t
                        if got:  # frame intervals within one connection give the source rate
                            recent_dt.append(t - last_t)
                        last_t, last_wall = t, now
                        got += 1
                        src = self.source_frames
                        self.source_frames += 1
                        self._last_src = src
                        if recent_dt:
                            med = float(np.median(recent_dt))
                            self._fps = 1.0 / med if med > 0 else self._fps
                        if self.ring is not None:
                            self.ring.push(src, t, fr.image)
                        if self.live.max_seconds and t >= self.live.max_seconds:
                            self.end_reason = "max_seconds"
                            return
                        if resampler.keep(t):
                            yield Frame(self._processed(fr.image), src, t), now
            except VideoError as exc:
                log.warning("%s: connection lost (%s)", redact(self.source), exc.reason)
            if self.stop.is_set():
                self.end_reason = "stopped"
                return
            failures = 0 if got else failures + 1
            if not got:
                self.failed_attempts += 1
            if failures > rc.max_retries or rc.max_retries == 0:
                self.end_reason = "source_lost: no frames after reconnecting" if got == 0 else "source_ended"
                return
            delay = rc.delay(failures)
            log.warning(
                "%s: stream ended after %d frames; reconnecting in %.1fs", redact(self.source), got, delay
            )
            self.stop.wait(delay)
        self.end_reason = "stopped"

    def _processed(self, image: np.ndarray) -> np.ndarray:
        """A decoded frame (source or clip size) at the processed size (same resize as iter_frames)."""
        return resize_shorter_side(image, self.decode.resize_shorter or None)

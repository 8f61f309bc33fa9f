"""The live loop of the ``stream`` job: reader thread → bounded window queue → compute → incremental
segmentation and outputs. No Ray: a live source is one stream, served by one process.

**Threads.** A *reader* thread opens the source, decodes and resamples frames (by timestamp, the one rule
of ``laps_ray.io.video``), prepares each processed frame once for the tracker and the pre-gate, and forms
the windows (``core.windows.push_item``, the same windows as ``segment_folder``). The *compute* loop (the
caller's thread) takes windows from a bounded :class:`WindowQueue`, runs the shared
:class:`~laps_ray.pipeline.window_processor.WindowProcessor` on them (up to ``batch_windows`` at a time
when a backlog has built up) and feeds :class:`LiveSegmenter`. Live clips are encoded by one short-lived
thread per open segment.

**Drop policy.** The queue holds at most ``queue_windows`` windows. Files read as fast as possible (no
``realtime``) never drop: the reader blocks (back-pressure), which is why ``stream`` on a file writes the
same segments and ``energy.jsonl`` as ``segment_folder``. Live sources and ``realtime`` files cannot wait:
when the queue is full, the *oldest* queued window (the stalest) is replaced in place by a
:class:`SkippedWindow` with reason ``queue_full``, so ids are never re-indexed and order is kept. Skipped
windows enter ``energy.jsonl`` and the state machine as explicit gaps: energy 0, ``gated: true``,
``gate: "dropped"``, ``dropped: true`` and a ``drop_reason``; their count and true ids (as ranges) are in
the summary. Windows that mix frames from before and after a reconnect are skipped with reason
``reconnect`` (their motion would be a jump between two connections).

**Latency** of a window = from the moment its last frame was read (for ``realtime`` files: the frame's
scheduled release time, as a camera would deliver it) to the end of the compute iteration that handled
its result (energy line written, smoothing, change points and state machine fed). The real-time budget
of a window is ``stride / target_fps`` (0.2 s at 4 / 20 fps); ``budget_ok_ratio`` is the fraction of
computed windows whose latency is within it.

**Reconnect** (URLs and cameras): when the connection ends or fails, the reader re-opens the source with
exponential back-off (``backoff_initial_s · 2^(n-1)``, at most ``backoff_max_s``) and gives up after
``max_retries`` consecutive failed attempts. Frame numbers (processed and source) and window ids continue
monotonically. Times: each connection's timestamps restart at 0, so the reader maps them to the stream's
clock as ``t = t_last + gap + t_conn`` where ``gap`` is the wall-clock time between the last frame before
the outage and the first frame after it; the outage therefore appears in ``t_start``/``t_end`` and in
segment seconds, while processed-frame numbers stay contiguous (window geometry is in frames).

**Incremental outputs** (layout of ``laps_ray.io.exports``): one ``energy.jsonl`` line per window as soon
as its result arrives (atomic: written to a hidden temporary, renamed when the stream ends); when a
segment closes: its codes sidecar, its clip, and a rewrite of ``segments.json``. Segments are mapped to
source frames and seconds, sidecar windows selected and records, sidecars, the plot and segments.json
built with the functions ``segment_folder`` uses (``video_segments.source_segment`` / ``select_windows``
/ ``segment_record`` / ``sidecar_meta`` / ``segments_doc``, and ``end_of_video`` for a file's last
frame); the state machine, smoothing and change points are the ``core`` streaming steps that
``segment_folder`` folds offline. With change points on, a window's score arrives ``k`` windows late, so
the state machine runs ``k`` windows behind the tokenizer.

**Clips.** A file is re-readable: its clips are cut at the end with ``video_segments.write_file_clips``
(exactly ``segment_folder``'s). A live source is not: the reader keeps a ring buffer of recent *source*
frames and each segment is encoded incrementally, at the source frame rate, as its frames become final.
The ring keeps exactly what a future segment start can still need (the look-back of ``up_count`` windows
plus the queue and the change-point lag) and the frames of the open segment not yet committed to its
encoder; with change points on, frames after a possible split boundary are held back until the split is
decided. ``ring_max_seconds`` caps the ring (a warning; that clip then misses its oldest frames).

**Shutdown.** :func:`run_live` takes a ``stop`` event (the job sets it on SIGINT/SIGTERM): the reader
stops at the next frame, the windows already read are computed, the open segment is closed (reason
``end_of_stream``) with its clip and sidecar, and every output is written.
"""

from __future__ import annotations

import array
import dataclasses
import logging
import math
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from laps_ray.config import check
from laps_ray.core import changepoint as cpm
from laps_ray.core import segmentation as segm
from laps_ray.core import smoothing as sm
from laps_ray.core.energy import ENERGY_SOURCES
from laps_ray.core.windows import WindowBuffer, flush_windows, push_item
from laps_ray.io import exports as ex
from laps_ray.io.decode import DecodeConfig
from laps_ray.io.video import Frame, Resampler, VideoError, iter_frames, resize_shorter_side, write_video
from laps_ray.pipeline import video_segments as vs
from laps_ray.pipeline.window_processor import GATE_MOTION, GATE_PRE, WindowProcessor, WindowResult
from laps_ray.tracking.windowed import Window

log = logging.getLogger(__name__)

GATE_DROPPED = "dropped"  # energy.jsonl ``gate`` of a window that was never computed
_GATE_CODES = {None: 0, GATE_PRE: 1, GATE_MOTION: 2, GATE_DROPPED: 3}
DROP_QUEUE_FULL = "queue_full"
DROP_RECONNECT = "reconnect"


# ------------------------------------------------------------------------------------------ config


@dataclass
class ReconnectConfig:
    """Re-opening a live source (URL or camera) after its connection ended or failed.

    Attributes:
        max_retries: consecutive failed attempts before the stream gives up (0 = never reconnect).
        backoff_initial_s: wait before the first retry; doubled after every failed attempt.
        backoff_max_s: longest wait between two attempts.
    """

    max_retries: int = 10
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0

    def __post_init__(self) -> None:
        check(self.max_retries >= 0, "reconnect.max_retries", f"must be >= 0, got {self.max_retries}")
        check(self.backoff_initial_s > 0, "reconnect.backoff_initial_s", "must be > 0")
        check(
            self.backoff_max_s >= self.backoff_initial_s,
            "reconnect.backoff_max_s",
            f"must be >= backoff_initial_s ({self.backoff_initial_s}), got {self.backoff_max_s}",
        )

    def delay(self, failures: int) -> float:
        """Seconds to wait before attempt number ``failures + 1`` (``failures`` >= 0)."""
        return min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** max(0, failures - 1))


@dataclass
class LiveConfig:
    """The live loop (``stream:`` section of ``configs/stream.yaml``).

    Attributes:
        queue_windows: capacity of the window queue between the reader and the compute loop.
        batch_windows: most windows computed in one call when a backlog has built up (tracker and
            tokenizer batch); a window never waits for others to arrive.
        realtime: pace a file like a camera (frames released at their timestamps) and drop windows
            when the queue is full; live sources always behave so.
        max_seconds: stop after this many seconds of video (source clock); 0 = until the source ends.
        torch_threads: torch CPU threads of the compute loop (0 = torch's default).
        clip_resize_shorter: live clips' shorter side in pixels; 0 = source size (as ``segment_folder``).
            The ring buffer holds frames of this size, so it bounds memory for large cameras.
        ring_max_seconds: cap of the live ring buffer of source frames (seconds of video).
        log_every_s: seconds between progress log lines.
        debug_sleep_s: TEST/BENCHMARK KNOB: extra seconds of compute per computed window, to simulate
            a slow machine (drops under ``realtime``). Keep 0 in production.
        reconnect: re-opening live sources.
    """

    queue_windows: int = 4
    batch_windows: int = 4
    realtime: bool = False
    max_seconds: float = 0.0
    torch_threads: int = 1
    clip_resize_shorter: int = 0
    ring_max_seconds: float = 30.0
    log_every_s: float = 10.0
    debug_sleep_s: float = 0.0
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)

    def __post_init__(self) -> None:
        check(self.queue_windows >= 1, "queue_windows", f"must be >= 1, got {self.queue_windows}")
        check(self.batch_windows >= 1, "batch_windows", f"must be >= 1, got {self.batch_windows}")
        check(self.max_seconds >= 0, "max_seconds", f"must be >= 0 (0 = no limit), got {self.max_seconds}")
        check(self.torch_threads >= 0, "torch_threads", f"must be >= 0, got {self.torch_threads}")
        check(
            self.clip_resize_shorter == 0 or self.clip_resize_shorter >= 32,
            "clip_resize_shorter",
            f"must be 0 (source size) or >= 32, got {self.clip_resize_shorter}",
        )
        check(self.ring_max_seconds > 0, "ring_max_seconds", f"must be > 0, got {self.ring_max_seconds}")
        check(self.log_every_s > 0, "log_every_s", f"must be > 0, got {self.log_every_s}")
        check(self.debug_sleep_s >= 0, "debug_sleep_s", f"must be >= 0, got {self.debug_sleep_s}")


# ---------------------------------------------------------------------------------------- sources


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


# ------------------------------------------------------------------------------- shared structures


class LiveTimeline:
    """Processed frame -> (source frame index, seconds), thread-safe, forgetting old frames.

    The reader appends; the compute loop looks frames up and forgets those no segment can need.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: list[int] = []
        self._t: list[float] = []
        self.base = 0  # processed index of _index[0]

    @property
    def count(self) -> int:
        """Processed frames appended so far."""
        with self._lock:
            return self.base + len(self._index)

    def append(self, index: int, t: float) -> int:
        with self._lock:
            self._index.append(int(index))
            self._t.append(float(t))
            return self.base + len(self._index) - 1

    def get(self, p: int) -> tuple[int, float]:
        with self._lock:
            i = p - self.base
            if not 0 <= i < len(self._index):
                raise IndexError(f"processed frame {p} is not held (held: {self.base}..{self.count - 1})")
            return self._index[i], self._t[i]

    def arrays(self, p0: int) -> tuple[np.ndarray, np.ndarray]:
        """(index, t) of processed frames ``p0 ..`` (all read so far)."""
        with self._lock:
            i = p0 - self.base
            if i < 0:
                raise IndexError(f"processed frame {p0} was forgotten (held from {self.base})")
            return np.asarray(self._index[i:], dtype=np.int64), np.asarray(self._t[i:], dtype=np.float64)

    def forget_before(self, p: int) -> None:
        with self._lock:
            k = min(max(0, p - self.base), len(self._index))
            if k:
                del self._index[:k]
                del self._t[:k]
                self.base += k


class FrameRing:
    """Recent source frames ``(source index, t, image)`` of a live source, for its clips (thread-safe)."""

    def __init__(self, max_seconds: float) -> None:
        self._lock = threading.Lock()
        self._frames: deque[tuple[int, float, np.ndarray]] = deque()
        self.max_seconds = max_seconds

    def push(self, index: int, t: float, image: np.ndarray) -> None:
        with self._lock:
            self._frames.append((int(index), float(t), image))
            while len(self._frames) > 2 and t - self._frames[0][1] > self.max_seconds:
                self._frames.popleft()  # the cap: a clip that still wanted it records the loss

    def forget_before(self, index: int) -> None:
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


@dataclass
class ReadyWindow:
    """A window to compute; ``t_ready`` = ``time.monotonic()`` at which its last frame was read."""

    window: Window
    t_ready: float


@dataclass
class SkippedWindow:
    """A window that is not computed (queue full, or it spans a reconnect): an explicit gap."""

    window: int
    start: int
    frame_index: int
    end_frame_index: int
    t_start: float
    t_end: float
    reason: str


@dataclass
class FramesDone:
    """The reader's last word: no more frames. Comes before the stream's padded tail windows.

    Attributes:
        num_frames: processed frames of the whole stream (F).
        last_source_frame: last source frame index decoded.
        source_fps: source frame rate (nominal for files, measured for live sources; 0 = unknown).
        reason: why reading ended (``end_of_file``, ``stopped``, ``max_seconds``, ``source_lost: ...``,
            ``source_ended``, ``error: ...``).
        matches_plan: a file's decoded timeline equals its planned one (every frame, and the count).
    """

    num_frames: int
    last_source_frame: int
    source_fps: float
    reason: str
    matches_plan: bool = False


Entry = ReadyWindow | SkippedWindow | FramesDone


class WindowQueue:
    """Bounded FIFO of :data:`Entry` between the reader and the compute loop.

    Only :class:`ReadyWindow` entries count towards ``capacity``. ``put_window(drop=True)`` never
    blocks: when full, the oldest queued window is turned into a :class:`SkippedWindow` in place, so
    window order and ids are kept and the drop is recorded under the same lock (no race with ``get``).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._cond = threading.Condition()
        self._items: deque[Entry] = deque()
        self._ready = 0
        self._closed = False
        self.dropped: list[int] = []  # true ids of windows dropped because the queue was full
        self.max_depth = 0

    def put_window(self, item: ReadyWindow, drop: bool, stop: threading.Event) -> None:
        with self._cond:
            while not drop and self._ready >= self.capacity and not stop.is_set():
                self._cond.wait(0.1)
            if drop and self._ready >= self.capacity:
                for i, old in enumerate(self._items):
                    if isinstance(old, ReadyWindow):
                        self._items[i] = skipped_from(old.window, DROP_QUEUE_FULL)
                        self._ready -= 1
                        self.dropped.append(old.window.index)
                        break
            self._items.append(item)
            self._ready += 1
            self.max_depth = max(self.max_depth, self._ready)
            self._cond.notify_all()

    def put(self, item: SkippedWindow | FramesDone) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def depth(self) -> int:
        with self._cond:
            return self._ready

    def get_batch(self, max_windows: int) -> list[Entry] | None:
        """Block until something is queued; return up to ``max_windows`` windows (plus the markers
        around them) in order, or None once the queue is closed and empty."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if not self._items:
                return None
            out: list[Entry] = []
            n = 0
            while self._items and (n < max_windows or not isinstance(self._items[0], ReadyWindow)):
                item = self._items.popleft()
                out.append(item)
                n += isinstance(item, ReadyWindow)
            self._ready -= n
            self._cond.notify_all()
            return out


def skipped_from(win: Window, reason: str) -> SkippedWindow:
    """The :class:`SkippedWindow` record of a formed window."""
    first, last = win.items[0], win.items[-1]
    return SkippedWindow(win.index, win.start, first.index, last.index, first.t, last.t, reason)


def as_ranges(ids: list[int]) -> list[list[int]]:
    """Sorted ids -> ``[[first, last], ...]`` runs (compact and exact)."""
    out: list[list[int]] = []
    for i in sorted(ids):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


# ------------------------------------------------------------------------------------------- reader


class SourceReader(threading.Thread):
    """Decode → resample → prepare → windows → :class:`WindowQueue` (see module docstring).

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
        plan: a file's planned timeline (``video_segments.plan_timeline``), checked frame by frame.
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
        plan: vs.TimelinePlan | None = None,
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
        ok = p < plan.num_frames and vs.matches_plan(plan.index[p], plan.t[p], frame.index, frame.t)
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


# -------------------------------------------------------------------------------------------- clips


class _ClipAborted(Exception):
    pass


_CLIP_END = object()
_CLIP_ABORT = object()


class ClipJob:
    """One live clip encoded incrementally by its own thread (``write_video`` fed from a queue).

    The clip is written (atomically) to a hidden ``.segment_wNNNNNN.tmp.mp4`` because its label is only
    known when the segment is kept; :meth:`finalize` renames it.

    Attributes:
        next_src: next source frame index to send; end_src: last one (None while the segment is open).
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
            pass
        except BaseException as exc:  # reported by the segmenter when it collects the clip
            self.error = exc

    def add(self, image: np.ndarray) -> None:
        self._q.put(image)
        self.sent += 1

    def end(self) -> None:
        """No more frames: finish the file (or abort it if it got none)."""
        if not self._ended:
            self._ended = True
            self._q.put(_CLIP_END if self.sent else _CLIP_ABORT)

    def abort(self) -> None:
        if not self._ended:
            self._ended = True
            self._q.put(_CLIP_ABORT)

    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self) -> None:
        self._thread.join()


# ---------------------------------------------------------------------------------------- segmenter


@dataclass
class _Win:
    """What the segmenter keeps of one window (for sidecars and mapping)."""

    window: int
    start: int
    frame_index: int
    end_frame_index: int
    t_start: float
    t_end: float
    gate: int
    energies: tuple[float, ...]
    codes: np.ndarray | None
    zq: np.ndarray | None


@dataclass
class _Close:
    """A segment that ended, waiting until every window overlapping it is known."""

    end: segm.End
    clip: ClipJob | None


@dataclass
class _Finishing:
    """A kept segment whose record waits for its live clip to be encoded."""

    record: dict[str, Any]
    clip: ClipJob | None


class LiveSegmenter:
    """Incremental smoothing → change points → state machine → outputs of one stream.

    Feed windows in order with :meth:`add_result` / :meth:`add_skipped` (every window id exactly once),
    call :meth:`update` after each batch, :meth:`frames_done` when the reader says so, and
    :meth:`finish` at the end. All streaming state is explicit: ``smoother``
    (:class:`~laps_ray.core.smoothing.SmootherState`), ``cp_state``
    (:class:`~laps_ray.core.changepoint.ChangePointState`), ``seg_state``
    (:class:`~laps_ray.core.segmentation.SegState`).

    Args:
        ctx: output settings shared with ``segment_folder`` (``video_segments.VideoContext``).
        timeline: processed-frame timeline (shared with the reader).
        live: the source is live (URL or camera), not a re-readable file.
        ring: live source frames for clips; None for a file (its clips are cut from it at the end) or
            when clips are off.
        num_tokens, latent_dim: L and D of the tokenizer (sidecar arrays).
        video_name: ``video`` field of segments.json and sidecars.
        plan: a file's planned timeline (segment_folder's source of duration and fps).
        fps_hint: the live source's measured frame rate so far (live clips are encoded at it).
        extra: stream counters to put into segments.json.
    """

    def __init__(
        self,
        ctx: vs.VideoContext,
        timeline: LiveTimeline,
        live: bool,
        ring: FrameRing | None,
        num_tokens: int,
        latent_dim: int,
        video_name: str,
        plan: vs.TimelinePlan | None = None,
        fps_hint: Callable[[], float] | None = None,
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.out = Path(ctx.out_dir)
        self.timeline, self.live, self.ring = timeline, live, ring
        self.L, self.D = num_tokens, latent_dim
        self.video_name = video_name
        self.plan = plan
        self.extra = extra or (lambda: {})
        self.fps_hint = fps_hint or (lambda: 0.0)
        seg = ctx.segmentation
        self.cp = seg.changepoint
        self.k = cpm.lag_windows(self.cp) if self.cp.enable else 0
        self.geom = segm.WindowGeometry(T=ctx.T, stride=ctx.stride, target_fps=ctx.target_fps)
        self.smoother = sm.init_smoother(ctx.energy.smoothing)
        self.cp_state = cpm.init_changepoint()
        self.seg_state = segm.SegState()
        self._awaiting: deque[tuple[int, float]] = deque()  # (window, signal) waiting for a change score
        self._scores: dict[int, float] = {}
        self.hist: deque[_Win] = deque()
        self.next_window = 0
        self._closes: deque[_Close] = deque()
        self._finishing: deque[_Finishing] = deque()
        self.open_clip: ClipJob | None = None
        self.records: list[dict[str, Any]] = []
        self.short_segments = 0
        self.done_info: FramesDone | None = None
        self.final = False
        # compact per-window series for energy.png
        self._t_mid = array.array("d")
        self._e = array.array("d")
        self._es = array.array("d")
        self._gated = array.array("b")
        self.out.mkdir(parents=True, exist_ok=True)
        self.energy_writer = ex.JsonlWriter(self.out / ex.ENERGY_FILE)
        self._energy_closed = False

    # -- feeding

    def add_result(self, r: WindowResult) -> None:
        self._add(
            _Win(
                window=r.window,
                start=r.start,
                frame_index=r.frame_index,
                end_frame_index=r.end_frame_index,
                t_start=r.t_start,
                t_end=r.t_end,
                gate=_GATE_CODES[r.gated],
                energies=tuple(float(r.energies[s]) for s in ENERGY_SOURCES),
                codes=r.codes,
                zq=r.zq,
            ),
            r.gated,
            None,
        )

    def add_skipped(self, s: SkippedWindow) -> None:
        zero = tuple(0.0 for _ in ENERGY_SOURCES)
        w = _Win(s.window, s.start, s.frame_index, s.end_frame_index, s.t_start, s.t_end, 3, zero, None, None)
        self._add(w, GATE_DROPPED, s.reason)

    def _add(self, w: _Win, gate: str | None, drop_reason: str | None) -> None:
        if w.window != self.next_window:
            raise ValueError(f"stream: expected window {self.next_window}, got {w.window}")
        self.next_window += 1
        e_raw = w.energies[ENERGY_SOURCES.index(self.ctx.energy.source)]
        self.smoother, e_smooth = sm.step(self.smoother, e_raw)
        rec = ex.energy_record(
            window=w.window,
            start_frame=w.frame_index,
            end_frame=w.end_frame_index,
            t_start=w.t_start,
            t_end=w.t_end,
            energy=e_raw,
            energy_smooth=e_smooth,
            gate=gate,
            codes=w.codes,
            energies=dict(zip(ENERGY_SOURCES, w.energies)),
        )
        if drop_reason is not None:
            rec["dropped"] = True
            rec["drop_reason"] = drop_reason
        self.energy_writer.write(rec)
        self._t_mid.append(0.5 * (w.t_start + w.t_end))
        self._e.append(e_raw)
        self._es.append(e_smooth)
        self._gated.append(w.gate != 0)
        self.hist.append(w)
        signal = float(sm.for_segmentation(e_raw, e_smooth, self.ctx.energy.smoothing))
        if self.cp.enable:
            self.cp_state, res = cpm.step(self.cp_state, self.cp, codes=w.codes, zq=w.zq)
            if res is not None:
                self._scores[res[0]] = res[1]
        self._awaiting.append((w.window, signal))
        self._release(final=False)

    def frames_done(self, info: FramesDone) -> None:
        """The reader has read every frame: frames clamp at ``num_frames - 1`` from now on."""
        self.done_info = info
        if info.num_frames >= 1:
            self.geom = dataclasses.replace(self.geom, num_frames=info.num_frames)

    # -- state machine

    def _release(self, final: bool) -> None:
        """Step the state machine on every window whose change score is known (``k`` windows late)."""
        while self._awaiting:
            w, signal = self._awaiting[0]
            change = None
            if self.cp.enable:
                change = self._scores.pop(w, None)
                if change is None:
                    # offline scores are 0 where a block is missing: before k-1 and in the last k windows
                    if w < self.k - 1 or final:
                        change = 0.0
                    else:
                        return
            self._awaiting.popleft()
            self.seg_state, events = segm.step(
                self.seg_state, signal, self.ctx.segmentation, self.geom, change, window=w
            )
            self._handle(events)

    def _handle(self, events: list[segm.Event]) -> None:
        for ev in events:
            if isinstance(ev, segm.Start):
                if self.ring is not None:
                    self.open_clip = self._open_clip(ev)
            elif isinstance(ev, segm.End):
                self._closes.append(_Close(ev, self.open_clip))
                self.open_clip = None
            else:  # Drop: shorter than min_duration_sec
                self.short_segments += 1
                if self.open_clip is not None:
                    self.open_clip.abort()
                    self.open_clip = None

    def _open_clip(self, ev: segm.Start) -> ClipJob:
        first_src, _ = self.timeline.get(ev.start_frame)
        fps = self.fps_hint() or self.ctx.target_fps
        path = self.out / ex.CLIPS_DIR / f".segment_w{ev.window:06d}.tmp.mp4"
        exp = self.ctx.export
        return ClipJob(path, fps, exp.clip_crf, exp.clip_preset, first_src)

    # -- per batch

    def update(self) -> None:
        """Close segments whose windows are all known, feed live clips, forget what is no longer needed."""
        self._try_close(final=False)
        self._pump_clips()
        self._collect(block=False)
        self._forget()

    def _try_close(self, final: bool) -> None:
        while self._closes:
            c = self._closes[0]
            b = c.end.end_frame
            if not final:
                # every window overlapping the segment must be known (sidecar selection), and frame b+1
                # read (the segment's last source frame is the one before it)
                if self.next_window * self.ctx.stride <= b or self.timeline.count <= b + 1:
                    return
            self._closes.popleft()
            self._close(c, final)

    def _local_view(self, final: bool) -> tuple[vs.VideoWindows, int]:
        """The held windows and frames as a ``VideoWindows`` in local coordinates (frame 0 = ``f0``), so
        ``segment_folder``'s mapping and selection functions apply unchanged; returns (view, f0)."""
        hist = list(self.hist)
        w0 = hist[0].window
        f0 = w0 * self.ctx.stride
        idx, t = self.timeline.arrays(f0)
        codes = np.full((len(hist), self.L), -1, dtype=np.int64)
        for i, w in enumerate(hist):
            if w.codes is not None:
                codes[i] = w.codes
        last_src, fps = self._end_rule(idx) if final else (int(idx[-1]), 0.0)
        vw = vs.VideoWindows(
            window=np.array([w.window for w in hist], dtype=np.int64),
            start=np.array([w.start - f0 for w in hist], dtype=np.int64),
            frame_index=np.array([w.frame_index for w in hist], dtype=np.int64),
            end_frame_index=np.array([w.end_frame_index for w in hist], dtype=np.int64),
            t_start=np.array([w.t_start for w in hist]),
            t_end=np.array([w.t_end for w in hist]),
            gate=np.array([w.gate for w in hist], dtype=np.int8),
            energies=np.array([w.energies for w in hist], dtype=np.float64),
            codes=codes,
            timeline_index=idx,
            timeline_t=t,
            last_source_frame=last_src,
            source_fps=fps,
            latent_dim=self.D,
            timeline_source=self.timeline_source(),
        )
        return vw, f0

    def _plan_matches(self) -> bool:
        return self.plan is not None and self.done_info is not None and self.done_info.matches_plan

    def timeline_source(self) -> str:
        """``params.timeline`` of segments.json: a file's as segment_folder (``vs.timeline_source``),
        ``live`` for a live source."""
        if self.live:
            return "live"
        return vs.timeline_source(self.plan, self._plan_matches())

    def source_fps(self) -> float:
        """``fps`` of segments.json: a file's as segment_folder (``vs.source_fps``), a live source's
        measured rate."""
        if self.live:
            return float(self.done_info.source_fps if self.done_info else self.fps_hint())
        return vs.source_fps(self.plan)

    def _end_rule(self, idx: np.ndarray) -> tuple[int, float]:
        """Last source frame and source fps at the end of the stream: segment_folder's rule for a file
        (``vs.end_of_video``); for a live source the last frame decoded and the measured rate."""
        if self.live:
            info = self.done_info
            return (info.last_source_frame if info else int(idx[-1])), self.source_fps()
        return vs.end_of_video(self.plan, self._plan_matches(), int(idx[-1]))

    def _close(self, c: _Close, final: bool) -> None:
        ev = c.end
        vw, f0 = self._local_view(final)
        label = ex.segment_label(len(self.records) + len(self._finishing))
        seg = vs.source_segment(
            vw, label, ev.start_frame, ev.end_frame, ev.start_window, ev.window, ev.mean_energy, ev.reason, f0
        )
        exp = self.ctx.export
        sel = None
        if exp.codes:
            sel = vs.select_windows(
                vw, ev.start_frame - f0, ev.end_frame - f0, self.ctx.T, exp.codes_min_overlap
            )
            vectors = np.zeros((sel.size, self.L, self.D), dtype=np.float32)
            hist = list(self.hist)
            for j, i in enumerate(sel):
                if hist[i].zq is not None:
                    vectors[j] = hist[i].zq
            meta = vs.sidecar_meta(self.video_name, seg, vw, sel, self.ctx)
            ex.write_codes_sidecar(self.out / ex.CODES_DIR, label, meta, vectors)
        rec = vs.segment_record(seg, exp, sel)
        if c.clip is not None:
            c.clip.end_src = seg.end_frame
            self._feed(c.clip, seg.end_frame + 1)
            c.clip.end()
        self._finishing.append(_Finishing(rec, c.clip))
        log.info(
            "%s: %s %.2f-%.2fs (frames %d-%d, %s)",
            self.video_name,
            label,
            seg.start_sec,
            seg.end_sec,
            seg.start_frame,
            seg.end_frame,
            ev.reason,
        )

    def _collect(self, block: bool) -> None:
        """Move kept segments whose clip is encoded into ``records`` (in order) and rewrite segments.json."""
        changed = False
        while self._finishing:
            f = self._finishing[0]
            if f.clip is not None:
                if not f.clip.done():
                    if not block:
                        break
                    f.clip.join()
                self._finish_clip(f)
            self._finishing.popleft()
            self.records.append(f.record)
            changed = True
        if changed:
            self.write_segments(final=False)

    def _finish_clip(self, f: _Finishing) -> None:
        clip, rec = f.clip, f.record
        final = self.out / rec["clip"]
        if clip.error is not None or not clip.path.is_file():
            why = clip.error or "no frames"
            log.error("%s: clip of %s could not be written (%s)", self.video_name, rec["label"], why)
            rec["clip"] = None
            rec["clip_error"] = str(why)
            return
        os.replace(clip.path, final)
        rec["clip_frames"] = int(clip.count)
        if clip.missing:
            rec["clip_missing_frames"] = int(clip.missing)

    # -- live clips

    def _safe_src(self) -> float:
        """Source frames below this index can no longer leave the open segment (module docstring)."""
        nw = self.seg_state.next_window
        if nw == 0:
            return -math.inf
        h = self.geom.last_frame(nw - 1) + 1
        if self.cp.enable:
            p = self.seg_state.pending
            align = self.ctx.segmentation.align
            h = min(h, p.boundary_frame if p is not None else self.geom.start_frame(nw, align))
        return self.timeline.get(h)[0] if h < self.timeline.count else math.inf

    def _feed(self, clip: ClipJob, hi: float) -> None:
        hi_i = int(min(hi, 2**62))
        frames = self.ring.take(clip.next_src, hi_i)
        if frames and frames[0][0] > clip.next_src:
            clip.missing += frames[0][0] - clip.next_src
            log.warning(
                "%s: live clip lost %d frames to stream.ring_max_seconds",
                self.video_name,
                frames[0][0] - clip.next_src,
            )
        for src, _, image in frames:
            clip.add(image)
            clip.next_src = src + 1

    def _pump_clips(self) -> None:
        if self.open_clip is not None:
            self._feed(self.open_clip, self._safe_src())

    def _forget(self) -> None:
        """Drop windows, frames and source images that no segment can need any more."""
        stride, T = self.ctx.stride, self.ctx.T
        nw = self.seg_state.next_window
        look = max(0, (nw - self.ctx.segmentation.up_count + 1) * stride)  # earliest future start
        keep = look
        if self.seg_state.active:
            keep = min(keep, self.seg_state.start_frame)
        if self._closes:
            keep = min(keep, self._closes[0].end.start_frame)
        w_lo = max(0, -(-(keep - T + 1) // stride))
        while self.hist and self.hist[0].window < w_lo:
            self.hist.popleft()
        if self.hist:
            self.timeline.forget_before(self.hist[0].window * stride)
        if self.ring is not None and look < self.timeline.count:
            # frames not yet sent to the open clip, or to an ended one still waiting to close, stay
            clips = [self.open_clip, *(c.clip for c in self._closes)]
            pending = [c.next_src for c in clips if c is not None]
            self.ring.forget_before(min([self.timeline.get(look)[0], *pending]))

    # -- end

    def finish(self) -> None:
        """End of stream: step the lagged windows, close the open segment, write every output."""
        self.final = True
        self._release(final=True)
        if self.next_window:
            self.seg_state, events = segm.finish(self.seg_state, self.ctx.segmentation, self.geom)
            self._handle(events)
        self._try_close(final=True)
        if self.open_clip is not None:  # cannot happen after finish(); keep the file system clean
            self.open_clip.abort()
            self.open_clip = None
        self._collect(block=True)
        self._energy_closed = True
        self.energy_writer.close()
        if not self.live:  # a file is re-readable: its clips are cut at the end, as segment_folder's
            vs.write_file_clips(self.ctx, self.records)
        if self.ctx.export.plot and len(self._e):
            vs.plot_video_energy(
                self.ctx,
                np.frombuffer(self._t_mid, dtype=np.float64),
                np.frombuffer(self._e, dtype=np.float64),
                np.frombuffer(self._es, dtype=np.float64),
                self.records,
                np.frombuffer(self._gated, dtype=np.int8).astype(bool),
                self.video_name,
                suffix=" (stream)",
            )
        self.write_segments(final=True)

    def abort(self) -> None:
        """Give up (an error): delete temporaries of unfinished files."""
        for c in [self.open_clip, *(c.clip for c in self._closes), *(f.clip for f in self._finishing)]:
            if c is not None:
                c.abort()
        if not self._energy_closed:
            self._energy_closed = True
            self.energy_writer.abort()

    def duration(self) -> float | None:
        """``video_duration_sec``: the plan's for a file read to its end (as segment_folder), else the
        end of the last frame read."""
        if not self.live and self.plan is not None and (self._plan_matches() or not self.final):
            return vs.video_duration(self.plan)
        count = self.timeline.count
        if count == 0:
            return None
        if self.final and self.hist:
            vw, f0 = self._local_view(final=True)
            return float(vs.to_source(vw, count - 1 - f0, count - 1 - f0)[3])
        return float(self.timeline.get(count - 1)[1])

    def write_segments(self, final: bool) -> None:
        """(Re)write segments.json: the kept segments so far, params and the stream's state."""
        doc = vs.segments_doc(
            self.ctx,
            self.video_name,
            self.duration(),
            self.source_fps(),
            self.records,
            self.timeline.count,
            self.next_window,
            self.timeline_source(),
        )
        doc["stream"] = {"finished": final, **self.extra()}
        ex.write_segments_json(self.out / ex.SEGMENTS_FILE, doc)


# --------------------------------------------------------------------------------------------- loop


@dataclass
class LiveSummary:
    """What a stream did (the ``stream`` block of run.json)."""

    source: str
    output: str
    end_reason: str
    windows: int
    computed: int
    dropped: int
    dropped_ids: list[list[int]]
    gap_windows: int
    gap_ids: list[list[int]]
    gated: int
    frames: int
    source_frames: int
    segments: int
    short_segments: int
    reconnects: int
    failed_attempts: int
    budget_s: float
    latency_ms: dict[str, float | None]
    compute_ms: dict[str, float | None]
    budget_ok_ratio: float | None
    max_queue_depth: int
    peak_rss_mb: float
    video_seconds: float | None
    wall_seconds: float
    realtime: bool
    live: bool
    error: str | None = None
    status: str = "done"

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _stats_ms(values: array.array) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p95": None, "max": None, "mean": None}
    a = np.frombuffer(values, dtype=np.float64) * 1000.0
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
        "mean": round(float(a.mean()), 3),
    }


def run_live(
    processor: WindowProcessor,
    ctx: vs.VideoContext,
    decode: DecodeConfig,
    live: LiveConfig,
    video_name: str,
    stop: threading.Event | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> LiveSummary:
    """Segment one source live; write its outputs under ``ctx.out_dir``; return the summary.

    Args:
        processor: tracker + tokenizer (its ``T``/``stride`` must equal ``ctx``'s).
        ctx: outputs and segmentation settings (threshold resolved), shared with ``segment_folder``.
        decode: ``target_fps`` / ``resize_shorter`` (``ctx.target_fps`` must equal ``decode.target_fps``).
        live: the loop's settings.
        video_name: ``video`` of segments.json (a file's name, or the stream's name).
        stop: set it (e.g. from a signal handler) to end the stream gracefully.
        on_progress: called after every compute iteration with counters (tests, progress displays).

    Raises:
        VideoError: the source delivered fewer than 2 frames (nothing could be segmented).
    """
    t_wall = time.perf_counter()
    stop = stop or threading.Event()
    source = ctx.source
    is_live = is_live_source(source)
    plan = None
    if not is_live:
        plan = vs.plan_timeline(source, decode.target_fps)  # duration/fps as segment_folder; early errors
    timeline = LiveTimeline()
    ring = FrameRing(live.ring_max_seconds) if is_live and ctx.export.clips else None
    q = WindowQueue(live.queue_windows)
    reader = SourceReader(
        source, decode, live, ctx.T, ctx.stride, processor.prepare, q, timeline, ring, stop, plan
    )
    budget = ctx.stride / ctx.target_fps
    latencies = array.array("d")
    computes = array.array("d")
    counters = {"computed": 0, "gated": 0}

    def extra() -> dict[str, Any]:
        return {
            "windows_computed": counters["computed"],
            "windows_dropped": len(q.dropped),
            "gap_windows": len(reader.gap_ids),
            "reconnects": reader.reconnects,
        }

    seg = LiveSegmenter(
        ctx,
        timeline,
        is_live,
        ring,
        processor.num_tokens,
        processor.latent_dim,
        video_name,
        plan=plan,
        fps_hint=lambda: reader.fps,
        extra=extra,
    )
    log.info(
        "%s: streaming (%s, queue %d windows, budget %.0f ms/window) -> %s",
        redact(source),
        "live" if is_live else ("realtime file" if live.realtime else "file"),
        live.queue_windows,
        budget * 1000,
        ctx.out_dir,
    )
    reader.start()
    last_log = time.monotonic()
    try:
        while True:
            entries = q.get_batch(live.batch_windows)
            if entries is None:
                break
            ready = [e for e in entries if isinstance(e, ReadyWindow)]
            t0 = time.monotonic()
            results = processor.process([e.window for e in ready]) if ready else []
            if live.debug_sleep_s and ready:
                time.sleep(live.debug_sleep_s * len(ready))
            if ready:
                computes.extend([(time.monotonic() - t0) / len(ready)] * len(ready))
            it = iter(results)
            for e in entries:
                if isinstance(e, ReadyWindow):
                    r = next(it)
                    counters["computed"] += 1
                    counters["gated"] += r.gated is not None
                    seg.add_result(r)
                elif isinstance(e, SkippedWindow):
                    seg.add_skipped(e)
                else:
                    seg.frames_done(e)
            seg.update()
            now = time.monotonic()
            latencies.extend([now - e.t_ready for e in ready])
            if on_progress is not None:
                on_progress({"windows": seg.next_window, "dropped": len(q.dropped), **extra()})
            if now - last_log >= live.log_every_s:
                last_log = now
                lat = _stats_ms(latencies)
                log.info(
                    "%s: %d windows (%d dropped, %d gap), latency p50 %s ms p95 %s ms, queue %d, %d segments",
                    video_name,
                    seg.next_window,
                    len(q.dropped),
                    len(reader.gap_ids),
                    lat["p50"],
                    lat["p95"],
                    q.depth(),
                    len(seg.records),
                )
        reader.join()
        if reader.timeline.count < 2:
            err = reader.error
            seg.abort()
            if isinstance(err, VideoError):
                raise err
            raise VideoError(redact(source), f"no video could be read ({reader.end_reason})")
        seg.finish()
    except BaseException:
        stop.set()
        seg.abort()
        reader.join(timeout=15)
        raise
    lat = np.frombuffer(latencies, dtype=np.float64)
    error = None if reader.error is None else f"{type(reader.error).__name__}: {reader.error}"
    status = "failed" if reader.error is not None or reader.end_reason.startswith("source_lost") else "done"
    return LiveSummary(
        source=redact(source),
        output=str(ctx.out_dir),
        end_reason=reader.end_reason,
        windows=seg.next_window,
        computed=counters["computed"],
        dropped=len(q.dropped),
        dropped_ids=as_ranges(q.dropped),
        gap_windows=len(reader.gap_ids),
        gap_ids=as_ranges(reader.gap_ids),
        gated=counters["gated"],
        frames=timeline.count,
        source_frames=reader.source_frames,
        segments=len(seg.records),
        short_segments=seg.short_segments,
        reconnects=reader.reconnects,
        failed_attempts=reader.failed_attempts,
        budget_s=budget,
        latency_ms=_stats_ms(latencies),
        compute_ms=_stats_ms(computes),
        budget_ok_ratio=round(float((lat <= budget).mean()), 4) if lat.size else None,
        max_queue_depth=q.max_depth,
        peak_rss_mb=round(vs.peak_rss_mb(), 1),
        video_seconds=seg.duration(),
        wall_seconds=round(time.perf_counter() - t_wall, 3),
        realtime=live.realtime,
        live=is_live,
        error=error,
        status=status,
    )

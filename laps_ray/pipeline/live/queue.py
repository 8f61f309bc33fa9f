"""The bounded window queue between the reader thread and the compute loop, and what travels on it.

**Drop policy.** The queue holds at most ``queue_windows`` windows. Files read as fast as possible (no
``realtime``) never drop: the reader blocks (back-pressure), which is why ``stream`` on a file writes the
same segments and ``energy.jsonl`` as ``segment_folder``. Live sources and ``realtime`` files cannot wait:
when the queue is full, the *oldest* queued window (the stalest) is replaced in place by a
:class:`SkippedWindow` with reason ``queue_full``, so ids are never re-indexed and order is kept. Skipped
windows enter ``energy.jsonl`` and the state machine as explicit gaps: energy 0, ``gated: true``,
``gate: "dropped"``, ``dropped: true`` and a ``drop_reason``; their count and true ids (as ranges) are in
the summary. Windows that mix frames from before and after a reconnect are skipped with reason
``reconnect`` (their motion would be a jump between two connections; see :mod:`.source`).

Entries, in stream order: :class:`ReadyWindow` (to compute), :class:`SkippedWindow` (a gap),
:class:`FramesDone` (the reader's last word, before the padded tail windows).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from laps_ray.pipeline.window_processor import WindowId
from laps_ray.tracking.windowed import Window

GATE_DROPPED = "dropped"  # energy.jsonl ``gate`` of a window that was never computed
DROP_QUEUE_FULL = "queue_full"
DROP_RECONNECT = "reconnect"


@dataclass
class ReadyWindow:
    """A window to compute; ``t_ready`` = ``time.monotonic()`` at which its last frame was read."""

    window: Window
    t_ready: float


@dataclass
class SkippedWindow(WindowId):
    """A window that is not computed (queue full, or it spans a reconnect): an explicit gap.

    Attributes:
        reason: ``drop_reason`` of its energy.jsonl line (``queue_full`` or ``reconnect``).
    """

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

    Attributes:
        capacity: most :class:`ReadyWindow` entries queued at once.
        dropped: true ids of the windows dropped because the queue was full, in drop order.
        max_depth: most windows that were ever queued at once.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._cond = threading.Condition()
        self._items: deque[Entry] = deque()
        self._ready = 0
        self._closed = False
        self.dropped: list[int] = []
        self.max_depth = 0

    def put_window(self, item: ReadyWindow, drop: bool, stop: threading.Event) -> None:
        """Queue a window; when full, wait (``drop=False``, until ``stop``) or drop the oldest one."""
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
        """Queue a marker (never blocks: markers do not count towards ``capacity``)."""
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def close(self) -> None:
        """Nothing more will be queued: :meth:`get_batch` returns None once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def depth(self) -> int:
        """Windows queued now."""
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
    """The :class:`SkippedWindow` record of a formed window (its items carry ``index`` and ``t``)."""
    first, last = win.items[0], win.items[-1]
    return SkippedWindow(
        window=win.index,
        start=win.start,
        frame_index=first.index,
        end_frame_index=last.index,
        t_start=first.t,
        t_end=last.t,
        reason=reason,
    )


def as_ranges(ids: list[int]) -> list[list[int]]:
    """Sorted ids -> ``[[first, last], ...]`` runs (compact and exact)."""
    out: list[list[int]] = []
    for i in sorted(ids):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out

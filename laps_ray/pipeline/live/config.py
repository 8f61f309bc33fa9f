"""Settings of the live loop: the ``stream:`` section of ``configs/stream.yaml`` and its ``reconnect:``.

Pure dataclasses, apart from the threads they configure: the ``stream`` job composes
:class:`LiveConfig` into its own config, and every other file of this package reads it. Values are
checked on construction with :func:`laps_ray.config.check` (an error names the key).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from laps_ray.config import check


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

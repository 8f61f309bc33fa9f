"""THE frames → seconds rule: a video's processed frames on its source's clock.

The state machine reports segments in *processed* frames (resampled to ``target_fps`` by timestamp).
Outputs, sweeps, calibration and evaluation all speak source frames and seconds; this module holds
the one mapping between them, so a sweep scores exactly the segments ``segment_folder`` writes:

* processed frames ``a..b`` (inclusive) cover source frames ``index[a] .. index[b+1] - 1``: every
  source frame up to the next processed one;
* ``start_sec = t[a]``, ``end_sec = t[b+1]`` — a segment ends where the next processed frame starts;
* the last processed frame extends to the video's last source frame, and ends one source period
  after it.

Segments that touch (a change-point split) therefore share a boundary exactly, in frames and in
seconds, with no gap and no overlap. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SourceTimeline:
    """Where every processed frame of a video sits in the source.

    Attributes:
        index: (F,) int64 source frame index of every processed frame (increasing).
        t: (F,) float64 its time in seconds from the first frame (increasing).
        last_source_frame: the video's last source frame (>= ``index[-1]``): source frames after the
            last processed one belong to it.
        source_fps: nominal source frame rate (0.0 = unknown: the last frame then has no duration).
    """

    index: np.ndarray
    t: np.ndarray
    last_source_frame: int
    source_fps: float

    @property
    def num_frames(self) -> int:
        """F, processed frames."""
        return int(self.index.size)

    def to_source(self, a: int, b: int) -> tuple[int, int, float, float]:
        """Processed frames ``a..b`` (inclusive) → (start_frame, end_frame, start_sec, end_sec) in the
        source (module docstring)."""
        idx, t = self.index, self.t
        F = idx.size
        if not 0 <= a <= b < F:
            raise ValueError(f"processed frames {a}..{b} outside 0..{F - 1}")
        start_frame, start_sec = int(idx[a]), float(t[a])
        if b + 1 < F:
            return start_frame, int(idx[b + 1]) - 1, start_sec, float(t[b + 1])
        end_frame = int(self.last_source_frame)
        period = 1.0 / self.source_fps if self.source_fps > 0 else 0.0
        return start_frame, end_frame, start_sec, float(t[F - 1]) + (end_frame - int(idx[F - 1]) + 1) * period

    def end_sec(self) -> float:
        """Where the video ends on this timeline (the end of its last frame)."""
        return self.to_source(self.num_frames - 1, self.num_frames - 1)[3]

"""The segmentation state machine: (state, energy of the next window) -> (state, events).

One pure implementation, used online (fed window by window), offline (:func:`segment_offline`, a
fold of :func:`step` and :func:`finish`), in calibration and in evaluation. The reference had four
diverging copies; there is no second one here.

Geometry (``core.windows``): window ``w`` covers processed frames ``[w*stride, w*stride + T - 1]``
(the last window may be padded past the video's end; frames are clamped to ``num_frames - 1``).

Rules (thresholds ``on = threshold``, ``off = on * hysteresis_ratio``):

* START: on the ``up_count``-th consecutive window with ``e >= on``. The segment's first window is
  the *first* window of that run (the "onset" window), not the window on which the START was
  decided: waiting ``up_count - 1`` more windows is debounce latency, not evidence that motion began
  later, and using the deciding window would put every start ``(up_count - 1) * stride`` frames
  late (0.2 s at the defaults). ``start_frame`` is the onset window aligned by ``align``:
  ``start`` -> its first frame, ``center`` -> first + T//2, ``end`` -> its last frame - stride + 1.
  Which is least biased depends on how the energy responds to a window that is only partly moving.
  The ``motion`` energy (the default, ``core.motion``) scores a window high as soon as any part of
  it leaves a straight path, so the first high window is the one whose *end* meets the motion:
  ``end`` (default) places starts and ends within 0.1 s of the ground truth on the quality
  benchmark, against 0.2 s / 0.5 s with ``center`` (measured: ``benchmarks/segment_quality.py``).
  A mean over the window (the latent and velocity energies) crosses when roughly half of it moves:
  use ``center`` with those.
* END (reason ``low_energy``): while active, after ``down_count`` consecutive windows with
  ``e < off``. The segment ends where motion stops, not where the END was decided: at the last
  window with ``e >= off`` (the one before the low run), aligned like starts, mirrored
  (:meth:`WindowGeometry.end_frame`): ``center`` -> its centre + ``stride - 1`` (the next window,
  ``stride`` frames later, is already mostly still), ``start`` -> its last frame (keeps all the
  motion), ``end`` -> its first ``stride`` frames. (Ending at the last frame of the last *low*
  window put every end ``down_count * stride + T/2`` frames — about a second — after the motion.)
  Values in ``[off, on)`` keep a segment alive and reset the low count.
* Cooldown: after an END, exactly ``cooldown_windows`` windows are ignored (no START, no counting
  towards one); 0 = none. (The reference decremented before checking, so 1 did nothing.)
* Minimum duration: a closed segment with ``(end_frame - start_frame + 1) / target_fps <
  min_duration_sec`` is reported as :class:`Drop` instead of :class:`End`; the value is used as
  given, never raised.
* Maximum duration (0 = off, the default): the segment ENDs (reason ``max_duration``) on the first
  window that reaches it, with ``end_frame`` capped so the segment is never longer. Off by default
  because the reference's 2 s cap cut every long action into periodic 2 s pieces whose boundaries
  had nothing to do with actions; consecutive actions are split by change points instead.
* Change points (``changepoint.enable``): ``change`` is the score of a boundary between this window
  and the next (``core.changepoint``). While active, a score ``>= threshold`` that is a local peak
  (``>=`` the previous score, ``>`` the next one), at least ``min_gap_windows`` after the previous
  change boundary, splits the segment: END at window c (reason ``change``) and START at c+1 (cause
  ``change``, no cooldown, no up_count). The boundary frame lies midway between the centres of
  windows c and c+1 (:meth:`WindowGeometry.change_frame`, whatever ``align``); the old segment
  ends the frame before it, so the two are contiguous. Both sides must respect the
  minimum duration: the old side is checked at once; the split is held *pending* until the new side
  has reached the minimum duration and ``up_count`` windows with ``e >= on`` while still active, and
  is abandoned if the segment ends first (so an action's fading tail, where the latents change
  because the motion stops, is not split off as a fragment). Events of a split are therefore
  emitted a few windows after the boundary; they carry their true window indices.
* No overlap: windows overlap by ``T - stride`` frames, so with a short cooldown the aligned start
  of a new segment can fall inside the previous kept segment (which includes its END windows); the
  start is then moved to the frame after that segment's end.
* End of stream: :func:`finish` closes an open segment (reason ``end_of_stream``), kept if long
  enough.

``mean_energy`` is the mean of the fed values over the segment's windows.

One file over ~400 lines on purpose: the rules above, the state, the events and the transition
function are one rule read together; split, a change to one rule would touch several files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from laps_ray.config import check, check_choice
from laps_ray.core.auto_threshold import AUTO, AutoThresholdConfig, is_auto
from laps_ray.core.changepoint import ChangePointConfig
from laps_ray.core.windows import DEFAULT_STRIDE, DEFAULT_T, DEFAULT_TARGET_FPS

ALIGNS = ("start", "center", "end")
END_REASONS = ("low_energy", "max_duration", "change", "end_of_stream")


@dataclass
class SegmentationConfig:
    """Hysteresis state machine settings.

    Attributes:
        threshold: ``on`` threshold: ``auto`` (default: calibrated without labels on the run's own
            energies, ``core.auto_threshold``), a number, or — through a job's ``--report`` — a
            calibration report's; the job resolves it to a number before segmenting (``null`` is read
            as ``auto``).
        auto: how ``auto`` is calibrated (:class:`~laps_ray.core.auto_threshold.AutoThresholdConfig`).
        hysteresis_ratio: ``off = on * ratio``, in (0, 1].
        up_count: consecutive windows ``>= on`` needed to START (>= 1).
        down_count: consecutive windows ``< off`` needed to END (>= 1).
        cooldown_windows: windows blocked after an END (>= 0, exactly that many).
        min_duration_sec: shorter segments are dropped. 0.4 s = 8 frames at 20 fps: the shortest
            segment ``up_count=2`` moving windows make (``2 × stride``) with ends where motion stops.
        max_duration_sec: maximum segment duration; 0 = off (default, see module doc).
        align: where a segment starts inside its first window: ``start``, ``center`` or ``end``
            (default, right for the ``motion`` energy; ``center`` for the latent energies).
        changepoint: splitting of active segments at latent-action changes (off by default).
    """

    threshold: Any = AUTO  # "auto" or a number (OmegaConf: one field for both)
    auto: AutoThresholdConfig = field(default_factory=AutoThresholdConfig)
    hysteresis_ratio: float = 0.95
    up_count: int = 2
    down_count: int = 2
    cooldown_windows: int = 1
    min_duration_sec: float = 0.4
    max_duration_sec: float = 0.0
    align: str = "end"
    changepoint: ChangePointConfig = field(default_factory=ChangePointConfig)

    def __post_init__(self) -> None:
        if is_auto(self.threshold):
            self.threshold = AUTO
        else:
            ok = isinstance(self.threshold, int | float) and not isinstance(self.threshold, bool)
            check(
                ok and math.isfinite(self.threshold),
                "segmentation.threshold",
                f"must be 'auto' or a finite number, got {self.threshold!r}",
            )
            self.threshold = float(self.threshold)
        check(
            math.isfinite(self.hysteresis_ratio) and 0.0 < self.hysteresis_ratio <= 1.0,
            "segmentation.hysteresis_ratio",
            f"must be in (0, 1], got {self.hysteresis_ratio}",
        )
        check(self.up_count >= 1, "segmentation.up_count", f"must be >= 1, got {self.up_count}")
        check(self.down_count >= 1, "segmentation.down_count", f"must be >= 1, got {self.down_count}")
        check(self.cooldown_windows >= 0, "segmentation.cooldown_windows", "must be >= 0")
        check(
            math.isfinite(self.min_duration_sec) and self.min_duration_sec >= 0.0,
            "segmentation.min_duration_sec",
            f"must be >= 0, got {self.min_duration_sec}",
        )
        check(
            math.isfinite(self.max_duration_sec)
            and (self.max_duration_sec == 0.0 or self.max_duration_sec > self.min_duration_sec),
            "segmentation.max_duration_sec",
            f"must be 0 (off) or > min_duration_sec={self.min_duration_sec}, got {self.max_duration_sec}",
        )
        check_choice(self.align, ALIGNS, "segmentation.align")


@dataclass(frozen=True)
class WindowGeometry:
    """What the state machine needs to know about windows.

    Attributes:
        T: frames per window.
        stride: frames between window starts.
        target_fps: processed frame rate (frames <-> seconds).
        num_frames: processed frames of the video when known; frames are clamped to ``num_frames-1``.
    """

    T: int = DEFAULT_T
    stride: int = DEFAULT_STRIDE
    target_fps: float = DEFAULT_TARGET_FPS
    num_frames: int | None = None

    def __post_init__(self) -> None:
        if self.T < 2 or self.stride < 1 or not (math.isfinite(self.target_fps) and self.target_fps > 0):
            raise ValueError(
                f"invalid window geometry T={self.T}, stride={self.stride}, fps={self.target_fps}"
            )
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")

    def _clamp(self, frame: int) -> int:
        return frame if self.num_frames is None else min(frame, self.num_frames - 1)

    def first_frame(self, w: int) -> int:
        """First processed frame of window ``w`` (clamped)."""
        return self._clamp(w * self.stride)

    def last_frame(self, w: int) -> int:
        """Last processed frame of window ``w`` (clamped: a padded last window ends at the video's end)."""
        return self._clamp(w * self.stride + self.T - 1)

    def start_frame(self, w: int, align: str) -> int:
        """Frame where a segment whose first window is ``w`` starts, for alignment ``align``."""
        ws = w * self.stride
        offset = {"start": 0, "center": self.T // 2, "end": self.T - self.stride}[align]
        return self._clamp(ws + offset)

    def end_frame(self, w: int, align: str) -> int:
        """Frame where a segment whose last moving window is ``w`` ends (mirror of :meth:`start_frame`)."""
        ws = w * self.stride
        offset = {"start": self.T - 1, "center": self.T // 2 + self.stride - 1, "end": self.stride - 1}[align]
        return self._clamp(ws + offset)

    def change_frame(self, c: int) -> int:
        """First frame after a change point between windows ``c`` and ``c + 1``.

        The split scores the windows up to ``c`` against those from ``c + 1``; windows that straddle
        the change mix both motions, and the split peaks where the change lies between the centres
        of ``c`` and ``c + 1``, so the boundary is their midpoint: ``c*stride + (T - 1 + stride) / 2``
        rounded up (frame 10 of window ``c`` at T=16, stride 4). Independent of ``align``, which is
        about how an *energy* responds to a partly moving window. (Aligning it like a start put
        change boundaries 0.39 s late with ``align: end``: median over the back-to-back boundaries of
        the quality benchmark with every distractor on; 0.11 s with this rule.)
        """
        return self._clamp(c * self.stride + math.ceil((self.T - 1 + self.stride) / 2))

    def frames(self, seconds: float) -> float:
        """Seconds -> (fractional) frames at ``target_fps``."""
        return seconds * self.target_fps


# ---------------------------------------------------------------------------------------------
# Events and segments


@dataclass(frozen=True)
class Segment:
    """A kept segment. Frames are processed-frame indices, both inclusive.

    Attributes:
        start_window, end_window: first and last window of the segment.
        start_frame, end_frame: first and last frame.
        reason: why it ended (one of ``END_REASONS``).
        mean_energy: mean of the fed energies over its windows.
    """

    start_window: int
    end_window: int
    start_frame: int
    end_frame: int
    reason: str
    mean_energy: float

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame + 1


@dataclass(frozen=True)
class Start:
    """A segment started. ``window`` is its first window (possibly before the deciding window).

    ``cause`` is ``energy`` (hysteresis START) or ``change`` (split at a change point).
    """

    window: int
    start_frame: int
    cause: str = "energy"


@dataclass(frozen=True)
class _Closed:
    """A segment that ended: the whole segment, so callers need no bookkeeping."""

    window: int
    end_frame: int
    reason: str
    start_window: int
    start_frame: int
    mean_energy: float

    def segment(self) -> Segment:
        return Segment(
            self.start_window, self.window, self.start_frame, self.end_frame, self.reason, self.mean_energy
        )


@dataclass(frozen=True)
class End(_Closed):
    """A segment ended and is kept."""


@dataclass(frozen=True)
class Drop(_Closed):
    """A segment ended but is shorter than ``min_duration_sec``: discard its clip."""


Event = Start | End | Drop


# ---------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True)
class PendingSplit:
    """A change point found inside the active segment, waiting for its new side to be long enough.

    Attributes:
        end_window: window c, the last window of the old side.
        boundary_frame: first frame of the new side.
        energy_sum, count, high: sum of energies, number of windows and windows ``>= on`` of the
            new side so far.
    """

    end_window: int
    boundary_frame: int
    energy_sum: float = 0.0
    count: int = 0
    high: int = 0


@dataclass(frozen=True)
class SegState:
    """Explicit streaming state of the state machine (one per video/stream).

    Attributes:
        next_window: index of the next window to feed.
        active: a segment is open.
        pos_run, run_sum: length and energy sum of the current run of windows ``>= on`` (inactive).
        neg_run: consecutive windows ``< off`` (active).
        cooldown_left: windows still blocked after the last END.
        start_window, start_frame: first window/frame of the open segment.
        seg_sum, seg_count: energy sum and window count of the open segment.
        pending: a change split waiting to be committed.
        score_prev, score_prev2: change scores of the previous two windows (None = unknown).
        last_change_window: window c of the last committed change split.
        last_end_frame: end frame of the last kept segment (-1 if none); the next start is clamped
            after it so segments never overlap.
    """

    next_window: int = 0
    active: bool = False
    pos_run: int = 0
    run_sum: float = 0.0
    neg_run: int = 0
    cooldown_left: int = 0
    start_window: int = -1
    start_frame: int = -1
    seg_sum: float = 0.0
    seg_count: int = 0
    pending: PendingSplit | None = None
    score_prev: float | None = None
    score_prev2: float | None = None
    last_change_window: int | None = None
    last_end_frame: int = -1


def _duration_limits(cfg: SegmentationConfig, geom: WindowGeometry) -> tuple[int, int]:
    """(min_frames, max_frames) from seconds; max_frames 0 = off."""
    # Tolerances keep e.g. 0.8 s * 20 fps = 16 frames exact despite float rounding.
    min_frames = max(1, math.ceil(geom.frames(cfg.min_duration_sec) - 1e-9))
    max_frames = 0
    if cfg.max_duration_sec > 0:
        max_frames = math.floor(geom.frames(cfg.max_duration_sec) + 1e-9)
        if max_frames < min_frames:
            raise ValueError(
                f"segmentation.max_duration_sec={cfg.max_duration_sec} is {max_frames} frames at "
                f"{geom.target_fps} fps, shorter than min_duration_sec={cfg.min_duration_sec} ({min_frames})"
            )
    return min_frames, max_frames


def _close(s: SegState, window: int, end_frame: int, reason: str, min_frames: int, cooldown: int):
    """End the open segment at ``window``; returns (state, End|Drop). Any pending split is abandoned."""
    mean = s.seg_sum / s.seg_count
    kept = end_frame - s.start_frame + 1 >= min_frames
    event = (End if kept else Drop)(window, end_frame, reason, s.start_window, s.start_frame, mean)
    s = dataclasses.replace(
        s,
        last_end_frame=end_frame if kept else s.last_end_frame,
        active=False,
        pos_run=0,
        run_sum=0.0,
        neg_run=0,
        cooldown_left=cooldown,
        start_window=-1,
        start_frame=-1,
        seg_sum=0.0,
        seg_count=0,
        pending=None,
        last_change_window=None,
    )
    return s, event


def _new_side_frames(cfg: SegmentationConfig, geom: WindowGeometry) -> float:
    """Frames the new side of a change split must last: the minimum duration, and the ``k`` windows'
    stride that the change score's "after" block covered."""
    min_frames, _ = _duration_limits(cfg, geom)
    return max(min_frames, cfg.changepoint.k * geom.stride)


def _commit_split(s: SegState, window: int) -> tuple[SegState, list[Event]]:
    """Turn the pending split into END (old side) + START (new side)."""
    p = s.pending
    old_mean = (s.seg_sum - p.energy_sum) / (s.seg_count - p.count)
    events: list[Event] = [
        End(p.end_window, p.boundary_frame - 1, "change", s.start_window, s.start_frame, old_mean),
        Start(p.end_window + 1, p.boundary_frame, "change"),
    ]
    s = dataclasses.replace(
        s,
        start_window=p.end_window + 1,
        start_frame=p.boundary_frame,
        seg_sum=p.energy_sum,
        seg_count=p.count,
        pending=None,
        last_change_window=p.end_window,
        last_end_frame=p.boundary_frame - 1,
        # the low run must lie inside the new segment
        neg_run=min(s.neg_run, window - p.end_window),
    )
    return s, events


def step(
    state: SegState,
    e: float,
    cfg: SegmentationConfig,
    geom: WindowGeometry,
    change: float | None = None,
    window: int | None = None,
) -> tuple[SegState, list[Event]]:
    """Feed the (smoothed) energy of the next window.

    Args:
        state: current state (not modified).
        e: energy of window ``t = state.next_window``; finite.
        cfg: settings; ``cfg.threshold`` must be resolved (not None).
        geom: window geometry.
        change: change-point score of a boundary between window t and t+1 (ignored unless
            ``cfg.changepoint.enable``); None = unknown.
        window: optional index of the fed window, checked against ``state.next_window`` so that a
            skipped or repeated window is an error instead of a silent misalignment.

    Returns:
        ``(new_state, events)``; events are in the order they happen.
    """
    t = state.next_window
    if window is not None and window != t:
        raise ValueError(
            f"segmentation: expected window {t}, got window {window} (windows must not be skipped)"
        )
    if is_auto(cfg.threshold):
        raise ValueError(
            "segmentation.threshold is 'auto': the job resolves it to a number before segmenting"
        )
    e = float(e)
    if not math.isfinite(e):
        raise ValueError(f"segmentation: energy of window {t} is not finite ({e})")
    on = cfg.threshold
    off = on * cfg.hysteresis_ratio
    u, d = cfg.up_count, cfg.down_count
    min_frames, max_frames = _duration_limits(cfg, geom)
    events: list[Event] = []
    s = dataclasses.replace(state, next_window=t + 1)

    cp = cfg.changepoint
    if cp.enable:
        score = None if change is None else float(change)
        if score is not None and not math.isfinite(score):
            raise ValueError(f"segmentation: change score of window {t} is not finite ({score})")
        # Is window c = t-1 a local peak? Needs scores of c-1, c and c+1 (= t).
        prev, prev2 = s.score_prev, s.score_prev2
        c = t - 1
        if (
            s.active
            and s.pending is None
            and score is not None
            and prev is not None
            and prev2 is not None
            and prev >= cp.threshold
            and prev >= prev2
            and prev > score
            and c >= s.start_window
            and (s.last_change_window is None or c - s.last_change_window >= cp.min_gap_windows)
        ):
            boundary = geom.change_frame(c)
            if boundary - s.start_frame >= min_frames:  # the old side is long enough
                s = dataclasses.replace(s, pending=PendingSplit(end_window=c, boundary_frame=boundary))
        s = dataclasses.replace(s, score_prev2=prev, score_prev=score)

    if not s.active:
        if s.cooldown_left > 0:
            # This window is blocked: it neither starts nor counts towards a start.
            return dataclasses.replace(s, cooldown_left=s.cooldown_left - 1, pos_run=0, run_sum=0.0), events
        if e >= on:
            s = dataclasses.replace(s, pos_run=s.pos_run + 1, run_sum=s.run_sum + e)
        else:
            s = dataclasses.replace(s, pos_run=0, run_sum=0.0)
        if s.pos_run < u:
            return s, events
        onset = t - u + 1
        # Windows overlap by T - stride frames, so the aligned start may fall inside the previous
        # segment (whose END windows it includes); start right after it instead.
        start_frame = max(geom.start_frame(onset, cfg.align), s.last_end_frame + 1)
        events.append(Start(onset, start_frame, "energy"))
        s = dataclasses.replace(
            s,
            active=True,
            start_window=onset,
            start_frame=start_frame,
            seg_sum=s.run_sum,
            seg_count=s.pos_run,
            pos_run=0,
            run_sum=0.0,
            neg_run=0,
            pending=None,
        )
    else:
        s = dataclasses.replace(s, seg_sum=s.seg_sum + e, seg_count=s.seg_count + 1)
        if s.pending is not None:
            p = s.pending
            p = dataclasses.replace(
                p, energy_sum=p.energy_sum + e, count=p.count + 1, high=p.high + (e >= on)
            )
            s = dataclasses.replace(s, pending=p)

    # Active, including the window that just started the segment.
    s = dataclasses.replace(s, neg_run=s.neg_run + 1 if e < off else 0)
    ending_low = s.neg_run >= d
    last = geom.last_frame(t)
    if s.pending is not None and not ending_low:
        p = s.pending
        # The new side counts up to where it would end if motion stopped now (the END rule's frame),
        # and must span the k windows the change score compared (the "after" block): shorter, it is
        # where the old motion fades, not a new one (an action's tail was split off as a fragment).
        if geom.end_frame(t, cfg.align) - p.boundary_frame + 1 >= _new_side_frames(cfg, geom) and p.high >= u:
            s, split_events = _commit_split(s, t)
            events.extend(split_events)
    if max_frames and last - s.start_frame + 1 >= max_frames:
        s, ev = _close(
            s, t, min(last, s.start_frame + max_frames - 1), "max_duration", min_frames, cfg.cooldown_windows
        )
        events.append(ev)
    elif ending_low:  # ends where motion stopped: the last window before the low run (module doc)
        end = max(s.start_frame, geom.end_frame(t - d, cfg.align))
        s, ev = _close(s, t, end, "low_energy", min_frames, cfg.cooldown_windows)
        events.append(ev)
    return s, events


def finish(
    state: SegState,
    cfg: SegmentationConfig,
    geom: WindowGeometry,
    last_window: int | None = None,
) -> tuple[SegState, list[Event]]:
    """End of stream: close an open segment (reason ``end_of_stream``) at the last fed window.

    A pending change split is committed if its new side is long enough, else abandoned. The
    closed segment is kept (End) if it lasts at least ``min_duration_sec``, else dropped.

    Args:
        state: current state.
        cfg, geom: as for :func:`step`.
        last_window: optional index of the last window fed, checked against the state.

    Returns:
        ``(closed_state, events)``.
    """
    t = state.next_window - 1
    if last_window is not None and last_window != t:
        raise ValueError(f"segmentation.finish: last fed window is {t}, caller says {last_window}")
    if not state.active:
        return state, []
    min_frames, _ = _duration_limits(cfg, geom)
    last = geom.last_frame(t)
    events: list[Event] = []
    s = state
    p = s.pending
    if (
        p is not None
        and last - p.boundary_frame + 1 >= _new_side_frames(cfg, geom)
        and p.high >= cfg.up_count
    ):
        s, split_events = _commit_split(s, t)
        events.extend(split_events)
    s, ev = _close(s, t, last, "end_of_stream", min_frames, 0)
    events.append(ev)
    return s, events


def segment_events(
    energies: Sequence[float] | np.ndarray,
    cfg: SegmentationConfig,
    geom: WindowGeometry,
    changes: Sequence[float] | np.ndarray | None = None,
) -> list[Event]:
    """All events of a whole series: a fold of :func:`step` followed by :func:`finish`.

    Args:
        energies: (W,) energies (smoothed or raw, see ``smoothing.for_segmentation``).
        cfg, geom: as for :func:`step`.
        changes: (W,) change-point scores (``changepoint.changepoint_scores``); required when
            ``cfg.changepoint.enable``.
    """
    energies = np.asarray(energies, dtype=np.float64)
    if energies.ndim != 1:
        raise ValueError(f"segmentation: energies must be 1-D (W,), got {energies.shape}")
    if changes is not None:
        changes = np.asarray(changes, dtype=np.float64)
        if changes.shape != energies.shape:
            raise ValueError(
                f"segmentation: changes shape {changes.shape} != energies shape {energies.shape}"
            )
    elif cfg.changepoint.enable:
        raise ValueError("segmentation.changepoint.enable is true but no change scores were given")
    state = SegState()
    events: list[Event] = []
    for w, e in enumerate(energies):
        state, evs = step(state, e, cfg, geom, None if changes is None else changes[w])
        events.extend(evs)
    _, evs = finish(state, cfg, geom)
    events.extend(evs)
    return events


def segment_offline(
    energies: Sequence[float] | np.ndarray,
    cfg: SegmentationConfig,
    geom: WindowGeometry,
    changes: Sequence[float] | np.ndarray | None = None,
    num_frames: int | None = None,
) -> list[Segment]:
    """Kept segments of a whole series (same rules as streaming, by construction).

    Args:
        energies: (W,) energies in window order.
        cfg, geom: settings and geometry.
        changes: (W,) change-point scores, when change points are enabled.
        num_frames: processed frames of the video; overrides ``geom.num_frames`` (end frames clamp).

    Returns:
        Segments in time order.
    """
    if num_frames is not None:
        geom = dataclasses.replace(geom, num_frames=num_frames)
    return [ev.segment() for ev in segment_events(energies, cfg, geom, changes) if isinstance(ev, End)]

"""THE frame timestamp and resampling rules, shared by decoding, clip cutting, the timeline plan of
``segment_folder`` and the live reader of ``stream``, so all of them time and keep the same frames.

* Frame times follow :class:`FrameClock`: the k-th frame the decoder outputs (display order) gets the
  k-th smallest timestamp of the stream's frame-carrying packets, forced strictly increasing. Real
  footage needs it: B-frames muxed with pts == dts (opencv's ``box.mp4``), packed B-frames in AVI
  (``Megamind.avi``), edit lists, negative, repeated or missing timestamps and AVI drop frames leave the
  decoded frames' own pts non-monotonic, repeated or absent, while the *set* of packet timestamps is
  still right. ``segment_folder``'s timeline plan applies the same clock to packet timestamps.
* Resampling to ``target_fps`` is by presentation timestamp (the original paced the read loop by wall
  clock and consumed every frame, so windows spanned ``T / source_fps`` seconds). Frame ``i`` is kept
  iff ``t_i >= next_t - eps``; after a keep, ``next_t`` jumps to the first grid slot ``k / target_fps``
  after ``t_i`` (catch-up, never a duplicate). Slots are an integer grid, so no drift accumulates and a
  time shard decoded after a seek keeps exactly the frames a full decode keeps (:class:`Resampler`).
"""

from __future__ import annotations

import heapq
import math
from fractions import Fraction

import av

_VFR_TIME_BASE = Fraction(1, 90000)  # MPEG clock: exact for 24/25/30/50/60 and 29.97 fps


def stream_timing(stream: av.video.stream.VideoStream) -> tuple[Fraction, float]:
    """(time base, nominal frame rate) of a video stream as the decoder uses them.

    Returns:
        The stream's time base (1/90000 when it has none) and its average (else guessed) frame rate in
        frames per second, 0.0 when unknown.
    """
    rate = stream.average_rate or stream.guessed_rate
    return stream.time_base or _VFR_TIME_BASE, float(rate) if rate else 0.0


class Resampler:
    """THE timestamp resampling rule (module docstring): keep a frame iff ``t >= k / target_fps - eps``
    for the next open slot ``k``; after a keep, ``k`` jumps to the first slot strictly after ``t``.

    Stateful: feed every decoded frame's time in presentation order to :meth:`keep`, which says
    whether it is kept. :func:`iter_frames` uses it; so do the timeline plan of ``segment_folder``
    (packet timestamps, no decoding) and the live reader of ``stream`` (timestamps mapped onto the
    stream's clock), so all of them keep the same frames.

    Args:
        target_fps: output rate; None keeps every frame.
        src_fps: nominal source rate (0 = unknown: one target period is assumed); it only places the
            first slot (the first frame seen, e.g. after a seek, is taken to follow a frame one source
            period earlier).
        eps: tolerance in seconds (:meth:`for_file`; a quarter period for live sources).
    """

    def __init__(self, target_fps: float | None, src_fps: float, eps: float) -> None:
        self.period = 1.0 / target_fps if target_fps else None
        self.src_period = 1.0 / src_fps if src_fps > 0 else (self.period or 0.0)
        self.eps = eps
        self.k: int | None = None

    @classmethod
    def for_file(cls, target_fps: float | None, src_fps: float, time_base: Fraction) -> Resampler:
        """The resampler of a file: tolerance one time-base tick (timestamp quantisation), at most a
        quarter source period (30 fps assumed when unknown), at least 1 µs."""
        return cls(target_fps, src_fps, max(1e-6, min(float(time_base), 0.25 / (src_fps or 30))))

    def keep(self, t: float) -> bool:
        """Whether the frame at ``t`` seconds (the next one in presentation order) is kept."""
        if self.period is None:
            return True
        p, eps = self.period, self.eps
        if self.k is None:  # first frame seen (file start or after a seek): assume one source period before
            self.k = max(0, math.floor((t - self.src_period + eps) / p) + 1)
        if t < self.k * p - eps:
            return False
        self.k = math.floor((t + eps) / p) + 1  # first slot strictly after t: catch up, no duplicates
        return True


def packet_timestamp(packet: av.Packet) -> int | None:
    """What a demuxed packet contributes to :class:`FrameClock`, in stream time-base ticks.

    Its pts, else its dts; None for packets that give no frame of their own (the end-of-stream flush
    packet, empty AVI drop-frame chunks, packets an edit list marks discarded) or carry no timestamp.
    """
    if packet.size == 0 or packet.is_discard:
        return None
    return packet.pts if packet.pts is not None else packet.dts


class FrameClock:
    """THE frame timestamp rule, shared by decoding (:func:`iter_frames`, clips) and the timeline plan
    of ``segment_folder`` (packet timestamps, no decoding), so both give every frame the same time.

    Decoders output frames in display order, but the pts attached to them are not always display
    times (B-frames muxed with pts == dts, packed B-frames in AVI). The set of packet timestamps is
    right, so the k-th frame out gets the k-th smallest timestamp of the frame-carrying packets:

    * the caller adds (:meth:`add`) every packet's :func:`packet_timestamp` before the decoder can
      output its frame (decoding demuxes ``decode_loop._LOOKAHEAD_PACKETS`` ahead; the plan adds
      them all), and removes (:meth:`remove`) the timestamp of a packet that fails to decode;
    * :meth:`start_at` (the first frame out, at the start or after a seek) drops timestamps below
      that frame's own pts: they belong to leading frames the decoder skipped (open GOP);
    * :meth:`next` pops the smallest. A timestamp that would not increase (repeated timestamps) is
      bumped to the previous one plus one nominal period, and a frame with no timestamp left steps
      one period, so times are strictly increasing and clips can be written with them.

    Args:
        step: one nominal frame period in time-base ticks (at least 1).
    """

    def __init__(self, step: int) -> None:
        self.step = max(1, int(step))
        self._pool: list[int] = []  # min-heap of unassigned timestamps
        self.last: int | None = None

    @classmethod
    def for_stream(cls, stream: av.video.stream.VideoStream) -> FrameClock:
        """The clock of a stream: one nominal period of :func:`stream_timing` (30 fps if unknown)."""
        tb, fps = stream_timing(stream)
        return cls(round(1.0 / ((fps or 30.0) * float(tb))))

    def add(self, ts: int) -> None:
        """Add a packet's timestamp (ticks)."""
        heapq.heappush(self._pool, int(ts))

    def remove(self, ts: int | None) -> None:
        """Forget the timestamp of a packet that gave no frame (failed to decode)."""
        if ts is not None and ts in self._pool:
            self._pool.remove(ts)
            heapq.heapify(self._pool)

    def start_at(self, own_pts: int | None) -> None:
        """Drop the timestamps below ``own_pts``, the first output frame's own pts (None: keep all)."""
        while own_pts is not None and self._pool and self._pool[0] < own_pts:
            heapq.heappop(self._pool)

    def next(self) -> int:
        """The timestamp (ticks) of the next frame out, strictly greater than the previous one."""
        ts = heapq.heappop(self._pool) if self._pool else None
        if self.last is not None and (ts is None or ts <= self.last):
            ts = self.last + self.step
        elif ts is None:
            ts = 0
        self.last = ts
        return ts

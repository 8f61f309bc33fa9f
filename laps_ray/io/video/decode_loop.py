"""THE decode loop: every reader of a file's frames (:func:`~laps_ray.io.video.decode.iter_frames` for
RGB frames, :func:`~laps_ray.io.video.clips.write_clips` and ``split_video`` for re-encoding) goes
through :func:`_decode_range`, so seeking, frame timing (:class:`~laps_ray.io.video.clock.FrameClock`),
resampling, damaged packets and the frame-count checks follow one set of rules.

Memory is bounded by frame size, not by video length or core count: packets are demuxed a bounded
number (and size) ahead of the decoder, and decoder threads are capped for very large frames.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import av

from laps_ray.io.video.clock import FrameClock, Resampler, packet_timestamp, stream_timing
from laps_ray.io.video.errors import VideoError, _av_reason
from laps_ray.io.video.source import _MIN_FRAMES, _check_count

log = logging.getLogger(__name__)

# Packets demuxed ahead of the decoder so that FrameClock knows a frame's rank when it comes out: far
# more than any B-pyramid reorders (x264's deepest is 16), a few MB of compressed data. The byte cap
# only binds for intra-only codecs at huge sizes (8K ProRes: ~100 MB a frame), which do not reorder.
_LOOKAHEAD_PACKETS = 32
_LOOKAHEAD_BYTES = 64 * 2**20
_DECODER_BYTES = 256 * 2**20  # frame-threaded decoding keeps about two frames per thread


def _first_timestamp(src: str, stream_index: int) -> int | None:
    """The :class:`FrameClock` timestamp of a file's first frame without decoding it, so that times
    after a seek count from the same origin as a full decode: the smallest timestamp among the first
    ``_LOOKAHEAD_PACKETS`` frame packets (a separate open leaves the caller's read position alone)."""
    found: list[int] = []
    with av.open(src) as container:
        for packet in container.demux(container.streams[stream_index]):
            ts = packet_timestamp(packet)
            if ts is not None:
                found.append(ts)
            if len(found) >= _LOOKAHEAD_PACKETS:
                break
    return min(found) if found else None


def _expected_frames(stream: av.video.stream.VideoStream) -> int:
    """Frames the container promises (0 = unknown), for the truncation check: its frame count, or
    fewer when its index says so. Index entries that give no frame are not counted: AVI drop frames
    (empty chunks: opencv's tree.avi lists 444 frames, 68 of them real) and frames an mp4 edit list
    discards. (A Matroska index lists keyframes only, but Matroska gives no frame count at all.)"""
    frames = stream.frames or 0
    entries = sum(1 for e in stream.index_entries if e.size and not e.is_discard)  # ~0.25 µs each
    return min(frames, entries) if frames and entries else frames


def _decoder_threads(stream: av.video.stream.VideoStream) -> int:
    """Decoder thread count (0 = FFmpeg's automatic cores + 1). Each frame thread keeps about two
    frames, so very large frames get fewer threads (8K: 2) and memory does not grow with the cores."""
    cc = stream.codec_context
    frame_bytes = max(1, cc.width * cc.height * 3 // 2)  # 8-bit 4:2:0
    cap = max(1, _DECODER_BYTES // (2 * frame_bytes))
    return 0 if cap > (os.cpu_count() or 1) else cap


class _Decoded(NamedTuple):
    """One kept decoded frame: the PyAV frame, its source index, its :class:`FrameClock` timestamp
    minus the first frame's (stream time-base ticks) and that in seconds."""

    frame: av.VideoFrame
    index: int
    pts: int
    t: float


@dataclass
class _Counts:
    decoded: int = 0  # frames the decoder output (all of them, kept or not)
    bad: int = 0  # packets that failed to decode


def _clocked(container, stream, src: str, live: bool, counts: _Counts) -> Iterator[tuple[av.VideoFrame, int]]:
    """Decode from the container's position: (frame, :class:`FrameClock` timestamp) in output order.

    A damaged packet is counted, logged and skipped (FFmpeg's own tools warn and continue); a demux
    error is raised once the packets already read are decoded.
    """
    clock = FrameClock.for_stream(stream)
    # Live sources: no look-ahead (it would add latency). A decoder outputs a frame only once every
    # frame shown before it was fed, so well-formed live streams rank right without one.
    lookahead = 0 if live else _LOOKAHEAD_PACKETS
    packets = container.demux(stream)
    ahead: deque[tuple[av.Packet, int | None]] = deque()
    ahead_bytes = 0
    more, error, first = True, None, True
    while True:
        while more and len(ahead) <= lookahead and (not ahead or ahead_bytes < _LOOKAHEAD_BYTES):
            try:
                packet = next(packets)
            except StopIteration:
                more = False
            except (av.error.FFmpegError, OSError) as e:
                more, error = False, e
            else:
                ts = packet_timestamp(packet)
                if ts is not None:
                    clock.add(ts)
                ahead.append((packet, ts))
                ahead_bytes += packet.size
        if not ahead:
            break
        packet, ts = ahead.popleft()
        ahead_bytes -= packet.size
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as e:
            counts.bad += 1
            clock.remove(ts)
            log.warning("%s: undecodable packet after frame %d (%s)", src, counts.decoded, _av_reason(e))
            continue
        for fr in frames:
            if first:
                clock.start_at(fr.pts)
                first = False
            counts.decoded += 1
            yield fr, clock.next()
    if error is not None:
        raise error


def _setup_decoder(stream: av.video.stream.VideoStream) -> None:
    stream.thread_type = "AUTO"  # FFmpeg frame + slice threads inside the decoder
    stream.codec_context.thread_count = _decoder_threads(stream)


def _seeked(container, stream, src: str, start_sec: float, counts: _Counts) -> tuple[Iterator, int] | None:
    """Seek a file to the keyframe at or before ``start_sec``: (its decoded frames from there, as
    :func:`_clocked` yields them; the first frame's timestamp, read from the packets), or None when
    the seek failed: it raised, or missed (some containers, MPEG-TS, land on a later packet or on
    non-keyframes the decoder drops), or found no frame at all."""
    tb = stream_timing(stream)[0]
    try:
        ts0 = _first_timestamp(src, stream.index)
        if ts0 is None:
            return None
        container.seek(int(ts0 + start_sec / tb), stream=stream, backward=True)
    except (av.error.FFmpegError, OSError) as e:
        log.info("%s: seek failed (%s); decoding from the start", src, _av_reason(e))
        return None
    decoded = _clocked(container, stream, src, False, counts)
    first = next(decoded, None)
    if first is None or float((first[1] - ts0) * tb) > start_sec:
        decoded.close()
        log.info("%s: seek to %.3f s missed; decoding from the start", src, start_sec)
        return None
    return itertools.chain([first], decoded), ts0


def _decode_range(container, stream, src, live, target_fps, start_sec, end_sec) -> Iterator[_Decoded]:
    """THE decode loop: the kept frames (resampled to ``target_fps``, None = all) with ``start_sec <=
    t < end_sec``, as PyAV frames with index and :class:`FrameClock` time. Count checks as documented
    in :func:`iter_frames`; closes the container when done."""
    try:
        _setup_decoder(stream)
        tb, fps = stream_timing(stream)
        if fps <= 0:
            log.warning("%s: unknown frame rate; assuming 30 fps where timestamps are missing", src)
        # Tolerance for "t >= slot": timestamp quantisation for files (one time-base tick), capture
        # jitter for live sources (a quarter period), so equal-rate sources keep every frame.
        if live:
            resampler = Resampler(target_fps, fps, 0.25 / max(fps, target_fps or 0, 1.0))
        else:
            resampler = Resampler.for_file(target_fps, fps, tb)
        whole = start_sec is None and end_sec is None
        expected = _expected_frames(stream) if whole and not live else 0  # for the truncation check
        ts0, seeked, decoded = None, False, None  # t counts from the first frame's FrameClock timestamp
        counts = _Counts()
        if start_sec and start_sec > 0 and not live:
            found = _seeked(container, stream, src, start_sec, counts)
            if found is not None:
                (decoded, ts0), seeked = found, True
            else:  # a failed seek may have moved the read position: start over on a fresh container
                index = stream.index
                container.close()
                container = av.open(src)
                stream = container.streams[index]
                _setup_decoder(stream)
                counts = _Counts()
        if decoded is None:
            decoded = _clocked(container, stream, src, live, counts)
        in_range = 0
        early: list[_Decoded] = []  # kept frames held until a 2nd frame proves the video is not a still
        for fr, ts in decoded:
            if ts0 is None:
                ts0 = ts
            pts = ts - ts0
            t = float(pts * tb)
            index = round(t * fps) if seeked and fps > 0 else counts.decoded - 1
            if end_sec is not None and t >= end_sec:
                _check_count(src, in_range, counts.bad, (start_sec, end_sec))
                yield from early
                return
            keep = resampler.keep(t)  # also for frames before start_sec: primes the slot grid
            if start_sec is not None and t < start_sec:
                continue
            in_range += 1
            if keep:
                early.append(_Decoded(fr, index, pts, t))
            if in_range >= _MIN_FRAMES and early:
                yield from early
                early.clear()
        _check_count(src, in_range, counts.bad, (start_sec, end_sec))
        yield from early
        if expected and counts.decoded < 0.9 * expected:
            raise VideoError(src, f"truncated or corrupt: decoded {counts.decoded} of {expected} frames")
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(src, f"decode failed ({_av_reason(e)})") from None
    finally:
        container.close()

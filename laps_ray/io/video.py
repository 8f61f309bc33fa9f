"""Video decode/encode with PyAV: frame timestamps, resampling, resize, rotation, clips and chunks.

Everything that reads a video goes through one decode loop (:func:`iter_frames` for RGB frames,
:func:`write_clips` and :func:`split_video` for re-encoding), so the rules live in one place:

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
  time shard decoded after a seek keeps exactly the frames a full decode keeps.
* Every unreadable input raises :class:`VideoError` naming the source and a specific reason.
* Clips are encoded at the *source* rate with the source timestamps (the original used ``target_fps``,
  so clips played at the wrong speed), frame-exact, straight from the decoded YUV frames.
* Memory is bounded by frame size, not by video length or core count: the decode queue is bounded in
  bytes, and decoder threads, x264 threads and x264's look-ahead are capped for very large frames
  (cutting clips from an 8K video stays near 1 GB).

No Ray and no torch here: this module is used by actors, jobs, tests and the synthetic-data generator.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import os
import queue
import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import cv2
import numpy as np

from laps_ray.io.atomic import atomic_path, write_json_atomic
from laps_ray.io.decode import VIDEO_EXTS

log = logging.getLogger(__name__)

_LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_NET_TIMEOUT_S = 10.0  # a dead server must error, not hang
_VFR_TIME_BASE = Fraction(1, 90000)  # MPEG clock: exact for 24/25/30/50/60 and 29.97 fps
_MIN_FRAMES = 2
# Packets demuxed ahead of the decoder so that FrameClock knows a frame's rank when it comes out: far
# more than any B-pyramid reorders (x264's deepest is 16), a few MB of compressed data. The byte cap
# only binds for intra-only codecs at huge sizes (8K ProRes: ~100 MB a frame), which do not reorder.
_LOOKAHEAD_PACKETS = 32
_LOOKAHEAD_BYTES = 64 * 2**20
_QUEUE_BYTES = 128 * 2**20  # decoded frames waiting in iter_frames' queue (one always may, however big)
_DECODER_BYTES = 256 * 2**20  # frame-threaded decoding keeps about two frames per thread
_ENCODER_BYTES = 768 * 2**20  # x264's frames in flight (threads + look-ahead + references)
_X264_BYTES_PER_PIXEL = 6  # one x264 frame: planes, half-pel planes, low-res copies (measured at 8K)
_X264_MIN_FRAMES = 3  # frames one x264 encoder holds at the least (input, reconstruction, reference)
_TAG_SCAN_BYTES = 4 * 2**20  # file head and tail searched for a codec tag FFmpeg cannot decode


class VideoError(Exception):
    """The one error for an unreadable video source; ``str()`` is ``"<source>: <reason>"``."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """Container-level facts about a source. ``width``/``height`` are the displayed size (after
    rotation, before resize); ``rotation`` is the clockwise angle applied for display."""

    source: str
    fps: float
    width: int
    height: int
    num_frames: int | None
    duration: float | None
    rotation: int
    is_live: bool
    codec: str


@dataclass
class Frame:
    """One kept frame: RGB uint8 image (H, W, 3), source frame index, seconds since the first frame."""

    image: np.ndarray
    index: int
    t: float


# ----------------------------------------------------------------------------------------- opening


def _source_kind(source: str) -> str:
    if re.fullmatch(r"\d+", source) or source.startswith("/dev/video"):
        return "camera"
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    return "url" if scheme in _LIVE_SCHEMES else "file"


def _av_reason(e: BaseException) -> str:
    text = (getattr(e, "strerror", None) or str(e) or type(e).__name__).strip()
    return text[:1].lower() + text[1:]


def _check_file(path: str) -> None:
    """Cheap checks that give a precise reason before FFmpeg's generic 'invalid data'."""
    p = Path(path)
    if not p.exists():
        raise VideoError(path, "no such file")
    if p.is_dir():
        raise VideoError(path, "is a directory, not a video file")
    if not os.access(p, os.R_OK):
        raise VideoError(path, "permission denied")
    if p.stat().st_size == 0:
        raise VideoError(path, "empty file (0 bytes)")


def _invalid_data_reason(path: str) -> str:
    # A recognisable container header that FFmpeg still cannot parse means a cut-off or damaged file
    # (typically an mp4 whose index 'moov' atom was never written), not a file of the wrong type.
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as e:
        return f"not readable ({_av_reason(e)})"
    if head[4:8] == b"ftyp" or head[:4] in (b"\x1a\x45\xdf\xa3", b"RIFF"):
        return "truncated or corrupt (container header present but unreadable; invalid data)"
    return "not a video file (invalid data found when processing input)"


def _open(source: str | Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream, str, bool]:
    """Open ``source`` and pick its video stream; returns (container, stream, name, is_live)."""
    src = str(source)
    kind = _source_kind(src)
    path, fmt, options, timeout = src, None, {}, None
    if kind == "camera":
        path, fmt = (f"/dev/video{src}" if src.isdigit() else src), "v4l2"
        if not Path(path).exists():
            raise VideoError(src, f"no such camera device ({path})")
    elif kind == "url":
        timeout = (_NET_TIMEOUT_S, _NET_TIMEOUT_S)
        if src.lower().startswith("rtsp"):
            options = {"rtsp_transport": "tcp"}  # UDP loses packets behind NAT/firewalls
    else:
        _check_file(src)
    try:
        container = av.open(path, format=fmt, options=options, timeout=timeout)
    except av.error.InvalidDataError:
        reason = _invalid_data_reason(src) if kind == "file" else "invalid stream data"
        raise VideoError(src, reason) from None
    except av.error.PermissionError:
        raise VideoError(src, "permission denied") from None
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(src, f"cannot open ({_av_reason(e)})") from None
    stream = video_stream(container)
    if stream is None:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        what = ", ".join(kinds) if kinds else "no streams"
        raise VideoError(src, f"no video stream ({what + ' only' if kinds else what})")
    if stream.codec_context is None:  # PyAV makes no codec context when FFmpeg has no decoder for it
        container.close()
        tag = _codec_tag(src) if kind == "file" else None
        what = f"codec tag {tag!r}" if tag else "its codec"
        raise VideoError(src, f"unsupported codec (no decoder for {what} in this FFmpeg build)")
    live = kind == "camera" or (kind == "url" and (container.duration is None or not src.startswith("http")))
    return container, stream, src, live


def _codec_tag(path: str) -> str | None:
    """The video codec tag written in a file's header, to name a codec FFmpeg cannot decode (PyAV
    exposes no tag without a decoder): AVI ``strf`` compression fourcc, MP4/MOV sample entry of the
    ``vide`` track, Matroska ``V_...`` CodecID. None when not found."""
    try:
        with open(path, "rb") as f:
            data = f.read(_TAG_SCAN_BYTES)
            size = f.seek(0, os.SEEK_END)
            if size > len(data):  # an mp4 index (moov) is often at the end
                f.seek(max(len(data), size - _TAG_SCAN_BYTES))
                data += f.read()
    except OSError:
        return None
    raw = None
    if data[:4] == b"RIFF":
        strh = data.find(b"vids", data.find(b"strh"))
        strf = data.find(b"strf", strh) if strh >= 0 else -1
        if strf >= 0:  # BITMAPINFOHEADER after the chunk size: biCompression at offset 16
            raw = data[strf + 24 : strf + 28]
    elif (m := re.search(rb"hdlr.{8}vide", data, re.S)) and (stsd := data.find(b"stsd", m.end())) >= 0:
        raw = data[stsd + 16 : stsd + 20]  # version/flags, entry count, entry size, then its format
    elif m := re.search(rb"\x86([\x81-\xc0])V_", data):  # EBML CodecID element, 1-byte size
        raw = data[m.start() + 2 : m.start() + 2 + (m.group(1)[0] & 0x7F)]
    if not raw:
        return None
    text = raw.decode("ascii", "replace")
    return text if text.isprintable() else "0x" + raw.hex()


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The stream every reader of ``container`` uses: its first real video stream, or None.

    Cover art in audio files is a "video" stream with the attached_pic disposition: not a video.
    """
    for s in container.streams.video:
        if not (s.disposition & av.stream.Disposition.attached_pic):
            return s
    return None


def stream_timing(stream: av.video.stream.VideoStream) -> tuple[Fraction, float]:
    """(time base, nominal frame rate) of a video stream as the decoder uses them.

    Returns:
        The stream's time base (1/90000 when it has none) and its average (else guessed) frame rate in
        frames per second, 0.0 when unknown.
    """
    rate = stream.average_rate or stream.guessed_rate
    return stream.time_base or _VFR_TIME_BASE, float(rate) if rate else 0.0


def _rotation_cw(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    """Clockwise display rotation in {0, 90, 180, 270}.

    PyAV 18 exposes the display matrix (stream side data, copied onto every decoded frame by FFmpeg)
    as ``VideoFrame.rotation``: the counter-clockwise angle in [-180, 180]. Old files carry a 'rotate'
    tag (clockwise) instead, which newer FFmpeg usually converts to a display matrix already.
    """
    ccw = frame.rotation
    if ccw == 0 and stream.metadata.get("rotate", "").lstrip("-").isdigit():
        ccw = -int(stream.metadata["rotate"])
    return int(round(-ccw / 90.0)) * 90 % 360


def _info(container, stream, src: str, live: bool, rotation: int) -> VideoInfo:
    tb = stream.time_base
    _, fps = stream_timing(stream)
    if stream.duration and tb:
        duration = float(stream.duration * tb)
    elif container.duration:
        duration = container.duration / 1e6  # AV_TIME_BASE microseconds
    else:
        duration = None
    w, h = stream.codec_context.width, stream.codec_context.height
    if rotation in (90, 270):
        w, h = h, w
    codec = stream.codec_context.name
    return VideoInfo(src, fps, w, h, stream.frames or None, duration, rotation, live, codec)


def _decode_some(container, stream, src: str, n: int) -> list[av.VideoFrame]:
    frames: list[av.VideoFrame] = []
    try:
        for packet in container.demux(stream):
            frames.extend(packet.decode())
            if len(frames) >= n:
                break
    except (av.error.FFmpegError, OSError) as e:
        if not frames:
            raise VideoError(src, f"truncated or corrupt: decoded 0 frames ({_av_reason(e)})") from None
    return frames[:n]


def probe(source: str | Path) -> VideoInfo:
    """Open ``source``, decode its first two frames (rotation lives on decoded frames) and describe it.

    Raises:
        VideoError: unreadable, no video stream, or fewer than 2 decodable frames.
    """
    container, stream, src, live = _open(source)
    try:
        frames = _decode_some(container, stream, src, _MIN_FRAMES)
        _check_count(src, len(frames), 0)
        return _info(container, stream, src, live, _rotation_cw(frames[0], stream))
    finally:
        container.close()


def _check_count(src: str, decoded: int, bad_packets: int, span: tuple | None = None) -> None:
    if decoded == 0 and span and (span[0] or span[1] is not None):
        raise VideoError(src, f"no frames between {span[0] or 0} s and {span[1]} s")
    if decoded == 0:
        raise VideoError(src, "truncated or corrupt: decoded 0 frames")
    if decoded < _MIN_FRAMES:
        extra = f", {bad_packets} undecodable packets" if bad_packets else ""
        raise VideoError(src, f"too short: {decoded} frame (need at least {_MIN_FRAMES}{extra})")


# ------------------------------------------------------------------------------------ frame helpers


def resized_size(height: int, width: int, shorter: int | None) -> tuple[int, int]:
    """(h, w) after scaling the shorter side to ``shorter`` (aspect kept, both sides rounded)."""
    if not shorter or shorter <= 0 or min(height, width) == shorter:
        return height, width
    scale = shorter / min(height, width)
    return round(height * scale), round(width * scale)


def resize_shorter_side(image: np.ndarray, shorter: int | None) -> np.ndarray:
    """``image`` (H, W, C) with its shorter side scaled to ``shorter`` pixels (:func:`resized_size`;
    area interpolation); the same array when no resize is needed (``shorter`` None/0 or already so)."""
    h, w = resized_size(image.shape[0], image.shape[1], shorter)
    if (h, w) == image.shape[:2]:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def _to_rgb(frame: av.VideoFrame, rotation_cw: int, shorter: int | None) -> np.ndarray:
    img = resize_shorter_side(frame.to_ndarray(format="rgb24"), shorter)  # before rotating: cheaper
    if rotation_cw:
        img = np.ascontiguousarray(np.rot90(img, k=-rotation_cw // 90))  # rot90 turns counter-clockwise
    return img


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


# -------------------------------------------------------------------------------------- timestamps


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
      output its frame (decoding demuxes ``_LOOKAHEAD_PACKETS`` ahead; the plan adds them all), and
      removes (:meth:`remove`) the timestamp of a packet that fails to decode;
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


# ------------------------------------------------------------------------------------------ decoding


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


# -------------------------------------------------------------------------------------------- listing


@dataclass
class VideoListing:
    """What :func:`scan_videos` found: the videos, and the sub-folders it could not list.

    Attributes:
        videos: video files sorted by path.
        unreadable: ``(folder, reason)`` of every sub-folder that could not be listed (its videos,
            if any, are unknown); the caller reports them and processes the rest.
    """

    videos: list[Path]
    unreadable: list[tuple[str, str]]


def scan_videos(path: str | Path, exts: Sequence[str] = VIDEO_EXTS, recursive: bool = True) -> VideoListing:
    """A file → ``[file]``; a folder → its video files sorted by path (case-insensitive suffix match;
    hidden files/folders and ``.tmp`` temporaries skipped) and the sub-folders that cannot be listed.

    Raises:
        VideoError: a missing path, or a root folder that cannot be listed (nothing to process).
    """
    root = Path(path)
    if root.is_file():
        return VideoListing([root], [])
    if not root.exists():
        raise VideoError(str(root), "no such file or directory")
    if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
        raise VideoError(str(root), "directory not readable")
    wanted = {e.lower() for e in exts}
    unreadable: list[tuple[str, str]] = []

    def note(err: OSError) -> None:  # os.walk would silently skip unreadable sub-folders
        where = str(err.filename or root)
        if Path(where) == root:
            raise VideoError(str(root), f"directory not readable ({_av_reason(err)})")
        unreadable.append((where, f"directory not readable ({_av_reason(err)})"))

    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=note):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in filenames:
            temp = name.startswith(".") or ".tmp." in name or name.endswith(".tmp")
            if temp or Path(name).suffix.lower() not in wanted:
                continue
            found.append(Path(dirpath) / name)
    return VideoListing(sorted(found), sorted(unreadable))


def list_videos(path: str | Path, exts: Sequence[str] = VIDEO_EXTS, recursive: bool = True) -> list[Path]:
    """The videos of :func:`scan_videos`, strictly: any folder that cannot be listed is an error.

    Raises:
        VideoError: missing path, or a folder (or sub-folder) that cannot be listed.
    """
    listing = scan_videos(path, exts, recursive)
    if listing.unreadable:
        folder, reason = listing.unreadable[0]
        raise VideoError(folder, reason)
    return listing.videos


# -------------------------------------------------------------------------------------------- writing


def _x264_params(width: int, height: int, share: int = 1) -> str | None:
    """x264 thread and look-ahead caps that keep the frames in flight of ``share`` encoders open at
    once within ``_ENCODER_BYTES`` (None when x264's defaults fit). Its defaults grow with the cores
    (1.5 threads per core plus up to 60 frames of look-ahead): at 8K that is 2 GB even on 2 cores;
    capped it is 2 threads and no look-ahead (~0.6 GB)."""
    alive = _ENCODER_BYTES // (max(1, share) * _X264_BYTES_PER_PIXEL * max(1, width * height))
    cpu = os.cpu_count() or 1
    if alive >= 2 * cpu + 12:  # the defaults of the fast presets fit
        return None
    threads = max(1, min(cpu, alive // 2))
    lookahead = max(0, min(10, alive - threads - 2))
    return f"threads={threads}:rc-lookahead={lookahead}:sync-lookahead=0"


class _Writer:
    """One H.264/yuv420p output written atomically; frames are padded to even sizes (libx264 needs)."""

    def __init__(self, path, width, height, rate: Fraction, time_base: Fraction, codec, crf, preset, share=1):
        self.stack = ExitStack()
        tmp = self.stack.enter_context(atomic_path(path))
        # movie_timescale = the stream clock, so mp4 durations are exact rather than in milliseconds.
        opts = {"movflags": "+faststart", "movie_timescale": str(time_base.denominator)}
        try:
            self.container = av.open(str(tmp), "w", options=opts)
        except BaseException:
            self.stack.close()
            raise
        self.stream = self.container.add_stream(codec, rate=rate)
        self.size = (height, width)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = time_base
        self.stream.time_base = time_base
        if codec in ("libx264", "libx265"):
            options = {"crf": str(crf), "preset": preset}
            caps = _x264_params(self.stream.width, self.stream.height, share)
            if codec == "libx264" and caps:
                options["x264-params"] = caps
            self.stream.options = options
        # No B-frames: with frame reordering the mp4 edit list shifts variable-rate timestamps and
        # misreports durations; clips are short, so the few % of extra size do not matter.
        self.stream.codec_context.max_b_frames = 0
        self.count = 0
        self.last_pts: int | None = None
        # An explicit nominal duration: without it the muxer sometimes guessed a short last frame.
        self.period = max(1, round(1 / (rate * time_base)))

    def _check_pts(self, pts: int) -> None:
        if self.last_pts is not None and pts <= self.last_pts:
            raise ValueError(f"frame {self.count}: timestamps must increase ({pts} after {self.last_pts})")

    def add(self, img: np.ndarray, pts: int) -> None:
        """Encode an RGB uint8 image (H, W, 3) of the writer's size at ``pts`` (time-base ticks)."""
        if img.ndim != 3 or img.shape != (*self.size, 3) or img.dtype != np.uint8:
            want = (*self.size, 3)
            raise ValueError(f"frame {self.count}: expected uint8 {want}, got {img.dtype} {img.shape}")
        self._check_pts(pts)
        if img.shape[0] % 2 or img.shape[1] % 2:
            img = cv2.copyMakeBorder(img, 0, img.shape[0] % 2, 0, img.shape[1] % 2, cv2.BORDER_REPLICATE)
        self._encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24"), pts)

    def add_frame(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode a yuv420p frame of the stream's (even) size at ``pts`` (time-base ticks), as is."""
        want = (self.stream.width, self.stream.height)
        if frame.format.name != "yuv420p" or (frame.width, frame.height) != want:
            got = f"{frame.format.name} {frame.width}x{frame.height}"
            raise ValueError(f"frame {self.count}: expected yuv420p {want[0]}x{want[1]}, got {got}")
        self._check_pts(pts)
        # A decoded frame keeps its I/P/B type, which libx264 would take as forced frame types.
        frame.pict_type = av.video.frame.PictureType.NONE
        self._encode(frame, pts)

    def _encode(self, frame: av.VideoFrame, pts: int) -> None:
        frame.pts, frame.time_base, frame.duration = pts, self.stream.codec_context.time_base, self.period
        self.container.mux(self.stream.encode(frame))
        self.count, self.last_pts = self.count + 1, pts

    def close(self) -> int:
        self.container.mux(self.stream.encode(None))  # flush delayed frames
        self.container.close()
        self.stack.close()  # rename temp → final
        return self.count

    def abort(self) -> None:
        self.container.close()
        # Unwind atomic_path as if an error happened inside it: it deletes the temp, renames nothing.
        self.stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


def _rate(fps: float) -> Fraction:
    if not fps or fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return Fraction(fps).limit_denominator(1001)  # 29.97... → 30000/1001


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    codec: str = "libx264",
    crf: int = 20,
    timestamps: Sequence[float] | None = None,
    preset: str = "veryfast",
) -> int:
    """Encode RGB uint8 frames (H, W, 3) to ``path`` atomically; returns the number of frames written.

    ``timestamps`` (seconds, increasing) make a variable-frame-rate file on a 1/90000 time base;
    otherwise frames are ``1 / fps`` apart.
    """
    rate = _rate(fps)
    tb = _VFR_TIME_BASE if timestamps is not None else 1 / rate
    writer: _Writer | None = None
    try:
        for i, img in enumerate(frames):
            if writer is None:
                writer = _Writer(path, img.shape[1], img.shape[0], rate, tb, codec, crf, preset)
            if timestamps is not None and i >= len(timestamps):
                raise ValueError(f"{path}: more frames than timestamps ({len(timestamps)})")
            writer.add(img, round(timestamps[i] / tb) if timestamps is not None else i)
        if writer is None:
            raise ValueError(f"{path}: no frames to write")
        if timestamps is not None and writer.count != len(timestamps):
            raise ValueError(f"{path}: {writer.count} frames but {len(timestamps)} timestamps")
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return writer.close()


class _ClipSource:
    """A source opened for re-encoding: its decode loop (every frame, :class:`FrameClock` times), its
    rate and time base (clips keep them), and the conversion of decoded frames to the encoder's input.

    Frames go to the encoder as decoded (yuv420p at the display size: no copy), else converted by
    swscale (other pixel formats, ``resize_shorter``); only rotated or odd-sized clips go through
    RGB (rotation and edge padding). Close it (or use ``with``) to release the file.
    """

    def __init__(self, source: str | Path, resize_shorter: int | None) -> None:
        self.container, self.stream, self.src, live = _open(source)
        rate = self.stream.average_rate or self.stream.guessed_rate
        if not rate:
            self.container.close()
            raise VideoError(self.src, "unknown frame rate")
        self.rate, self.time_base = Fraction(rate), Fraction(self.stream.time_base or _VFR_TIME_BASE)
        self.frames = _decode_range(self.container, self.stream, self.src, live, None, None, None)
        self.shorter = resize_shorter
        self.rotation: int | None = None
        self.shape = (0, 0)  # (h, w) of the clip images, before padding to even

    def pixels(self) -> int:
        """Pixels of a clip frame (before the first frame is decoded: from the stream's size)."""
        cc = self.stream.codec_context
        return math.prod(self.shape) or math.prod(resized_size(cc.height, cc.width, self.shorter))

    def writer(self, path: str | Path, crf: int, preset: str, share: int = 1) -> _Writer:
        """A clip writer at this source's rate, time base and clip size (call :meth:`convert` first);
        ``share``: writers open at once (x264's memory caps, :func:`_x264_params`)."""
        h, w = self.shape
        return _Writer(path, w, h, self.rate, self.time_base, "libx264", crf, preset, share)

    def convert(self, frame: av.VideoFrame) -> av.VideoFrame:
        """``frame`` as the clip encoder takes it: yuv420p, display orientation, even size."""
        if self.rotation is None:  # the first frame fixes the clip size
            self.rotation = _rotation_cw(frame, self.stream)
            h, w = frame.height, frame.width
            self.shape = resized_size(*((w, h) if self.rotation in (90, 270) else (h, w)), self.shorter)
        h, w = self.shape
        if not self.rotation and h % 2 == 0 and w % 2 == 0:
            if frame.format.name == "yuv420p" and (frame.height, frame.width) == (h, w):
                return frame
            return frame.reformat(width=w, height=h, format="yuv420p", interpolation="AREA")
        img = _to_rgb(frame, self.rotation, self.shorter)
        if img.shape[:2] != (h, w):  # a mid-stream size change: keep the clip's size
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        if h % 2 or w % 2:
            img = cv2.copyMakeBorder(img, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        return rgb.reformat(format="yuv420p")

    def close(self) -> None:
        self.frames.close()
        self.container.close()

    def __enter__(self) -> _ClipSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_clips(
    source: str | Path,
    ranges: Sequence[tuple[int, int]],
    out_paths: Sequence[str | Path],
    resize_shorter: int | None = None,
    crf: int = 20,
    preset: str = "veryfast",
) -> list[int]:
    """Decode ``source`` once and write each inclusive source-frame range as its own clip.

    Clips are frame-exact (clip frame ``j`` is source frame ``a + j`` of a full :func:`iter_frames`
    decode) and keep the source frame rate and :class:`FrameClock` timestamps (relative to the clip's
    first frame), so they play at the right speed. Ranges may overlap and come in any order. Memory
    is bounded by frame size: overlapping clips of very large frames (8K) are cut in more than one
    decode rather than with more than one encoder in memory (:func:`_clip_passes`).

    Returns:
        Frames written per clip.

    Raises:
        VideoError: unreadable source, or a range that extends past the last frame.
        ValueError: bad ranges.
    """
    if len(ranges) != len(out_paths):
        raise ValueError(f"{len(ranges)} ranges but {len(out_paths)} output paths")
    for a, b in ranges:
        if not 0 <= a <= b:
            raise ValueError(f"bad frame range [{a}, {b}]")
    counts = [0] * len(ranges)
    if not ranges:
        return counts
    first = _ClipSource(source, resize_shorter)  # opened before anything is written: errors first
    per_encoder = _X264_MIN_FRAMES * _X264_BYTES_PER_PIXEL * max(1, first.pixels())
    passes = _clip_passes(ranges, max(1, _ENCODER_BYTES // per_encoder))
    share = max(_max_overlap([ranges[k] for k in group]) for group in passes)
    for i, group in enumerate(passes):
        with first if i == 0 else _ClipSource(source, resize_shorter) as clip_source:
            _cut_clips(clip_source, ranges, group, out_paths, counts, crf, preset, share)
    return counts


def _max_overlap(ranges: Sequence[tuple[int, int]]) -> int:
    """The largest number of inclusive ranges that share a frame."""
    return max(sum(a <= s <= b for a, b in ranges) for s, _ in ranges)


def _clip_passes(ranges: Sequence[tuple[int, int]], max_open: int) -> list[list[int]]:
    """Clip numbers grouped into decode passes with at most ``max_open`` clips open at any frame
    (greedy by start frame; one pass unless more clips overlap than that)."""
    passes: list[list[int]] = []
    for k in sorted(range(len(ranges)), key=lambda k: ranges[k]):
        start = ranges[k][0]
        for group in passes:  # sorted by start: a clip of the group is open at `start` iff it ends later
            if sum(ranges[j][1] >= start for j in group) < max_open:
                group.append(k)
                break
        else:
            passes.append([k])
    return passes


def _cut_clips(
    clip_source: _ClipSource,
    ranges: Sequence[tuple[int, int]],
    group: Sequence[int],
    out_paths: Sequence[str | Path],
    counts: list[int],
    crf: int,
    preset: str,
    share: int,
) -> None:
    """One decode pass of :func:`write_clips`: write the clips ``group``, set their ``counts``."""
    open_: dict[int, tuple[_Writer, int]] = {}  # clip -> (writer, pts of its first frame)
    last_needed = max(ranges[k][1] for k in group)
    try:
        for d in clip_source.frames:
            wanted = [k for k in group if ranges[k][0] <= d.index <= ranges[k][1]]
            frame = clip_source.convert(d.frame) if wanted else None  # once for all its clips
            for k in wanted:
                if k not in open_:
                    open_[k] = (clip_source.writer(out_paths[k], crf, preset, share), d.pts)
                writer, first_pts = open_[k]
                writer.add_frame(frame, d.pts - first_pts)
                if d.index == ranges[k][1]:
                    counts[k] = open_.pop(k)[0].close()
            if d.index >= last_needed:
                break  # no need to decode the rest
        else:
            short = [list(ranges[k]) for k in group if counts[k] == 0]
            raise VideoError(clip_source.src, f"frame ranges {short} extend past the end of the video")
    except BaseException:
        for writer, _ in open_.values():
            writer.abort()
        raise


def split_video(
    source: str | Path, out_dir: str | Path, seconds: float, crf: int = 18, preset: str = "veryfast"
) -> list[Path]:
    """Cut ``source`` into consecutive ``seconds``-long chunks ``<stem>_part000.mp4``, ... (re-encoded,
    frame-accurate, source rate and timestamps). A 1-frame tail is appended to the previous chunk so
    that every chunk is a readable video. A hidden ``.<stem>_parts.json`` marker (written last)
    records a complete split; a re-run with the same source and ``seconds`` returns it unchanged.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    src, out_dir = Path(source), Path(out_dir)
    _ClipSource(src, None).close()  # raises VideoError for a missing/unreadable source
    if not src.is_file():
        raise VideoError(str(src), "split_video needs a local file")
    stat = src.stat()
    key = {"source": str(src), "seconds": seconds, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    marker = out_dir / f".{src.stem}_parts.json"
    if marker.is_file():
        done = json.loads(marker.read_text())
        parts = [out_dir / n for n in done.get("parts", [])]
        if {k: done.get(k) for k in key} == key and parts and all(p.is_file() for p in parts):
            return parts
    names: list[Path] = []
    writer: _Writer | None = None
    first_pts, chunk, pending = 0, 0, None  # pending: first frame of the next chunk, not yet committed

    with _ClipSource(src, None) as clip_source:

        def start(first: _Decoded) -> None:
            nonlocal writer, first_pts, chunk
            names.append(out_dir / f"{src.stem}_part{len(names):03d}.mp4")
            frame = clip_source.convert(first.frame)
            writer, first_pts = clip_source.writer(names[-1], crf, preset), first.pts
            chunk = math.floor(first.t / seconds + 1e-9)
            writer.add_frame(frame, 0)

        def add(d: _Decoded) -> None:
            writer.add_frame(clip_source.convert(d.frame), d.pts - first_pts)

        try:
            for d in clip_source.frames:
                if writer is None:
                    start(d)
                elif pending is not None:  # the next chunk has 2 frames: it is a real chunk
                    writer.close()
                    start(pending)
                    add(d)
                    pending = None
                elif math.floor(d.t / seconds + 1e-9) != chunk:
                    pending = d
                else:
                    add(d)
            if pending is not None:  # a lone tail frame joins the previous chunk
                add(pending)
            writer.close()
            writer = None
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    write_json_atomic(marker, {**key, "parts": [p.name for p in names]})
    return names

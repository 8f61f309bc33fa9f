"""Video decode/encode with PyAV: timestamp resampling, resize, rotation, clips and chunks.

Everything that reads a video goes through :func:`iter_frames`, so the rules live in one place:

* Resampling to ``target_fps`` is by presentation timestamp (the original paced the read loop by wall
  clock and consumed every frame, so windows spanned ``T / source_fps`` seconds). Frame ``i`` is kept
  iff ``t_i >= next_t - eps``; after a keep, ``next_t`` jumps to the first grid slot ``k / target_fps``
  after ``t_i`` (catch-up, never a duplicate). Slots are an integer grid, so no drift accumulates and a
  time shard decoded after a seek keeps exactly the frames a full decode keeps.
* Every unreadable input raises :class:`VideoError` naming the source and a specific reason.
* Clips are encoded at the *source* rate with the source timestamps (the original used ``target_fps``,
  so clips played at the wrong speed).

No Ray and no torch here: this module is used by actors, jobs, tests and the synthetic-data generator.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from laps_ray.io.atomic import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
_LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_NET_TIMEOUT_S = 10.0  # a dead server must error, not hang
_VFR_TIME_BASE = Fraction(1, 90000)  # MPEG clock: exact for 24/25/30/50/60 and 29.97 fps
_MIN_FRAMES = 2


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
    live = kind == "camera" or (kind == "url" and (container.duration is None or not src.startswith("http")))
    return container, stream, src, live


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


# ------------------------------------------------------------------------------------------ decoding


def iter_frames(
    source: str | Path,
    target_fps: float | None = None,
    resize_shorter: int | None = None,
    start_sec: float | None = None,
    end_sec: float | None = None,
    threaded: bool = True,
    queue_size: int = 64,
) -> Iterator[Frame]:
    """Decode ``source`` into RGB frames resampled by timestamp to ``target_fps``.

    The source is opened now (so an unopenable source raises here); decoding starts on first ``next``.
    Frames have ``start_sec <= t < end_sec``; with ``start_sec`` a file is seeked and ``index`` is
    derived from the timestamp (exact for constant-rate files). Without seeking ``index`` counts
    decoded frames. With ``threaded`` a producer thread decodes and converts into a bounded queue;
    closing the iterator stops the thread and closes the container.

    Raises:
        VideoError: unopenable source, no video stream, fewer than 2 frames in range (raised before
            any frame is yielded), a decode failure, or a file that ends well before its frame count.
    """
    if target_fps is not None and target_fps <= 0:
        raise ValueError(f"target_fps must be > 0, got {target_fps}")
    container, stream, src, live = _open(source)
    gen = _decode(container, stream, src, live, target_fps, resize_shorter, start_sec, end_sec)
    return _FrameIterator(_threaded(gen, src, queue_size) if threaded else gen, container)


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


def _decode(container, stream, src, live, target_fps, shorter, start_sec, end_sec) -> Iterator[Frame]:
    try:
        stream.thread_type = "AUTO"  # FFmpeg frame + slice threads inside the decoder
        tb, fps = stream_timing(stream)
        if fps <= 0:
            log.warning("%s: unknown frame rate; assuming 30 fps where timestamps are missing", src)
        # Tolerance for "t >= slot": timestamp quantisation for files (one time-base tick), capture
        # jitter for live sources (a quarter period), so equal-rate sources keep every frame.
        if live:
            resampler = Resampler(target_fps, fps, 0.25 / max(fps, target_fps or 0, 1.0))
        else:
            resampler = Resampler.for_file(target_fps, fps, tb)
        pts0, seeked = None, False  # t is measured from the first frame's pts
        if start_sec and start_sec > 0 and not live:
            try:  # after a seek the first frame is unknown: the stream's start time stands in for it
                start = stream.start_time or 0
                container.seek(int(start + start_sec / tb), stream=stream, backward=True)
                pts0, seeked = start, True
            except (av.error.FFmpegError, OSError) as e:
                log.info("%s: seek failed (%s); decoding from the start", src, _av_reason(e))
        decoded = in_range = bad = 0
        prev_t, rotation = None, 0
        early: list[Frame] = []  # kept frames held until a 2nd frame proves the video is not a still
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as e:
                bad += 1  # a damaged packet: FFmpeg's own tools warn and continue, so do we
                log.warning("%s: undecodable packet after frame %d (%s)", src, decoded, _av_reason(e))
                continue
            for fr in frames:
                if fr.pts is not None and pts0 is None:
                    pts0 = fr.pts
                if fr.pts is not None:
                    t = float((fr.pts - pts0) * tb)
                else:  # no timestamp: step one nominal period
                    t = 0.0 if prev_t is None else prev_t + 1.0 / (fps or 30.0)
                index = round(t * fps) if seeked and fps > 0 else decoded
                decoded, prev_t = decoded + 1, t
                if end_sec is not None and t >= end_sec:
                    _check_count(src, in_range, bad, (start_sec, end_sec))
                    yield from early
                    return
                keep = resampler.keep(t)  # also for frames before start_sec: primes the slot grid
                if start_sec is not None and t < start_sec:
                    continue
                in_range += 1
                if in_range == 1:
                    rotation = _rotation_cw(fr, stream)
                if keep:
                    early.append(Frame(_to_rgb(fr, rotation, shorter), index, t))
                if in_range >= _MIN_FRAMES and early:
                    yield from early
                    early.clear()
        _check_count(src, in_range, bad, (start_sec, end_sec))
        yield from early
        expected = stream.frames
        if not live and start_sec is None and end_sec is None and expected and decoded < 0.9 * expected:
            raise VideoError(src, f"truncated or corrupt: decoded {decoded} of {expected} frames")
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(src, f"decode failed ({_av_reason(e)})") from None
    finally:
        container.close()


_END = object()


def _threaded(gen: Iterator[Frame], src: str, queue_size: int) -> Iterator[Frame]:
    """Run ``gen`` in a producer thread feeding a bounded queue; re-raise its errors here."""
    q: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)  # timeout: notice a consumer that went away
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

    def consume() -> Iterator[Frame]:
        thread = threading.Thread(target=produce, name=f"laps-decode:{Path(src).name}", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
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
                q.get_nowait()
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


def list_videos(path: str | Path, exts: Sequence[str] = VIDEO_EXTS, recursive: bool = True) -> list[Path]:
    """A file → ``[file]``; a folder → its video files sorted by path (case-insensitive suffix match;
    hidden files/folders and ``.tmp`` temporaries skipped).

    Raises:
        VideoError: missing path, or a folder (or sub-folder) that cannot be listed.
    """
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.exists():
        raise VideoError(str(root), "no such file or directory")
    if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
        raise VideoError(str(root), "directory not readable")
    wanted = {e.lower() for e in exts}

    def fail(err: OSError) -> None:  # os.walk would silently skip unreadable sub-folders
        raise VideoError(str(err.filename or root), f"directory not readable ({_av_reason(err)})")

    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in filenames:
            temp = name.startswith(".") or ".tmp." in name or name.endswith(".tmp")
            if temp or Path(name).suffix.lower() not in wanted:
                continue
            found.append(Path(dirpath) / name)
    return sorted(found)


# -------------------------------------------------------------------------------------------- writing


class _Writer:
    """One H.264/yuv420p output written atomically; frames are padded to even sizes (libx264 needs)."""

    def __init__(self, path, width, height, rate: Fraction, time_base: Fraction, codec, crf, preset):
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
            self.stream.options = {"crf": str(crf), "preset": preset}
        # No B-frames: with frame reordering the mp4 edit list shifts variable-rate timestamps and
        # misreports durations; clips are short, so the few % of extra size do not matter.
        self.stream.codec_context.max_b_frames = 0
        self.count = 0
        self.last_pts: int | None = None
        # An explicit nominal duration: without it the muxer sometimes guessed a short last frame.
        self.period = max(1, round(1 / (rate * time_base)))

    def add(self, img: np.ndarray, pts: int) -> None:
        if img.ndim != 3 or img.shape != (*self.size, 3) or img.dtype != np.uint8:
            want = (*self.size, 3)
            raise ValueError(f"frame {self.count}: expected uint8 {want}, got {img.dtype} {img.shape}")
        if self.last_pts is not None and pts <= self.last_pts:
            raise ValueError(f"frame {self.count}: timestamps must increase ({pts} after {self.last_pts})")
        if img.shape[0] % 2 or img.shape[1] % 2:
            img = cv2.copyMakeBorder(img, 0, img.shape[0] % 2, 0, img.shape[1] % 2, cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
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


def _source_timing(source: str | Path) -> tuple[Fraction, Fraction]:
    """(frame rate, time base) of the source's video stream, so outputs keep its exact timing."""
    container, stream, src, _ = _open(source)
    try:
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise VideoError(src, "unknown frame rate")
        return Fraction(rate), Fraction(stream.time_base or _VFR_TIME_BASE)
    finally:
        container.close()


def _clip_writer(path, first: Frame, rate, tb, crf, preset) -> tuple[_Writer, float]:
    """A writer sized like ``first`` whose timestamps count from ``first.t``."""
    h, w = first.image.shape[:2]
    return _Writer(path, w, h, rate, tb, "libx264", crf, preset), first.t


def write_clips(
    source: str | Path,
    ranges: Sequence[tuple[int, int]],
    out_paths: Sequence[str | Path],
    resize_shorter: int | None = None,
    crf: int = 20,
    preset: str = "veryfast",
) -> list[int]:
    """Decode ``source`` once and write each inclusive source-frame range as its own clip.

    Clips keep the source frame rate and timestamps (relative to the clip's first frame), so they
    play at the right speed. Ranges may overlap and come in any order. Returns frames per clip.

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
    rate, tb = _source_timing(source)
    open_: dict[int, tuple[_Writer, float]] = {}
    last_needed = max(b for _, b in ranges)
    frames = iter_frames(source, resize_shorter=resize_shorter)
    try:
        for fr in frames:
            for k, (a, b) in enumerate(ranges):
                if a <= fr.index <= b:
                    if k not in open_:
                        open_[k] = _clip_writer(out_paths[k], fr, rate, tb, crf, preset)
                    writer, t_first = open_[k]
                    writer.add(fr.image, round((fr.t - t_first) / tb))
                    if fr.index == b:
                        counts[k] = open_.pop(k)[0].close()
            if fr.index >= last_needed:
                break  # no need to decode the rest
        else:
            short = [list(ranges[k]) for k in range(len(ranges)) if counts[k] == 0]
            raise VideoError(str(source), f"frame ranges {short} extend past the end of the video")
    except BaseException:
        for writer, _ in open_.values():
            writer.abort()
        raise
    finally:
        frames.close()
    return counts


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
    rate, tb = _source_timing(src)  # raises VideoError for a missing/unreadable source
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
    t_first, chunk, pending = 0.0, 0, None  # pending: first frame of the next chunk, not yet committed

    def start(first: Frame) -> None:
        nonlocal writer, t_first, chunk
        names.append(out_dir / f"{src.stem}_part{len(names):03d}.mp4")
        writer, t_first = _clip_writer(names[-1], first, rate, tb, crf, preset)
        chunk = math.floor(first.t / seconds + 1e-9)
        writer.add(first.image, 0)

    frames = iter_frames(src)
    try:
        for fr in frames:
            if writer is None:
                start(fr)
            elif pending is not None:  # the next chunk has 2 frames: it is a real chunk
                writer.close()
                start(pending)
                writer.add(fr.image, round((fr.t - t_first) / tb))
                pending = None
            elif math.floor(fr.t / seconds + 1e-9) != chunk:
                pending = fr
            else:
                writer.add(fr.image, round((fr.t - t_first) / tb))
        if pending is not None:  # a lone tail frame joins the previous chunk
            writer.add(pending.image, round((pending.t - t_first) / tb))
        writer.close()
        writer = None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        frames.close()
    write_json_atomic(marker, {**key, "parts": [p.name for p in names]})
    return names

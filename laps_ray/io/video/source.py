"""Opening a video source (file, camera, network stream), picking its video stream and probing it.

Cheap checks and the container header give a precise :class:`~laps_ray.io.video.errors.VideoError`
reason before FFmpeg's generic "invalid data"; a codec FFmpeg cannot decode is named by the tag in the
file's header.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import av

from laps_ray.io.video.clock import stream_timing
from laps_ray.io.video.errors import VideoError, _av_reason
from laps_ray.io.video.frames import _rotation_cw

_LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_NET_TIMEOUT_S = 10.0  # a dead server must error, not hang
_MIN_FRAMES = 2
_TAG_SCAN_BYTES = 4 * 2**20  # file head and tail searched for a codec tag FFmpeg cannot decode


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


def _source_kind(source: str) -> str:
    if re.fullmatch(r"\d+", source) or source.startswith("/dev/video"):
        return "camera"
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    return "url" if scheme in _LIVE_SCHEMES else "file"


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

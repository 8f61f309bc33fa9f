"""Cutting clips and chunks from a source by re-encoding (:func:`write_clips`, :func:`split_video`).

Clips are encoded at the *source* rate with the source timestamps (the original used ``target_fps``,
so clips played at the wrong speed), frame-exact, straight from the decoded YUV frames of the one
decode loop (:func:`~laps_ray.io.video.decode_loop._decode_range`). Overlapping clips of very large
frames are cut in more than one decode rather than with more encoders in memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from laps_ray.io.atomic import write_json_atomic
from laps_ray.io.video.clock import _VFR_TIME_BASE
from laps_ray.io.video.decode_loop import _decode_range, _Decoded
from laps_ray.io.video.encode import _ENCODER_BYTES, _X264_BYTES_PER_PIXEL, _X264_MIN_FRAMES, _Writer
from laps_ray.io.video.errors import VideoError
from laps_ray.io.video.frames import _rotation_cw, _to_rgb, resized_size
from laps_ray.io.video.source import _open


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
        ``share``: writers open at once (x264's memory caps,
        :func:`~laps_ray.io.video.encode._x264_params`)."""
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

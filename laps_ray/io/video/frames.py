"""A decoded frame as the pipeline sees it: RGB, display orientation, shorter side resized."""

from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np


@dataclass
class Frame:
    """One kept frame: RGB uint8 image (H, W, 3), source frame index, seconds since the first frame."""

    image: np.ndarray
    index: int
    t: float


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

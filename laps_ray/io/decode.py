"""Decoding settings shared by every job that reads video."""

from __future__ import annotations

from dataclasses import dataclass, field

from laps_ray.config import check
from laps_ray.core.windows import DEFAULT_TARGET_FPS

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")  # what a folder listing picks up


@dataclass
class DecodeConfig:
    """How videos are decoded before tracking.

    Attributes:
        target_fps: frames are resampled to this rate by timestamp (the tokenizer's time base).
        resize_shorter: shorter side of the processed frame in pixels (0 = keep). 240 keeps LK on
            CPU well above real time; use 384-480 with CoTracker on a GPU.
        exts: file suffixes picked up from folders (case-insensitive).
        recursive: descend into sub-folders.
    """

    target_fps: float = DEFAULT_TARGET_FPS
    resize_shorter: int = 240
    exts: list[str] = field(default_factory=lambda: list(VIDEO_EXTS))
    recursive: bool = True

    def __post_init__(self) -> None:
        check(self.target_fps > 0, "target_fps", f"must be > 0, got {self.target_fps}")
        check(self.resize_shorter >= 0, "resize_shorter", f"must be >= 0, got {self.resize_shorter}")
        check(self.resize_shorter == 0 or self.resize_shorter >= 32, "resize_shorter", "must be >= 32")

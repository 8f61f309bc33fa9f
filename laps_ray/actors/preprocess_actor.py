"""Ray actor for the preprocess job: holds one tracker, turns videos into track files."""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Any

from laps_ray.io.video import VideoError, iter_frames, probe, split_video
from laps_ray.pipeline.config import WindowingConfig
from laps_ray.tracking import make_tracker
from laps_ray.tracking.video_tracks import track_video

log = logging.getLogger(__name__)


class PreprocessWorker:
    """Loads the tracker once; every method returns a plain record and never raises for bad input.

    Args:
        windowing: decode, tracker and window geometry.
        view: the camera view name written into the track files.
        check_only: only decode (``--check``): no tracker is loaded.
    """

    def __init__(self, windowing: WindowingConfig, view: str = "default", check_only: bool = False) -> None:
        self.cfg = windowing
        self.view = view
        self.tracker = None
        self.error: str | None = None
        if not check_only:
            try:
                self.tracker = make_tracker(windowing.tracker)
            except Exception as exc:  # noqa: BLE001 - reported by ready(): a load that failed is not retried
                log.error("cannot load the tracker: %s", traceback.format_exc())
                self.error = f"{type(exc).__name__}: {exc}"

    def ready(self) -> str | None:
        """None when the tracker is loaded, else why it could not be (the driver stops the job)."""
        return self.error

    def process(self, source: str, out: str) -> dict[str, Any]:
        """Track one video into ``out``: ``{"status": "done"|"failed", ...}``."""
        cfg = self.cfg
        t0 = time.perf_counter()
        try:
            rec = track_video(
                source,
                out,
                self.tracker,
                cfg.decode,
                T=cfg.T,
                stride=cfg.stride,
                grid=cfg.tracker.grid,
                view=self.view,
                batch_windows=cfg.batch_windows,
            )
        except VideoError as exc:
            return {"status": "failed", "reason": exc.reason, "seconds": round(time.perf_counter() - t0, 3)}
        except Exception as exc:  # noqa: BLE001 - one bad video never stops the job
            log.error("%s: %s", source, traceback.format_exc())
            return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        return {"status": "done", "output": str(out), **rec}

    def check(self, source: str) -> dict[str, Any]:
        """Decode every frame of ``source`` (no tracking): ``ok`` or ``broken`` with the reason."""
        t0 = time.perf_counter()
        try:
            info = probe(source)
            n = sum(1 for _ in iter_frames(source))
        except VideoError as exc:
            return {"status": "broken", "reason": exc.reason}
        return {
            "status": "ok",
            "frames": n,
            "fps": info.fps,
            "width": info.width,
            "height": info.height,
            "seconds": round(time.perf_counter() - t0, 3),
        }

    def split(self, source: str, out_dir: str, seconds: float) -> dict[str, Any]:
        """Cut ``source`` into ``seconds``-long chunks in ``out_dir``."""
        try:
            chunks = split_video(source, Path(out_dir), seconds)
        except VideoError as exc:
            return {"status": "failed", "reason": exc.reason}
        return {"status": "done", "chunks": [str(c) for c in chunks]}

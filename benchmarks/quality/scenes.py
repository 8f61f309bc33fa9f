"""The benchmark's videos and ground truth: ``<out>/videos/<setting>/<stem>.mp4`` and
``<out>/gt/<setting>/<stem>.json`` (``laps_ray.io.synthetic_scenes``), re-used when the ground truth
records the same scene spec."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laps_ray.io.atomic import write_json_atomic
from laps_ray.io.scene_render import make_scene_video
from laps_ray.io.synthetic_scenes import SceneSpec, distractors_for, recorded_spec_matches

log = logging.getLogger("bench.quality.scenes")


@dataclass(frozen=True)
class BenchVideo:
    """One benchmark video: its setting, stem, files and ground truth (the GT JSON as a dict)."""

    setting: str
    stem: str
    video: Path
    gt_path: Path
    gt: dict[str, Any]

    @property
    def duration(self) -> float:
        return float(self.gt["video_duration_sec"])

    @property
    def segments(self) -> list[tuple[float, float]]:
        return [(float(s["start_sec"]), float(s["end_sec"])) for s in self.gt["segments"]]

    @property
    def back_to_back(self) -> list[float]:
        return [float(t) for t in self.gt["back_to_back_sec"]]


def video_dir(out: Path, setting: str) -> Path:
    """Folder of a setting's videos (the project's ``--input``)."""
    return out / "videos" / setting


def gt_dir(out: Path, setting: str) -> Path:
    """Folder of a setting's ground truth (LAPS JSON per video)."""
    return out / "gt" / setting


def _make(job: tuple[str, str, float, float, int, str]) -> dict[str, Any]:
    video, gt_path, duration, fps, seed, setting = job
    spec = SceneSpec(duration_s=duration, fps=fps, seed=seed, distractors=distractors_for(setting))
    gt = make_scene_video(video, spec)
    write_json_atomic(gt_path, gt)
    return gt


def make_videos(
    out: Path, settings: list[str], num_videos: int, duration: float, fps: float = 30.0, jobs: int = 2
) -> dict[str, list[BenchVideo]]:
    """Generate (or re-use) every setting's videos; video k of every setting has seed k, so only the
    distractors differ between settings.

    Returns:
        setting -> videos in stem order.
    """
    todo = []
    for setting in settings:
        for k in range(num_videos):
            stem = f"scene_{k:02d}"
            video, gt_path = video_dir(out, setting) / f"{stem}.mp4", gt_dir(out, setting) / f"{stem}.json"
            spec = SceneSpec(duration_s=duration, fps=fps, seed=k, distractors=distractors_for(setting))
            if not (video.is_file() and recorded_spec_matches(gt_path, spec)):
                video.parent.mkdir(parents=True, exist_ok=True)
                gt_path.parent.mkdir(parents=True, exist_ok=True)
                video.unlink(missing_ok=True)
                todo.append((str(video), str(gt_path), duration, fps, k, setting))
    if todo:
        log.info("generating %d videos (%d re-used)", len(todo), len(settings) * num_videos - len(todo))
        with ProcessPoolExecutor(max(1, jobs)) as pool:
            list(pool.map(_make, todo))
    out_videos: dict[str, list[BenchVideo]] = {}
    for setting in settings:
        vids = []
        for k in range(num_videos):
            stem = f"scene_{k:02d}"
            gt_path = gt_dir(out, setting) / f"{stem}.json"
            gt = json.loads(gt_path.read_text())
            vids.append(BenchVideo(setting, stem, video_dir(out, setting) / f"{stem}.mp4", gt_path, gt))
        out_videos[setting] = vids
    return out_videos

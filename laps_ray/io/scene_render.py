"""Rendering of the benchmark scenes that ``laps_ray.io.synthetic_scenes`` specifies: photographs,
sprites, the distractors frame by frame, and the video with its ground truth.

Kept apart from the specification (schedule, ground truth, constants) so each file holds one thing;
see ``synthetic_scenes`` for what a scene is and what every distractor does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from laps_ray.io.synthetic import _burst_motion, _paste
from laps_ray.io.synthetic_scenes import (
    BACKGROUND_PHOTOS,
    BELT_PHOTOS,
    CONVEYOR_BAND,
    CONVEYOR_SPEED,
    CROSSER_PHOTOS,
    CROSSING_ROW,
    CROSSING_SPEED,
    FLICKER_AMPLITUDE,
    FLICKER_SPIKE_MAX,
    FLICKER_SPIKE_RATE,
    OBJECT_PHOTOS,
    PHOTO_DIR,
    SHAKE_STD_DEG,
    SHAKE_STD_PX,
    PhotoError,
    SceneSpec,
    back_to_back_times,
    crossing_intervals,
    scene_schedule,
)
from laps_ray.io.video import write_video

# ------------------------------------------------------------------------------------------ photographs


def load_photo(name: str, photo_dir: str | Path = PHOTO_DIR) -> np.ndarray:
    """A photograph as RGB uint8 (H, W, 3).

    Raises:
        PhotoError: the file is missing or unreadable (says to install ``opencv-doc``).
    """
    path = Path(photo_dir) / name
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise PhotoError(f"{path}: missing or unreadable photograph (Debian: apt-get install opencv-doc)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _cover(
    photo: np.ndarray, width: int, height: int, rng: np.random.Generator, tries: int = 1
) -> np.ndarray:
    """A random crop of ``photo`` resized to cover exactly (height, width); with ``tries`` > 1 the most
    textured of that many candidates (largest Laplacian spread), so sprites are trackable."""
    ph, pw = photo.shape[:2]
    best, best_score = None, -1.0
    for _ in range(tries):
        scale = max(width / pw, height / ph) * float(rng.uniform(1.0, 1.3))
        size = (max(width, round(pw * scale)), max(height, round(ph * scale)))
        resized = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
        y = int(rng.integers(0, resized.shape[0] - height + 1))
        x = int(rng.integers(0, resized.shape[1] - width + 1))
        crop = np.ascontiguousarray(resized[y : y + height, x : x + width])
        score = (
            float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.CV_32F).std())
            if tries > 1
            else 0.0
        )
        if score > best_score:
            best, best_score = crop, score
    return best


def _sprite(
    photo: np.ndarray, width: int, height: int, rng: np.random.Generator, shape: str
) -> tuple[np.ndarray, np.ndarray]:
    """A crop of ``photo`` as a (side, side, 3) uint8 sprite with a soft (side, side) mask in [0, 1]:
    an ellipse or a rounded box of ``width`` x ``height`` pixels centred in the square, outlined in dark
    grey so its edges are visible against any background."""
    side = max(width, height) + 4
    tex = _cover(photo, side, side, rng, tries=8)
    mask = np.zeros((side, side), np.uint8)
    c = (side // 2, side // 2)
    if shape == "ellipse":
        cv2.ellipse(mask, c, (width // 2 - 1, height // 2 - 1), 0, 0, 360, 255, -1)
    else:
        r = max(2, min(width, height) // 6)
        x0, y0, x1, y1 = (
            c[0] - width // 2 + 1,
            c[1] - height // 2 + 1,
            c[0] + width // 2 - 1,
            c[1] + height // 2 - 1,
        )
        cv2.rectangle(mask, (x0 + r, y0), (x1 - r, y1), 255, -1)
        cv2.rectangle(mask, (x0, y0 + r), (x1, y1 - r), 255, -1)
        for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
            cv2.circle(mask, (cx, cy), r, 255, -1)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(tex, contours, -1, (20, 20, 20), 2)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (3, 3), 0)
    return tex.astype(np.float32), soft


def _belt(photo: np.ndarray, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A seamless belt texture (height, 2*width, 3) float32: a photo strip and its mirror, with slats."""
    strip = _cover(photo, width, height, rng).astype(np.float32)
    tile = np.concatenate([strip, strip[:, ::-1]], axis=1)  # mirrored: the period wraps without a seam
    pitch = max(6, width // 16)
    for x in range(0, tile.shape[1], pitch):
        tile[:, x : x + 2] *= 0.35
    return tile


# --------------------------------------------------------------------------------------------- renderer


@dataclass
class _Sprite:
    tex: np.ndarray
    mask: np.ndarray


@dataclass
class SceneRenderer:
    """Renders the frames of a :class:`SceneSpec` and builds its ground truth.

    Photographs default to the ``opencv-doc`` ones chosen by the seed; tests may pass arrays instead
    (any RGB uint8 image: it is cropped and resized).

    Attributes:
        spec: the scene.
        bursts: planted actions ``(start_s, end_s, kind)``.
        crossings: crossing-object intervals ``(start_s, end_s, "rest"|"action")`` (empty without
            ``crossing``).
        photos: which photograph played which part (names, or "array" when given).
    """

    spec: SceneSpec
    background_photo: np.ndarray | None = None
    object_photo: np.ndarray | None = None
    belt_photo: np.ndarray | None = None
    crosser_photo: np.ndarray | None = None
    bursts: list[tuple[float, float, str]] = field(init=False)
    crossings: list[tuple[float, float, str]] = field(init=False)
    photos: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        s = self.spec
        w, h = s.size
        self.bursts = scene_schedule(s.duration_s, s.seed, s.b2b_probability)
        self.photos = {}
        pick = np.random.default_rng([s.seed, 3])

        def photo(role: str, given: np.ndarray | None, names: Sequence[str], offset: int) -> np.ndarray:
            if given is not None:
                self.photos[role] = "array"
                return given
            name = names[(s.seed + offset) % len(names)]
            self.photos[role] = name
            return load_photo(name)

        self._background = _cover(
            photo("background", self.background_photo, BACKGROUND_PHOTOS, 0), w, h, pick
        )
        side = int(min(w, h) // 3)
        obj = _sprite(
            photo("object", self.object_photo, OBJECT_PHOTOS, 0), side, int(side * 0.8), pick, "ellipse"
        )
        self._object = _Sprite(*obj)
        self._side = obj[0].shape[0]
        self._home = np.array([w * 0.5, h * 0.55])
        self._belt_tile: np.ndarray | None = None
        self._band = (int(round(CONVEYOR_BAND[0] * h)), int(round(CONVEYOR_BAND[1] * h)))
        if "conveyor" in s.distractors:
            self._belt_tile = _belt(
                photo("belt", self.belt_photo, BELT_PHOTOS, 1), w, self._band[1] - self._band[0], pick
            )
        self.crossings = []
        self._crosser: _Sprite | None = None
        if "crossing" in s.distractors:
            cw, ch = int(0.22 * w), int(0.3 * h)
            self._crosser = _Sprite(
                *_sprite(photo("crosser", self.crosser_photo, CROSSER_PHOTOS, 2), cw, ch, pick, "box")
            )
            self._crossing_s = (w + self._crosser.tex.shape[0]) / (CROSSING_SPEED * w)
            self.crossings = crossing_intervals(self.bursts, s.duration_s, self._crossing_s, s.seed)
        n = s.num_frames
        dist = np.random.default_rng([s.seed, 4])
        self._shake = np.zeros((n, 3))
        if "shake" in s.distractors:
            rho = 0.6  # AR(1): jitter with a little memory, like a vibrating mount
            innov = (
                dist.normal(0, 1, (n, 3))
                * np.sqrt(1 - rho**2)
                * np.array([SHAKE_STD_PX, SHAKE_STD_PX, SHAKE_STD_DEG])
            )
            for i in range(n):
                self._shake[i] = (rho * self._shake[i - 1] if i else 0) + innov[i]
        self._gain = np.ones(n)
        if "flicker" in s.distractors:
            t = np.arange(n) / s.fps
            f, phi = float(dist.uniform(1.0, 3.0)), float(dist.uniform(0, 2 * np.pi))
            spikes = (dist.random(n) < FLICKER_SPIKE_RATE) * np.clip(
                dist.normal(0, 0.08, n), -FLICKER_SPIKE_MAX, FLICKER_SPIKE_MAX
            )
            self._gain = 1 + FLICKER_AMPLITUDE * np.sin(2 * np.pi * f * t + phi) + spikes
        noise_rng = np.random.default_rng([s.seed, 5])
        self._noise = (
            [noise_rng.normal(0, s.noise_std, (h, w, 3)).astype(np.float32) for _ in range(16)]
            if s.noise_std > 0
            else []
        )
        self._noise_pick = noise_rng.integers(0, 16, n)

    # -- geometry at time t

    def object_pose(self, t: float) -> np.ndarray:
        """2x3 affine placing the action object's sprite at time ``t`` (seconds)."""
        dx = dy = ang = 0.0
        scale = 1.0
        for a, b, kind in self.bursts:
            if a <= t < b:
                dx, dy, ang, scale = _burst_motion(kind, (t - a) / (b - a), b - a, self.spec.size)
                break
        c = (self._side - 1) / 2
        m = cv2.getRotationMatrix2D((c, c), ang, scale)
        m[:, 2] += self._home + (dx, dy) - c
        return m

    def crosser_pose(self, t: float) -> np.ndarray | None:
        """2x3 affine of the crossing object at ``t``, or None when it is out of view."""
        if self._crosser is None:
            return None
        w, h = self.spec.size
        side = self._crosser.tex.shape[0]
        for k, (a, b, _) in enumerate(self.crossings):
            if a <= t < b:
                x = -side + (t - a) * CROSSING_SPEED * w
                if k % 2:  # every other crossing goes right to left
                    x = w - x - side
                return np.array([[1.0, 0, x], [0, 1.0, CROSSING_ROW * h - side / 2]])
        return None

    # -- frames

    def _conveyor(self, img: np.ndarray, t: float) -> None:
        y0, y1 = self._band
        shift = CONVEYOR_SPEED * self.spec.size[0] * t
        k, frac = int(math.floor(shift)), shift - math.floor(shift)
        period = self._belt_tile.shape[1]
        idx = (np.arange(self.spec.size[0]) - k) % period
        a, b = self._belt_tile[:, idx], self._belt_tile[:, (idx - 1) % period]
        img[y0:y1] = np.clip((1 - frac) * a + frac * b + 0.5, 0, 255).astype(np.uint8)  # sub-pixel scroll
        img[max(0, y0 - 2) : y0] = 30  # rails: static edges
        img[y1 : y1 + 2] = 30

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (time ``i / fps``) as RGB uint8 (H, W, 3)."""
        s = self.spec
        w, h = s.size
        t = i / s.fps
        img = self._background.copy()
        if self._belt_tile is not None:
            self._conveyor(img, t)
        m = self.crosser_pose(t)
        if m is not None:
            _paste(img, self._crosser.tex, self._crosser.mask, m)
        _paste(img, self._object.tex, self._object.mask, self.object_pose(t))
        dx, dy, ang = self._shake[i]
        if dx or dy or ang:
            rot = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), float(ang), 1.0)
            rot[:, 2] += (dx, dy)
            img = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if self._gain[i] == 1.0 and not self._noise:
            return img
        out = img.astype(np.float32) * np.float32(self._gain[i])
        if self._noise:
            out += self._noise[self._noise_pick[i]]
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame in order."""
        return (self.frame(i) for i in range(self.spec.num_frames))

    def ground_truth(self, video_name: str) -> dict[str, Any]:
        """The scene's ground truth (module docstring): LAPS JSON plus back-to-back and scene facts."""
        s = self.spec
        w, h = s.size
        distractors: dict[str, Any] = {"enabled": list(s.distractors)}
        if "conveyor" in s.distractors:
            distractors["conveyor"] = {"rows": list(self._band), "speed_px_s": CONVEYOR_SPEED * w}
        if "crossing" in s.distractors:
            distractors["crossing"] = [
                {"start_sec": a, "end_sec": b, "during": kind} for a, b, kind in self.crossings
            ]
        if "compression" in s.distractors:
            distractors["compression"] = {"crf": s.encode_crf}
        return {
            "video": video_name,
            "video_duration_sec": s.num_frames / s.fps,
            "fps": float(s.fps),
            "segments": [{"start_sec": float(a), "end_sec": float(b), "label": k} for a, b, k in self.bursts],
            "back_to_back_sec": back_to_back_times(self.bursts),
            "scene": {**s.to_dict(), "photos": dict(self.photos)},
            "distractors": distractors,
        }


def make_scene_video(path: str | Path, spec: SceneSpec, **photos: np.ndarray) -> dict[str, Any]:
    """Write the scene as H.264 .mp4 (atomically, at ``spec.encode_crf``) and return its ground truth.

    Args:
        path: output file.
        spec: the scene.
        photos: optional ``background_photo``, ``object_photo``, ``belt_photo``, ``crosser_photo`` arrays.
    """
    renderer = SceneRenderer(spec, **photos)
    write_video(path, renderer.frames(), spec.fps, crf=spec.encode_crf, preset="ultrafast")
    return renderer.ground_truth(Path(path).name)

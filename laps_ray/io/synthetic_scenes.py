"""Benchmark scenes with known ground truth: real photographs, planted actions, switchable distractors.

A scene is a still photograph (background) in front of which one textured object (a crop of another
photograph) performs planted motion primitives (``laps_ray.io.synthetic.BURST_KINDS``: slide, circle,
shake, lift) separated by rests, with **back-to-back** changes (one primitive turning into a different
one with no rest between). The photographs come from a registry package (Debian's ``opencv-doc``:
``/usr/share/doc/opencv-doc/examples/data``); nothing is downloaded. Every random choice derives from
``SceneSpec.seed``, so video k has the same schedule, photographs and object whatever distractors are
switched on: the effect of each distractor is visible on its own.

**Distractors** (:data:`DISTRACTORS`, each independently switchable; ``all`` = every one):

* ``conveyor``: a band across the bottom of the frame (rows ``CONVEYOR_BAND`` of the height) whose
  texture (a strip of a third photograph with dark slats) scrolls sideways at a constant speed in
  every frame, rests included: steady background motion that never stops.
* ``crossing``: a second textured object crosses the whole frame horizontally at constant speed,
  behind the actor, several times: centred on a rest and on an action in turn. It is not an action.
* ``shake``: camera shake: the whole composed frame is translated (AR(1) jitter, about 1 px std)
  and rotated (about 0.2 deg std) every frame.
* ``flicker``: global brightness gain ``1 + 0.08 sin(2 pi f t + phi)`` with f in [1, 3] Hz, plus
  isolated frames (3 %) with an extra jump of up to +-12 %.
* ``compression``: the video is encoded at ``compression_crf`` (x264 ultrafast, no deblocking:
  blocking and ringing that change from frame to frame) instead of ``crf``.

Every frame also has sensor noise (``noise_std`` grey levels), so a rest is never bit-exact stillness.

**Ground truth** (LAPS JSON, what ``laps_ray.io.labels.read_laps_segments`` reads, plus extra keys):
``{"video", "video_duration_sec", "fps", "segments": [{"start_sec", "end_sec", "label"}],
"back_to_back_sec": [...], "scene": {...}, "distractors": {...}}``. One segment per planted primitive,
``[start_sec, end_sec)`` on the source clock (frame i shows time ``i / fps``); the object is at its
home pose at ``start_sec`` and moves only while ``start_sec <= t < end_sec``. ``back_to_back_sec``
lists the boundaries where one segment ends exactly where the next starts (no rest): the boundaries
that fall inside continuous motion. ``distractors`` records what was switched on and where (the
crossing intervals, the conveyor band), for reading results, never for scoring.

Rendering (photographs, sprites, distractors frame by frame, the video file) is in
``laps_ray.io.scene_render``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.io.synthetic import BURST_KINDS

DISTRACTORS = ("conveyor", "crossing", "shake", "flicker", "compression")
SETTINGS = ("none", *DISTRACTORS, "all")  # benchmark settings: clean, each distractor alone, all together

PHOTO_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
BACKGROUND_PHOTOS = (
    "home.jpg",
    "building.jpg",
    "box_in_scene.png",
    "stuff.jpg",
    "rubberwhale1.png",
    "leuvenA.jpg",
    "aero1.jpg",
    "messi5.jpg",
)
OBJECT_PHOTOS = (
    "fruits.jpg",
    "baboon.jpg",
    "butterfly.jpg",
    "starry_night.jpg",
    "HappyFish.jpg",
    "graf3.png",
)
BELT_PHOTOS = ("board.jpg", "graf1.png", "starry_night.jpg")
CROSSER_PHOTOS = ("box.png", "HappyFish.jpg", "squirrel_cls.jpg", "Blender_Suzanne1.jpg")

# Bumped whenever the rendering changes, so cached benchmark videos of an older generator are remade.
GENERATOR_VERSION = 1
CONVEYOR_BAND = (0.80, 0.97)  # fraction of the height: the band's top and bottom rows
CONVEYOR_SPEED = 0.1  # frame widths per second
CROSSING_SPEED = 0.4  # frame widths per second
CROSSING_ROW = 0.28  # fraction of the height: the crossing object's centre row
SHAKE_STD_PX = 1.0
SHAKE_STD_DEG = 0.2
FLICKER_AMPLITUDE = 0.08
FLICKER_SPIKE_RATE = 0.03
FLICKER_SPIKE_MAX = 0.12


class PhotoError(FileNotFoundError):
    """A photograph the scenes need is missing (the message says which package ships it)."""


@dataclass(frozen=True)
class SceneSpec:
    """Everything that defines a scene video (its ground truth depends on nothing else).

    Attributes:
        duration_s: video length in seconds.
        fps: source frame rate.
        size: (width, height) in pixels.
        seed: all random choices (schedule, photographs, crops, distractor randomness).
        distractors: switched-on distractors, a subset of :data:`DISTRACTORS`.
        noise_std: per-frame sensor noise in grey levels (0 = none).
        crf: H.264 quality without ``compression``.
        compression_crf: H.264 quality with ``compression``.
        b2b_probability: chance that an action is followed by a different one with no rest.
    """

    duration_s: float = 45.0
    fps: float = 30.0
    size: tuple[int, int] = (424, 240)
    seed: int = 0
    distractors: tuple[str, ...] = ()
    noise_std: float = 1.0
    crf: int = 23
    compression_crf: int = 38
    b2b_probability: float = 0.4

    def __post_init__(self) -> None:
        unknown = sorted(set(self.distractors) - set(DISTRACTORS))
        if unknown:
            raise ValueError(f"unknown distractors {unknown}; expected a subset of {DISTRACTORS}")
        if self.duration_s < 8:
            raise ValueError(
                f"duration_s must be >= 8 (rests, actions and a back-to-back pair), got {self.duration_s}"
            )
        if self.fps <= 0 or min(self.size) < 32:
            raise ValueError(f"invalid fps {self.fps} or size {self.size} (both sides >= 32 px)")
        object.__setattr__(self, "distractors", tuple(d for d in DISTRACTORS if d in self.distractors))

    @property
    def num_frames(self) -> int:
        """Frames of the video."""
        return int(round(self.duration_s * self.fps))

    @property
    def encode_crf(self) -> int:
        """The H.264 quality the video is written at."""
        return self.compression_crf if "compression" in self.distractors else self.crf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (lists for tuples) and the :data:`GENERATOR_VERSION`."""
        d = dataclasses.asdict(self)
        d["size"], d["distractors"] = list(self.size), list(self.distractors)
        d["generator_version"] = GENERATOR_VERSION
        return d


def recorded_spec_matches(gt_path: Path, spec: SceneSpec) -> bool:
    """Whether the ground truth at ``gt_path`` records this scene spec (a video made from it can be
    reused); False when the file is missing or unreadable."""
    import json

    try:
        scene = dict(json.loads(gt_path.read_text()).get("scene", {}))
    except (OSError, ValueError):
        return False
    scene.pop("photos", None)
    return scene == spec.to_dict()


def distractors_for(setting: str) -> tuple[str, ...]:
    """The distractors of a benchmark setting: ``none``, one of :data:`DISTRACTORS`, or ``all``."""
    if setting == "none":
        return ()
    if setting == "all":
        return DISTRACTORS
    if setting in DISTRACTORS:
        return (setting,)
    raise ValueError(f"unknown distractor setting {setting!r}; expected one of {SETTINGS}")


# ------------------------------------------------------------------------------------------- schedule


def scene_schedule(
    duration_s: float, seed: int, b2b_probability: float = 0.4
) -> list[tuple[float, float, str]]:
    """Planted actions ``(start_s, end_s, kind)``, sorted and non-overlapping.

    Actions last 1.5-3 s, rests 1.5-3.5 s, with a rest of at least 1.5 s at both ends. Each group is a
    single action or, with ``b2b_probability``, a back-to-back pair of two different kinds (never longer
    chains); the first group is always a pair, so every scene has at least one.

    Raises:
        ValueError: ``duration_s`` leaves no room for a back-to-back pair.
    """
    rng = np.random.default_rng([seed, 1])
    bursts: list[tuple[float, float, str]] = []
    t = round(float(rng.uniform(1.5, 2.5)), 2)
    limit = duration_s - 1.5
    pairs = 0
    while True:
        pair = rng.random() < b2b_probability or pairs == 0
        d1, d2 = (round(float(rng.uniform(1.5, 3.0)), 2) for _ in range(2))
        if pair and t + d1 + d2 > limit:
            pair = False
        if t + d1 > limit:
            break
        k1 = str(rng.choice([k for k in BURST_KINDS if not bursts or k != bursts[-1][2]]))
        bursts.append((t, round(t + d1, 2), k1))
        t = round(t + d1, 2)
        if pair:
            k2 = str(rng.choice([k for k in BURST_KINDS if k != k1]))
            bursts.append((t, round(t + d2, 2), k2))
            t = round(t + d2, 2)
            pairs += 1
        t = round(t + float(rng.uniform(1.5, 3.5)), 2)
    if pairs == 0:
        raise ValueError(f"duration_s={duration_s} is too short for a back-to-back pair")
    return bursts


def back_to_back_times(bursts: Sequence[tuple[float, float, str]]) -> list[float]:
    """Boundaries where one action ends exactly where the next starts (seconds, sorted)."""
    return [float(b[0]) for a, b in zip(bursts, bursts[1:]) if abs(a[1] - b[0]) < 1e-9]


def rests(bursts: Sequence[tuple[float, float, str]], duration_s: float) -> list[tuple[float, float]]:
    """The rests (gaps without action) of a schedule, including both ends, in seconds."""
    edges = [0.0] + [x for a, b, _ in bursts for x in (a, b)] + [duration_s]
    return [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2) if edges[i + 1] - edges[i] > 1e-9]


def crossing_intervals(
    bursts: Sequence[tuple[float, float, str]], duration_s: float, crossing_s: float, seed: int
) -> list[tuple[float, float, str]]:
    """When a crossing object is in view: ``(start_s, end_s, "rest"|"action")``, centred in turn on a
    rest and on an action (longest first), one per 15 s (at least 2), never two at once."""
    rng = np.random.default_rng([seed, 2])
    inner_rests = [r for r in rests(bursts, duration_s) if r[0] > 0 and r[1] < duration_s]
    pools = {
        "rest": sorted(inner_rests or rests(bursts, duration_s), key=lambda r: r[0] - r[1]),
        "action": sorted(((a, b) for a, b, _ in bursts), key=lambda r: r[0] - r[1]),
    }
    wanted = max(2, int(duration_s // 15))
    out: list[tuple[float, float, str]] = []
    kinds = ["rest", "action"] * wanted
    for kind in kinds[: wanted * 2]:
        if len(out) == wanted:
            break
        for a, b in pools[kind]:
            mid = 0.5 * (a + b) + float(rng.uniform(-0.1, 0.1)) * (b - a)
            s, e = mid - crossing_s / 2, mid + crossing_s / 2
            if s < 0 or e > duration_s or any(s < oe + 0.5 and os_ < e + 0.5 for os_, oe, _ in out):
                continue
            out.append((round(s, 3), round(e, 3), kind))
            pools[kind].remove((a, b))
            break
    return sorted(out)

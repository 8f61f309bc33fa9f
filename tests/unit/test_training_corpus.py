"""The default tokenizer's training corpus: varied scenes, demo-style samples, registry clips."""

from __future__ import annotations

import json

import pytest

from laps_ray.io import synthetic_scenes as sc
from laps_ray.io.registry_footage import shipped
from laps_ray.io.synthetic import BURST_KINDS
from laps_ray.io.training_corpus import CorpusSpec, make_corpus, scene_setting

pytestmark = pytest.mark.skipif(
    not (sc.PHOTO_DIR / sc.BACKGROUND_PHOTOS[0]).is_file(), reason="opencv-doc (photographs) not installed"
)


def test_corpus_cycles_distractors_keeps_ground_truth_and_is_reused(tmp_path):
    assert [scene_setting(k) for k in range(8)] == [*sc.SETTINGS, sc.SETTINGS[0]]
    spec = CorpusSpec(num_scenes=2, scene_seconds=8.0, num_samples=1, sample_seconds=12.0, real=True)
    videos = make_corpus(tmp_path, spec, jobs=1)
    names = [p.name for p in videos]
    assert "scene_100_none.mp4" in names and "scene_101_conveyor.mp4" in names
    assert "sample_000.mp4" in names  # sample seeds start at 0: never the demo's (100-103)
    assert {f"real_{n}" for n in shipped()} <= set(names)  # every registry clip here joins the corpus
    gt = json.loads((tmp_path / "gt" / "scene_101_conveyor.json").read_text())
    assert gt["distractors"] and {s["label"] for s in gt["segments"]} <= set(BURST_KINDS)
    before = {p.name: p.stat().st_mtime_ns for p in videos}
    again = make_corpus(tmp_path, spec, jobs=1)
    assert {p.name: p.stat().st_mtime_ns for p in again} == before  # nothing remade

"""The benchmark scene generator (laps_ray.io.synthetic_scenes): its ground truth is right.

Frames are rendered in memory at tiny sizes (no encode) except one short write that checks the file,
its ground truth and the compression setting. Photographs are arrays here (the opencv-doc ones are
checked only when installed), so the tier needs no system package.
"""

from __future__ import annotations

import numpy as np
import pytest

from laps_ray.io import scene_render as rd
from laps_ray.io import synthetic_scenes as sc
from laps_ray.io.labels import read_laps_segments
from laps_ray.io.synthetic import textured_image
from laps_ray.io.video import read_frames

SIZE = (96, 64)
FPS = 10.0
DURATION = 16.0


def photos(seed: int = 0) -> dict[str, np.ndarray]:
    return {
        "background_photo": textured_image(80, 120, seed),
        "object_photo": textured_image(60, 60, seed + 1),
        "belt_photo": textured_image(40, 120, seed + 2),
        "crosser_photo": textured_image(60, 60, seed + 3),
    }


def renderer(distractors=(), seed: int = 3, noise_std: float = 0.0, **kw) -> rd.SceneRenderer:
    spec = sc.SceneSpec(DURATION, FPS, SIZE, seed, tuple(distractors), noise_std=noise_std, **kw)
    return rd.SceneRenderer(spec, **photos(seed))


def changed(r: rd.SceneRenderer) -> tuple[np.ndarray, np.ndarray]:
    """(frames (F, H, W, 3) int16, bool (F-1, H, W): pixels that differ from the previous frame)."""
    frames = np.stack(list(r.frames())).astype(np.int16)
    return frames, (np.abs(np.diff(frames, axis=0)) > 0).any(axis=-1)


def in_action(r: rd.SceneRenderer, i: int) -> bool:
    """Frames i-1 and i straddle or touch an action: the object may have moved between them."""
    t0, t1 = (i - 1) / FPS, i / FPS
    return any(a <= t1 and t0 < b for a, b, _ in r.bursts)


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_schedule_has_rests_at_both_ends_and_back_to_back_pairs(seed):
    bursts = sc.scene_schedule(45.0, seed)
    assert bursts[0][0] >= 1.5 and bursts[-1][1] <= 45.0 - 1.5
    for (a0, b0, k0), (a1, b1, k1) in zip(bursts, bursts[1:]):
        assert a0 < b0 <= a1 < b1
        assert b0 == a1 or a1 - b0 >= 1.5  # touching (back-to-back) or a real rest
        if b0 == a1:
            assert k0 != k1  # back-to-back = two different motions
    b2b = sc.back_to_back_times(bursts)
    assert b2b and b2b == [a1 for (_, b0, _), (a1, _, _) in zip(bursts, bursts[1:]) if b0 == a1]
    # never a chain of three actions without rest
    assert all(b not in b2b for a, b, _ in bursts if a in b2b)
    assert all(1.5 - 1e-9 <= b - a <= 3.0 + 1e-9 for a, b, _ in bursts)


def test_too_short_for_a_pair_is_an_error():
    with pytest.raises(ValueError, match="too short|>= 8"):
        sc.scene_schedule(5.0, 0)
    with pytest.raises(ValueError, match="unknown distractors"):
        sc.SceneSpec(distractors=("rain",))


def test_settings_map_to_distractors():
    assert sc.distractors_for("none") == ()
    assert sc.distractors_for("all") == sc.DISTRACTORS
    assert sc.distractors_for("shake") == ("shake",)
    with pytest.raises(ValueError, match="unknown distractor setting"):
        sc.distractors_for("fog")


def test_clean_scene_moves_only_where_the_ground_truth_says():
    r = renderer()
    _, moved = changed(r)
    moving = moved.any(axis=(1, 2))
    for i in range(1, len(moving) + 1):
        if moving[i - 1]:
            assert in_action(r, i), f"frame {i} ({i / FPS:.1f} s) moves outside every action"
    for a, b, kind in r.bursts:  # every action moves in most of its frames
        inside = [moving[i - 1] for i in range(1, len(moving) + 1) if a < (i - 1) / FPS and i / FPS < b]
        assert np.mean(inside) > 0.8, (a, b, kind)


def test_ground_truth_is_laps_json_with_back_to_back_flags(tmp_path):
    r = renderer(["crossing"])
    gt = r.ground_truth("v.mp4")
    assert gt["video_duration_sec"] == pytest.approx(DURATION)
    assert [(s["start_sec"], s["end_sec"], s["label"]) for s in gt["segments"]] == r.bursts
    assert gt["back_to_back_sec"] == sc.back_to_back_times(r.bursts)
    assert gt["distractors"]["enabled"] == ["crossing"]
    assert {c["during"] for c in gt["distractors"]["crossing"]} == {"rest", "action"}
    import json

    (tmp_path / "v.json").write_text(json.dumps(gt))
    video, duration, segs = read_laps_segments(tmp_path / "v.json")
    assert video == "v.mp4" and duration == pytest.approx(DURATION) and len(segs) == len(r.bursts)


def test_distractors_do_not_change_the_schedule():
    base = renderer()
    for d in sc.DISTRACTORS:
        assert renderer([d]).bursts == base.bursts
    # compression acts on the encoder only: the rendered frames are the clean ones
    comp = renderer(["compression"])
    assert comp.spec.encode_crf == comp.spec.compression_crf != base.spec.encode_crf
    assert all(np.array_equal(comp.frame(i), base.frame(i)) for i in range(0, base.spec.num_frames, 7))


def rest_steps(r: rd.SceneRenderer) -> list[int]:
    """Frame indices i whose step (i-1 -> i) lies in no action and in no crossing."""
    out = []
    for i in range(1, r.spec.num_frames):
        t0, t1 = (i - 1) / FPS, i / FPS
        if not in_action(r, i) and not any(a <= t1 and t0 < b for a, b, _ in r.crossings):
            out.append(i)
    return out


def test_conveyor_moves_its_band_in_every_frame_and_nothing_else_at_rest():
    r = renderer(["conveyor"])
    _, moved = changed(r)
    y0, y1 = r.ground_truth("v")["distractors"]["conveyor"]["rows"]
    rest = rest_steps(r)
    assert len(rest) > 20
    for i in rest:
        assert moved[i - 1, y0:y1].mean() > 0.3, f"belt still at frame {i}"
        assert not moved[i - 1, : y0 - 2].any() and not moved[i - 1, y1 + 2 :].any()


def test_crossing_object_crosses_during_rests_and_actions_only_in_its_intervals():
    r = renderer(["crossing"])
    clean = renderer()
    assert len(r.crossings) >= 2
    frames, _ = changed(r)
    ref, _ = changed(clean)
    differs = (frames != ref).any(axis=(1, 2, 3))  # the crossing object is in view
    for i in range(r.spec.num_frames):
        t = i / FPS
        inside = any(a <= t < b for a, b, _ in r.crossings)
        if not inside:
            assert not differs[i], f"crossing object visible at {t:.1f} s outside its intervals"
    for a, b, kind in r.crossings:
        mid = int(round((a + b) / 2 * FPS))
        assert differs[mid], (a, b, kind)
        in_rest = not any(s <= (a + b) / 2 < e for s, e, _ in r.bursts)
        assert in_rest == (kind == "rest")


def test_shake_moves_the_whole_frame_and_flicker_its_brightness():
    shake = renderer(["shake"])
    _, moved = changed(shake)
    rest = rest_steps(shake)
    assert np.mean([moved[i - 1].mean() for i in rest]) > 0.5  # most pixels change at rest
    h, w = SIZE[1], SIZE[0]
    quadrants = [moved[:, : h // 2, : w // 2], moved[:, h // 2 :, w // 2 :]]
    assert all(q[[i - 1 for i in rest]].mean() > 0.3 for q in quadrants)

    flicker, clean = renderer(["flicker"]), renderer()
    ratio = np.array([flicker.frame(i).mean() / clean.frame(i).mean() for i in rest_steps(flicker)])
    assert ratio.std() > 0.03 and 0.8 < ratio.min() and ratio.max() < 1.25


def test_written_video_matches_its_spec(tmp_path):
    spec = sc.SceneSpec(10.0, FPS, SIZE, 5, ("compression",))
    gt = rd.make_scene_video(tmp_path / "s.mp4", spec, **photos(5))
    images, _, _ = read_frames(tmp_path / "s.mp4")
    assert images.shape == (spec.num_frames, SIZE[1], SIZE[0], 3)
    assert gt["video"] == "s.mp4" and gt["distractors"]["compression"] == {"crf": spec.compression_crf}
    assert gt["scene"]["distractors"] == ["compression"] and gt["scene"]["photos"]["background"] == "array"


@pytest.mark.skipif(not (sc.PHOTO_DIR / sc.BACKGROUND_PHOTOS[0]).is_file(), reason="opencv-doc not installed")
def test_default_photographs_load():
    r = rd.SceneRenderer(sc.SceneSpec(10.0, FPS, SIZE, 0, sc.DISTRACTORS))
    assert set(r.photos) == {"background", "object", "belt", "crosser"}
    assert all(name.endswith((".jpg", ".png")) for name in r.photos.values())
    assert r.frame(0).shape == (SIZE[1], SIZE[0], 3)
    with pytest.raises(sc.PhotoError, match="opencv-doc"):
        rd.load_photo("no_such_photo.jpg")

"""Label formats (``laps_ray.io.labels``): LAPS segment JSON and MS-TCN per-frame files, real Breakfast GT."""

from __future__ import annotations

import json

import pytest
from helpers import BREAKFAST, BREAKFAST_FPS
from helpers import label_run_lengths as runs

from laps_ray.io.labels import (
    LabelFormatError,
    Segment,
    frames_to_segments,
    read_frame_labels,
    read_laps_segments,
    segments_to_frames,
    write_laps_segments,
)

# ---------------------------------------------------------------- label files


def test_read_real_breakfast_files():
    expected = {
        "P03_cam01_P03_coffee": (917, 5),
        "P05_cam01_P05_coffee": (1119, 6),
        "P06_cam01_P06_coffee": (472, 5),
        "P08_webcam01_P08_coffee": (271, 3),
        "P09_cam01_P09_coffee": (571, 4),
    }
    for name, (n_frames, n_segments) in expected.items():
        labels = read_frame_labels(BREAKFAST / name)
        assert len(labels) == n_frames
        assert len(frames_to_segments(labels, BREAKFAST_FPS)) == n_segments
    assert runs(read_frame_labels(BREAKFAST / "P03_cam01_P03_coffee")) == [
        ("SIL", 38),
        ("take_cup", 161),
        ("pour_coffee", 179),
        ("pour_milk", 397),
        ("SIL", 142),
    ]


def test_read_frame_labels_strips_trailing_blank_lines_only(tmp_path):
    ok = tmp_path / "ok"
    ok.write_text("a\na\r\nb\n\n\n")
    assert read_frame_labels(ok) == ["a", "a", "b"]
    bad = tmp_path / "bad"
    bad.write_text("a\n\nb\n")
    with pytest.raises(LabelFormatError, match=r"bad.*blank line 2"):
        read_frame_labels(bad)
    empty = tmp_path / "empty"
    empty.write_text("\n\n")
    with pytest.raises(LabelFormatError, match="no labels"):
        read_frame_labels(empty)


def test_frames_segments_round_trip_on_breakfast():
    labels = read_frame_labels(BREAKFAST / "P05_cam01_P05_coffee")
    segs = frames_to_segments(labels, BREAKFAST_FPS)
    assert segs[0] == Segment(0.0, 3 / 15, "SIL")  # SIL runs frames 0..2
    assert segs[1].start_sec == pytest.approx(0.2) and segs[1].end_sec == pytest.approx(242 / 15)
    assert segments_to_frames(segs, BREAKFAST_FPS, len(labels)) == labels


def test_segments_to_frames_background_and_overlap():
    # fps 2: frame k centre at (k + 0.5) / 2 s = 0.25, 0.75, 1.25, 1.75, 2.25, 2.75
    segs = [Segment(0.5, 1.5, "a"), Segment(2.0, 2.6, "b")]
    assert segments_to_frames(segs, 2.0, 6) == ["background", "a", "a", "background", "b", "background"]
    assert segments_to_frames(segs, 2.0, 3, background="SIL") == ["SIL", "a", "a"]
    with pytest.raises(ValueError, match="segments 0 and 1 both cover frame 2"):
        segments_to_frames([Segment(0.0, 1.5, "a"), Segment(1.0, 2.0, "b")], 2.0, 6)
    with pytest.raises(ValueError, match="no label"):
        segments_to_frames([Segment(0.0, 1.0)], 2.0, 6)


def test_read_laps_segments_accepts_our_segments_json(tmp_path):
    doc = {
        "video": "clip.mp4",
        "video_duration_sec": 12.5,
        "fps": 20,
        "segments": [
            {"start_sec": 1.0, "end_sec": 3.0, "label": "segment_0000", "mean_energy": 4.5, "clip": "x.mp4"},
            {"start_sec": 5.0, "end_sec": 6.0},
        ],
        "params": {"thr_on": 1.0},
    }
    path = tmp_path / "segments.json"
    path.write_text(json.dumps(doc))
    video, duration, segs = read_laps_segments(path)
    assert (video, duration) == ("clip.mp4", 12.5)
    assert segs == [Segment(1.0, 3.0, "segment_0000", 4.5), Segment(5.0, 6.0, None, None)]
    out = tmp_path / "gt.json"
    write_laps_segments(out, video, duration, segs)
    assert read_laps_segments(out)[2] == [Segment(1.0, 3.0, "segment_0000"), Segment(5.0, 6.0)]


@pytest.mark.parametrize(
    "text,message",
    [
        ("{not json", "not valid JSON"),
        ("[]", "top level must be an object"),
        ('{"video": "v", "segments": []}', "missing key 'video_duration_sec'"),
        ('{"video": "v", "video_duration_sec": 3, "segments": [{"start_sec": 1}]}', "missing key 'end_sec'"),
        (
            '{"video": "v", "video_duration_sec": 3, "segments": [{"start_sec": -1, "end_sec": 1}]}',
            "negative",
        ),
        (
            '{"video": "v", "video_duration_sec": 3, "segments": [{"start_sec": 2, "end_sec": 1}]}',
            "not after",
        ),
        ('{"video": "v", "video_duration_sec": 3, "segments": [{"start_sec": "0", "end_sec": 1}]}', "number"),
        (
            '{"video": "v", "video_duration_sec": 3,'
            ' "segments": [{"start_sec": 0, "end_sec": 1, "label": 3}]}',
            "label",
        ),
        (
            '{"video": "v", "video_duration_sec": 9, "segments": [{"start_sec": 4, "end_sec": 5},'
            ' {"start_sec": 1, "end_sec": 2}]}',
            "not sorted",
        ),
    ],
)
def test_read_laps_segments_errors_name_file_and_problem(tmp_path, text, message):
    path = tmp_path / "broken_segments.json"
    path.write_text(text)
    with pytest.raises(LabelFormatError, match=message) as info:
        read_laps_segments(path)
    assert "broken_segments.json" in str(info.value)
    assert isinstance(info.value, ValueError)

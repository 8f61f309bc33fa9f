import numpy as np
import pytest

from laps_ray.core.windows import (
    WindowBuffer,
    flush_windows,
    grid_points,
    normalized_velocities,
    push_item,
    window_frame_indices,
    window_starts,
)


@pytest.mark.parametrize(
    "F,T,s,expected",
    [(16, 16, 4, [0]), (20, 16, 4, [0, 4]), (21, 16, 4, [0, 4, 8]), (5, 16, 4, [0]), (2, 16, 4, [0])],
)
def test_window_starts_cover_every_frame(F, T, s, expected):
    starts = window_starts(F, T, s)
    assert starts.tolist() == expected
    assert starts[-1] + T >= F  # the last frame is in a window: nothing silently dropped


def test_too_short_is_an_error():
    with pytest.raises(ValueError, match="at least 2 frames"):
        window_starts(1)


def test_padded_window_repeats_last_frame():
    assert window_frame_indices(8, 21, 16).tolist() == list(range(8, 21)) + [20, 20, 20]


@pytest.mark.parametrize("F", [2, 7, 16, 17, 20, 21, 64, 99])
@pytest.mark.parametrize("T,s", [(16, 4), (16, 16), (5, 2), (4, 3)])
def test_streaming_buffer_equals_offline_windows(F, T, s):
    buf = WindowBuffer(T=T, stride=s)
    got = []
    for f in range(F):
        got += push_item(buf, f)
        assert len(buf.items) <= T + s  # memory stays flat
    got += flush_windows(buf)
    expected = [(int(st), window_frame_indices(int(st), F, T).tolist()) for st in window_starts(F, T, s)]
    assert [(st, list(items)) for st, items in got] == expected


def test_grid_covers_the_whole_non_square_frame():
    pts = grid_points(240, 640, 20)
    assert pts.shape == (400, 2)
    # Cell centres: spans both axes symmetrically (the original covered only the left 240x240).
    assert pts[:, 0].min() == pytest.approx(640 / 40 - 0.5) and pts[:, 0].max() == pytest.approx(639 - 15.5)
    assert pts[:, 1].min() == pytest.approx(240 / 40 - 0.5) and pts[:, 1].max() == pytest.approx(239 - 5.5)
    # Row-major: x varies fastest.
    assert pts[1, 1] == pts[0, 1] and pts[1, 0] > pts[0, 0] and pts[20, 1] > pts[0, 1]


def test_velocity_normalisation_is_per_axis():
    tracks = np.zeros((3, 2, 2), np.float32)
    tracks[1, 0] = [32, 12]  # +32 px in x, +12 px in y on a 64x24 (w x h) frame
    v = normalized_velocities(tracks, height=24, width=64)
    assert v.shape == (2, 2, 2)
    np.testing.assert_allclose(v[0, 0], [1.0, 1.0])
    np.testing.assert_allclose(v[1, 0], [-1.0, -1.0])
    np.testing.assert_allclose(v[:, 1], 0.0)

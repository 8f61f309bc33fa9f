from pathlib import Path

import h5py
import numpy as np
import pytest

from laps_ray.io.track_store import (
    TrackMeta,
    TrackStoreError,
    TrackWriter,
    is_complete,
    list_track_files,
    load_windows,
    read_meta,
    read_tracks,
    split_by_video,
    write_tracks,
)


def _meta(**kw):
    base = dict(
        height=24, width=32, fps=20.0, source_fps=30.0, stride=4, T=16, grid=2, tracker="lk", source="v.mp4"
    )
    base.update(kw)
    return TrackMeta(**base)


def _random(w, T=16, N=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(w, T, N, 2)).astype(np.float32) * 10, rng.random((w, T, N)) > 0.2


def test_round_trip_and_layout(tmp_path):
    tracks, vis = _random(5)
    path = write_tracks(tmp_path / "a b é.h5", tracks, vis, _meta(num_frames=33))
    t2, v2, meta = read_tracks(path)
    np.testing.assert_array_equal(t2, tracks)
    np.testing.assert_array_equal(v2, vis)
    assert meta == _meta(num_frames=33)
    with h5py.File(path) as f:  # the AMPLIFY-compatible layout readers elsewhere rely on
        assert f["root/default/tracks"].dtype == np.float32 and f["root/default/tracks"].shape == (
            5,
            16,
            4,
            2,
        )
        assert f["root/default/vis"].dtype == bool
        assert f["root/default/tracks"].compression == "gzip"
        assert int(f["root/default"].attrs["height"]) == 24
    assert is_complete(path)


def test_writer_streams_and_failure_leaves_nothing(tmp_path):
    out = tmp_path / "v.h5"
    with TrackWriter(out, _meta(), num_points=4) as w:
        for i in range(3):
            t, v = _random(2, seed=i)
            w.append(t, v, np.array([8 * i, 8 * i + 4]), np.array([0.4 * i, 0.4 * i + 0.2]))
        w.close(num_frames=40)
    assert read_tracks(out)[0].shape == (6, 16, 4, 2)
    bad = tmp_path / "bad.h5"
    with pytest.raises(RuntimeError):
        with TrackWriter(bad, _meta(), num_points=4) as w:
            w.append(*_random(1), np.array([0]), np.array([0.0]))
            raise RuntimeError("tracker crashed")
    assert not bad.exists()
    assert list(tmp_path.iterdir()) == [out]  # no temporary left behind


def test_reads_original_amplify_files_without_our_attrs(tmp_path):
    path = tmp_path / "orig.hdf5"
    tracks, vis = _random(3)
    with h5py.File(path, "w") as f:
        g = f.create_group("root/default")
        g.create_dataset("tracks", data=tracks)
        g.create_dataset("vis", data=vis.astype(np.float32))
        g.attrs["height"], g.attrs["width"] = 480, 771
    meta = read_meta(path)
    assert (meta.height, meta.width, meta.stride) == (480, 771, 1)
    assert read_tracks(path)[1].dtype == bool


def test_errors_name_the_file(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(TrackStoreError, match="junk.h5"):
        read_tracks(junk)
    assert not is_complete(junk)
    path = write_tracks(tmp_path / "x.h5", *_random(1), _meta())
    with pytest.raises(TrackStoreError, match="no view 'side'"):
        read_tracks(path, "side")


def test_split_is_by_video_deterministic_and_non_empty(tmp_path):
    files = [Path(f"/d/video_{i:02d}.h5") for i in range(20)]
    train, val = split_by_video(files, 0.2, seed=1)
    assert set(train).isdisjoint(val) and sorted(train + val) == sorted(files)
    assert 1 <= len(val) <= 10
    assert split_by_video(list(reversed(files)), 0.2, seed=1) == (train, val)
    # A file keeps its side when other files come and go (hash of its own name).
    train2, val2 = split_by_video(files[:10], 0.2, seed=1)
    assert set(val) & set(files[:10]) <= set(val2)
    two = files[:2]
    assert all(len(side) == 1 for side in split_by_video(two, 0.2))


def test_load_windows_stacks_views_and_sizes(tmp_path):
    a = write_tracks(tmp_path / "a.h5", *_random(3, seed=1), _meta())
    b = write_tracks(tmp_path / "sub" / "b.h5", *_random(2, seed=2), _meta(height=48, width=64))
    files = list_track_files(tmp_path)
    assert files == [a, b]
    ws = load_windows(files)
    assert ws.tracks.shape == (5, 1, 16, 4, 2) and ws.vis.shape == (5, 1, 16, 4)
    assert ws.sizes.tolist() == [[24, 32]] * 3 + [[48, 64]] * 2
    assert ws.video_ids.tolist() == [0, 0, 0, 1, 1]

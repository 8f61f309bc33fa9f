import pytest

from laps_ray.io.atomic import atomic_dir, atomic_path, write_json_atomic


def test_atomic_dir_swaps_in_and_failure_keeps_the_old_one(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash while writing")
    assert (target / "a.txt").read_text() == "v1"
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporaries or old copies left


def test_atomic_file_keeps_suffix_and_leaves_nothing_on_error(tmp_path):
    with atomic_path(tmp_path / "clip.mp4") as tmp:
        assert tmp.suffix == ".mp4" and tmp.name.startswith(".")
        tmp.write_bytes(b"x")
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "bad.json", {"x": float("nan")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]

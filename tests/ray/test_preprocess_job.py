"""The preprocess job on Ray: tracks from videos, bad inputs reported, resume, the CLI, split chunks."""

from __future__ import annotations

import json

import pytest
from helpers import preprocess_cfg

from laps_ray.io.track_store import read_tracks
from laps_ray.jobs.preprocess import main, run


def test_job_reports_every_bad_input_and_finishes_the_good_ones(ray_local, preprocess_videos, tmp_path):
    out = tmp_path / "out"
    result = run(preprocess_cfg(preprocess_videos, out))
    assert result.exit_code == 0
    manifest = json.loads((out / "run.json").read_text())
    items = manifest["items"]
    assert items["a.mp4"]["status"] == "done" and items["sub dir/b é.mp4"]["status"] == "done"
    bad = {k: v for k, v in items.items() if k.startswith("bad/")}
    assert len(bad) == 5 and all(v["status"] == "failed" for v in bad.values())
    reasons = " | ".join(v["reason"] for v in bad.values())
    for word in ("empty", "short", "audio"):
        assert word in reasons
    locked = [k for k in items if k.startswith("locked/")]
    assert len(locked) == 1 and locked[0].endswith("/") and items[locked[0]]["status"] == "failed"
    assert "directory not readable" in items[locked[0]]["reason"]
    assert (out / "sub dir" / "b é.h5").exists() and read_tracks(out / "a.h5")[0].shape[1:] == (16, 400, 2)
    assert manifest["config"]["tracker"]["name"] == "lk" and "ray" in manifest["versions"]
    assert not list(out.rglob(".*.tmp*"))

    # Re-run: complete outputs are skipped; a deleted output and a stale partial file are redone.
    (out / "a.h5").unlink()
    (out / ".a.deadbeef.tmp.h5").write_bytes(b"partial")
    before = (out / "sub dir" / "b é.h5").stat().st_mtime_ns
    again = run(preprocess_cfg(preprocess_videos, out))
    assert again.skipped == 1 and (out / "a.h5").exists()
    assert (out / "sub dir" / "b é.h5").stat().st_mtime_ns == before
    assert not (out / ".a.deadbeef.tmp.h5").exists()
    # A changed window setting invalidates old outputs instead of silently reusing them.
    assert run(preprocess_cfg(preprocess_videos, out, "stride=8")).skipped == 0


def test_cli_check_strict_and_errors(ray_local, preprocess_videos, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--input",
                str(preprocess_videos / "bad"),
                "--output",
                str(tmp_path / "c"),
                "--check",
                "--strict",
            ]
        )
    assert exc.value.code == 1
    text = capsys.readouterr().out
    assert "0 ok, 5 broken" in text and "zero" in text.lower() or "empty" in text
    with pytest.raises(SystemExit) as exc:
        main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    assert exc.value.code == 1 and "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--input", str(preprocess_videos), "--output", str(tmp_path / "o"), "tracker.name=sift"])
    assert exc.value.code == 2 and "tracker.name" in capsys.readouterr().err


def test_split_seconds_cuts_chunks_then_tracks_each(ray_local, preprocess_videos, tmp_path):
    out = tmp_path / "split"
    result = run(preprocess_cfg(preprocess_videos / "a.mp4", out, "split_seconds=1.0"))
    chunks = sorted((out / "chunks").glob("*.mp4"))
    assert [c.name for c in chunks] == ["a_part000.mp4", "a_part001.mp4", "a_part002.mp4"]
    assert result.done == 3 and not result.failed
    # Each 1 s chunk at 20 fps = 20 frames -> 1 + ceil(4/4) = 2 windows.
    assert all(read_tracks(out / c.with_suffix(".h5").name)[0].shape[0] == 2 for c in chunks)

"""The segment_folder job on Ray: outputs, sharded == unsharded, resume, bad inputs, a killed actor;
a bad checkpoint or bad paths stop it before Ray starts and keep finished work."""

from __future__ import annotations

import dataclasses
import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    SMALL_SCENE,
    assert_same_bytes,
    output_files,
    segment_folder_args,
    segment_folder_cfg,
    snapshot,
    tiny_checkpoint,
)

from laps_ray.jobs.segment_folder import main, run, summary
from laps_ray.tracking.base import TrackerConfig


def test_job_outputs_bad_inputs_sharding_and_resume(ray_local, segment_inputs, segment_reference, tmp_path):
    out = tmp_path / "out"
    cfg = segment_folder_cfg(segment_inputs, segment_inputs["videos"], out, "shard_seconds=2")
    result = run(cfg)  # 10 windows per shard
    assert result.exit_code == 0, summary(result)
    manifest = json.loads((out / "run.json").read_text())
    items = manifest["items"]
    assert items["a.mp4"]["status"] == items["sub/b.mp4"]["status"] == "done"
    assert items["a.mp4"]["shards"] == 3 and items["a.mp4"]["windows"] == 27  # 6 s -> 120 frames
    # 4 s at 15 fps, below target_fps: all 60 frames are kept -> 1 + ceil((60 - 16) / 4) = 12 windows
    assert items["sub/b.mp4"]["shards"] == 2 and items["sub/b.mp4"]["windows"] == 12
    assert items["bad/kitchen café 01.mp4"]["status"] == "done"  # a good file with a hard name
    bad = {k: v for k, v in items.items() if k.startswith("bad/") and "café" not in k}
    assert len(bad) == 5 and all(v["status"] == "failed" for v in bad.values())
    reasons = " | ".join(v["reason"] for v in bad.values())
    for word in ("empty", "short", "audio", "truncated", "not a video"):
        assert word in reasons
    assert manifest["checkpoint_sha256"] and manifest["config"]["segmentation"]["threshold"] == 0.01
    assert manifest["threshold"] == {"value": 0.01, "source": "fixed"} and manifest["windows_per_second"] > 0
    locked = [k for k in items if k.startswith("locked/")]
    assert len(locked) == 1 and "directory not readable" in items[locked[0]]["reason"]
    assert "6 failed" in summary(result) and str(out) in summary(result)
    assert (out / "kitchen café 01" / "segments.json").exists() and (out / "config.yaml").exists()
    assert not list(out.rglob(".work")) and not list(out.rglob(".*.tmp*"))

    # Sharded == unsharded: every output file byte for byte (clips and plots included).
    ref = output_files(segment_reference)
    got = {k: v for k, v in output_files(out).items() if k.split("/")[0] in ("a", "b")}
    assert_same_bytes(ref, got)
    assert any(k.endswith(".npy") for k in ref)

    # Resume: a partial video (segments.json lost) is redone, complete ones are skipped untouched.
    (out / "a" / "segments.json").unlink()
    (out / "a" / "clips" / ".segment_0000.deadbeef.tmp.mp4").write_bytes(b"partial")
    others = {k: p.stat().st_mtime_ns for k, p in output_files(out).items() if not k.startswith("a/")}
    again = run(cfg)
    assert again.skipped == 2 and again.done == 3 and again.windows == 27  # only a.mp4 was computed
    assert {k: p.stat().st_mtime_ns for k, p in output_files(out).items() if not k.startswith("a/")} == others
    assert not (out / "a" / "clips" / ".segment_0000.deadbeef.tmp.mp4").exists()
    assert filecmp.cmp(ref["a/segments.json"], out / "a" / "segments.json", shallow=False)
    # A setting that changes outputs changes the config digest (nothing is reused); shard size does not.
    digest = json.loads((out / "a" / "segments.json").read_text())["config_sha256"]
    assert _digest(segment_inputs, "shard_seconds=0") == digest
    assert (
        _digest(segment_inputs, "segmentation.threshold=0.02")
        != digest
        != _digest(segment_inputs, "tracker.grid=10")
    )


def _digest(segment_inputs, *extra: str) -> str:
    """The config digest of a run with ``extra`` (the tokenizer is checked with the default grid so
    that a grid change is a digest change here, not a mismatch error)."""
    from laps_ray.pipeline.resolve import check_tokenizer, output_digest, resolve_threshold, segments_params

    cfg = segment_folder_cfg(segment_inputs, segment_inputs["good"], Path("o"), *extra)
    thr, source = resolve_threshold(cfg, cfg.report, cfg.report_key)
    seg = dataclasses.replace(cfg.segmentation, threshold=thr)
    tok = check_tokenizer(dataclasses.replace(cfg, tracker=TrackerConfig()), segment_inputs["tok"])
    return output_digest(cfg, segments_params(cfg, seg, source, tok))


def test_killed_actor_is_restarted_and_its_shard_retried(
    ray_local, segment_inputs, segment_reference, tmp_path
):
    """A real kill (os._exit in the actor process, once) mid-shard: Ray restarts the actor and
    retries the call; the outputs are exactly those of an undisturbed run, with no leftovers."""
    out, marker = tmp_path / "out", tmp_path / "crashed"
    extra = ["shard_seconds=2", "testing.crash_after_windows=12", f"testing.marker={marker}"]
    result = run(segment_folder_cfg(segment_inputs, segment_inputs["good"], out, *extra))
    assert marker.exists()  # an actor really died
    assert result.exit_code == 0 and result.done == 2 and not result.failed
    assert_same_bytes(output_files(segment_reference), output_files(out))
    lines = (out / "a" / "energy.jsonl").read_text().splitlines()
    assert [json.loads(x)["window"] for x in lines] == list(range(27))  # no duplicate, no gap
    assert not list(out.rglob(".work")) and not list(out.rglob(".*.tmp*"))


# ------------------------------------------------------------------- fail fast, keep finished work


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_bad_checkpoint_stops_before_ray_and_keeps_finished_work(segment_inputs, segment_reference, tmp_path):
    """A truncated checkpoint on a re-run into a complete folder: one line naming the file, exit 1,
    every existing output untouched, and Ray never started (a fresh process shows it)."""
    out = tmp_path / "out"
    shutil.copytree(segment_reference, out)
    before = snapshot(out)
    bad = _copy_checkpoint(segment_inputs["tok"], tmp_path / "truncated")
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    args = segment_folder_args(segment_inputs, out, "--shard-seconds", "0", checkpoint=bad)
    cmd = [sys.executable, "-m", "laps_ray.jobs.segment_folder", *args, "resources.num_actors=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(weights) in err[0] and "truncated" in err[0]
    for ray_start_up in ("private local Ray", "joining the Ray cluster", "ray ready", "Started a local Ray"):
        assert ray_start_up not in proc.stdout + proc.stderr
    assert snapshot(out) == before


def test_mismatched_checkpoint_and_bad_paths_fail_fast(segment_inputs, segment_reference, tmp_path, capsys):
    """Every input is checked before anything is deleted or Ray starts: one line each, outputs kept."""
    out = tmp_path / "out"
    shutil.copytree(segment_reference, out)
    before = snapshot(out)
    flags = ["--input", str(segment_inputs["good"]), "--shard-seconds", "0"]
    overrides = ["segmentation.threshold=0.01", *SMALL_SCENE]

    def fails(*argv: str) -> str:
        extra = [a for a in argv if "=" in a and not a.startswith("-")]
        with pytest.raises(SystemExit) as exc:
            main([*flags, *(a for a in argv if a not in extra), *overrides, *extra])
        err = capsys.readouterr().err.strip()
        assert exc.value.code in (1, 2) and len(err.splitlines()) == 1, err
        return err

    # weights of one model under the config of another: named, not a deserialiser traceback
    small_grid = tiny_checkpoint(tmp_path / "grid10", num_points=100, seed=1)
    assert "tracker.grid" in fails("--output", str(out), "--checkpoint", str(small_grid))
    mixed = _copy_checkpoint(segment_inputs["tok"], tmp_path / "mixed")
    shutil.copy(small_grid / "config.yaml", mixed / "config.yaml")
    err = fails("--output", str(out), "--checkpoint", str(mixed), "tracker.grid=10")
    assert str(mixed / "model.safetensors") in err and "do not match" in err
    not_safetensors = _copy_checkpoint(segment_inputs["tok"], tmp_path / "text")
    (not_safetensors / "model.safetensors").write_text("hello")
    assert "not a safetensors file" in fails("--output", str(out), "--checkpoint", str(not_safetensors))
    assert snapshot(out) == before

    # paths: a file where the output folder should be, a missing or empty input folder
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert "is a file, not a folder" in fails(
        "--output", str(a_file), "--checkpoint", str(segment_inputs["tok"])
    )
    assert "a parent of it is a file" in fails(
        "--output", str(a_file / "o"), "--checkpoint", str(segment_inputs["tok"])
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        main(
            ["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o2"), "segmentation.threshold=1"]
        )
    assert "no video files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--input", "/nonexistent/videos", "--output", str(tmp_path / "o3"), "segmentation.threshold=1"])
    assert "/nonexistent/videos: no such file or directory" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_auto_threshold_in_one_pass_resumes_and_recalibrates_a_grown_folder(
    ray_local, segment_inputs, tmp_path
):
    """No threshold given: one pass calibrates it on the run's own windows (the same number
    `calibrate` reports on those outputs), records it with its evidence, a resumed run pools the same
    windows (same threshold, same bytes), and a video joining the folder recalibrates the others."""
    from laps_ray.config import load_config
    from laps_ray.jobs import calibrate

    inp, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(segment_inputs["good"], inp)
    cfg = segment_folder_cfg(segment_inputs, inp, out, "segmentation.threshold=auto", "shard_seconds=0")
    first = run(cfg)
    assert first.exit_code == 0 and first.done == 2, summary(first)
    thr = json.loads((out / "run.json").read_text())["threshold"]
    assert thr["source"] == "auto" and thr["scope"] == "folder" and thr["auc"] is not None
    docs = {k: json.loads((out / k / "segments.json").read_text()) for k in ("a", "b")}
    for doc in docs.values():
        used = doc["params"]["segmentation"]
        assert used["threshold"] == thr["value"] and used["threshold_source"]["source"] == "auto"
        assert doc["reliable"] is (used["threshold_source"]["video"]["reliable"])
    # the same rule as `calibrate` with its defaults (pseudo-labels: Otsu on the log motion energy;
    # best-F1 of the segmented signal), which follow segment_folder's
    report = calibrate.run(
        load_config(calibrate.CalibrateJobConfig, None, [f"energy={out}", f"output={tmp_path / 'c.json'}"])
    ).report
    assert report["motion"]["smoothed"]["best_f1"]["thr"] == pytest.approx(thr["value"], rel=1e-12)

    before = snapshot(out)
    (out / "b" / "segments.json").unlink()  # b is partial now; a is complete
    again = run(cfg)
    assert (
        again.skipped == 1
        and json.loads((out / "run.json").read_text())["threshold"]["value"] == thr["value"]
    )
    assert {k: v[1] for k, v in snapshot(out).items() if k.startswith(("a/", "b/"))} == {
        k: v[1] for k, v in before.items() if k.startswith(("a/", "b/"))
    }

    shutil.copy(segment_inputs["videos"] / "bad" / "kitchen café 01.mp4", inp / "c.mp4")
    grown = run(cfg)
    regrown = json.loads((out / "run.json").read_text())["threshold"]
    new = regrown["value"]
    # recalibrated on all three videos' windows (the value itself may land on the same split: the
    # label rule cuts between histogram bins)
    assert grown.exit_code == 0 and regrown["n"] > thr["n"]
    for k in ("a", "b", "c"):  # every video now carries the folder's new threshold
        assert (
            json.loads((out / k / "segments.json").read_text())["params"]["segmentation"]["threshold"] == new
        )

"""The segment_folder job on Ray: outputs, sharded == unsharded, resume, bad inputs, a killed actor,
threshold errors, and ``ray job submit`` against ``ray start --head``."""

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
import torch
import yaml
from helpers import make_unlistable_folder

from laps_ray.config import load_config, to_dict
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.core.smoothing import SmoothingConfig
from laps_ray.io.checkpoints import save_tokenizer
from laps_ray.io.synthetic import make_action_video, make_bad_inputs
from laps_ray.jobs.segment_folder import SegmentJobConfig, main, run, summary
from laps_ray.models.tokenizer import MotionTokenizer
from laps_ray.models.tokenizer_config import named_config
from laps_ray.tracking.base import TrackerConfig

REPO = Path(__file__).resolve().parents[1]
# Small synthetic scenes: gates scaled to a small moving object (see test_segment_pipeline.py).
SMALL_SCENE = [
    "gates.pre_gate.mad_thr=0.0004",
    "gates.pre_gate.min_active_ratio=0.001",
    "gates.motion_gate.vel_norm_thr=0.002",
    "gates.motion_gate.min_active_ratio=0.01",
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("segment_folder")
    vids = d / "videos"
    make_action_video(vids / "a.mp4", 6, 30, (160, 120), [(1.0, 2.5, "circle"), (3.5, 5.0, "shake")])
    make_action_video(vids / "sub" / "b.mp4", 4, 15, (160, 120), [(1.5, 3.0, "shake")], seed=2)
    bad = make_bad_inputs(vids / "bad")  # 5 broken files + "kitchen café 01.mp4" (good, 1 s)
    make_unlistable_folder(vids / "locked")  # a sub-folder nobody can list: reported, not fatal
    good = d / "good"
    (good / "sub").mkdir(parents=True)
    shutil.copy(vids / "a.mp4", good / "a.mp4")
    shutil.copy(vids / "sub" / "b.mp4", good / "sub" / "b.mp4")
    torch.manual_seed(0)
    tcfg = named_config("tiny", num_points=400)  # random weights: the trained checkpoint ships separately
    ckpt = save_tokenizer(d / "tok", MotionTokenizer(tcfg), tcfg)
    return {"dir": d, "videos": vids, "good": good, "tok": ckpt, "unicode": bad["unicode_name"]}


def _cfg(inputs, inp: Path, out: Path, *extra: str) -> SegmentJobConfig:
    return load_config(
        SegmentJobConfig,
        REPO / "configs" / "segment_folder.yaml",
        [
            f"input={inp}",
            f"output={out}",
            f"tokenizer.checkpoint={inputs['tok']}",
            "decode.resize_shorter=0",
            "segmentation.threshold=0.3",
            "resources.num_actors=2",
            "export.clip_preset=ultrafast",
            *SMALL_SCENE,
            *extra,
        ],
    )


def _files(root: Path) -> dict[str, Path]:
    """Per-video output files (not the run-level run.json / config.yaml)."""
    return {str(p.relative_to(root)): p for p in sorted(root.glob("*/**/*")) if p.is_file()}


@pytest.fixture(scope="module")
def unsharded(ray_local, inputs) -> Path:
    """Reference run: one shard per video."""
    out = inputs["dir"] / "unsharded"
    result = run(_cfg(inputs, inputs["good"], out, "shard_seconds=0"))
    assert result.exit_code == 0 and result.done == 2 and not result.failed
    return out


def test_job_outputs_bad_inputs_sharding_and_resume(ray_local, inputs, unsharded, tmp_path):
    out = tmp_path / "out"
    result = run(_cfg(inputs, inputs["videos"], out, "shard_seconds=2"))  # 10 windows per shard
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
    assert manifest["checkpoint_sha256"] and manifest["config"]["segmentation"]["threshold"] == 0.3
    assert manifest["threshold"] == {"value": 0.3, "source": "fixed"} and manifest["windows_per_second"] > 0
    locked = [k for k in items if k.startswith("locked/")]
    assert len(locked) == 1 and "directory not readable" in items[locked[0]]["reason"]
    assert "6 failed" in summary(result) and str(out) in summary(result)
    assert (out / "kitchen café 01" / "segments.json").exists() and (out / "config.yaml").exists()
    assert not list(out.rglob(".work")) and not list(out.rglob(".*.tmp*"))

    # Sharded == unsharded: every output file byte for byte (clips and plots included).
    ref = _files(unsharded)
    got = {k: v for k, v in _files(out).items() if k.split("/")[0] in ("a", "b")}
    assert sorted(got) == sorted(ref) and any(k.endswith(".npy") for k in ref)
    for name in ref:
        assert filecmp.cmp(ref[name], got[name], shallow=False), name

    # Resume: a partial video (segments.json lost) is redone, complete ones are skipped untouched.
    (out / "a" / "segments.json").unlink()
    (out / "a" / "clips" / ".segment_0000.deadbeef.tmp.mp4").write_bytes(b"partial")
    others = {k: p.stat().st_mtime_ns for k, p in _files(out).items() if not k.startswith("a/")}
    again = run(_cfg(inputs, inputs["videos"], out, "shard_seconds=2"))
    assert again.skipped == 2 and again.done == 3 and again.windows == 27  # only a.mp4 was computed
    assert {k: p.stat().st_mtime_ns for k, p in _files(out).items() if not k.startswith("a/")} == others
    assert not (out / "a" / "clips" / ".segment_0000.deadbeef.tmp.mp4").exists()
    assert filecmp.cmp(ref["a/segments.json"], out / "a" / "segments.json", shallow=False)
    # A setting that changes outputs changes the config digest (nothing is reused); shard size does not.
    digest = json.loads((out / "a" / "segments.json").read_text())["config_sha256"]
    assert _digest(inputs, "shard_seconds=0") == digest
    assert _digest(inputs, "segmentation.threshold=0.4") != digest != _digest(inputs, "tracker.grid=10")


def _digest(inputs, *extra: str) -> str:
    """The config digest of a run with ``extra`` (the tokenizer is checked with the default grid so
    that a grid change is a digest change here, not a mismatch error)."""
    from laps_ray.pipeline.resolve import check_tokenizer, output_digest, resolve_threshold, segments_params

    cfg = _cfg(inputs, inputs["good"], Path("o"), *extra)
    thr, source = resolve_threshold(cfg, cfg.report, cfg.report_key)
    seg = dataclasses.replace(cfg.segmentation, threshold=thr)
    tok = check_tokenizer(dataclasses.replace(cfg, tracker=TrackerConfig()), inputs["tok"])
    return output_digest(cfg, segments_params(cfg, seg, source, tok))


def test_killed_actor_is_restarted_and_its_shard_retried(ray_local, inputs, unsharded, tmp_path):
    """A real kill (os._exit in the actor process, once) mid-shard: Ray restarts the actor and
    retries the call; the outputs are exactly those of an undisturbed run, with no leftovers."""
    out, marker = tmp_path / "out", tmp_path / "crashed"
    extra = ["shard_seconds=2", "testing.crash_after_windows=12", f"testing.marker={marker}"]
    result = run(_cfg(inputs, inputs["good"], out, *extra))
    assert marker.exists()  # an actor really died
    assert result.exit_code == 0 and result.done == 2 and not result.failed
    ref, got = _files(unsharded), _files(out)
    assert sorted(got) == sorted(ref)
    for name in ref:
        assert filecmp.cmp(ref[name], got[name], shallow=False), name
    lines = (out / "a" / "energy.jsonl").read_text().splitlines()
    assert [json.loads(x)["window"] for x in lines] == list(range(27))  # no duplicate, no gap
    assert not list(out.rglob(".work")) and not list(out.rglob(".*.tmp*"))


# ------------------------------------------------------------------------------- config and CLI


def test_threshold_errors_stop_before_any_work(inputs, tmp_path, capsys):
    report = tmp_path / "calib.json"
    report.write_text(
        json.dumps({"quantized": {"smoothed": {"best_f1": {"thr": 0.7}, "best_j": {"thr": 0.5}}}})
    )
    base = ["--input", str(inputs["good"]), "--checkpoint", str(inputs["tok"])]
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                *base,
                "--output",
                str(out),
                "--report",
                str(report),
                "--report-key",
                "quantized.raw.best_f1.thr",
            ]
        )
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 1 and len(err.splitlines()) == 1
    assert "quantized.raw.best_f1.thr" in err and "available:" in err
    assert "quantized.smoothed.best_f1.thr" in err and "quantized.smoothed.best_j.thr" in err
    assert not out.exists()  # nothing was done
    with pytest.raises(SystemExit) as exc:
        main([*base, "--output", str(out)])  # no threshold at all
    assert exc.value.code == 2 and "segmentation.threshold" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # both: ambiguous
        key = "quantized.smoothed.best_j.thr"
        main(
            [
                *base,
                "--output",
                str(out),
                "--report",
                str(report),
                "--report-key",
                key,
                "segmentation.threshold=0.3",
            ]
        )
    assert exc.value.code == 2 and "use one" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # a velocity threshold for a quantized energy
        main(
            [*base, "--output", str(out), "--report", str(report), "--report-key", "velocity.raw.best_f1.thr"]
        )
    assert exc.value.code == 2 and "energy.source" in capsys.readouterr().err
    assert not out.exists()


def test_report_threshold_and_sweep_best_yaml_are_accepted(inputs, tmp_path):
    report = tmp_path / "calib.json"
    report.write_text(json.dumps({"quantized": {"smoothed": {"best_f1": {"thr": 0.7}}}}))
    from laps_ray.pipeline.resolve import resolve_checkpoint, resolve_threshold

    cfg = _cfg(inputs, inputs["good"], tmp_path / "o", "segmentation.threshold=null", f"report={report}",
               "report_key=quantized.smoothed.best_f1.thr")  # fmt: skip
    thr, source = resolve_threshold(cfg, cfg.report, cfg.report_key)
    assert thr == 0.7 and source == {
        "source": "report",
        "report": str(report),
        "key": "quantized.smoothed.best_f1.thr",
    }
    # sweep_thresholds writes best.yaml with top-level energy: and segmentation: (their field names)
    best = tmp_path / "best.yaml"
    doc = {
        "energy": {
            "source": "velocity",
            "mode": "token_diff_l2_mean",
            "smoothing": to_dict(SmoothingConfig(alpha=0.4)),
        },
        "segmentation": to_dict(SegmentationConfig(threshold=0.0123, up_count=3)),
    }
    best.write_text(yaml.safe_dump(doc))
    cfg = load_config(SegmentJobConfig, best, [f"input={inputs['good']}", "output=o"])
    assert cfg.energy.source == "velocity" and cfg.energy.smoothing.alpha == 0.4
    assert cfg.segmentation.threshold == 0.0123 and cfg.segmentation.up_count == 3
    # a checkpoint that is not there is named in the error
    missing = load_config(SegmentJobConfig, None, [f"tokenizer.checkpoint={tmp_path / 'nope'}"])
    with pytest.raises(Exception, match="nope"):
        resolve_checkpoint(missing.tokenizer)


def test_module_help_is_fast_and_lists_flags():
    proc = subprocess.run(
        [sys.executable, "-m", "laps_ray.jobs.segment_folder", "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert proc.returncode == 0
    for flag in ("--report-key", "--checkpoint", "--shard-seconds", "--num-actors", "--strict"):
        assert flag in proc.stdout


@pytest.mark.e2e
def test_ray_job_submit_against_ray_start(ray_head, inputs, tmp_path):
    out = tmp_path / "submitted"
    cmd = [
        ray_head["ray"], "job", "submit", "--address", ray_head["url"], "--working-dir", str(REPO),
        "--", "python", "-m", "laps_ray.jobs.segment_folder", "--input", str(inputs["good"] / "a.mp4"),
        "--output", str(out), "--checkpoint", str(inputs["tok"]), "--shard-seconds", "3",
        "segmentation.threshold=0.3", "decode.resize_shorter=0", *SMALL_SCENE,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=ray_head["env"], capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert "succeeded" in text.lower() and "segment_folder: 1 done" in text
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["items"]["a.mp4"]["status"] == "done" and manifest["items"]["a.mp4"]["shards"] == 2
    doc = json.loads((out / "a" / "segments.json").read_text())
    assert doc["video"] == "a.mp4" and len(doc["segments"]) == 2
    # The custom metrics reach the node's Prometheus endpoint (what the dashboard's Grafana scrapes).
    text = _scrape_metrics(
        ray_head["url"], ("ray_laps_segment_windows_total", "ray_laps_segment_videos_total")
    )
    assert 'gate="none"' in text and 'status="done"' in text


def _scrape_metrics(dashboard: str, names: tuple[str, ...], timeout: float = 30.0) -> str:
    """The head node's metrics export, once every name in ``names`` shows up (Ray exports every few s)."""
    import time
    import urllib.request

    with urllib.request.urlopen(f"{dashboard}/nodes?view=summary", timeout=10) as r:
        port = json.loads(r.read())["data"]["summary"][0]["raylet"]["metricsExportPort"]
    deadline = time.time() + timeout
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        if all(n in text for n in names) or time.time() > deadline:
            missing = [n for n in names if n not in text]
            assert not missing, f"metrics {missing} not exported on port {port}"
            return text
        time.sleep(2)


# ------------------------------------------------------------------- fail fast, keep finished work


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in root.rglob("*")
        if p.is_file()
    }


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_bad_checkpoint_stops_before_ray_and_keeps_finished_work(inputs, unsharded, tmp_path):
    """A truncated checkpoint on a re-run into a complete folder: one line naming the file, exit 1,
    every existing output untouched, and Ray never started (a fresh process shows it)."""
    out = tmp_path / "out"
    shutil.copytree(unsharded, out)
    before = _snapshot(out)
    bad = _copy_checkpoint(inputs["tok"], tmp_path / "truncated")
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    cmd = [
        sys.executable, "-m", "laps_ray.jobs.segment_folder", "--input", str(inputs["good"]),
        "--output", str(out), "--checkpoint", str(bad), "--shard-seconds", "0",
        "segmentation.threshold=0.3", "decode.resize_shorter=0", "resources.num_actors=2", *SMALL_SCENE,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(weights) in err[0] and "truncated" in err[0]
    for ray_start_up in ("private local Ray", "joining the Ray cluster", "ray ready", "Started a local Ray"):
        assert ray_start_up not in proc.stdout + proc.stderr
    assert _snapshot(out) == before


def test_mismatched_checkpoint_and_bad_paths_fail_fast(inputs, unsharded, tmp_path, capsys):
    """Every input is checked before anything is deleted or Ray starts: one line each, outputs kept."""
    out = tmp_path / "out"
    shutil.copytree(unsharded, out)
    before = _snapshot(out)
    flags = ["--input", str(inputs["good"]), "--shard-seconds", "0"]
    overrides = ["segmentation.threshold=0.3", *SMALL_SCENE]

    def fails(*argv: str) -> str:
        extra = [a for a in argv if "=" in a and not a.startswith("-")]
        with pytest.raises(SystemExit) as exc:
            main([*flags, *(a for a in argv if a not in extra), *overrides, *extra])
        err = capsys.readouterr().err.strip()
        assert exc.value.code in (1, 2) and len(err.splitlines()) == 1, err
        return err

    # weights of one model under the config of another: named, not a deserialiser traceback
    torch.manual_seed(1)
    other = named_config("tiny", num_points=100)
    small_grid = save_tokenizer(tmp_path / "grid10", MotionTokenizer(other), other)
    assert "tracker.grid" in fails("--output", str(out), "--checkpoint", str(small_grid))
    mixed = _copy_checkpoint(inputs["tok"], tmp_path / "mixed")
    shutil.copy(small_grid / "config.yaml", mixed / "config.yaml")
    err = fails("--output", str(out), "--checkpoint", str(mixed), "tracker.grid=10")
    assert str(mixed / "model.safetensors") in err and "do not match" in err
    not_safetensors = _copy_checkpoint(inputs["tok"], tmp_path / "text")
    (not_safetensors / "model.safetensors").write_text("hello")
    assert "not a safetensors file" in fails("--output", str(out), "--checkpoint", str(not_safetensors))
    assert _snapshot(out) == before

    # paths: a file where the output folder should be, a missing or empty input folder
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert "is a file, not a folder" in fails("--output", str(a_file), "--checkpoint", str(inputs["tok"]))
    assert "a parent of it is a file" in fails(
        "--output", str(a_file / "o"), "--checkpoint", str(inputs["tok"])
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


def test_killed_driver_then_rerun_equals_an_undisturbed_run(ray_local, inputs, unsharded, tmp_path):
    """SIGKILL of a running job's driver, then the same command again: the outputs are exactly those
    of an undisturbed run, nothing is duplicated and nothing half-written is left behind."""
    import signal
    import time

    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "laps_ray.jobs.segment_folder", "--address", "local", "--input",
        str(inputs["good"]), "--output", str(out), "--checkpoint", str(inputs["tok"]), "--shard-seconds",
        "0", "--num-actors", "1", "segmentation.threshold=0.3", "decode.resize_shorter=0",
        "export.clip_preset=ultrafast", *SMALL_SCENE,
    ]  # fmt: skip
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.time() + 240
    while not list(out.glob("*/segments.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # the first video is complete, the second in flight
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "driver.log").read_text()[-2000:]
    again = run(_cfg(inputs, inputs["good"], out, "shard_seconds=0"))
    assert again.exit_code == 0 and again.done == 2 and again.skipped >= 1
    ref, got = _files(unsharded), _files(out)
    assert sorted(got) == sorted(ref)
    for name in ref:
        assert filecmp.cmp(ref[name], got[name], shallow=False), name
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["counts"] == {"done": 2}
    assert not list(out.rglob(".work")) and not list(out.rglob(".*.tmp*"))


@pytest.mark.e2e
def test_losing_the_cluster_is_reported_plainly_and_a_rerun_resumes(ray_local, inputs, unsharded, tmp_path):
    """A `ray start` cluster killed under a running job: the job says it lost the cluster (not one
    ActorDiedError per video), marks the unfinished videos, and the same command resumes them."""
    import time

    from conftest import start_ray_head

    head = start_ray_head(tmp_path)
    out = tmp_path / "out"  # 1 s shards on one actor: b.mp4's shards are still queued at the kill
    cmd = [
        sys.executable, "-m", "laps_ray.jobs.segment_folder", "--address", head.gcs, "--input",
        str(inputs["good"]), "--output", str(out), "--checkpoint", str(inputs["tok"]), "--shard-seconds",
        "1", "--num-actors", "1", "segmentation.threshold=0.3", "decode.resize_shorter=0",
        "export.clip_preset=ultrafast", *SMALL_SCENE,
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=head.env, text=True
        )
        deadline = time.time() + 240
        while not list(out.glob("*/segments.json")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        head.kill()  # the whole cluster dies at once, as in a crash
        text, _ = proc.communicate(timeout=180)
    finally:
        head.stop()
    assert proc.returncode == 1, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "lost the Ray cluster" in errors[0] and "resume" in errors[0], text[-3000:]
    assert "ActorDiedError" not in text
    items = json.loads((out / "run.json").read_text())["items"]
    assert sorted(e["status"] for e in items.values()) == ["done", "interrupted"]
    again = run(_cfg(inputs, inputs["good"], out, "shard_seconds=0"))
    assert again.exit_code == 0 and again.done == 2 and again.skipped == 1
    for name, ref in _files(unsharded).items():
        assert filecmp.cmp(ref, out / name, shallow=False), name

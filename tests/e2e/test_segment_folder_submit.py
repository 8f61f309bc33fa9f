"""segment_folder as users run it: ``ray job submit`` against ``ray start --head`` (with the custom
metrics on the node's Prometheus endpoint), a driver killed mid-run then re-run, and a ``ray start``
cluster lost under a running job."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import assert_same_bytes, output_files, segment_folder_args, segment_folder_cfg, submit_job

from laps_ray.jobs.segment_folder import run


def test_ray_job_submit_against_ray_start(ray_head, segment_inputs, tmp_path):
    out = tmp_path / "submitted"
    args = segment_folder_args(
        segment_inputs, out, "--shard-seconds", "3", source=segment_inputs["good"] / "a.mp4"
    )
    text = submit_job(ray_head, "segment_folder", *args)
    assert "segment_folder: 1 done" in text
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


@pytest.mark.slow  # ~20-40 s on 2 cores
def test_killed_driver_then_rerun_equals_an_undisturbed_run(
    ray_local, segment_inputs, segment_reference, tmp_path
):
    """SIGKILL of a running job's driver, then the same command again: the outputs are exactly those
    of an undisturbed run, nothing is duplicated and nothing half-written is left behind."""
    import signal
    import time

    out = tmp_path / "out"
    flags = ["--address", "local", "--shard-seconds", "0", "--num-actors", "1"]
    args = segment_folder_args(segment_inputs, out, *flags)
    cmd = [sys.executable, "-m", "laps_ray.jobs.segment_folder", *args, "export.clip_preset=ultrafast"]
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.time() + 240
    while not list(out.glob("*/segments.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # the first video is complete, the second in flight
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "driver.log").read_text()[-2000:]
    again = run(segment_folder_cfg(segment_inputs, segment_inputs["good"], out, "shard_seconds=0"))
    assert again.exit_code == 0 and again.done == 2 and again.skipped >= 1
    assert_same_bytes(output_files(segment_reference), output_files(out))
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["counts"] == {"done": 2}
    assert not list(out.rglob(".work")) and not list(out.rglob(".*.tmp*"))


@pytest.mark.slow  # ~20-40 s on 2 cores
def test_losing_the_cluster_is_reported_plainly_and_a_rerun_resumes(
    ray_local, segment_inputs, segment_reference, tmp_path
):
    """A `ray start` cluster killed under a running job: the job says it lost the cluster (not one
    ActorDiedError per video), marks the unfinished videos, and the same command resumes them."""
    import time

    from conftest import start_ray_head

    head = start_ray_head(tmp_path)
    out = tmp_path / "out"  # 1 s shards on one actor: b.mp4's shards are still queued at the kill
    flags = ["--address", head.gcs, "--shard-seconds", "1", "--num-actors", "1"]
    args = segment_folder_args(segment_inputs, out, *flags)
    cmd = [sys.executable, "-m", "laps_ray.jobs.segment_folder", *args, "export.clip_preset=ultrafast"]
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
    again = run(segment_folder_cfg(segment_inputs, segment_inputs["good"], out, "shard_seconds=0"))
    assert again.exit_code == 0 and again.done == 2 and again.skipped == 1
    ref = output_files(segment_reference)
    assert_same_bytes(ref, {name: out / name for name in ref})

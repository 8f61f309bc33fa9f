"""Jobs on a private local Ray with one GPU (skipped without CUDA): ``segment_folder`` with a GPU actor
against a CPU run of the same video, and ``train_tokenizer`` on one GPU worker with AMP.

The Ray instance is this module's own (2 CPUs + 1 GPU): the CPU tiers' ``ray_local`` has no GPU, and
one Ray runs per process, so the tiers run unit, gpu, ray, e2e (tests/conftest.py).

segment_folder tolerance: the energy is ``prequant`` (continuous in the latents, unlike the quantized
energy, whose code flips jump); the GPU actor's tokenizer runs fp16 autocast. Per-window energies
within 1 % of the CPU run's (fp16 autocast moves them by ~1e-4 relative: measured on the CPU with fp16
autocast), >= 95 % of the code ids equal, and the segments identical to the frame: the on-threshold is
picked from the CPU run's smoothed energies so that none lies within 2 % of it or of its off-threshold,
20x the largest energy change fp16 can make, so both runs take the same decision in every window.
"""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest
import torch
from helpers import (
    CONFIGS,
    SMALL_SCENE,
    jsonl,
    needs_cuda,
    tiny_checkpoint,
    train_cfg,
    write_synthetic_tracks,
)

from laps_ray.config import load_config
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.io.checkpoints import load_tokenizer
from laps_ray.io.synthetic import make_action_video
from laps_ray.jobs import segment_folder, train_tokenizer
from laps_ray.training.report import epoch_records, read_metrics

pytestmark = needs_cuda

ON_CPU = ["tokenizer.device=cpu", "resources.gpus_per_actor=0"]
ON_GPU = ["tokenizer.device=cuda", "tokenizer.amp=true", "resources.gpus_per_actor=1"]
MARGIN = 0.02  # no smoothed energy within 2 % of the on- or off-threshold (see the module docstring)


@pytest.fixture(scope="module")
def ray_gpu():
    """A private local Ray with 2 CPUs and the GPU (conftest.private_ray; never ``ray stop``)."""
    from conftest import private_ray

    with private_ray(num_cpus=2, num_gpus=1) as ray:
        assert ray.cluster_resources().get("GPU") == 1.0
        yield ray


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    """One 6 s, 30 fps video with two actions and a tiny random tokenizer (as segment_folder's tests)."""
    d = tmp_path_factory.mktemp("gpu_scene")
    make_action_video(d / "videos" / "a.mp4", 6, 30, (160, 120), [(1.0, 2.5, "circle"), (3.5, 5.0, "shake")])
    return {"videos": d / "videos", "tok": tiny_checkpoint(d / "tok")}


def _segment(scene: dict, out, *extra: str):
    cfg = load_config(
        segment_folder.SegmentJobConfig,
        CONFIGS / "segment_folder.yaml",
        [
            f"input={scene['videos']}", f"output={out}", f"tokenizer.checkpoint={scene['tok']}",
            "decode.resize_shorter=0", "energy.source=prequant", "shard_seconds=0", "resources.num_actors=1",
            "resources.cpus_per_actor=1", "export.clip_preset=ultrafast", "export.plot=false", *SMALL_SCENE,
            *extra,
        ],
    )  # fmt: skip
    return segment_folder.run(cfg)


def _fewest_free_gpus(ray, job):
    """Run ``job()`` while sampling the cluster's free GPUs every 20 ms: (its result, the fewest seen)."""
    seen: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.append(float(ray.available_resources().get("GPU", 0.0)))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = job()
    finally:
        stop.set()
        sampler.join(timeout=10)
    return result, min(seen)


def _threshold_with_margin(smoothed: np.ndarray, ratio: float) -> float:
    """An on-threshold in 0.2-0.8x the median active smoothed energy with no window within MARGIN
    (relative) of it or of its off-threshold (``ratio`` x it)."""
    active = smoothed[smoothed > 0]
    assert active.size >= 5, "too few tokenized windows for a meaningful comparison"
    median = float(np.median(active))
    for factor in np.linspace(0.2, 0.8, 121):
        thr = factor * median
        if all(np.min(np.abs(smoothed - t)) >= MARGIN * t for t in (thr, thr * ratio)):
            return float(thr)
    pytest.fail(f"no threshold with a {MARGIN:.0%} margin among these energies: {np.sort(active)}")


def test_segment_folder_actor_on_the_gpu_matches_a_cpu_run(ray_gpu, scene, tmp_path):
    # The CPU run's energies (they do not depend on the threshold) fix a threshold with a margin.
    probe = _segment(scene, tmp_path / "probe", *ON_CPU, "segmentation.threshold=1.0")
    assert probe.exit_code == 0 and probe.done == 1, segment_folder.summary(probe)
    smoothed = np.array([r["energy_smooth"] for r in jsonl(tmp_path / "probe" / "a" / "energy.jsonl")])
    thr = _threshold_with_margin(smoothed, SegmentationConfig().hysteresis_ratio)
    setting = f"segmentation.threshold={thr!r}"

    cpu, cpu_free = _fewest_free_gpus(ray_gpu, lambda: _segment(scene, tmp_path / "cpu", *ON_CPU, setting))
    gpu, gpu_free = _fewest_free_gpus(ray_gpu, lambda: _segment(scene, tmp_path / "gpu", *ON_GPU, setting))
    for r in (cpu, gpu):
        assert r.exit_code == 0 and r.done == 1 and not r.failed, segment_folder.summary(r)
    # The GPU run's actor held the one GPU (and, with tokenizer.device=cuda, a GPU was visible to it:
    # loading the tokenizer there would have failed the job otherwise); the CPU run's actor did not.
    assert gpu_free == 0.0 and cpu_free == 1.0

    a, b = jsonl(tmp_path / "cpu" / "a" / "energy.jsonl"), jsonl(tmp_path / "gpu" / "a" / "energy.jsonl")
    assert [r["window"] for r in b] == [r["window"] for r in a]
    assert [r["gate"] for r in b] == [r["gate"] for r in a]  # gates see pixels and LK tracks: no tokenizer
    tokenized = [i for i, r in enumerate(a) if not r["gated"]]
    assert len(tokenized) >= 5
    for key in ("energy", "energy_smooth"):
        np.testing.assert_allclose(
            [r[key] for r in b], [r[key] for r in a], rtol=1e-2, atol=1e-9, err_msg=key
        )
    codes_a = np.array([a[i]["codes"] for i in tokenized])
    codes_b = np.array([b[i]["codes"] for i in tokenized])
    assert (codes_a == codes_b).mean() >= 0.95

    doc_a = json.loads((tmp_path / "cpu" / "a" / "segments.json").read_text())
    doc_b = json.loads((tmp_path / "gpu" / "a" / "segments.json").read_text())
    keys = ("start_frame", "end_frame", "start_sec", "end_sec", "processed_frames", "windows", "end_reason")
    segs_a = [{k: s[k] for k in keys} for s in doc_a["segments"]]
    assert segs_a, "the threshold found no segment: nothing was compared"
    assert [{k: s[k] for k in keys} for s in doc_b["segments"]] == segs_a
    assert doc_b["checkpoint_sha256"] == doc_a["checkpoint_sha256"]


def test_train_tokenizer_on_one_gpu_worker_with_amp(ray_gpu, tmp_path):
    tracks = write_synthetic_tracks(tmp_path / "tracks")
    out = tmp_path / "run"
    cfg = train_cfg(
        tracks, out, "epochs=1", "num_workers=1", "cpus_per_worker=1", "use_gpu=true", "amp=true",
        "amp_dtype=float16", "threads=0",
    )  # fmt: skip
    res = train_tokenizer.run(cfg, command="pytest")
    assert res.backend == "ray" and res.num_workers == 1 and res.use_gpu
    (epoch,) = epoch_records(read_metrics(out))
    # Non-finite metrics are written as null (training/loops.py): every metric must be a finite number.
    text = {"report", "codebook_split", "codebook_collapsed", "collapse_warning"}
    bad = {
        k: v
        for k, v in epoch.items()
        if k not in text and not (isinstance(v, (int, float)) and math.isfinite(v))
    }
    assert not bad, bad
    assert math.isfinite(epoch["train/loss"]) and math.isfinite(epoch["val/loss"]) and epoch["step"] > 0

    ckpt = out / "checkpoints" / "epoch_0001"
    model, mcfg = load_tokenizer(ckpt)
    assert mcfg.name == "tiny" and all(torch.isfinite(p).all() for p in model.parameters())
    assert (out / "best" / "model.safetensors").is_file() and (out / "latest").is_file()
    # AMP ran: only float16 autocast on CUDA makes a GradScaler (training/loops.py), and its state is
    # saved with the epoch (the CPU run in tests/ray/ saves none).
    state = torch.load(ckpt / "train_state.pt", weights_only=True)
    assert state["scaler"] and math.isfinite(state["scaler"]["scale"]) and state["scaler"]["scale"] > 0
    assert json.loads((out / "summary.json").read_text())["use_gpu"] is True


def test_train_tokenizer_paper_size_bf16_reports_its_throughput(ray_gpu, tmp_path):
    """The ``paper`` width (768, the original layout) trains with bf16 autocast under nccl; the
    windows/s it reports is the README's GPU figure (run by hand on a GPU machine)."""
    tracks = write_synthetic_tracks(tmp_path / "tracks")
    out = tmp_path / "paper"
    cfg = train_cfg(
        tracks, out, "model=paper", "model.num_points=16", "epochs=2", "num_workers=1", "use_gpu=true",
        "amp=true", "amp_dtype=bfloat16", "threads=0",
    )  # fmt: skip
    res = train_tokenizer.run(cfg, command="pytest")
    assert res.use_gpu and res.backend == "ray"
    epochs = epoch_records(read_metrics(out))
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[-1]["train/recon"] < epochs[0]["train/recon"] and math.isfinite(epochs[-1]["val/loss"])
    model, mcfg = load_tokenizer(out / "best")
    assert mcfg.hidden_dim == 768 and all(torch.isfinite(p).all() for p in model.parameters())
    # bf16 needs no GradScaler: the train state holds none
    assert not torch.load(out / "checkpoints" / "epoch_0002" / "train_state.pt", weights_only=True)["scaler"]
    print(f"paper size, 1 GPU, bf16: {epochs[-1]['windows_per_s']:.0f} training windows/s")

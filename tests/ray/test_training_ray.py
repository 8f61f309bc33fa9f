"""Tokenizer training on Ray Train: a TorchTrainer with two CPU workers (gloo)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import train_cfg

from laps_ray.io.checkpoints import load_tokenizer, read_meta
from laps_ray.jobs.train_tokenizer import run
from laps_ray.training.data import steps_per_epoch
from laps_ray.training.report import epoch_records, read_metrics


@pytest.mark.slow  # ~20-40 s on 2 cores
def test_torchtrainer_two_cpu_workers_reports_metrics_and_checkpoint(ray_local, synthetic_tracks, tmp_path):
    out = tmp_path / "ray"
    cfg = train_cfg(
        synthetic_tracks,
        out,
        "epochs=1",
        "num_workers=2",
        "cpus_per_worker=1",
        "log_every_steps=1",
        "threads=0",
    )
    res = run(cfg, command="pytest")
    assert res.backend == "ray" and res.num_workers == 2 and not res.use_gpu
    reports = read_metrics(out)
    (epoch,) = epoch_records(reports)
    n_train = 16 * len(json.loads((out / "run.json").read_text())["split"]["train"])
    # Two disjoint shards of ceil(n/2) windows, all-reduced: rank 0's report counts both.
    assert epoch["train/windows"] == 2 * math.ceil(n_train / 2)
    assert epoch["step"] == steps_per_epoch(n_train, 16, 2)
    assert sum(r["report"] == "step" for r in reports) == epoch["step"]
    assert math.isfinite(epoch["val/loss"]) and epoch["val/windows"] == 32
    model, mcfg = load_tokenizer(out / "checkpoints" / "epoch_0001")
    assert mcfg.name == "tiny" and (out / "checkpoints" / "epoch_0001" / "train_state.pt").is_file()
    state = torch.load(out / "checkpoints" / "epoch_0001" / "train_state.pt", weights_only=True)
    assert state["scaler"] == {}  # float32 on CPU: no AMP, no GradScaler (tests/gpu/ checks the fp16 one)
    assert (out / "best" / "model.safetensors").is_file() and (out / "latest").is_file()
    assert read_meta(out / "best")["command"] == "pytest"

"""train_tokenizer through ``ray job submit`` against a ``ray start`` head."""

from __future__ import annotations

import math

import pytest
from helpers import submit_job

from laps_ray.io.checkpoints import load_tokenizer
from laps_ray.training.report import epoch_records, read_metrics


@pytest.mark.slow  # ~20-40 s on 2 cores
def test_ray_job_submit_train_tokenizer(ray_head, synthetic_tracks, tmp_path):
    out = tmp_path / "submitted"
    args = ["--tracks", str(synthetic_tracks), "--output", str(out), "model=tiny", "epochs=1"]
    submit_job(ray_head, "train_tokenizer", *args, "batch_size=32", "log_every_steps=0", timeout=280)
    (epoch,) = epoch_records(read_metrics(out))
    assert epoch["epoch"] == 1 and math.isfinite(epoch["val/loss"])
    assert load_tokenizer(out / "best")[1].name == "tiny"

"""train_embedder and cluster through ``ray job submit`` against a ``ray start`` head."""

from __future__ import annotations

import json

import pytest
from discovery_helpers import write_planted_outputs
from helpers import submit_job

from laps_ray.io.embedder_checkpoints import load_embedder


@pytest.mark.slow  # ~40-60 s on 2 cores: two submitted jobs
def test_ray_job_submit_train_embedder_then_cluster(ray_head, tmp_path):
    segments, labels = write_planted_outputs(tmp_path, k=4, per_kind=12, videos=4)
    emb, out = tmp_path / "emb", tmp_path / "clusters"
    submit_job(
        ray_head, "train_embedder", "--segments", str(segments), "--output", str(emb),
        "epochs=2", "model.embed_dim=16", timeout=280,
    )  # fmt: skip
    assert load_embedder(emb)[2] == "lstm"
    text = submit_job(
        ray_head, "cluster", "--segments", str(segments), "--output", str(out), "--labels", str(labels),
        "--embedder", str(emb), "cluster.k=4", "umap.enabled=false", timeout=280,
    )  # fmt: skip
    assert "report:" in text
    metrics = json.loads((out / "metrics.json").read_text())
    # The LSTM of a 2-epoch run is too young to score; the planted kinds are scored in tests/unit.
    assert metrics["features"] == "lstm" and metrics["k"] == 4 and metrics["labels"]["n"] == 48
    assert (out / "report.html").is_file() and (out / "assignments.csv").is_file()

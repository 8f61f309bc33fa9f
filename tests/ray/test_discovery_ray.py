"""Discovery on Ray: train_embedder as a TorchTrainer with two gloo workers, then cluster with its
segments embedded on a pool of actors (the session's private 2-CPU Ray)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from discovery_helpers import write_planted_outputs

from laps_ray.config import load_config
from laps_ray.io.embedder_checkpoints import load_embedder
from laps_ray.jobs import cluster as cluster_job
from laps_ray.jobs import train_embedder as train_job
from laps_ray.training.embedder_config import TrainEmbedderConfig
from laps_ray.training.report import epoch_records, read_metrics


@pytest.mark.slow  # ~30-40 s on 2 cores: one TorchTrainer start-up, one actor pool
def test_train_embedder_on_ray_train_then_cluster_on_actors(ray_local, tmp_path):
    segments, labels = write_planted_outputs(tmp_path, k=4, per_kind=16, videos=4)
    emb = tmp_path / "emb"
    cfg = load_config(
        TrainEmbedderConfig,
        None,
        [f"segments={segments}", f"output={emb}", "num_workers=2", "epochs=2", "model.embed_dim=16"],
    )
    res = train_job.run(cfg, command="pytest")
    assert res.backend == "ray" and res.num_workers == 2 and not res.use_gpu
    epochs = epoch_records(read_metrics(emb))
    assert [r["epoch"] for r in epochs] == [1, 2]
    n_train = res.summary["data"]["train_sequences"]
    # Two disjoint shards, all-reduced sums: rank 0's report counts the tokens of both shards.
    assert epochs[0]["train/tokens"] >= n_train and np.isfinite(epochs[-1]["val/loss"])
    model, mcfg, kind = load_embedder(emb)
    assert (
        kind == "lstm"
        and mcfg.embed_dim == 16
        and json.loads((emb / "best" / "meta.json").read_text())["command"]
    )

    out = tmp_path / "clusters"
    ccfg = load_config(
        cluster_job.ClusterJobConfig,
        None,
        [
            f"segments={segments}",
            f"output={out}",
            f"labels={labels}",
            "features=tfidf",
            "cluster.k=4",
            "resources.num_actors=2",
            "batch_size=16",
            "umap.enabled=false",
        ],
    )
    r = cluster_job.run(ccfg)
    local = cluster_job.run(
        load_config(
            cluster_job.ClusterJobConfig,
            out / "config.yaml",
            [f"output={tmp_path / 'local'}", "backend=local"],
        )
    )
    assert r.metrics["labels"]["ari"] >= 0.9
    # The same features whichever way they were computed (actors return batches in any order).
    assert np.array_equal(np.load(out / "embeddings.npy"), np.load(tmp_path / "local" / "embeddings.npy"))
    assert local.metrics["cluster_sizes"] == r.metrics["cluster_sizes"]

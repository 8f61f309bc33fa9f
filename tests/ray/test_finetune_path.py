"""The recommended path for a new domain, end to end on Ray: preprocess the user's videos →
fine-tune the shipped tokenizer on them (``--init shipped``) → segment_folder with the result (and
``--clusters``: each segment assigned to a fitted cluster model)."""

from __future__ import annotations

import json

import pytest
from discovery_helpers import write_planted_outputs
from helpers import CONFIGS, preprocess_cfg, segment_folder_cfg

from laps_ray.config import load_config
from laps_ray.io.checkpoints import checkpoint_sha256, load_tokenizer, read_meta
from laps_ray.io.synthetic import make_action_video
from laps_ray.jobs import cluster, preprocess, segment_folder, train_tokenizer
from laps_ray.training.config import load_train_config
from laps_ray.training.report import epoch_records, read_metrics


@pytest.mark.slow  # ~30 s on 2 cores
def test_preprocess_then_fine_tune_the_shipped_tokenizer_then_segment(ray_local, tmp_path):
    videos = tmp_path / "my_videos"
    for k in range(3):
        bursts = [(1.0, 2.5, "circle"), (3.5, 5.0, "slide")]
        make_action_video(videos / f"cam_{k}.mp4", 6, 30, (160, 120), bursts, seed=k)
    tracks = tmp_path / "my_tracks"
    pre = preprocess.run(preprocess_cfg(videos, tracks, "decode.resize_shorter=0"))
    assert pre.exit_code == 0 and len(list(tracks.glob("*.h5"))) == 3

    run_dir = tmp_path / "runs" / "my_tok"
    cfg = load_train_config(
        CONFIGS / "train_tokenizer.yaml",
        [f"tracks={tracks}", f"output={run_dir}", "init_from=shipped", "epochs=1", "batch_size=16",
         "backend=local", "val_fraction=0.34"],
    )  # fmt: skip
    train_tokenizer.run(
        cfg, command="pytest"
    )  # in-process: Ray Train itself is tests/ray/test_training_ray.py
    (epoch,) = epoch_records(read_metrics(run_dir))
    assert epoch["val/accuracy_moving"] is not None and epoch["val/delta_auc"] > 0
    best = run_dir / "best"
    _, tuned_cfg = load_tokenizer(best)
    assert tuned_cfg.num_points == 400 and read_meta(best)["init_from"].endswith("tokenizer_small")

    # ... and, with --clusters, each segment is assigned to a fitted cluster model (one fitted on other
    # segments of a tokenizer with the same 1920 codes: 4 planted kinds)
    planted, _ = write_planted_outputs(tmp_path / "planted")
    fit = tmp_path / "clusters"
    fit_args = [f"segments={planted}", f"output={fit}", "backend=local", "cluster.k=4", "umap.enabled=false"]
    cluster.run(load_config(cluster.ClusterJobConfig, None, fit_args))
    out = tmp_path / "my_out"
    seg = segment_folder.run(
        segment_folder_cfg({"tok": best}, videos, out, "resources.num_actors=1", f"clusters={fit}")
    )
    assert seg.exit_code == 0 and seg.clusters["videos"] == 3
    assert "clusters:" in segment_folder.summary(seg)
    doc = json.loads((out / "cam_0" / "segments.json").read_text())
    assert doc["checkpoint_sha256"] == checkpoint_sha256(best)
    assert doc["segments"], "no segment found in a video with two planted actions"
    assert doc["clusters"]["features"] == "tfidf"
    assert all(s["cluster"] in range(4) and 0 <= s["cluster_confidence"] <= 1 for s in doc["segments"])

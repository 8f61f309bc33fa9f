"""train_embedder and cluster end to end in this process (``backend=local``) on planted token data:
every feature path recovers the planted kinds, runs reproduce, the report's references exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from discovery_helpers import write_planted_outputs

from laps_ray.config import ConfigError, load_config
from laps_ray.io.segment_codes import SegmentCodesError
from laps_ray.jobs import cluster as cluster_job
from laps_ray.jobs import train_embedder as train_job
from laps_ray.training.embedder_config import TrainEmbedderConfig


@pytest.fixture(autouse=True)
def one_thread():
    """One torch / OpenMP thread (two spinning threads on a loaded 2-core machine cost ~100x)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """Planted segment outputs (with clips) and an LSTM trained on them in this process."""
    root = tmp_path_factory.mktemp("planted")
    segments, labels = write_planted_outputs(root, k=4, per_kind=24, videos=6, clips=True)
    cfg = load_config(
        TrainEmbedderConfig,
        None,
        [
            f"segments={segments}",
            f"output={root / 'emb'}",
            "backend=local",
            "model.embed_dim=32",
            "epochs=20",
            "batch_size=8",
            "optim.lr=0.01",
            "patience=0",
            "threads=1",
        ],
    )
    result = train_job.run(cfg)
    return {"root": root, "segments": segments, "labels": labels, "emb": result.output, "train": result}


def _cluster(planted_run, out: Path, *extra: str):
    """A local cluster run on the planted segments (no UMAP unless ``extra`` switches it on)."""
    cfg = load_config(
        cluster_job.ClusterJobConfig,
        None,
        [
            f"segments={planted_run['segments']}",
            f"output={out}",
            f"labels={planted_run['labels']}",
            "backend=local",
            "umap.enabled=false",
            *extra,
        ],
    )
    return cluster_job.run(cfg)


def test_train_embedder_writes_the_run_and_resumes(planted_run):
    out, r = planted_run["emb"], planted_run["train"]
    for name in ("metrics.jsonl", "summary.json", "curves.png", "config.yaml", "run.json", "latest"):
        assert (out / name).is_file(), name
    assert (out / "best" / "model.safetensors").is_file() and not (out / "best" / "train_state.pt").exists()
    reports = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in reports] == list(range(1, 21))
    assert reports[-1]["train/loss"] < 0.7 * reports[0]["train/loss"]
    assert r.summary["data"]["num_codes"] == 1920 and r.summary["data"]["max_len"] % 16 == 0
    assert set(r.summary["data"]["val_videos"]).isdisjoint(r.summary["data"]["train_videos"])
    with pytest.raises(ValueError, match="already holds a training run"):
        train_job.run(load_config(TrainEmbedderConfig, out / "config.yaml"))
    resumed = train_job.run(
        load_config(TrainEmbedderConfig, out / "config.yaml", ["resume=true", "epochs=21"])
    )
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 21 and json.loads(lines[-1])["step"] > reports[-1]["step"]
    assert resumed.summary["epochs_completed"] == 21


@pytest.mark.parametrize("features", ["bow", "tfidf", "mean", "transformer", "lstm"])
def test_every_feature_path_recovers_the_planted_kinds(planted_run, tmp_path, features):
    extra = [f"embedder={planted_run['emb']}"] if features == "lstm" else []
    r = _cluster(planted_run, tmp_path / features, f"features={features}", "cluster.k=4", *extra)
    assert r.metrics["features"] == features and r.metrics["k"] == 4
    assert r.metrics["labels"]["ari"] >= 0.9, r.metrics["labels"]
    assert (tmp_path / features / "cluster_model.npz").is_file()
    rows = (tmp_path / features / "assignments.csv").read_text().splitlines()
    assert rows[0].startswith("video,segment,start_sec,end_sec,cluster,confidence,outlier")
    assert len(rows) == 1 + 96 and np.load(tmp_path / features / "embeddings.npy").shape[0] == 96


def test_same_seed_same_outputs_and_the_saved_transformer_reproduces(planted_run, tmp_path):
    a = _cluster(planted_run, tmp_path / "a", "features=tfidf")
    _cluster(planted_run, tmp_path / "b", "features=tfidf")
    assert a.metrics["k"] == 4 and a.metrics["k_selection"]
    assert (tmp_path / "a" / "assignments.csv").read_bytes() == (
        tmp_path / "b" / "assignments.csv"
    ).read_bytes()
    t1 = _cluster(planted_run, tmp_path / "t1", "features=transformer", "cluster.k=4")
    t2 = _cluster(planted_run, tmp_path / "t2", "features=transformer", "cluster.k=4")
    t3 = _cluster(planted_run, tmp_path / "t3", f"embedder={tmp_path / 't1' / 'transformer'}", "cluster.k=4")
    e1 = np.load(tmp_path / "t1" / "embeddings.npy")
    assert np.array_equal(e1, np.load(tmp_path / "t2" / "embeddings.npy"))
    assert (
        np.array_equal(e1, np.load(tmp_path / "t3" / "embeddings.npy"))
        and t3.metrics["features"] == "transformer"
    )
    assert t1.metrics["labels"]["ari"] == t2.metrics["labels"]["ari"]


def test_the_saved_model_assigns_segments_like_the_run(planted_run, tmp_path):
    from laps_ray.core.sequence_features import bag_of_codes
    from laps_ray.io.cluster_model import ClusterModelError, assign_segments
    from laps_ray.io.cluster_outputs import read_assignments
    from laps_ray.io.segment_codes import find_segments, read_sequence

    out = tmp_path / "m"
    _cluster(planted_run, out, "features=tfidf", "cluster.k=4")
    refs, k = find_segments(planted_run["segments"])
    counts = bag_of_codes([read_sequence(r, with_vectors=False)[0] for r in refs], k)
    got, conf, _ = assign_segments(out, counts, "tfidf")
    rows = read_assignments(out / "assignments.csv")
    assert got.tolist() == [int(r["cluster"]) for r in rows]
    assert np.allclose(conf, [float(r["confidence"]) for r in rows], atol=1e-3)
    with pytest.raises(ClusterModelError, match="fitted on 'tfidf'"):
        assign_segments(out, counts, "bow")


def test_segment_folder_clusters_flag_writes_each_segments_assignment(planted_run, tmp_path):
    """``segment_folder --clusters RUN`` (pipeline/cluster_assignment.py): every segments.json entry
    gets the fitted model's cluster, confidence and outlier flag — the same as the cluster run's own
    assignments.csv — and a bad model fails before Ray starts."""
    import shutil

    from laps_ray.io.cluster_model import ClusterModelError
    from laps_ray.io.cluster_outputs import read_assignments
    from laps_ray.pipeline.cluster_assignment import assign_folder, check_cluster_model

    run_dir = tmp_path / "fit"
    _cluster(planted_run, run_dir, "features=tfidf", "cluster.k=4")
    segs = tmp_path / "new_run"
    shutil.copytree(planted_run["segments"], segs)
    counts = assign_folder(segs, check_cluster_model(run_dir))
    assert counts == {"videos": 6, "segments": 96, "assigned": 96, "outliers": counts["outliers"]}
    want = {
        (r["video"], r["segment"]): int(r["cluster"]) for r in read_assignments(run_dir / "assignments.csv")
    }
    got = {}
    for doc_path in sorted(segs.rglob("segments.json")):
        doc = json.loads(doc_path.read_text())
        assert doc["format"] and doc["clusters"]["features"] == "tfidf"
        for seg in doc["segments"]:
            assert 0.0 <= seg["cluster_confidence"] <= 1.0 and isinstance(seg["cluster_outlier"], bool)
            got[(doc["video"], seg["label"])] = seg["cluster"]
    assert got == want
    before = {p: p.read_bytes() for p in segs.rglob("segments.json")}
    assign_folder(segs, check_cluster_model(run_dir))  # assigning again changes nothing
    assert {p: p.read_bytes() for p in segs.rglob("segments.json")} == before
    with pytest.raises(ClusterModelError, match="nope"):
        check_cluster_model(tmp_path / "nope")


def test_report_is_written_and_every_file_it_references_exists(planted_run, tmp_path):
    out = tmp_path / "rep"
    r = _cluster(planted_run, out, "umap.enabled=true", "umap.max_points=60", "cluster.method=gmm")
    page = (out / "report.html").read_text()
    refs = re.findall(r"(?:src|poster)='([^']+)'", page)
    assert "http" not in page and "<script" not in page
    assert page.count("<video") == 4 * r.metrics["k"]  # 4 examples per cluster (24 members each)
    assert {"umap_clusters.png", "umap_labels.png", "k_selection.png"} <= set(refs)
    missing = [x for x in refs if not (out / x).is_file()]
    assert refs and not missing, missing
    assert any(x.endswith(".mp4") and x.startswith("..") for x in refs)  # the clips stay where they were


def test_clear_errors(planted_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _cluster({**planted_run, "segments": tmp_path / "nowhere"}, tmp_path / "x")
    with pytest.raises(ConfigError, match="'features'.*--embedder"):
        _cluster(planted_run, tmp_path / "x", "features=lstm")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="a_file: is a file"):
        _cluster(planted_run, tmp_path / "a_file")
    with pytest.raises(ConfigError, match="cluster.methd"):
        load_config(cluster_job.ClusterJobConfig, None, ["cluster.methd=kmeans"])
    with pytest.raises(ConfigError, match="method"):
        load_config(cluster_job.ClusterJobConfig, None, ["cluster.method=spectral"])
    # YAML reads true/false as booleans; the choice still takes them (and still refuses others)
    for value in ("true", "false", "auto"):
        cfg = load_config(cluster_job.ClusterJobConfig, None, [f"cluster.standardize={value}"])
        assert cfg.cluster.standardize == value
    with pytest.raises(ConfigError, match="standardize"):
        load_config(cluster_job.ClusterJobConfig, None, ["cluster.standardize=yes_please"])
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(planted_run["segments"], broken)
    bad = broken / "video_01" / "codes" / "segment_0002.json"
    bad.write_text("{not json")
    with pytest.raises(SegmentCodesError, match="segment_0002.json: not valid JSON"):
        _cluster({**planted_run, "segments": broken}, tmp_path / "y")

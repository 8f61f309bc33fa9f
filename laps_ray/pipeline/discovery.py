"""Action discovery on the driver: segments' features → clusters → metrics, files and the HTML report.

:func:`discover` is the ``cluster`` job's body without Ray: the job passes in how features are computed
(``embed_all``: on a pool of Ray actors, or in this process), the rest happens here:

1. the features of every segment (bags of codes over the TRUE code count, TF-IDF, mean vectors, the
   trained LSTM, or the seeded frozen Transformer saved with the run);
2. :func:`laps_ray.core.clustering.cluster` on the segments that have codes;
3. metrics (internal, stability, and with ``labels`` ARI / NMI / purity / Hungarian accuracy);
4. ``assignments.csv``, ``embeddings.npy``, ``metrics.json``, ``cluster_model.npz``, the UMAP and
   k-selection plots and ``report.html`` (:mod:`laps_ray.io.cluster_outputs`,
   :mod:`laps_ray.io.cluster_report`, :mod:`laps_ray.io.cluster_model`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.config import check, check_choice
from laps_ray.core.cluster_metrics import label_metrics
from laps_ray.core.clustering import ClusteringConfig, ClusterResult, cluster
from laps_ray.core.sequence_features import idf_weights, tf_features, tfidf_features
from laps_ray.io import cluster_outputs as co
from laps_ray.io.atomic import prepare_output_dir, write_json_atomic
from laps_ray.io.cluster_labels import read_labels
from laps_ray.io.cluster_model import MODEL_FILE, save_cluster_model
from laps_ray.io.cluster_report import write_report
from laps_ray.io.embedder_checkpoints import embedder_kind, frozen_transformer_for_run, resolve_embedder_dir
from laps_ray.io.exports import write_npy_atomic
from laps_ray.io.segment_codes import SegmentRef, find_segments, read_sequence
from laps_ray.models.frozen_transformer import FrozenTransformerConfig
from laps_ray.pipeline.segment_embedding import DENSE, FEATURES, EmbeddedBatch

log = logging.getLogger(__name__)


@dataclasses.dataclass
class UmapConfig:
    """The 2-D UMAP scatter (visual only; clustering never uses it).

    Attributes:
        enabled: draw it.
        max_points: UMAP on a seeded sample of at most this many segments. Measured on 10,000
            segments (one thread, after numba's ~10 s first-call compilation): all of them 30-50 s,
            3000 9.6 s, 2000 with 200 epochs 4.0 s.
        n_neighbors, min_dist: UMAP's.
        n_epochs: layout optimisation epochs (UMAP's own default is 500 below 10,000 points).
    """

    enabled: bool = True
    max_points: int = 2000
    n_neighbors: int = 15
    min_dist: float = 0.1
    n_epochs: int = 200

    def __post_init__(self) -> None:
        check(self.max_points >= 10, "max_points", f"must be >= 10, got {self.max_points}")
        check(self.n_neighbors >= 2, "n_neighbors", f"must be >= 2, got {self.n_neighbors}")
        check(self.n_epochs >= 10, "n_epochs", f"must be >= 10, got {self.n_epochs}")


@dataclasses.dataclass
class DiscoveryConfig:
    """Inputs, features, clustering and outputs of a ``cluster`` run.

    Attributes:
        segments: a segment_folder / stream output folder.
        output: the run's output folder.
        embedder: a ``train_embedder`` run folder (or checkpoint): LSTM features; or a saved frozen
            Transformer (``<cluster run>/transformer``) to reuse its exact weights.
        labels: optional reference labels (CSV, JSON or ground-truth segments;
            ``laps_ray.io.cluster_labels``).
        features: ``auto`` (the embedder's kind with ``embedder``, else ``tfidf``), ``bow`` (code
            frequencies), ``tfidf``, ``mean`` (mean quantized vector), ``lstm`` or ``transformer``.
        cluster: the clustering.
        transformer: the frozen Transformer (``features=transformer``); ``input_dim`` is taken from
            the sidecars' vectors.
        umap: the scatter plots.
        examples: clips shown per cluster in report.html.
        batch_size: segments per embedding task (an actor's unit of work).
        threads: torch and OpenMP (scikit-learn) threads for the driver's work (0 = the libraries'
            defaults: all cores). 1 by default: on a shared 2-core machine, clustering 10,000 segments
            with k selection took 10-16 s with the defaults and 3.8 s with one thread (same load):
            OpenMP threads spin when the cores are busy.
    """

    segments: str = ""
    output: str = ""
    embedder: str = ""
    labels: str = ""
    features: str = "auto"
    cluster: ClusteringConfig = dataclasses.field(default_factory=ClusteringConfig)
    transformer: FrozenTransformerConfig = dataclasses.field(default_factory=FrozenTransformerConfig)
    umap: UmapConfig = dataclasses.field(default_factory=UmapConfig)
    examples: int = 4
    batch_size: int = 256
    threads: int = 1

    def __post_init__(self) -> None:
        check_choice(self.features, ("auto", *FEATURES), "features")
        check(self.threads >= 0, "threads", f"must be >= 0 (0 = defaults), got {self.threads}")
        check(self.examples >= 0, "examples", f"must be >= 0, got {self.examples}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")


@dataclasses.dataclass
class DiscoveryInputs:
    """What :func:`prepare` resolved: segments, code count, feature kind and the model directory."""

    refs: list[SegmentRef]
    num_codes: int
    kind: str
    model_dir: str | None
    output: Path


@dataclasses.dataclass
class DiscoveryResult:
    """A finished run: the output folder, metrics.json's content and wall seconds."""

    output: Path
    metrics: dict[str, Any]
    seconds: float
    exit_code: int = 0


EmbedAll = Callable[[DiscoveryInputs, list[tuple[list[SegmentRef], list[int]]]], list[EmbeddedBatch]]


def prepare(cfg: DiscoveryConfig) -> DiscoveryInputs:
    """Check the inputs (before Ray starts) and resolve the feature kind and its model.

    Raises:
        laps_ray.config.ConfigError: missing ``segments``/``output``, or a feature that needs
            ``--embedder`` without one.
        FileNotFoundError: no segments.json under ``segments``; labels that do not exist.
        laps_ray.io.checkpoints.CheckpointError: an unusable ``--embedder``.
        laps_ray.io.atomic.OutputDirError: ``output`` cannot be created or written.
    """
    check(bool(cfg.segments), "segments", "is required (--segments DIR: a segment_folder output)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    if cfg.labels and not Path(cfg.labels).exists():
        raise FileNotFoundError(f"labels {cfg.labels}: no such file or folder")
    refs, num_codes = find_segments(cfg.segments)
    output = prepare_output_dir(Path(cfg.output).resolve())  # one line naming it, before anything is written
    kind, model_dir = cfg.features, None
    if cfg.embedder:
        model_dir = str(resolve_embedder_dir(cfg.embedder).resolve())
        saved = embedder_kind(model_dir)
        if kind == "auto":
            kind = "lstm" if saved == "lstm" else "transformer"
    elif kind == "auto":
        kind = "tfidf"
    check(
        kind != "lstm" or model_dir is not None,
        "features",
        "'lstm' needs --embedder RUN_DIR (train_embedder)",
    )
    if kind == "transformer" and model_dir is None:
        dim = _vector_dim(refs)
        tcfg = dataclasses.replace(cfg.transformer, input_dim=dim)
        _, _, where = frozen_transformer_for_run(output, tcfg)
        model_dir = str(where)
        log.info("frozen Transformer (seed %d, input %d) saved with the run: %s", tcfg.seed, dim, where)
    return DiscoveryInputs(refs, num_codes, kind, model_dir, output)


def _vector_dim(refs: Sequence[SegmentRef]) -> int:
    for ref in refs:
        _, vec = read_sequence(ref, with_vectors=True)
        if vec is not None and vec.shape[0]:
            return int(vec.shape[1])
    raise ValueError("no segment has quantized vectors (codes/*.npy) for the transformer features")


def batches(refs: Sequence[SegmentRef], size: int) -> list[tuple[list[SegmentRef], list[int]]]:
    """``(refs, their indices)`` chunks of at most ``size`` segments, in order."""
    return [
        (list(refs[i : i + size]), list(range(i, min(i + size, len(refs)))))
        for i in range(0, len(refs), size)
    ]


def assemble(parts: Sequence[EmbeddedBatch], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the batches (any order) → ``(features (n, F), lengths (n,))`` in segment order."""
    width = next((p.features.shape[1] for p in parts if p.features.size), 0)
    x = np.zeros((n, width), np.float32)
    lengths = np.zeros(n, np.int64)
    for p in parts:
        x[p.index] = p.features
        lengths[p.index] = p.lengths
    return x, lengths


def discover(cfg: DiscoveryConfig, inputs: DiscoveryInputs, embed_all: EmbedAll) -> DiscoveryResult:
    """Features (via ``embed_all``), clustering, metrics and every output file.

    Raises:
        ValueError: fewer than 3 segments with codes, or a labels file that matches none.
    """
    if not cfg.threads:
        return _discover(cfg, inputs, embed_all)
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with threadpool_limits(cfg.threads):
            return _discover(cfg, inputs, embed_all)
    finally:
        torch.set_num_threads(before)


def _discover(cfg: DiscoveryConfig, inputs: DiscoveryInputs, embed_all: EmbedAll) -> DiscoveryResult:
    t0 = time.perf_counter()
    out = inputs.output
    refs = inputs.refs
    timings: dict[str, float] = {}
    parts = embed_all(inputs, batches(refs, cfg.batch_size))
    raw, lengths = assemble(parts, len(refs))
    timings["embed_s"] = round(time.perf_counter() - t0, 3)
    has = lengths > 0
    if has.sum() < 3:
        raise ValueError(
            f"{cfg.segments}: {int(has.sum())} segment(s) have codes; clustering needs at least 3"
        )
    x, idf = raw, None
    if inputs.kind == "bow":
        x = tf_features(raw)
    elif inputs.kind == "tfidf":
        idf = idf_weights(raw[has])
        x = np.zeros_like(raw)
        x[has] = tfidf_features(raw[has], idf)
    t1 = time.perf_counter()
    res = cluster(x[has], cfg.cluster, dense=inputs.kind in DENSE)
    timings["cluster_s"] = round(time.perf_counter() - t1, 3)
    labels_all, conf, outl = _scatter(res, has)
    ref_labels = read_labels(cfg.labels, refs) if cfg.labels else None
    metrics = _metrics(cfg, inputs, res, has, labels_all, ref_labels)
    co.write_assignments(out / co.ASSIGNMENTS_FILE, refs, labels_all, conf, outl, has, ref_labels)
    write_npy_atomic(out / co.EMBEDDINGS_FILE, x.astype(np.float32))
    model_meta = {"features": inputs.kind, "num_codes": inputs.num_codes, "model_dir": inputs.model_dir}
    save_cluster_model(out / MODEL_FILE, res.model, model_meta, idf)
    t2 = time.perf_counter()
    plots = _plots(cfg, res, has, ref_labels, out)
    timings["plots_s"] = round(time.perf_counter() - t2, 3)
    t3 = time.perf_counter()
    write_report(out, refs, labels_all, conf, outl, metrics, plots, cfg.examples, ref_labels)
    timings["report_s"] = round(time.perf_counter() - t3, 3)
    seconds = time.perf_counter() - t0
    metrics["timings"] = {**timings, "total_s": round(seconds, 3)}
    write_json_atomic(out / co.METRICS_FILE, metrics)
    return DiscoveryResult(out, metrics, seconds)


def _scatter(res: ClusterResult, has: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-segment arrays from the clustered subset (segments without codes: cluster -1, outlier)."""
    labels = np.full(len(has), -1, np.int64)
    conf = np.zeros(len(has))
    outl = np.ones(len(has), bool)
    labels[has], conf[has], outl[has] = res.labels, res.confidence, res.outlier
    return labels, conf, outl


def _metrics(
    cfg: DiscoveryConfig,
    inputs: DiscoveryInputs,
    res: ClusterResult,
    has: np.ndarray,
    labels_all: np.ndarray,
    ref_labels: list[str | None] | None,
) -> dict[str, Any]:
    sizes = {str(c): int(n) for c, n in zip(*np.unique(res.labels, return_counts=True))}
    m: dict[str, Any] = {
        "segments": cfg.segments,
        "features": inputs.kind,
        "model_dir": inputs.model_dir,
        "num_codes": inputs.num_codes,
        "method": cfg.cluster.method,
        "metric": cfg.cluster.metric,
        "seed": cfg.cluster.seed,
        "k": res.k,
        "k_given": cfg.cluster.k or None,
        "n_segments": len(has),
        "n_clustered": int(has.sum()),
        "n_without_codes": int((~has).sum()),
        "cluster_sizes": sizes,
        "internal": res.metrics,
        "k_selection": res.selection,
        "preprocessing": res.preprocessing,
    }
    if ref_labels is not None:
        keep = np.array([lab is not None for lab in ref_labels]) & has
        truth = np.array([lab for lab in ref_labels], dtype=object)
        m["labels"] = {
            "file": cfg.labels,
            "n_unlabelled": int((~keep & has).sum()),
            **label_metrics(labels_all[keep], truth[keep].astype(str)),
        }
    return m


def _plots(
    cfg: DiscoveryConfig, res: ClusterResult, has: np.ndarray, ref_labels: list[str | None] | None, out: Path
) -> list[tuple[str, str]]:
    plots: list[tuple[str, str]] = []
    if cfg.umap.enabled:
        rows, coords = co.umap_2d(
            res.features,
            cfg.cluster.metric,
            cfg.cluster.seed,
            cfg.umap.max_points,
            cfg.umap.n_neighbors,
            cfg.umap.min_dist,
            cfg.umap.n_epochs,
        )
        n = (
            f"{len(rows)} of {len(res.labels)} segments"
            if len(rows) < len(res.labels)
            else f"{len(rows)} segments"
        )
        co.plot_scatter(out / co.UMAP_CLUSTERS, coords, res.labels[rows], f"UMAP by cluster ({n})")
        plots.append((co.UMAP_CLUSTERS, "UMAP, coloured by cluster"))
        if ref_labels is not None:
            lab = np.array(ref_labels, dtype=object)[has][rows]
            co.plot_scatter(out / co.UMAP_LABELS, coords, list(lab), f"UMAP by reference label ({n})")
            plots.append((co.UMAP_LABELS, "UMAP, coloured by reference label"))
    if res.selection:
        co.plot_k_selection(out / co.K_SELECTION, res.selection, res.k)
        plots.append((co.K_SELECTION, "k selection"))
    return plots

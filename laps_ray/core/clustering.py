"""Clustering of segment features: preprocessing, KMeans / Gaussian mixture / HDBSCAN, k selection.

:func:`cluster` is the one entry point (the ``cluster`` job runs it on the driver):

1. :func:`preprocess`: optional standardisation (per-feature z-score), optional PCA to ``pca_dims``
   (seeded), then for the ``cosine`` metric rows are L2-normalised, so Euclidean KMeans / GMM on them
   work in cosine geometry (spherical k-means).
2. k: given, or chosen over ``[k_min, k_max]`` by silhouette (:func:`select_k`: the smallest k
   within ``k_tolerance`` of the highest; KMeans and GMM; HDBSCAN finds its own number).
3. The final fit with ``seed`` and, for KMeans/GMM, ``stability_seeds`` more fits with other seeds:
   stability = mean ARI between them.
4. A confidence and an outlier flag per segment: KMeans ``1 - d1/d2`` (margin between the nearest
   and second-nearest centroid) and outlier = distance to its centroid beyond that cluster's median +
   ``outlier_mad`` · MAD; GMM the largest posterior and outlier = log-likelihood below the median −
   ``outlier_mad`` · MAD; HDBSCAN its membership probability and outlier = noise (cluster -1).

Every random choice is seeded (KMeans init, GMM init, PCA's solver, the silhouette sample).
Shapes: ``S`` segments, ``F`` features, ``P`` processed features, ``k`` clusters.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from laps_ray.config import check, check_choice, yaml_word
from laps_ray.core.cluster_metrics import NOISE, internal_metrics, stability
from laps_ray.core.cluster_model import ClusterModel, Preprocessor, fit_cluster_model, robust_high
from laps_ray.core.sequence_features import l2_normalize

log = logging.getLogger(__name__)

METHODS = ("kmeans", "gmm", "hdbscan")
METRICS = ("cosine", "euclidean")
STANDARDIZE = ("auto", "true", "false")


@dataclasses.dataclass
class ClusteringConfig:
    """How segments are clustered (``cluster.*`` keys of ``configs/cluster.yaml``).

    Attributes:
        method: ``kmeans``, ``gmm`` (Gaussian mixture) or ``hdbscan``.
        metric: ``cosine`` (rows L2-normalised before clustering; silhouette in cosine distance) or
            ``euclidean``.
        k: number of clusters for KMeans/GMM; 0 = choose over ``[k_min, k_max]`` by silhouette.
        k_min, k_max: the range searched when ``k`` is 0.
        k_tolerance: choose the smallest k whose silhouette is within this fraction of the highest
            (0 = the highest). Silhouette curves of code features are flat and noisy (0.14-0.17 over
            k = 2..10 on the discovery benchmark), so the highest often lands on 9-10 clusters for 4
            kinds by a few thousandths; see :func:`choose_k` for the measurement.
        n_init: KMeans restarts (best inertia kept) and GMM initialisations.
        seed: seed of every random choice.
        standardize: z-score each feature first (``true``, the default), ``false``, or ``auto`` = for
            dense embeddings (LSTM, Transformer, mean vectors) only. On code frequencies it makes the
            PCA that follows one of the codes' correlations instead of their covariance, so codes
            that occur together define the axes rather than the few codes frequent in every segment
            (rest, idle motion). Measured (``benchmarks/discovery.py`` segments of
            ``benchmarks/segment_quality.py``, 7 distractor settings x 8 scenes; TF-IDF, k chosen):
            mean ARI 0.73 with ``auto`` -> 0.84, every distractor on 0.62 -> 0.74, worse on one
            setting (compression 0.82 -> 0.63); the demo 0.65 -> 0.80.
        pca_dims: reduce to this many principal components first (0 = off; skipped when the features
            are already that narrow). Keeps KMeans, GMM and silhouette fast on 1920-wide bags of codes.
        silhouette_sample: silhouette on a seeded sample of at most this many segments (0 = all; exact
            silhouette is O(S²) in time).
        stability_seeds: extra fits with seeds ``seed+1 ...`` for the stability score (0 = off).
        gmm_covariance: ``full``, ``diag``, ``tied`` or ``spherical``.
        hdbscan_min_cluster_size: 0 = max(5, 1 % of the segments).
        hdbscan_min_samples: HDBSCAN's density smoothing.
        outlier_mad: outlier rule's width in robust standard deviations (1.4826 · MAD).
    """

    method: str = "kmeans"
    metric: str = "cosine"
    k: int = 0
    k_min: int = 2
    k_max: int = 10
    k_tolerance: float = 0.05
    n_init: int = 4
    seed: int = 0
    standardize: str = "true"
    pca_dims: int = 32
    silhouette_sample: int = 2000
    stability_seeds: int = 2
    gmm_covariance: str = "full"
    hdbscan_min_cluster_size: int = 0
    hdbscan_min_samples: int = 3
    outlier_mad: float = 3.0

    def __post_init__(self) -> None:
        check_choice(self.method, METHODS, "method")
        check_choice(self.metric, METRICS, "metric")
        self.standardize = yaml_word(self.standardize)
        check_choice(self.standardize, STANDARDIZE, "standardize")
        check_choice(self.gmm_covariance, ("full", "diag", "tied", "spherical"), "gmm_covariance")
        check(self.k == 0 or self.k >= 2, "k", f"must be 0 (choose) or >= 2, got {self.k}")
        check(
            2 <= self.k_min <= self.k_max,
            "k_min",
            f"need 2 <= k_min <= k_max, got {self.k_min}..{self.k_max}",
        )
        check(0.0 <= self.k_tolerance < 1.0, "k_tolerance", f"must be in [0, 1), got {self.k_tolerance}")
        check(self.n_init >= 1, "n_init", f"must be >= 1, got {self.n_init}")
        check(self.pca_dims >= 0, "pca_dims", f"must be >= 0 (0 = off), got {self.pca_dims}")
        check(self.silhouette_sample >= 0, "silhouette_sample", f"must be >= 0, got {self.silhouette_sample}")
        check(self.stability_seeds >= 0, "stability_seeds", f"must be >= 0, got {self.stability_seeds}")
        check(self.hdbscan_min_cluster_size >= 0, "hdbscan_min_cluster_size", "must be >= 0 (0 = auto)")
        check(self.hdbscan_min_samples >= 1, "hdbscan_min_samples", "must be >= 1")
        check(self.outlier_mad > 0, "outlier_mad", f"must be > 0, got {self.outlier_mad}")


@dataclasses.dataclass
class ClusterResult:
    """The clustering of S segments.

    Attributes:
        labels: (S,) cluster ids ``0..k-1``; ``-1`` = HDBSCAN noise.
        confidence: (S,) in [0, 1] (see module docstring).
        outlier: (S,) bool.
        k: number of clusters (noise not counted).
        features: (S, P) the processed features that were clustered.
        selection: per candidate k: ``{"k", "silhouette", "davies_bouldin", "calinski_harabasz"}``
            (empty when k was given or for HDBSCAN).
        metrics: internal metrics of the final clustering + ``stability`` (mean ARI across seeds).
        preprocessing: what :func:`preprocess` did.
        model: nearest-centroid model that assigns new segments (:mod:`laps_ray.core.cluster_model`).
    """

    labels: np.ndarray
    confidence: np.ndarray
    outlier: np.ndarray
    k: int
    features: np.ndarray
    selection: list[dict[str, Any]]
    metrics: dict[str, Any]
    preprocessing: dict[str, Any]
    model: ClusterModel


def preprocess(
    x: np.ndarray, cfg: ClusteringConfig, dense: bool
) -> tuple[np.ndarray, dict[str, Any], Preprocessor]:
    """Standardise / PCA / L2 as configured. (S, F) → (S, P) float32, a description, the fitted transform.

    Args:
        x: (S, F) features.
        cfg: the clustering config.
        dense: the features are dense embeddings (``standardize=auto`` z-scores them).
    """
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float32)
    info: dict[str, Any] = {"input_dims": int(x.shape[1])}
    mean = scale = pca_mean = components = None
    if cfg.standardize == "true" or (cfg.standardize == "auto" and dense):
        std = x.std(axis=0)
        mean, scale = x.mean(axis=0), np.where(std > 1e-8, std, 1.0).astype(np.float32)
        x = (x - mean) / scale
        info["standardized"] = True
    else:
        info["standardized"] = False
    if cfg.metric == "cosine":
        # Direction first: cosine geometry of the features themselves, before PCA mixes them.
        x = l2_normalize(x)
    if 0 < cfg.pca_dims < min(x.shape):
        pca = PCA(n_components=cfg.pca_dims, random_state=cfg.seed, svd_solver="randomized")
        x = pca.fit_transform(x).astype(np.float32)
        pca_mean, components = pca.mean_.astype(np.float32), pca.components_.astype(np.float32)
        info["pca_dims"] = cfg.pca_dims
        info["pca_explained_variance"] = float(pca.explained_variance_ratio_.sum())
    else:
        info["pca_dims"] = 0
    if cfg.metric == "cosine":
        x = l2_normalize(x)
    info["output_dims"] = int(x.shape[1])
    cosine = cfg.metric == "cosine"
    return x, info, Preprocessor(mean, scale, cosine, pca_mean, components, cosine)


def _fit_kmeans(x: np.ndarray, k: int, cfg: ClusteringConfig, seed: int) -> Any:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=cfg.n_init, random_state=seed).fit(x)


def _fit_gmm(x: np.ndarray, k: int, cfg: ClusteringConfig, seed: int) -> Any:
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(
        n_components=k,
        covariance_type=cfg.gmm_covariance,
        n_init=cfg.n_init,
        random_state=seed,
        reg_covar=1e-4,  # unit-norm rows live on a sphere: a little regularisation keeps covariances proper
    ).fit(x)


def _fit_labels(x: np.ndarray, k: int, cfg: ClusteringConfig, seed: int) -> tuple[Any, np.ndarray]:
    model = _fit_kmeans(x, k, cfg, seed) if cfg.method == "kmeans" else _fit_gmm(x, k, cfg, seed)
    labels = model.labels_ if cfg.method == "kmeans" else model.predict(x)
    return model, np.asarray(labels, np.int64)


def select_k(x: np.ndarray, cfg: ClusteringConfig) -> tuple[int, list[dict[str, Any]]]:
    """k in ``[k_min, min(k_max, S-1)]`` by :func:`choose_k`, and every candidate's scores."""
    hi = min(cfg.k_max, x.shape[0] - 1)
    if hi < cfg.k_min:
        raise ValueError(f"{x.shape[0]} segments are too few to choose k in [{cfg.k_min}, {cfg.k_max}]")
    rows = []
    for k in range(cfg.k_min, hi + 1):
        _, labels = _fit_labels(x, k, cfg, cfg.seed)
        m = internal_metrics(x, labels, cfg.metric, cfg.silhouette_sample, cfg.seed)
        rows.append({"k": k, **{n: m[n] for n in ("silhouette", "davies_bouldin", "calinski_harabasz")}})
    return choose_k(rows, cfg.k_tolerance), rows


def choose_k(rows: list[dict[str, Any]], tolerance: float) -> int:
    """The smallest ``k`` whose silhouette reaches ``best - tolerance * |best|``.

    A parsimony rule (like the one-standard-error rule of model selection): measured on the discovery
    benchmark (``benchmarks/discovery.py``, TF-IDF features, k = 2..10, ARI against the planted kinds)
    the highest silhouette chose k = 10 with every distractor on (ARI 0.31) and this rule at 5 % k = 3
    (0.62); without distractors both chose k = 3 (0.74); on the demo both k = 7 or 9 (0.65). Clusters
    that are really separated (the 8 planted generators of ``benchmarks/cluster_scale.py``) keep their
    k: fewer clusters then have a far lower silhouette.

    Args:
        rows: per candidate ``{"k", "silhouette", ...}`` (silhouette None: fewer than 2 clusters).
        tolerance: fraction of the best silhouette; 0 = the highest.

    Raises:
        ValueError: no candidate has a silhouette.
    """
    scored = [r for r in rows if r["silhouette"] is not None]
    if not scored:
        raise ValueError("no k gave two or more clusters; the features may all be identical")
    best = max(r["silhouette"] for r in scored)
    floor = best - tolerance * abs(best)
    return int(min(r["k"] for r in scored if r["silhouette"] >= floor))


def _kmeans_confidence(model: Any, x: np.ndarray, labels: np.ndarray, width: float) -> tuple[np.ndarray, ...]:
    d = model.transform(x)  # (S, k) distances to the centroids
    d_sorted = np.sort(d, axis=1)
    conf = 1.0 - d_sorted[:, 0] / np.maximum(d_sorted[:, 1], 1e-12) if d.shape[1] > 1 else np.ones(len(x))
    own = d[np.arange(len(x)), labels]
    outlier = np.zeros(len(x), bool)
    for c in np.unique(labels):
        m = labels == c
        outlier[m] = own[m] > robust_high(own[m], width)
    return np.clip(conf, 0, 1), outlier


def _gmm_confidence(model: Any, x: np.ndarray, width: float) -> tuple[np.ndarray, ...]:
    conf = model.predict_proba(x).max(axis=1)
    neg_ll = -model.score_samples(x)
    return conf, neg_ll > robust_high(neg_ll, width)


def _hdbscan(x: np.ndarray, cfg: ClusteringConfig) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import HDBSCAN

    size = cfg.hdbscan_min_cluster_size or max(5, int(round(0.01 * len(x))))
    model = HDBSCAN(min_cluster_size=size, min_samples=cfg.hdbscan_min_samples, copy=True).fit(x)
    return np.asarray(model.labels_, np.int64), np.asarray(model.probabilities_, np.float64)


def cluster(x: np.ndarray, cfg: ClusteringConfig, dense: bool) -> ClusterResult:
    """Preprocess and cluster S segments' features (see the module docstring).

    Args:
        x: (S, F) features, S >= 3.
        cfg: the clustering config.
        dense: dense embeddings (for ``standardize=auto``) rather than code frequencies.

    Raises:
        ValueError: too few segments for the requested k or range (the message says how many).
    """
    if x.shape[0] < 3:
        raise ValueError(f"{x.shape[0]} segment(s): clustering needs at least 3")
    xp, info, prep = preprocess(x, cfg, dense)
    selection: list[dict[str, Any]] = []
    if cfg.method == "hdbscan":
        labels, conf = _hdbscan(xp, cfg)
        outlier = labels == NOISE
        runs: list[np.ndarray] = []  # HDBSCAN is deterministic: no seed to vary
    else:
        if cfg.k:
            if cfg.k >= xp.shape[0]:
                raise ValueError(f"k={cfg.k} needs more than {xp.shape[0]} segments")
            k = cfg.k
        else:
            k, selection = select_k(xp, cfg)
            log.info(
                "chose k=%d by silhouette over %d..%d (smallest within %g of the best)",
                k, cfg.k_min, selection[-1]["k"], cfg.k_tolerance,
            )  # fmt: skip
        model, labels = _fit_labels(xp, k, cfg, cfg.seed)
        if cfg.method == "kmeans":
            conf, outlier = _kmeans_confidence(model, xp, labels, cfg.outlier_mad)
        else:
            conf, outlier = _gmm_confidence(model, xp, cfg.outlier_mad)
        runs = [labels] + [_fit_labels(xp, k, cfg, cfg.seed + 1 + i)[1] for i in range(cfg.stability_seeds)]
    metrics = internal_metrics(xp, labels, cfg.metric, cfg.silhouette_sample, cfg.seed)
    metrics["stability_ari"] = stability(runs)
    metrics["noise_ratio"] = float(np.mean(labels == NOISE))
    metrics["outlier_ratio"] = float(np.mean(outlier))
    k_found = int(len(np.unique(labels[labels != NOISE])))
    return ClusterResult(
        labels=labels,
        confidence=np.asarray(conf, np.float64),
        outlier=np.asarray(outlier, bool),
        k=k_found,
        features=xp,
        selection=selection,
        metrics=metrics,
        preprocessing=info,
        model=fit_cluster_model(xp, labels, prep, cfg.outlier_mad),
    )

"""A fitted clustering that can assign NEW segments: the preprocessing replayed, then the nearest centroid.

The ``cluster`` job fits it (:func:`fit_cluster_model`) and saves it as ``cluster_model.npz``
(:mod:`laps_ray.io.cluster_model`), so segments found later (another folder, a live stream) get a
cluster id, a confidence and an outlier flag without re-clustering. One rule for every method: the
centroid of each cluster is the mean of its members' processed features (HDBSCAN noise excluded); a
segment goes to the nearest centroid, its confidence is ``1 - d1/d2`` (nearest vs. second-nearest
distance), and it is an outlier when d1 exceeds that cluster's member distances' median +
``width`` · 1.4826 · MAD (the same rule as the KMeans outlier flag of :mod:`laps_ray.core.clustering`).

Shapes: ``S`` segments, ``F`` features, ``P`` processed features, ``k`` clusters. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from laps_ray.core.sequence_features import l2_normalize


@dataclass
class Preprocessor:
    """The fitted feature transform of :func:`laps_ray.core.clustering.preprocess`.

    Attributes:
        mean, scale: (F,) z-score parameters, or None when not standardised.
        l2_before: L2-normalise rows before PCA (cosine metric).
        pca_mean: (F,) and pca_components: (P, F), or None without PCA.
        l2_after: L2-normalise rows last (cosine metric).
    """

    mean: np.ndarray | None
    scale: np.ndarray | None
    l2_before: bool
    pca_mean: np.ndarray | None
    pca_components: np.ndarray | None
    l2_after: bool

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(S, F) raw features → (S, P) float32, exactly as the fitted data were transformed."""
        x = np.asarray(x, dtype=np.float32)
        if self.mean is not None:
            x = (x - self.mean) / self.scale
        if self.l2_before:
            x = l2_normalize(x)
        if self.pca_components is not None:
            # float64 product rounded to float32: a segment's row is the same whatever the batch around
            # it (a float32 GEMM's rounding depends on the batch size: the live path assigns one at a time)
            centred = x.astype(np.float64) - self.pca_mean
            x = (centred @ self.pca_components.T.astype(np.float64)).astype(np.float32)
        if self.l2_after:
            x = l2_normalize(x)
        return x


@dataclass
class ClusterModel:
    """Nearest-centroid assignment in the processed feature space.

    Attributes:
        prep: the fitted preprocessing.
        cluster_ids: (k,) the cluster id of each centroid.
        centroids: (k, P) member means.
        thresholds: (k,) outlier distance of each cluster.
    """

    prep: Preprocessor
    cluster_ids: np.ndarray
    centroids: np.ndarray
    thresholds: np.ndarray

    def assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(S, F) raw features → ``(cluster (S,) int64, confidence (S,) in [0, 1], outlier (S,) bool)``."""
        z = self.prep.transform(x)
        d = np.linalg.norm(z[:, None, :] - self.centroids[None, :, :], axis=-1)  # (S, k)
        nearest = d.argmin(axis=1)
        d_sorted = np.sort(d, axis=1)
        if d.shape[1] > 1:
            conf = 1.0 - d_sorted[:, 0] / np.maximum(d_sorted[:, 1], 1e-12)
        else:
            conf = np.ones(len(z))
        outlier = d_sorted[:, 0] > self.thresholds[nearest]
        return self.cluster_ids[nearest].astype(np.int64), np.clip(conf, 0.0, 1.0), outlier


def robust_high(values: np.ndarray, width: float) -> float:
    """median + width · 1.4826 · MAD of ``values`` (a robust upper bound of typical values)."""
    med = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - med)))
    return med + width * max(mad, 1e-12)


def fit_cluster_model(xp: np.ndarray, labels: np.ndarray, prep: Preprocessor, width: float) -> ClusterModel:
    """Centroids and outlier thresholds from processed features ``xp`` (S, P) and their ``labels`` (S,).

    Raises:
        ValueError: no cluster (every label is -1).
    """
    ids = np.array(sorted(int(c) for c in np.unique(labels) if c >= 0), np.int64)
    if ids.size == 0:
        raise ValueError("no cluster to build a model from (every segment is noise)")
    centroids = np.stack([xp[labels == c].mean(axis=0) for c in ids]).astype(np.float32)
    thresholds = np.array(
        [
            robust_high(np.linalg.norm(xp[labels == c] - centroids[i], axis=1), width)
            for i, c in enumerate(ids)
        ]
    )
    return ClusterModel(prep, ids, centroids, thresholds)

"""Clustering quality: internal (no labels), stability across seeds, and against labels.

* :func:`internal_metrics`: silhouette (cosine or Euclidean; seeded sample above ``sample_size``),
  Davies–Bouldin, Calinski–Harabasz, on the non-outlier points (HDBSCAN's noise label -1 excluded).
* :func:`stability`: mean adjusted Rand index between the assignments of runs with different seeds.
* :func:`label_metrics`: ARI, NMI, purity and Hungarian accuracy against reference labels.

Shapes: ``S`` segments, ``F`` feature width. Pure numpy + scikit-learn/scipy (numeric only).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

NOISE = -1


def internal_metrics(x: np.ndarray, labels: np.ndarray, metric: str, sample_size: int, seed: int) -> dict:
    """Silhouette, Davies–Bouldin and Calinski–Harabasz of a clustering (None when undefined).

    Args:
        x: (S, F) the features that were clustered.
        labels: (S,) cluster ids; ``-1`` (noise) points are left out.
        metric: ``cosine`` or ``euclidean`` (silhouette's distance; DB and CH are Euclidean by
            definition, computed on the same, possibly L2-normalised, rows).
        sample_size: silhouette on at most this many points (a seeded sample), 0 = all (O(S²)).
        seed: sample seed.

    Returns:
        ``{"silhouette", "davies_bouldin", "calinski_harabasz", "n_clusters", "n_scored"}``.
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    labels = np.asarray(labels)
    keep = labels != NOISE
    xs, ls = np.asarray(x)[keep], labels[keep]
    k = len(np.unique(ls))
    out: dict[str, Any] = {"n_clusters": int(k), "n_scored": int(keep.sum())}
    if k < 2 or k >= len(ls):
        return {**out, "silhouette": None, "davies_bouldin": None, "calinski_harabasz": None}
    size = sample_size if 0 < sample_size < len(ls) else None
    out["silhouette"] = float(silhouette_score(xs, ls, metric=metric, sample_size=size, random_state=seed))
    out["davies_bouldin"] = float(davies_bouldin_score(xs, ls))
    out["calinski_harabasz"] = float(calinski_harabasz_score(xs, ls))
    return out


def stability(runs: Sequence[np.ndarray]) -> float | None:
    """Mean pairwise adjusted Rand index of the assignments of several seeded runs (None for < 2)."""
    from sklearn.metrics import adjusted_rand_score

    pairs = list(combinations(range(len(runs)), 2))
    if not pairs:
        return None
    return float(np.mean([adjusted_rand_score(runs[i], runs[j]) for i, j in pairs]))


def contingency(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, G) counts of (predicted cluster, true label) pairs, with the cluster ids and label values."""
    clusters, pi = np.unique(np.asarray(pred), return_inverse=True)
    names, ti = np.unique(np.asarray(truth), return_inverse=True)
    table = np.zeros((len(clusters), len(names)), np.int64)
    np.add.at(table, (pi, ti), 1)
    return table, clusters, names


def hungarian_accuracy(pred: np.ndarray, truth: np.ndarray) -> tuple[float, dict[Any, Any]]:
    """Accuracy under the one-to-one cluster→label mapping that maximises it, and that mapping.

    Clusters beyond the number of labels (or labels beyond clusters) stay unmatched and count as wrong.
    """
    from scipy.optimize import linear_sum_assignment

    table, clusters, names = contingency(pred, truth)
    rows, cols = linear_sum_assignment(-table)
    correct = int(table[rows, cols].sum())
    mapping = {_plain(clusters[r]): _plain(names[c]) for r, c in zip(rows, cols)}
    return correct / max(1, int(table.sum())), mapping


def purity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Share of points whose cluster's majority label is their label."""
    table, _, _ = contingency(pred, truth)
    return float(table.max(axis=1).sum() / max(1, table.sum()))


def label_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """ARI, NMI, purity and Hungarian accuracy of cluster ids ``pred`` (S,) against labels ``truth`` (S,).

    Noise points (``-1``) count as one more cluster: leaving them out would reward a clusterer for
    calling every hard point noise.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred, truth = np.asarray(pred), np.asarray(truth).astype(str)
    acc, mapping = hungarian_accuracy(pred, truth)
    return {
        "n": int(len(pred)),
        "n_labels": int(len(np.unique(truth))),
        "ari": float(adjusted_rand_score(truth, pred)),
        "nmi": float(normalized_mutual_info_score(truth, pred)),
        "purity": purity(pred, truth),
        "hungarian_accuracy": acc,
        "mapping": {str(k): v for k, v in mapping.items()},
    }


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v

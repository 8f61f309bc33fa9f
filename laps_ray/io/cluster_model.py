"""``cluster_model.npz``: a ``cluster`` run's fitted model, to assign new segments later.

Plain arrays (``np.savez``, read with ``allow_pickle=False``; nothing is unpickled) plus a JSON
``meta`` string: the feature kind, the true code count, the embedder checkpoint it needs, and for
``tfidf`` the fitted IDF weights (new segments must be weighted like the fitted ones).
:func:`assign_segments` turns new segments into ``(cluster, confidence, outlier)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.core.cluster_model import ClusterModel, Preprocessor
from laps_ray.io.atomic import atomic_path

MODEL_FILE = "cluster_model.npz"
FORMAT = "laps_ray.cluster_model/1"
_OPTIONAL = ("mean", "scale", "pca_mean", "pca_components")


class ClusterModelError(ValueError):
    """A cluster model file is missing or malformed; the message names it."""


def save_cluster_model(
    path: str | Path, model: ClusterModel, meta: dict[str, Any], idf: np.ndarray | None
) -> None:
    """Write the model atomically (``meta``: ``features``, ``num_codes``, ``model_dir``, ...)."""
    arrays: dict[str, np.ndarray] = {
        "cluster_ids": model.cluster_ids,
        "centroids": model.centroids,
        "thresholds": model.thresholds,
        "flags": np.array([model.prep.l2_before, model.prep.l2_after]),
        "meta": np.array(json.dumps({"format": FORMAT, **meta})),
    }
    for name in _OPTIONAL:
        value = getattr(model.prep, name)
        if value is not None:
            arrays[name] = value
    if idf is not None:
        arrays["idf"] = np.asarray(idf, np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_cluster_model(path: str | Path) -> tuple[ClusterModel, dict[str, Any], np.ndarray | None]:
    """``(model, meta, idf or None)`` from a ``cluster_model.npz`` (or the run folder holding it).

    Raises:
        ClusterModelError: missing, unreadable or not a laps_ray cluster model.
    """
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise ClusterModelError(f"{p}: format {meta.get('format')!r}, expected {FORMAT!r}")
            opt = {name: (z[name] if name in z.files else None) for name in _OPTIONAL}
            l2_before, l2_after = (bool(v) for v in z["flags"])
            prep = Preprocessor(
                opt["mean"], opt["scale"], l2_before, opt["pca_mean"], opt["pca_components"], l2_after
            )
            model = ClusterModel(prep, z["cluster_ids"], z["centroids"], z["thresholds"])
            idf = z["idf"] if "idf" in z.files else None
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        if isinstance(exc, ClusterModelError):
            raise
        raise ClusterModelError(f"{p}: not a readable cluster model ({exc})") from exc
    return model, meta, idf


def assign_segments(
    path: str | Path, features: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign new segments' raw features (S, F) — the same ``kind`` the model was fitted on.

    ``tfidf`` features are passed as raw code counts (S, K) and weighted with the fitted IDF here.

    Raises:
        ClusterModelError: the model was fitted on another feature kind.
    """
    from laps_ray.core.sequence_features import tf_features, tfidf_features

    model, meta, idf = load_cluster_model(path)
    if meta.get("features") != kind:
        raise ClusterModelError(f"{path}: fitted on {meta.get('features')!r} features, got {kind!r}")
    x = np.asarray(features, np.float32)
    if kind == "tfidf":
        x = tfidf_features(x, idf)
    elif kind == "bow":
        x = tf_features(x)
    return model.assign(x)

"""What the ``cluster`` job writes (every file atomically), except the HTML report (``cluster_report``).

Layout of ``--output DIR``::

    assignments.csv      video,segment,start_sec,end_sec,cluster,confidence,outlier,has_codes[,label]
    embeddings.npy       (S, F) float32 features, rows in assignments.csv order (zeros: no codes)
    metrics.json         features, method, k, internal metrics, stability, k selection, label metrics
    cluster_model.npz    the fitted model that assigns new segments (laps_ray.io.cluster_model)
    umap_clusters.png    2-D UMAP of the clustered segments, coloured by cluster (noise grey)
    umap_labels.png      the same points coloured by reference label (with --labels)
    k_selection.png      silhouette, Davies–Bouldin, Calinski–Harabasz per candidate k
    report.html          (laps_ray.io.cluster_report)

UMAP (umap-learn, seeded) runs on a seeded sample of at most ``max_points`` segments (2000 by default):
its cost grows with the number of points and a scatter of thousands of dots shows the same picture.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.io.atomic import atomic_path, write_text_atomic
from laps_ray.io.segment_codes import SegmentRef

log = logging.getLogger(__name__)

ASSIGNMENTS_FILE = "assignments.csv"
EMBEDDINGS_FILE = "embeddings.npy"
METRICS_FILE = "metrics.json"
UMAP_CLUSTERS = "umap_clusters.png"
UMAP_LABELS = "umap_labels.png"
K_SELECTION = "k_selection.png"
COLUMNS = ["video", "segment", "start_sec", "end_sec", "cluster", "confidence", "outlier", "has_codes"]


def write_assignments(
    path: str | Path,
    refs: Sequence[SegmentRef],
    cluster: np.ndarray,
    confidence: np.ndarray,
    outlier: np.ndarray,
    has_codes: np.ndarray,
    labels: Sequence[str | None] | None = None,
) -> None:
    """``assignments.csv``: one row per segment (``cluster`` -1 = noise or no codes).

    Args:
        path: the CSV.
        refs: S segments.
        cluster, confidence, outlier, has_codes: (S,) each.
        labels: S reference labels (None = unlabelled) or None for no label column.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS + (["label"] if labels is not None else []))
    for i, ref in enumerate(refs):
        row = [
            ref.video,
            ref.segment,
            f"{ref.start_sec:.3f}",
            f"{ref.end_sec:.3f}",
            int(cluster[i]),
            f"{float(confidence[i]):.4f}",
            int(bool(outlier[i])),
            int(bool(has_codes[i])),
        ]
        if labels is not None:
            row.append("" if labels[i] is None else labels[i])
        w.writerow(row)
    write_text_atomic(path, buf.getvalue())


def read_assignments(path: str | Path) -> list[dict[str, str]]:
    """The rows of an ``assignments.csv`` as dicts (strings)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def umap_2d(
    x: np.ndarray,
    metric: str,
    seed: int,
    max_points: int,
    n_neighbors: int,
    min_dist: float,
    n_epochs: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded 2-D UMAP of at most ``max_points`` rows of ``x`` (S, P).

    Returns:
        ``(rows (M,) indices into x, coords (M, 2))``.
    """
    import umap

    rng = np.random.default_rng(seed)
    rows = (
        np.sort(rng.choice(len(x), max_points, replace=False)) if len(x) > max_points else np.arange(len(x))
    )
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, max(2, len(rows) - 1)),
        min_dist=min_dist,
        n_epochs=n_epochs,
        metric=metric,
        random_state=seed,  # makes UMAP deterministic (and single-threaded)
        n_jobs=1,
        init="spectral" if len(rows) > n_neighbors + 2 else "random",
    )
    return rows, reducer.fit_transform(x[rows]).astype(np.float32)


def _figure(size: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def plot_scatter(path: str | Path, coords: np.ndarray, groups: Sequence[Any], title: str) -> None:
    """2-D scatter coloured by group; group ``-1`` / None / ``""`` drawn grey as noise / unlabelled."""
    import matplotlib

    fig = _figure((7, 6))
    ax = fig.add_subplot(1, 1, 1)
    groups = np.asarray([("" if g is None else str(g)) for g in groups])
    names = [g for g in sorted(set(groups.tolist()), key=_natural) if g not in ("", "-1")]
    cmap = matplotlib.colormaps["tab20" if len(names) > 10 else "tab10"]
    rest = np.isin(groups, ["", "-1"])
    if rest.any():
        ax.scatter(coords[rest, 0], coords[rest, 1], s=6, c="#b0b0b0", alpha=0.4, label="noise / none")
    for i, g in enumerate(names):
        m = groups == g
        ax.scatter(coords[m, 0], coords[m, 1], s=8, color=cmap(i % cmap.N), label=f"{g} ({int(m.sum())})")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(names) <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="best")
    _save(fig, path)


def plot_k_selection(path: str | Path, rows: Sequence[dict[str, Any]], chosen: int) -> None:
    """Silhouette (higher = better), Davies–Bouldin (lower) and Calinski–Harabasz (higher) vs k."""
    fig = _figure((12, 3.6))
    ks = [r["k"] for r in rows]
    for i, (key, better) in enumerate(
        (("silhouette", "higher"), ("davies_bouldin", "lower"), ("calinski_harabasz", "higher"))
    ):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.plot(ks, [np.nan if r[key] is None else r[key] for r in rows], "o-")
        ax.axvline(chosen, color="tab:red", ls="--", lw=1, label=f"chosen k={chosen}")
        ax.set(xlabel="k", title=f"{key.replace('_', '-')} ({better} is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def _natural(name: str) -> tuple:
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)

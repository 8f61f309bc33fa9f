"""Assign new segments to a fitted ``cluster`` model: ``segment_folder --clusters RUN_DIR``.

A ``cluster`` run leaves ``cluster_model.npz`` (nearest centroids + outlier thresholds, the feature
kind, the fitted IDF weights, the embedder it needs; :mod:`laps_ray.io.cluster_model`). After a
``segment_folder`` run, every video's segments are embedded with that same feature kind
(:class:`~laps_ray.pipeline.segment_embedding.SegmentEmbedder`) and assigned; each entry of the
video's ``segments.json`` gains ``cluster`` (the fitted cluster id, ``null`` for a segment without
codes), ``cluster_confidence`` (0–1) and ``cluster_outlier`` (farther from its centroid than the
fitted threshold). The file is rewritten atomically; assigning again gives the same values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.io.cluster_model import ClusterModelError, assign_segments, load_cluster_model
from laps_ray.io.exports import SEGMENTS_FILE, read_segments_json, write_segments_json
from laps_ray.io.segment_codes import SegmentRef, find_segments
from laps_ray.pipeline.segment_embedding import SegmentEmbedder

log = logging.getLogger(__name__)
ASSIGNMENT_KEYS = ("cluster", "cluster_confidence", "cluster_outlier")  # added to each segments.json entry


@dataclass
class ClusterModelInfo:
    """What a cluster model needs from the segments (checked before a job starts)."""

    path: Path
    kind: str
    num_codes: int
    model_dir: str | None


def check_cluster_model(path: str | Path) -> ClusterModelInfo:
    """Read a ``cluster`` run folder's (or a ``cluster_model.npz``'s) model once.

    Raises:
        ClusterModelError: missing or not a laps_ray cluster model (names the file).
    """
    _, meta, _ = load_cluster_model(path)
    kind, num_codes = meta.get("features"), meta.get("num_codes")
    if not isinstance(kind, str) or not isinstance(num_codes, int):
        raise ClusterModelError(f"{path}: its meta lacks the feature kind or the code count")
    return ClusterModelInfo(Path(path), kind, num_codes, meta.get("model_dir") or None)


class SegmentAssigner:
    """The fitted model and the feature it needs, loaded once; assigns segments given by reference."""

    def __init__(self, info: ClusterModelInfo, threads: int = 1) -> None:
        self.info = info
        self.embedder = SegmentEmbedder(info.kind, info.num_codes, info.model_dir, threads=threads)

    def assign(self, refs: list[SegmentRef]) -> list[dict[str, Any]]:
        """``{"cluster", "cluster_confidence", "cluster_outlier"}`` per ref (all ``None`` for a
        segment without codes)."""
        fields: list[dict[str, Any]] = [dict.fromkeys(ASSIGNMENT_KEYS) for _ in refs]
        with_codes = [i for i, r in enumerate(refs) if r.codes]
        if not with_codes:
            return fields
        batch = self.embedder.embed([refs[i] for i in with_codes], with_codes)
        ids, conf, out = assign_segments(self.info.path, batch.features, self.info.kind)
        for row, i in enumerate(np.asarray(batch.index).tolist()):
            if batch.lengths[row] > 0:  # an empty code sequence has no features to assign
                fields[i] = dict(zip(ASSIGNMENT_KEYS, (int(ids[row]), float(conf[row]), bool(out[row]))))
        return fields


def assign_folder(output: str | Path, info: ClusterModelInfo, threads: int = 1) -> dict[str, int]:
    """Assign every segment under ``output`` (a segment_folder output) and rewrite its segments.json.

    Returns:
        ``{"videos", "segments", "assigned", "outliers"}``.

    Raises:
        ClusterModelError: the segments were made by a tokenizer with another code count.
    """
    assigner = SegmentAssigner(info, threads)
    counts = {"videos": 0, "segments": 0, "assigned": 0, "outliers": 0}
    for doc_path in sorted(Path(output).rglob(SEGMENTS_FILE)):
        refs, num_codes = find_segments(doc_path.parent)
        if num_codes != info.num_codes:
            raise ClusterModelError(
                f"{info.path}: fitted on a tokenizer with {info.num_codes} codes, but {doc_path} was made "
                f"with {num_codes}; fit the clusters on this tokenizer's segments"
            )
        doc = read_segments_json(doc_path)
        if doc is None or len(doc.get("segments") or []) != len(refs):
            continue  # not a complete video output
        fields = assigner.assign(refs)
        for seg, f in zip(doc["segments"], fields):
            seg.update(f)
        doc["clusters"] = {"model": str(info.path), "features": info.kind}
        doc.pop("format", None)  # write_segments_json stamps it again
        write_segments_json(doc_path, doc)
        counts["videos"] += 1
        counts["segments"] += len(refs)
        counts["assigned"] += sum(1 for f in fields if f["cluster"] is not None)
        counts["outliers"] += sum(1 for f in fields if f["cluster_outlier"])
    log.info(
        "clusters: %d segments of %d videos assigned (%d outliers) with %s",
        counts["assigned"],
        counts["videos"],
        counts["outliers"],
        info.path,
    )
    return counts

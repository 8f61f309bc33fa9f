"""Threshold reports (written by ``calibrate``) and the one way to read a threshold out of them.

Report format (``format: "laps_ray.calibration/1"``), one JSON object::

    {
      "format": "laps_ray.calibration/1",
      "rule": "positive iff energy >= thr",
      "recommended_key": "quantized.smoothed.best_f1.thr",
      "<source>": {                      # one block per calibrated energy series, e.g. "quantized"
        "raw":      {"auc", "separates", "warning", "n", "n_pos", "n_neg", "n_candidates",
                     "best_f1": {"thr", "f1", "precision", "recall", "fpr", "j", "tp", "fp", "tn", "fn",
                                 "accuracy"},
                     "best_j":  {... same fields ...}},
        "smoothed": {... same, on the causally smoothed series ...},
        "stats": {"raw": {"min", "q50", ...}, "smoothed": {...}}
      },
      "labels": {"kind": "ground_truth" | "pseudo", ...},
      "smoothing": {"method", "alpha", "window"},
      "per_video": {"<stem>": {...}},    # per-video AUCs; thresholds there are named *_thr, not thr
      "videos": ["<stem>", ...],
      "warnings": ["..."],
      "config": {...}
    }

**Keys for** ``segment_folder --report FILE --report-key KEY``: dotted paths to a ``thr`` leaf,
``<source>.<raw|smoothed>.<best_f1|best_j>.thr``, e.g. ``quantized.smoothed.best_f1.thr`` (the usual
choice: the state machine sees the smoothed energy by default) or ``velocity.raw.best_j.thr``.
:func:`threshold_keys` lists the ones a report has. A missing key or a non-numeric value is an error
(the original silently fell back to a default threshold; we never do).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from laps_ray.io.atomic import read_json_object, write_json_atomic

logger = logging.getLogger(__name__)

REPORT_FORMAT = "laps_ray.calibration/1"
VARIANTS = ("raw", "smoothed")
CRITERIA = ("best_f1", "best_j")
THR_LEAF = "thr"


class ReportError(ValueError):
    """A threshold cannot be read from a report; the message names the file, the key and why."""


def report_key(source: str, variant: str, criterion: str) -> str:
    """The dotted key of a threshold: ``report_key("quantized", "smoothed", "best_f1")``."""
    return f"{source}.{variant}.{criterion}.{THR_LEAF}"


def threshold_keys(report: Any, prefix: str = "") -> list[str]:
    """Every dotted path in ``report`` that ends in a numeric ``thr`` leaf, in document order."""
    out: list[str] = []
    if isinstance(report, dict):
        for k, v in report.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if k == THR_LEAF and _is_number(v):
                out.append(path)
            else:
                out.extend(threshold_keys(v, path))
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_report(path: str | Path) -> dict:
    """Read a report file (any JSON object).

    Raises:
        ReportError: unreadable, not JSON, or not an object.
    """
    return read_json_object(path, ReportError, "report")


def lookup_threshold(report: dict, key: str, name: str = "report") -> float:
    """The number at dotted ``key`` in an already-loaded report (see :func:`read_report_threshold`)."""
    if not key or any(not part for part in key.split(".")):
        raise ReportError(
            f"{name}: invalid report key {key!r} (expected e.g. 'quantized.smoothed.best_f1.thr')"
        )
    node: Any = report
    walked: list[str] = []
    warnings: list[str] = []
    for part in key.split("."):
        if isinstance(node, dict) and isinstance(node.get("warning"), str):
            warnings.append(node["warning"])
        if not isinstance(node, dict) or part not in node:
            where = ".".join(walked) or "the top level"
            here = ", ".join(map(str, node)) if isinstance(node, dict) else f"a {type(node).__name__}"
            keys = threshold_keys(report)
            raise ReportError(
                f"{name} has no key {key!r} (no {part!r} under {where}; there: {here}); "
                f"available: {', '.join(keys) if keys else 'no threshold keys at all'}"
            )
        node = node[part]
        walked.append(part)
    if not _is_number(node):
        raise ReportError(f"{name}: key {key!r} holds {node!r}, not a finite number")
    for w in warnings:
        logger.warning("%s, key %s: the report says: %s", name, key, w)
    return float(node)


def read_report_threshold(path: str | Path, key: str) -> float:
    """Threshold at dotted ``key`` of the report at ``path``.

    Any dict on the way that carries a ``warning`` (e.g. "energy does not separate the labels") is
    logged at WARNING level, so a meaningless threshold never goes unnoticed.

    Args:
        path: report JSON (written by ``calibrate``; any JSON object with nested keys works).
        key: dotted path, e.g. ``quantized.smoothed.best_f1.thr``.

    Returns:
        The threshold.

    Raises:
        ReportError: unreadable file, a missing key (the message lists every threshold key the report
            has) or a value that is not a finite number. Never falls back to a default.
    """
    path = Path(path)
    return lookup_threshold(load_report(path), key, name=f"report {path}")


def write_report(path: str | Path, report: dict) -> None:
    """Write a report atomically (stamps ``format`` if absent)."""
    write_json_atomic(path, {"format": REPORT_FORMAT, **report})

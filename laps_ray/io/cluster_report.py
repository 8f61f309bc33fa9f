"""``report.html``: one self-contained page per clustering run (no CDN, no script).

The page shows the run's settings and metrics, the UMAP scatters and the k-selection plot, and per
cluster its size, its share of outliers and up to ``examples`` of its most confident members, each a
``<video controls>`` playing the exported clip with a poster frame (written to ``posters/``). Every
reference is a path relative to the page, so the output folder can be opened or copied next to the
clips (on a shared filesystem the clips stay where segment_folder wrote them).
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.io.atomic import atomic_path, write_text_atomic
from laps_ray.io.segment_codes import SegmentRef
from laps_ray.io.video import VideoError, iter_frames

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
POSTERS_DIR = "posters"

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
.plots img{max-width:100%;border:1px solid #eee;margin:4px 0}
.cluster{border:1px solid #ddd;border-radius:6px;padding:10px;margin:12px 0}
.clips{display:flex;flex-wrap:wrap;gap:10px}.clip{font-size:12px;width:240px}
.clip video{width:240px;background:#000}.muted{color:#777}
"""


def write_poster(clip: str | Path, dest: str | Path) -> bool:
    """The clip's first frame as a PNG at ``dest``; False when the clip cannot be read."""
    import matplotlib.image

    frames = None
    try:
        frames = iter_frames(clip, threaded=False)
        first = next(frames)
    except (VideoError, StopIteration) as exc:
        log.warning("%s: no poster frame (%s)", clip, exc)
        return False
    finally:
        if frames is not None:
            frames.close()
    with atomic_path(dest) as tmp:
        matplotlib.image.imsave(tmp, first.image, format="png")
    return True


def _rel(target: str | Path, base: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), base.resolve())).as_posix()


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def pick_examples(
    cluster: np.ndarray, confidence: np.ndarray, outlier: np.ndarray, c: int, n: int
) -> list[int]:
    """Up to ``n`` members of cluster ``c``, non-outliers first, most confident first."""
    members = np.flatnonzero(cluster == c)
    order = sorted(members, key=lambda i: (bool(outlier[i]), -float(confidence[i]), int(i)))
    return [int(i) for i in order[:n]]


def write_report(
    output: str | Path,
    refs: Sequence[SegmentRef],
    cluster: np.ndarray,
    confidence: np.ndarray,
    outlier: np.ndarray,
    metrics: dict[str, Any],
    plots: Sequence[tuple[str, str]],
    examples: int = 4,
    labels: Sequence[str | None] | None = None,
) -> Path:
    """Write ``<output>/report.html`` (and its poster frames); returns its path.

    Args:
        output: the run's output folder.
        refs: S segments; cluster, confidence, outlier: (S,) each (``cluster`` -1 = noise / no codes).
        metrics: the run's metrics.json content.
        plots: ``(file name in output, caption)`` of the figures to show.
        examples: clips shown per cluster.
        labels: S reference labels (None = unlabelled), shown under each clip.
    """
    out = Path(output)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>laps_ray clusters</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Action primitives: {metrics.get('k')} clusters of {metrics.get('n_clustered')} segments</h1>",
        _table(
            [
                ("segments", metrics.get("segments")),
                ("features", metrics.get("features")),
                ("method / metric", f"{metrics.get('method')} / {metrics.get('metric')}"),
                ("k", metrics.get("k")),
                ("segments without codes", metrics.get("n_without_codes")),
            ]
        ),
        "<h2>Quality</h2>",
        _table([(k, v) for k, v in (metrics.get("internal") or {}).items()]),
    ]
    if metrics.get("labels"):
        lm = metrics["labels"]
        parts += [
            "<h2>Against the labels</h2>",
            _table([(k, lm.get(k)) for k in ("n", "n_labels", "ari", "nmi", "purity", "hungarian_accuracy")]),
        ]
    parts.append("<h2>Plots</h2><div class='plots'>")
    for name, caption in plots:
        parts.append(
            f"<figure><img src='{html.escape(name)}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</div><h2>Clusters</h2>")
    ids = sorted(int(c) for c in np.unique(cluster))
    for c in [i for i in ids if i >= 0] + [i for i in ids if i < 0]:
        members = cluster == c
        title = f"cluster {c}" if c >= 0 else "noise / no codes (-1)"
        parts.append(
            f"<div class='cluster' id='cluster-{c}'><h3>{title}: {int(members.sum())} segments"
            f" <span class='muted'>({int((outlier & members).sum())} outliers)</span></h3><div class='clips'>"
        )
        for i in pick_examples(cluster, confidence, outlier, c, examples):
            parts.append(
                _clip_html(out, refs[i], float(confidence[i]), None if labels is None else labels[i])
            )
        parts.append("</div></div>")
    parts.append("</body></html>\n")
    path = out / REPORT_FILE
    write_text_atomic(path, "".join(parts))
    return path


def _clip_html(out: Path, ref: SegmentRef, conf: float, label: str | None) -> str:
    caption = f"{ref.video} {ref.segment} [{ref.start_sec:.1f}–{ref.end_sec:.1f} s] conf {conf:.2f}"
    if label:
        caption += f" · label {label}"
    cap = f"<div>{html.escape(caption)}</div>"
    if not ref.clip or not Path(ref.clip).is_file():
        return f"<div class='clip'><div class='muted'>(no clip exported)</div>{cap}</div>"
    poster = out / POSTERS_DIR / f"{Path(ref.video_dir).name}__{ref.segment}.png"
    poster_attr = f" poster='{html.escape(_rel(poster, out))}'" if write_poster(ref.clip, poster) else ""
    src = html.escape(_rel(ref.clip, out))
    return (
        f"<div class='clip'><video controls preload='none'{poster_attr}>"
        f"<source src='{src}' type='video/mp4'></video>{cap}</div>"
    )

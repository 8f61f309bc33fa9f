"""The project on the benchmark: its unsupervised default through the real job, and its energy's
ground-truth-chosen threshold (upper bound).

:func:`run_project` runs ``python -m laps_ray.jobs.segment_folder --input V --output O --address local``
as a subprocess (a private local Ray per call, as a user would), in one pass with its default
``segmentation.threshold=auto``, and reads every ``<O>/<stem>/segments.json``. ``export.clips=false``
comes first (clips do not change segments; cutting them was a quarter of the time);
``--project-overrides`` come after it, so they win.

:func:`project_signals` reads the cached windows back (``energy.jsonl``, ``timeline.npz``), rebuilds the
signal the state machine saw with the run's own recorded settings (``config.yaml``), and
:func:`project_segments` re-runs ``core.segmentation.segment_offline`` at any threshold and maps frames to
seconds with the timeline (what ``sweep_thresholds`` does), for the upper bound.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.io.atomic import read_json_object

log = logging.getLogger("bench.quality.project")

BENCH_OVERRIDES = ("export.clips=false",)
REPO = Path(__file__).resolve().parents[2]


class ProjectRunError(RuntimeError):
    """A project job failed; the message has the command, the exit code and its last output lines."""


@dataclass
class ProjectRun:
    """What a project run produced.

    Attributes:
        segments: stem -> predicted segments ``(start_sec, end_sec)`` (empty when a video failed).
        route: ``auto`` (one pass; kept in the results for comparison with older runs).
        output: the segment_folder output read (``<stem>/segments.json``).
        commands: every command run, in order.
        seconds: wall time of the jobs.
        videos: stem -> facts from its segments.json (threshold and its source, status, warnings).
    """

    segments: dict[str, list[tuple[float, float]]]
    route: str
    output: Path
    commands: list[str]
    seconds: float
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"  # private loopback Ray of the benchmark only
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _run(cmd: list[str], log_file: Path, commands: list[str]) -> subprocess.CompletedProcess:
    commands.append(" ".join(cmd))
    log.info("$ %s", " ".join(cmd))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    log_file.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}\n")
    return proc


def _fail(cmd: list[str], proc: subprocess.CompletedProcess, log_file: Path) -> ProjectRunError:
    tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-5:])
    return ProjectRunError(f"{' '.join(cmd[2:4])} exited {proc.returncode} (log {log_file}):\n{tail}")


def _segment_folder(videos: Path, out: Path, extra: list[str], overrides: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "laps_ray.jobs.segment_folder",
        "--input",
        str(videos),
        "--output",
        str(out),
        "--address",
        "local",
        *extra,
        *BENCH_OVERRIDES,
        *overrides,
    ]


def read_segments(
    out: Path, stems: list[str]
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, dict]]:
    """Predicted segments and facts per stem from ``<out>/<stem>/segments.json`` (missing = failed:
    no segments, said loudly)."""
    segs: dict[str, list[tuple[float, float]]] = {}
    facts: dict[str, dict] = {}
    for stem in stems:
        path = out / stem / "segments.json"
        if not path.is_file():
            log.warning("%s: no segments.json (the video failed; see %s): scored as no segments", stem, out)
            segs[stem], facts[stem] = [], {"status": "missing"}
            continue
        doc = read_json_object(path, ValueError)
        segs[stem] = [(float(s["start_sec"]), float(s["end_sec"])) for s in doc.get("segments", [])]
        seg_params = (doc.get("params") or {}).get("segmentation") or {}
        facts[stem] = {
            "status": "done",
            "threshold": seg_params.get("threshold"),
            "threshold_source": seg_params.get("threshold_source", seg_params.get("source")),
            **{
                k: doc[k]
                for k in ("unreliable", "reliable", "warning", "warnings", "auto_threshold")
                if k in doc
            },
        }
    return segs, facts


def run_project(
    videos: Path, out: Path, overrides: list[str], stems: list[str], reuse: bool = False
) -> ProjectRun:
    """Run the project's unsupervised default on a folder of videos (module docstring).

    Args:
        videos: input folder.
        out: this run's folder: ``segments/`` and ``logs/``.
        overrides: extra ``key=value`` for every segment_folder call.
        stems: the videos to read back.
        reuse: keep complete outputs of an earlier run (segment_folder's resume); by default every
            call passes ``--overwrite``, so the numbers are those of the code as it is now (outputs
            are "complete" by config and checkpoint digests, which a code change does not alter).

    Raises:
        ProjectRunError: a job failed (not a per-video failure: those are recorded and scored empty).
    """
    t0 = time.time()
    commands: list[str] = []
    seg_out, logs = out / "segments", out / "logs"
    fresh = [] if reuse else ["--overwrite"]
    cmd = _segment_folder(videos, seg_out, [*fresh, "segmentation.threshold=auto"], overrides)
    proc = _run(cmd, logs / "segment_folder_auto.log", commands)
    if proc.returncode != 0:
        raise _fail(cmd, proc, logs / "segment_folder_auto.log")
    segments, facts = read_segments(seg_out, stems)
    return ProjectRun(segments, "auto", seg_out, commands, time.time() - t0, facts)


# ------------------------------------------------------------------------------------- upper bound


@dataclass
class ProjectSignals:
    """The signal the project's state machine saw, per video, with what re-segmenting needs."""

    stems: list[str]
    signals: list[np.ndarray]
    changes: list[np.ndarray | None]
    geoms: list[Any]
    timelines: list[Any]
    segmentation: Any


def project_signals(seg_out: Path, stems: list[str]) -> ProjectSignals:
    """Read a segment_folder output back (module docstring): the run's recorded config, each video's
    per-window energy (``energy``: what was segmented; gated windows 0), its smoothing, and the change
    scores when the run used change points."""
    from laps_ray.config import load_config
    from laps_ray.core.segmentation import WindowGeometry
    from laps_ray.core.smoothing import segmentation_signal
    from laps_ray.jobs.segment_folder import SegmentJobConfig
    from laps_ray.pipeline.calibration_data import fed_series, read_cached_videos, track_changes

    cfg = load_config(SegmentJobConfig, seg_out / "config.yaml")
    cached = read_cached_videos(seg_out, timelines=True)
    sm, cp = cfg.energy.smoothing, cfg.segmentation.changepoint
    out = ProjectSignals([], [], [], [], [], cfg.segmentation)
    for stem in stems:
        if stem not in cached:
            raise ValueError(f"{seg_out}: no cached energies of {stem}")
        v = cached[stem]
        raw = fed_series(v.track, "energy")
        out.stems.append(stem)
        out.signals.append(segmentation_signal(raw, sm)[1])
        out.changes.append(track_changes(v.track, cp) if cp.enable else None)
        out.geoms.append(
            WindowGeometry(v.meta.T, v.meta.stride, v.meta.target_fps, num_frames=v.timeline.num_frames)
        )
        out.timelines.append(v.timeline)
    return out


def project_segments(ps: ProjectSignals, i: int, threshold: float) -> list[tuple[float, float]]:
    """Video ``i`` re-segmented at ``threshold`` with the run's own state-machine settings, in seconds."""
    from laps_ray.core.segmentation import segment_offline

    seg = dataclasses.replace(ps.segmentation, threshold=float(threshold))
    found = segment_offline(ps.signals[i], seg, ps.geoms[i], ps.changes[i])
    return [ps.timelines[i].to_source(s.start_frame, s.end_frame)[2:] for s in found]

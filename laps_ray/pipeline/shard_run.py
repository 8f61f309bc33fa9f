"""Running one time shard of a video (in an actor) and checking its frames against the plan.

:func:`run_shard` decodes a shard's frame range (:class:`laps_ray.pipeline.shards.ShardSpec`) and runs
its windows through the :class:`~laps_ray.pipeline.window_processor.WindowProcessor`. Window results
come back as small arrays (:class:`ShardResult`); the quantized vectors go to
``<video>/.work/zq_<w0>.npy`` (written incrementally, renamed when complete), so nothing large crosses
the object store and memory stays flat in video length.

**Plan check.** :func:`run_shard` checks every decoded frame against the plan (same source index, time
within 1 ms: :func:`matches_plan`); a multi-shard video whose frames do not match (variable frame rate,
damaged packets) raises :class:`ShardMismatch` and is redone as one unsharded shard, where the decoded
timeline is authoritative. Window and frame fields are always derived from one timeline (the plan when
every frame matched, :func:`laps_ray.pipeline.merge.merge_shards`), so a sharded and an unsharded run
write byte-identical energies, codes and segments.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from laps_ray.core.energy import ENERGY_SOURCES
from laps_ray.core.motion import MOTION_FEATURES
from laps_ray.io import exports as ex
from laps_ray.io.video import iter_frames
from laps_ray.pipeline.shards import ShardSpec
from laps_ray.pipeline.window_processor import GATE_MOTION, GATE_PRE, WindowProcessor
from laps_ray.tracking.windowed import Timeline

GATE_NAMES = (None, GATE_PRE, GATE_MOTION)  # int8 gate code -> name
_T_TOL = 1e-3  # seconds: a decoded frame matches the plan if its index is equal and its time this close


class ShardMismatch(RuntimeError):
    """A shard's decoded frames differ from the planned timeline (the video must be redone unsharded)."""


@dataclass
class ShardResult:
    """Small per-window arrays of one shard (n windows, L tokens); vectors live in ``zq_path``.

    Attributes:
        window: (n,) global window numbers.
        gate: (n,) int8 0 = not gated, 1 = pre-gate, 2 = motion gate (:data:`GATE_NAMES`).
        energies: (n, len(ENERGY_SOURCES)) float64 in :data:`laps_ray.core.energy.ENERGY_SOURCES` order.
        codes: (n, L) int64, -1 for gated windows.
        features: (n, F) float64 motion features, NaN for windows that were not tracked.
        frame_index, frame_t: source index and time of every frame the shard read.
        matches_plan: every frame read matched the plan.
        zq_path: ``.npy`` (n, L, D) float32 quantized vectors (zeros for gated windows).
        seconds: wall time of the shard; cpu_seconds: CPU time of the whole process meanwhile (all
            threads: decoder, tracker, torch).
        peak_rss_mb: peak resident memory of the process so far (MiB).
    """

    key: str
    shard: int
    num_shards: int
    first_window: int
    window: np.ndarray
    gate: np.ndarray
    energies: np.ndarray
    codes: np.ndarray
    features: np.ndarray
    frame_index: np.ndarray
    frame_t: np.ndarray
    matches_plan: bool
    zq_path: str
    latent_dim: int
    seconds: float
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    status: str = "done"

    @property
    def num_windows(self) -> int:
        return int(self.window.size)


def run_shard(
    processor: WindowProcessor,
    spec: ShardSpec,
    batch_windows: int = 8,
    on_window: Callable[[int], None] | None = None,
) -> ShardResult:
    """Decode a shard, process its windows, write its vectors; see module docstring.

    Args:
        processor: holds tracker + tokenizer.
        spec: the shard.
        batch_windows: windows per processor call.
        on_window: called with the number of windows done so far after each window (progress, tests).

    Raises:
        VideoError: unreadable input.
        ShardMismatch: ``spec.strict`` and the decoded frames differ from the plan.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    L, D = processor.num_tokens, processor.latent_dim
    work = Path(spec.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    raw_path = work / f".zq_{spec.first_window:06d}.{uuid.uuid4().hex[:8]}.tmp.f32"
    windows, gates, energies, codes, features = [], [], [], [], []
    no_features = np.full(len(MOTION_FEATURES), np.nan)
    timeline = Timeline()
    zero = np.zeros((L, D), dtype=np.float32)
    frames = iter_frames(
        spec.source,
        target_fps=spec.target_fps,
        resize_shorter=spec.resize_shorter or None,
        start_sec=spec.start_sec,
        end_sec=spec.end_sec,
    )
    try:
        with frames, open(raw_path, "wb") as raw:
            for r in processor.iter_results(frames, batch_windows, spec.first_window, timeline):
                windows.append(r.window)
                gates.append(GATE_NAMES.index(r.gated))
                energies.append([r.energies[s] for s in ENERGY_SOURCES])
                codes.append(np.full(L, -1, np.int64) if r.codes is None else r.codes)
                features.append(no_features if r.features is None else r.features)
                raw.write((zero if r.zq is None else r.zq.astype(np.float32)).tobytes())
                if on_window is not None:
                    on_window(len(windows))
        index, times = timeline.arrays()
        matches = _matches(spec, index, times)
        if spec.strict and not matches:
            raise ShardMismatch(
                f"{spec.source}: shard {spec.shard} decoded {index.size} frames that differ from the "
                f"planned timeline ({0 if spec.expect_index is None else spec.expect_index.size} frames)"
            )
        n = len(windows)
        if spec.num_windows is not None and n != spec.num_windows and (spec.strict or matches):
            raise ShardMismatch(
                f"{spec.source}: shard {spec.shard} made {n} windows, planned {spec.num_windows}"
            )
        zq_path = work / f"zq_{spec.first_window:06d}.npy"
        ex.write_npy_atomic(zq_path, np.memmap(raw_path, dtype=np.float32, mode="r", shape=(n, L, D)))
    finally:
        raw_path.unlink(missing_ok=True)
        _remove_if_empty(work)
    return ShardResult(
        key=spec.key,
        shard=spec.shard,
        num_shards=spec.num_shards,
        first_window=spec.first_window,
        window=np.asarray(windows, dtype=np.int64),
        gate=np.asarray(gates, dtype=np.int8),
        energies=np.asarray(energies, dtype=np.float64).reshape(n, len(ENERGY_SOURCES)),
        codes=np.asarray(codes, dtype=np.int64).reshape(n, L),
        features=np.asarray(features, dtype=np.float64).reshape(n, len(MOTION_FEATURES)),
        frame_index=index,
        frame_t=times,
        matches_plan=matches,
        zq_path=str(zq_path),
        latent_dim=D,
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - cpu0,
        peak_rss_mb=peak_rss_mb(),
    )


def _remove_if_empty(folder: Path) -> None:
    """Remove a work folder that a failed or interrupted shard left empty (and its video folder, if
    that is empty too), so no empty ``.work/`` stays behind."""
    for d in (folder, folder.parent):
        try:
            d.rmdir()  # only succeeds on an empty folder
        except OSError:
            return


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ``ru_maxrss`` is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matches_plan(
    expect_index: np.ndarray | int,
    expect_t: np.ndarray | float,
    index: np.ndarray | int,
    t: np.ndarray | float,
) -> bool:
    """Decoded frames are the planned ones: same shape, same source indices, times within 1 ms.

    Args:
        expect_index, expect_t: planned source index and time (seconds) of each frame (arrays or scalars).
        index, t: the decoded ones, same layout.
    """
    index, expect_index = np.asarray(index), np.asarray(expect_index)
    if index.shape != expect_index.shape:
        return False
    return bool((index == expect_index).all() and (np.abs(np.asarray(t) - expect_t) <= _T_TOL).all())


def _matches(spec: ShardSpec, index: np.ndarray, times: np.ndarray) -> bool:
    if spec.expect_index is None or spec.expect_t is None:
        return False
    return matches_plan(spec.expect_index, spec.expect_t, index, times)

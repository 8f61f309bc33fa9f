"""Per-window compute shared by ``segment_folder`` and ``stream``: gates → tracks → tokens → energies.

A :class:`WindowProcessor` holds the tracker and the tokenizer (both loaded once) and turns batches of
windows from :func:`laps_ray.tracking.windowed.iter_windows` into :class:`WindowResult` records, in
this order (reference §2.6, with its quirks fixed):

1. **Pre-gate** on small grey frames. :meth:`WindowProcessor.prepare` runs once per processed frame and
   keeps both the tracker's prepared frame and the grey thumbnail, so overlapping windows share them.
2. **Tracking** of the windows the pre-gate kept, in one batched tracker call.
3. :func:`~laps_ray.core.windows.normalized_velocities` (the one normalisation) and the **motion gate**;
   the ``motion`` energy and features (:func:`~laps_ray.core.motion.window_motion`).
4. **Tokenizer** ``encode`` + ``quantize`` of the windows both gates kept (of their velocities, or of
   their foreground for a ``motion_input: foreground`` tokenizer), through
   :func:`laps_ray.models.inference.tokenize` (fixed ``tokenizer_batch`` rows per call, one intra-op
   thread on CPU, fp16 autocast on CUDA when ``amp``), so a window's latents do not depend on the
   company it is batched with, on the thread count or on sharding.
5. **Energies** of every source (``quantized``, ``prequant`` with the configured mode, ``velocity``)
   through :mod:`laps_ray.core.energy`; gated windows get the gate rule of
   :func:`~laps_ray.core.energy.apply_gates` (0.0, or the velocity energy for a motion-gated window
   when the source is velocity) and no codes.

No Ray and no file output here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from laps_ray.core.energy import ENERGY_SOURCES, EnergyConfig, apply_gates, window_energy
from laps_ray.core.gates import GateConfig, motion_gate_batch, pre_gate_batch
from laps_ray.core.motion import MOTION_FEATURES, usable_times, window_motion
from laps_ray.core.windows import DEFAULT_STRIDE, DEFAULT_T, normalized_velocities
from laps_ray.pipeline.config import PipelineConfig
from laps_ray.tracking import make_tracker
from laps_ray.tracking.base import TrackerConfig
from laps_ray.tracking.windowed import Timeline, Window, batched, iter_windows

log = logging.getLogger(__name__)

GATE_PRE = "pre"
GATE_MOTION = "motion"


def gray_small(frame_rgb: np.ndarray, resize_shorter: int) -> np.ndarray:
    """Grayscale copy of a frame with its shorter side resized to ``resize_shorter``.

    Computed once per processed frame by the caller and reused by every window holding it.

    Args:
        frame_rgb: (H, W, 3) uint8 RGB frame, or (H, W) uint8 gray.
        resize_shorter: target shorter side in pixels.

    Returns:
        (h, w) uint8 with ``min(h, w) == resize_shorter``.
    """
    frame = np.asarray(frame_rgb)
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
        raise ValueError(f"expected an (H, W, 3) or (H, W) uint8 frame, got {frame.dtype} {frame.shape}")
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    h, w = gray.shape
    scale = resize_shorter / min(h, w)
    size = (
        (resize_shorter, max(1, round(h * scale))) if w <= h else (max(1, round(w * scale)), resize_shorter)
    )
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(gray, size, interpolation=interp)


@dataclass(eq=False)
class PreparedFrame:
    """One processed frame after the once-per-frame work.

    Attributes:
        tracked: the tracker's prepared object (LK: grey image; CoTracker: a tensor). Windows that
            share the frame share this object (LK batches its steps by object identity).
        gray: (h, w) uint8 grey thumbnail for the pre-gate (shorter side ``pre_gate.resize_shorter``).
        index: source frame index; t: its time in seconds.
        height, width: processed frame size in pixels.
    """

    tracked: Any
    gray: np.ndarray
    index: int
    t: float
    height: int
    width: int


@dataclass
class WindowId:
    """Where one window sits in its video: the identity every per-window record starts with.

    :class:`WindowResult` (computed), ``live.SkippedWindow`` (a gap of the stream) and the live
    segmenter's held windows extend it, so the six fields are defined once and read the same way
    (``r.window``, ``r.t_start``) everywhere. Plain, not frozen: a frozen base would force every
    record extending it to be frozen too.

    Attributes:
        window: window number (global: 0 is the video's first window).
        start: first processed frame of the window (``window * stride``).
        frame_index, end_frame_index: source frame indices of its first and last frame (a padded last
            window ends at the video's last processed frame).
        t_start, t_end: their times in seconds on the source's clock (``frame_index``'s and
            ``end_frame_index``'s).
    """

    window: int
    start: int
    frame_index: int
    end_frame_index: int
    t_start: float
    t_end: float

    def identity(self) -> dict[str, int | float]:
        """The six identity fields as keyword arguments (to build another record of the same window)."""
        return {f.name: getattr(self, f.name) for f in fields(WindowId)}


@dataclass
class WindowResult(WindowId):
    """Everything computed for one window (its identity: :class:`WindowId`).

    Attributes:
        gated: ``"pre"`` (pixel gate), ``"motion"`` (speed gate) or None.
        energies: ``{"quantized", "prequant", "velocity"}`` -> energy with the gate rule applied.
        codes: (L,) int64 code ids, None for gated windows.
        zq: (L, D) float32 quantized vectors, None for gated windows.
        features: (F,) float64 motion features (``core.motion.motion_features``: what the change
            points compare), None for a window that was not tracked (pre-gated).
        stats: gate statistics ``pre_mad``, ``pre_active``, ``speed``, ``motion_active`` (None where
            not computed, e.g. no speed for a pre-gated window).
    """

    gated: str | None
    energies: dict[str, float]
    codes: np.ndarray | None
    zq: np.ndarray | None
    stats: dict[str, float | None] = field(default_factory=dict)
    features: np.ndarray | None = None


class WindowProcessor:
    """Tracker + tokenizer held once; :meth:`process` turns windows into :class:`WindowResult`.

    Args:
        tracker: tracker settings (its ``grid**2`` must equal the tokenizer's ``num_points``).
        gates: pre-gate and motion-gate settings.
        energy: energy settings (``mode`` is used for the latent sources).
        checkpoint: tokenizer checkpoint directory (:func:`laps_ray.io.checkpoints.load_tokenizer`).
        T, stride: window geometry; ``T`` must equal the tokenizer's ``T``.
        tokenizer_batch: rows of every tokenizer forward call (see module docstring).
        device: ``auto`` (cuda if available, else cpu), ``cpu``, ``cuda`` or ``cuda:K``.
        amp: fp16 autocast for the tokenizer on CUDA (ignored on CPU).
        num_threads: torch CPU threads (0 = leave torch's default; Ray sets it per actor).
        motion_input: what the tokenizer is fed (``auto`` = the checkpoint's ``motion_input``,
            ``velocity`` or ``foreground``; :class:`~laps_ray.pipeline.config.TokenizerRunConfig`).

    Raises:
        laps_ray.io.checkpoints.CheckpointError: unreadable checkpoint.
        ValueError: tokenizer and window/tracker settings do not fit together (names the keys).
    """

    def __init__(
        self,
        tracker: TrackerConfig,
        gates: GateConfig,
        energy: EnergyConfig,
        checkpoint: str | Path,
        T: int = DEFAULT_T,
        stride: int = DEFAULT_STRIDE,
        tokenizer_batch: int = 32,
        device: str = "auto",
        amp: bool = True,
        num_threads: int = 0,
        motion_input: str = "auto",
    ) -> None:
        import torch

        from laps_ray.io.checkpoints import load_tokenizer

        if tokenizer_batch < 1:
            raise ValueError(f"tokenizer_batch must be >= 1, got {tokenizer_batch}")
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model, self.tokenizer_config = load_tokenizer(checkpoint, self.device)
        tc = self.tokenizer_config
        problems = []
        if tc.T != T:
            problems.append(f"'T' is {T} but the tokenizer was built for T={tc.T}")
        if tc.num_points != tracker.grid**2:
            problems.append(
                f"'tracker.grid' {tracker.grid} gives {tracker.grid**2} points but the tokenizer takes "
                f"num_points={tc.num_points}"
            )
        if tc.num_views != 1:
            problems.append(f"the tokenizer takes {tc.num_views} views; segmentation tracks one")
        if problems:
            raise ValueError(f"checkpoint {checkpoint}: " + "; ".join(problems))
        self.T, self.stride = T, stride
        self.gates, self.energy = gates, energy
        self.tokenizer_batch = tokenizer_batch
        self.amp = bool(amp) and self.device.type == "cuda"
        self.tracker = make_tracker(tracker)
        self.motion_input = tc.motion_input if motion_input == "auto" else motion_input
        if self.motion_input != tc.motion_input:
            log.warning(
                "tokenizer.motion_input=%s overrides what checkpoint %s was trained on (%s)",
                self.motion_input,
                checkpoint,
                tc.motion_input,
            )

    @classmethod
    def from_config(
        cls, pipe: PipelineConfig, checkpoint: str | Path, num_threads: int = 0
    ) -> WindowProcessor:
        """The processor of a pipeline config, so ``segment_folder`` and ``stream`` compute the same
        windows from the same settings.

        Args:
            pipe: the pipeline settings (``tracker``, ``gates``, ``energy``, ``T``, ``stride``,
                ``tokenizer``).
            checkpoint: tokenizer checkpoint directory.
            num_threads: torch CPU threads (0 = leave torch's default).
        """
        return cls(
            pipe.tracker,
            pipe.gates,
            pipe.energy,
            checkpoint,
            T=pipe.T,
            stride=pipe.stride,
            tokenizer_batch=pipe.tokenizer.batch_size,
            device=pipe.tokenizer.device,
            amp=pipe.tokenizer.amp,
            num_threads=num_threads,
            motion_input=pipe.tokenizer.motion_input,
        )

    @property
    def num_tokens(self) -> int:
        """L, tokens per window."""
        return self.tokenizer_config.num_tokens

    @property
    def latent_dim(self) -> int:
        """D, width of the quantized vectors."""
        return self.tokenizer_config.hidden_dim

    # ------------------------------------------------------------------------------------ frames

    def prepare(self, frame: Any) -> PreparedFrame:
        """Once-per-frame work for a decoded frame (``laps_ray.io.video.Frame``: image, index, t)."""
        img = frame.image
        return PreparedFrame(
            tracked=self.tracker.prepare(img),
            gray=gray_small(img, self.gates.pre_gate.resize_shorter),
            index=int(frame.index),
            t=float(frame.t),
            height=int(img.shape[0]),
            width=int(img.shape[1]),
        )

    def iter_results(
        self,
        frames: Iterable[Any],
        batch_windows: int = 8,
        window_offset: int = 0,
        timeline: Timeline | None = None,
    ) -> Iterator[WindowResult]:
        """Results of every window of a frame stream, in window order.

        Args:
            frames: decoded frames (``iter_frames``), the first of which is processed frame
                ``window_offset * stride`` of the video.
            batch_windows: windows per :meth:`process` call (tracker and tokenizer batch).
            window_offset: number of the stream's first window in the whole video (time shards).
            timeline: filled with the source index and time of every frame read.
        """
        windows = iter_windows(frames, self.prepare, self.T, self.stride, timeline)
        for batch in batched(windows, batch_windows):
            yield from self.process(batch, window_offset)

    # ----------------------------------------------------------------------------------- windows

    def process(self, windows: Sequence[Window], window_offset: int = 0) -> list[WindowResult]:
        """Gates, tracking, tokens and energies of a batch of windows (see module docstring).

        Args:
            windows: windows whose items are :class:`PreparedFrame` (from :meth:`prepare`).
            window_offset: added to every window number (and ``offset * stride`` to its start).

        Returns:
            One result per window, in input order.
        """
        n = len(windows)
        if n == 0:
            return []
        items = [w.items for w in windows]
        gray = np.stack([np.stack([it.gray for it in its]) for its in items])  # (W, T, h, w)
        pre = pre_gate_batch(gray, self.gates.pre_gate)
        tracked = np.flatnonzero(~pre.dropped)
        speed = np.full(n, np.nan)  # mean speed; none for pre-gated windows (never tracked)
        motion_active = np.full(n, np.nan)
        motion_dropped = np.zeros(n, dtype=bool)
        change = np.full(n, np.nan)  # the motion energy (core.motion); none for pre-gated windows
        feats = np.full((n, len(MOTION_FEATURES)), np.nan)
        tok_in = None  # what the tokenizer sees (motion_input): velocities or the foreground
        if tracked.size:
            first = items[tracked[0]][0]
            tracks, vis = self.tracker.track_prepared([[it.tracked for it in items[i]] for i in tracked])
            vel = normalized_velocities(tracks, first.height, first.width)  # (Wt, L, N, 2)
            motion = motion_gate_batch(vel, self.gates.motion_gate)
            speed[tracked] = window_energy(None, vel, "velocity", self.energy.mode)
            scale = np.array([2.0 / first.width, 2.0 / first.height])  # normalised like the velocities
            # The frames' own times: a resampled source's frames are unevenly spaced (core.motion).
            times = np.array([[it.t for it in items[i]] for i in tracked], dtype=np.float64)
            if not usable_times(times):
                times = None  # e.g. a live source kept every frame and repeated a timestamp
            found = window_motion(
                tracks * scale,
                vis,
                self.energy.top_fraction,
                foreground=self.motion_input == "foreground",
                times=times,
            )
            change[tracked], feats[tracked] = found.energy, found.features
            tok_in = vel if found.foreground is None else found.foreground
            motion_active[tracked] = motion.active_ratio
            motion_dropped[tracked] = motion.dropped
        gated = pre.dropped | motion_dropped
        raw = {source: np.zeros(n) for source in ENERGY_SOURCES}
        track_values = {"velocity": speed, "motion": change}
        for source, values in track_values.items():
            raw[source] = np.where(np.isfinite(values), values, 0.0)
        tok = np.flatnonzero(~gated)
        ids = zq = None
        if tok.size:
            rows = np.searchsorted(tracked, tok)  # positions of the kept windows among the tracked ones
            z_pre, zq, ids = self._tokenize(tok_in[rows])
            raw["quantized"][tok] = window_energy(zq, None, "quantized", self.energy.mode)
            raw["prequant"][tok] = window_energy(z_pre, None, "prequant", self.energy.mode)
        energies = {s: apply_gates(raw[s], gated, s, track_values.get(s)) for s in ENERGY_SOURCES}

        results = []
        slot = {int(w): j for j, w in enumerate(tok)}
        for i, win in enumerate(windows):
            j = slot.get(i)
            kind = GATE_PRE if pre.dropped[i] else GATE_MOTION if motion_dropped[i] else None
            results.append(
                WindowResult(
                    window=win.index + window_offset,
                    start=win.start + window_offset * self.stride,
                    frame_index=items[i][0].index,
                    end_frame_index=items[i][-1].index,
                    t_start=items[i][0].t,
                    t_end=items[i][-1].t,
                    gated=kind,
                    energies={s: float(energies[s][i]) for s in ENERGY_SOURCES},
                    codes=None if j is None else ids[j].copy(),
                    zq=None if j is None else zq[j].copy(),
                    features=None if pre.dropped[i] else feats[i].copy(),
                    stats={
                        "pre_mad": float(pre.value[i]),
                        "pre_active": float(pre.active_ratio[i]),
                        "speed": None if np.isnan(speed[i]) else float(speed[i]),
                        "motion_active": None if np.isnan(motion_active[i]) else float(motion_active[i]),
                    },
                )
            )
        return results

    def _tokenize(self, vel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Velocities (B, L, N, 2) -> z_pre (B, L, D) f32, zq (B, L, D) f32, ids (B, L) int64."""
        from laps_ray.models.inference import tokenize

        return tokenize(self.model, vel, self.tokenizer_batch, self.amp)

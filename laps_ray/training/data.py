"""Training windows for the motion tokenizer: velocities, displacement classes and visibility.

:class:`WindowArrays` holds every window of a split in memory, already in the form a training step
needs: normalised velocities (the one convention, :func:`laps_ray.core.windows.normalized_velocities`,
applied per window with that window's own processed frame size), the integer-pixel displacement class
targets (:func:`laps_ray.models.losses.displacement_classes`) and the visibility. The split is by
*video* (:func:`laps_ray.io.track_store.split_by_video`), so no video feeds both training and
validation (the original validated on its training windows).

Sharding (:func:`shard_batches`) follows ``torch.utils.data.DistributedSampler``: each epoch a seeded
permutation is padded to a multiple of the world size and rank ``r`` takes every ``world``-th index,
so ranks see disjoint windows and the same number of batches (every DDP rank must run the same
number of steps). Validation uses :func:`shard_indices` (no padding, no duplicates; the per-rank sums
are all-reduced).

Shape letters: M windows, V views, T frames, L = T-1 steps, N points.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from laps_ray.core.motion import foreground_velocities
from laps_ray.core.windows import normalized_velocities
from laps_ray.io.track_store import WindowSet, list_track_files, load_windows, split_by_video
from laps_ray.models.losses import centre_class, displacement_classes

log = logging.getLogger(__name__)


@dataclass
class WindowArrays:
    """One split, in memory, ready for batching.

    Attributes:
        vel: float32 ``(M, V, L, N, 2)`` normalised (x, y) velocities (non-finite steps set to 0).
        targets: int16 ``(M, V, L, N)`` displacement classes, ``-1`` where a track was lost.
        vis: bool ``(M, V, T, N)`` visibility (False where a position is not finite).
        px_per_unit: float32 ``(M, 2)`` pixels per velocity unit per axis, ``(W/2, H/2)``: velocity ×
            this = pixel displacement (used for the endpoint error in pixels).
        video_ids: int32 ``(M,)`` index into ``files``.
        files: source track files.
    """

    vel: np.ndarray
    targets: np.ndarray
    vis: np.ndarray
    px_per_unit: np.ndarray
    video_ids: np.ndarray
    files: list[Path]

    def __len__(self) -> int:
        return len(self.vel)

    def batch(self, idx: np.ndarray, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Tensors of the windows ``idx``: ``vel``, ``targets`` (int64), ``vis``, ``px_per_unit``."""
        idx = np.sort(np.asarray(idx))  # sorted reads are faster; order inside a batch is irrelevant
        non_blocking = torch.device(device).type == "cuda"
        return {
            "vel": torch.from_numpy(self.vel[idx]).to(device, non_blocking=non_blocking),
            "targets": torch.from_numpy(self.targets[idx].astype(np.int64)).to(
                device, non_blocking=non_blocking
            ),
            "vis": torch.from_numpy(self.vis[idx]).to(device, non_blocking=non_blocking),
            "px_per_unit": torch.from_numpy(self.px_per_unit[idx]).to(device, non_blocking=non_blocking),
        }


def window_arrays(ws: WindowSet, rel_grid: int = 15, motion_input: str = "velocity") -> WindowArrays:
    """Velocities, targets and visibility of a :class:`~laps_ray.io.track_store.WindowSet`.

    Each window is normalised with its own video's processed frame size (videos in one training
    set may differ in size); windows are grouped by size so every group is one vectorised call.

    Args:
        ws: the windows.
        rel_grid: displacement classes per axis of the targets.
        motion_input: ``velocity`` (every point's motion) or ``foreground``: the model sees and
            reconstructs :func:`laps_ray.core.motion.foreground_velocities` (the targets are the
            classes of that motion, so a still background point is "no motion" whatever the camera
            or a belt did); see :class:`~laps_ray.models.tokenizer_config.TokenizerConfig`.
    """
    m, v, t, n, _ = ws.tracks.shape
    vel = np.zeros((m, v, t - 1, n, 2), np.float32)
    targets = np.zeros((m, v, t - 1, n), np.int16)
    finite = np.isfinite(ws.tracks).all(axis=-1)  # (M, V, T, N)
    vis = ws.vis.astype(bool) & finite
    px = np.zeros((m, 2), np.float32)
    for h, w in {(int(a), int(b)) for a, b in ws.sizes}:
        sel = np.flatnonzero((ws.sizes[:, 0] == h) & (ws.sizes[:, 1] == w))
        for part in np.array_split(sel, max(1, math.ceil(len(sel) / _CHUNK))):
            tr = ws.tracks[part]
            if motion_input == "foreground":
                tr = _foreground_tracks(tr, vis[part], h, w)
            vel[part] = np.nan_to_num(normalized_velocities(tr, h, w), nan=0.0, posinf=0.0, neginf=0.0)
            targets[part] = (
                displacement_classes(torch.from_numpy(tr), rel_grid, h, w).numpy().astype(np.int16)
            )
        px[sel] = (w / 2.0, h / 2.0)
    return WindowArrays(vel, targets, vis, px, ws.video_ids.astype(np.int32), list(ws.files))


_CHUNK = 256  # windows per vectorised call (the foreground's float64 fits stay in memory)


def _foreground_tracks(tracks: np.ndarray, vis: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel tracks that move by :func:`~laps_ray.core.motion.foreground_velocities`. (..., T, N, 2).

    Each path starts at the point's first position and accumulates the foreground motion, so the
    one velocity rule and the integer-pixel targets apply unchanged; a lost position stays NaN (its
    targets are ignored as before). A track store keeps one time per window, not per frame, so the
    points are chosen on evenly spaced frames here (segment_folder uses the frames' times: the two
    differ only for steady movers in a resampled source, which inference then leaves still).
    """
    scale = np.array([2.0 / width, 2.0 / height])
    pos = np.nan_to_num(np.asarray(tracks, dtype=np.float64)) * scale
    fg = foreground_velocities(pos, vis) / scale  # (..., L, N, 2) pixels per step
    start = np.nan_to_num(np.asarray(tracks[..., :1, :, :], dtype=np.float64))
    out = np.concatenate([start, start + np.cumsum(fg, axis=-3)], axis=-3)
    return np.where(np.isfinite(tracks), out, np.nan).astype(np.float32)


@dataclass
class DataSplit:
    """Train and validation windows (validation may be empty)."""

    train: WindowArrays
    val: WindowArrays | None
    train_files: list[Path]
    val_files: list[Path]


def split_files(tracks: str | Path, val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Track files under ``tracks`` split by video into (train, val).

    Raises:
        FileNotFoundError: the folder has no track files (the message names it).
    """
    files = list_track_files(tracks)
    if not files:
        raise FileNotFoundError(f"{tracks}: no track files (*.h5); run the preprocess job first")
    return split_by_video(files, val_fraction, seed)


def load_split(
    train_files: Sequence[Path],
    val_files: Sequence[Path],
    rel_grid: int = 15,
    views: Sequence[str] | None = None,
    motion_input: str = "velocity",
) -> DataSplit:
    """Load the windows of both splits into memory (see :func:`window_arrays`)."""

    def arrays(files: Sequence[Path]) -> WindowArrays:
        return window_arrays(load_windows(list(files), views or None), rel_grid, motion_input)

    train = arrays(train_files)
    val = arrays(val_files) if val_files else None
    return DataSplit(train, val, list(train_files), list(val_files))


def check_model_fits(arrays: WindowArrays, num_views: int, T: int, num_points: int) -> None:
    """Raise a ValueError naming the mismatch when the windows do not fit the model config."""
    _, v, length, n, _ = arrays.vel.shape
    if (v, length + 1, n) != (num_views, T, num_points):
        raise ValueError(
            f"track windows have V={v}, T={length + 1}, N={n} but the model expects "
            f"model.num_views={num_views}, model.T={T}, model.num_points={num_points}; set those keys "
            "(e.g. model.num_points=N for a different tracker grid)"
        )


def steps_per_epoch(num_windows: int, batch_size: int, world_size: int) -> int:
    """Batches each rank runs per epoch (the last, smaller batch included)."""
    per_rank = math.ceil(num_windows / world_size)
    return max(1, math.ceil(per_rank / batch_size))


def moving_share(arrays: WindowArrays, rel_grid: int = 15) -> np.ndarray:
    """Share of each window's counted steps whose target class is not "no motion": float64 ``(M,)``."""
    centre = centre_class(rel_grid)
    t = arrays.targets.reshape(len(arrays), -1)
    counted = (t >= 0).sum(axis=1)
    return ((t >= 0) & (t != centre)).sum(axis=1) / np.maximum(counted, 1)


def motion_weights(arrays: WindowArrays, floor: float, rel_grid: int = 15) -> np.ndarray:
    """Sampling weight of each window, ``floor + moving share`` (``floor`` keeps rest windows in)."""
    return floor + moving_share(arrays, rel_grid)


def shard_batches(
    num_windows: int,
    batch_size: int,
    epoch: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    weights: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """This rank's batches of window indices for one epoch (DistributedSampler semantics).

    A permutation seeded by ``(seed, epoch)`` is padded by repeating its head to a multiple of
    ``world_size``; rank ``r`` takes positions ``r, r + world, ...`` and cuts them into batches.
    Every rank yields :func:`steps_per_epoch` batches; the shards are disjoint apart from the
    padding (at most ``world_size - 1`` repeated windows). With ``weights`` (``(M,)``, >= 0) the
    epoch is ``M`` draws *with replacement* in proportion to them instead of a permutation (same
    seed on every rank, so the ranks still split one common draw).
    """
    if num_windows <= 0:
        raise ValueError("no training windows")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if weights is None:
        perm = torch.randperm(num_windows, generator=gen)
    else:
        if len(weights) != num_windows:
            raise ValueError(f"{len(weights)} weights for {num_windows} windows")
        w = torch.as_tensor(np.asarray(weights, np.float64))
        perm = torch.multinomial(w, num_windows, replacement=True, generator=gen)
    per_rank = math.ceil(num_windows / world_size)
    total = per_rank * world_size
    if total > num_windows:
        perm = torch.cat([perm, perm[: total - num_windows]])
    mine = perm[rank:total:world_size].numpy()
    for start in range(0, len(mine), batch_size):
        yield mine[start : start + batch_size]


def shard_indices(num_windows: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Disjoint, non-padded index shard ``rank::world_size`` (validation; sums are all-reduced)."""
    return np.arange(rank, num_windows, world_size)

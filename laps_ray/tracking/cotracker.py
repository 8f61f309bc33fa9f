"""CoTracker3 (facebookresearch/co-tracker) through torch.hub, behind the :class:`Tracker` interface.

Differences from how the original pipeline ran CoTracker (reference/tokenizer_and_paper.md §3.2, §3.5):

* frames are fed as float **0-255** (CoTracker maps them to [-1, 1] itself; the original streaming
  path fed [0, 1]), layout (B, T, 3, H, W), RGB;
* the queries are OUR grid (:func:`laps_ray.core.windows.grid_points`, row-major over the whole frame,
  seeded at each window's frame 0), passed explicitly as (B, N, 3) ``[t=0, x, y]``, so the point
  order is the same as the LK tracker's (not the left-square, column-major grid of training and not
  CoTracker's own grid of streaming inference).

Weights: a local hub directory (``hub_dir``, a clone of the co-tracker repository) and a local
checkpoint (``checkpoint``) for machines without internet; the checkpoint is read with
``torch.load(weights_only=True)``, so nothing is unpickled from user files. Without them, torch.hub
fetches the repository from GitHub and the entry downloads its pretrained weights.

Post-processing, shared by both models: frame 0 is set to the query grid (visible); a non-finite
position is invisible and holds the previous position; a position outside ``[0, W-1] x [0, H-1]`` is
invisible (CoTracker's estimate for an occluded point is kept, it is usually a plausible motion).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from laps_ray.tracking.base import BaseTracker, TrackerConfig, check_frame, check_windows

logger = logging.getLogger(__name__)

HUB_REPO = "facebookresearch/co-tracker"
_WEIGHT_URLS = {
    "cotracker3_offline": "https://huggingface.co/facebook/cotracker3/resolve/main/scaled_offline.pth",
    "cotracker3_online": "https://huggingface.co/facebook/cotracker3/resolve/main/scaled_online.pth",
}
_HUB_CACHE_NAME = "facebookresearch_co-tracker_main"  # the repo's folder inside a torch.hub cache dir
_DEFAULT_ONLINE_STEP = 8  # CoTracker3 online: window_len 16, step = window_len // 2


def _how_to_get(entry: str) -> str:
    return (
        f"to run offline, on a machine with internet `git clone https://github.com/{HUB_REPO}` and download "
        f"{_WEIGHT_URLS[entry]}, copy the clone and the .pth file to this machine, and set the tracker "
        "config keys hub_dir (the clone, or a torch.hub cache dir holding it) and checkpoint (the .pth)"
    )


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; an explicit cuda device must exist."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"tracker device {spec!r} requested but torch.cuda.is_available() is False")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"tracker device {spec!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read weights saved with ``torch.save``, never unpickling arbitrary objects.

    Accepts a plain state dict or one wrapped under ``"model"`` or ``"state_dict"`` (training
    checkpoints), and strips a ``module.`` prefix left by DistributedDataParallel.

    Raises:
        FileNotFoundError: no such file.
        RuntimeError: the file is not a weights-only state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CoTracker checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, zip errors, ...: all mean "not a weights file we read"
        raise RuntimeError(
            f"CoTracker checkpoint {str(path)!r} cannot be read as a weights-only state dict ({exc})"
        ) from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RuntimeError(f"CoTracker checkpoint {str(path)!r} is not a state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def load_weights(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load a checkpoint into the hub predictor or into its inner network, whichever it matches.

    The hub entries return a predictor wrapping the network as ``.model``; released CoTracker
    checkpoints hold the inner network's keys. The key sets must match exactly.

    Returns:
        The module the weights went into.
    """
    state = load_state_dict_file(path)
    inner = getattr(model, "model", None)
    targets = [model] + ([inner] if isinstance(inner, torch.nn.Module) else [])
    for target in targets:
        if set(state) == set(target.state_dict()):
            target.load_state_dict(state, strict=True)
            return target
    expected = set(targets[-1].state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    raise RuntimeError(
        f"CoTracker checkpoint {str(path)!r} does not fit the hub model: missing keys {missing[:5]}, "
        f"unexpected keys {unexpected[:5]} (is it the checkpoint for this entry?)"
    )


def _find_hubconf_dir(hub_dir: Path, entry: str) -> Path:
    """The directory holding hubconf.py: ``hub_dir`` itself, or the repo inside a torch.hub cache dir."""
    for candidate in (hub_dir, hub_dir / _HUB_CACHE_NAME):
        if (candidate / "hubconf.py").is_file():
            return candidate
    what = "has no hubconf.py" if hub_dir.is_dir() else "does not exist"
    raise FileNotFoundError(f"CoTracker hub_dir {str(hub_dir)!r} {what}; {_how_to_get(entry)}")


def load_cotracker(cfg: TrackerConfig) -> torch.nn.Module:
    """Build the torch.hub entry ``cfg.name`` from ``cfg.hub_dir`` (or GitHub) with ``cfg.checkpoint``.

    Raises:
        FileNotFoundError: ``hub_dir`` or ``checkpoint`` missing; the message says how to get them.
        RuntimeError: the hub or the weights could not be fetched (no internet).
    """
    entry = cfg.name
    checkpoint = Path(cfg.checkpoint).expanduser() if cfg.checkpoint is not None else None
    if checkpoint is not None and not checkpoint.is_file():
        raise FileNotFoundError(
            f"CoTracker checkpoint {str(checkpoint)!r} does not exist; {_how_to_get(entry)}"
        )
    if cfg.hub_dir is not None:
        hub_dir = _find_hubconf_dir(Path(cfg.hub_dir).expanduser(), entry)
        repo, hub_kwargs = str(hub_dir), {"source": "local"}
    else:
        # trust_repo=True: the repo is fixed here, and an interactive prompt would hang a Ray actor.
        repo, hub_kwargs = HUB_REPO, {"source": "github", "trust_repo": True}
    try:
        model = torch.hub.load(repo, entry, pretrained=checkpoint is None, **hub_kwargs)
    except OSError as exc:  # URLError/HTTPError/socket errors: no internet or hub unreachable
        raise RuntimeError(
            f"cannot load CoTracker entry {entry!r} from {repo!r} ({exc}); {_how_to_get(entry)}"
        ) from exc
    if checkpoint is not None:
        load_weights(model, checkpoint)
    logger.info("loaded %s from %s (weights: %s)", entry, repo, checkpoint or "hub download")
    return model


def visibility_to_bool(vis: torch.Tensor, threshold: float) -> torch.Tensor:
    """Bool visibility from a bool mask, probabilities in [0, 1], or logits (anything else).

    Values all inside [0, 1] are read as probabilities; otherwise as logits (sigmoid first).
    """
    if vis.dtype == torch.bool:
        return vis
    vis = vis.float()
    if vis.numel() and (vis.min() < 0 or vis.max() > 1):
        vis = torch.sigmoid(vis)
    return vis > threshold


class CoTrackerTracker(BaseTracker):
    """CoTracker3 offline (batched windows) or online (one window at a time, model kept resident)."""

    def __init__(self, cfg: TrackerConfig) -> None:
        super().__init__(cfg)
        if cfg.name not in ("cotracker3_online", "cotracker3_offline"):
            raise ValueError(f"CoTrackerTracker cannot run tracker {cfg.name!r}")
        self.name = cfg.name
        self.online = cfg.name == "cotracker3_online"
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu" and cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self.model = load_cotracker(cfg).to(self.device).eval()
        self.amp_dtype: torch.dtype | None = None
        if cfg.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.device.type == "cpu":
            logger.warning("%s runs on CPU: it works but is slow; use a GPU or tracker 'lk'", self.name)

    def prepare(self, frame: np.ndarray) -> torch.Tensor:
        """(H, W, 3) RGB uint8 -> (3, H, W) float32 tensor in 0-255 on the tracker's device."""
        check_frame(frame)
        # Upload uint8 (4x less traffic) and convert on the device.
        return torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1).float()

    def track_prepared(self, windows: Sequence[Sequence[torch.Tensor]]) -> tuple[np.ndarray, np.ndarray]:
        """Track W windows of T prepared frames, each seeded with the grid on its frame 0.

        Offline: up to ``batch_windows`` windows per forward pass (halved on CUDA out-of-memory).
        Online: one window per pass.

        Returns:
            tracks (W, T, N, 2) float32 pixel (x, y), vis (W, T, N) bool.
        """
        T = check_windows(windows)
        num_windows = len(windows)
        height, width = windows[0][0].shape[-2:]
        grid = self.query_points(height, width)
        n = len(grid)
        query = torch.cat([torch.zeros(n, 1), torch.from_numpy(grid)], dim=1).to(self.device)  # (N, 3) t,x,y

        tracks = np.empty((num_windows, T, n, 2), np.float32)
        vis = np.empty((num_windows, T, n), bool)
        batch = 1 if self.online else self.cfg.batch_windows
        i = 0
        while i < num_windows:
            chunk = windows[i : i + batch]
            video = torch.stack([torch.stack(list(win)) for win in chunk])  # (B, T, 3, H, W), 0-255
            queries = query.expand(len(chunk), n, 3).contiguous()  # (B, N, 3)
            try:
                tr, vi = self._forward(video, queries)
            except torch.cuda.OutOfMemoryError:
                if batch == 1:
                    raise
                batch = max(1, batch // 2)
                logger.warning("%s: CUDA out of memory, retrying with %d windows per batch", self.name, batch)
                del video
                torch.cuda.empty_cache()
                continue
            tracks[i : i + len(chunk)], vis[i : i + len(chunk)] = self._parse(
                tr, vi, len(chunk), T, grid, height, width
            )
            i += len(chunk)
        return tracks, vis

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _forward(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[Any, Any]:
        """One model pass on (B, T, 3, H, W) frames and (B, N, 3) queries -> raw (tracks, vis)."""
        with torch.no_grad(), self._autocast():
            if not self.online:
                out = self.model(video, queries=queries)
                return out[0], out[1]
            # Online predictor: the first call only registers the queries (and the frame size used to
            # rescale them); then chunks of 2*step frames advance by `step`, and each call returns the
            # tracks of every frame seen so far. T=16 is a single chunk.
            T = video.shape[1]
            step = int(getattr(self.model, "step", _DEFAULT_ONLINE_STEP))
            self.model(video_chunk=video, is_first_step=True, queries=queries)
            out = None
            for ind in [0] + [s for s in range(step, T, step) if s + step < T]:
                out = self.model(video_chunk=video[:, ind : ind + 2 * step], is_first_step=False)
            return out[0], out[1]

    def _parse(
        self, tr: Any, vi: Any, B: int, T: int, grid: np.ndarray, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw model outputs -> tracks (B, T, N, 2) float32, vis (B, T, N) bool (module docstring rules)."""
        n = len(grid)
        if not isinstance(tr, torch.Tensor) or tuple(tr.shape) != (B, T, n, 2):
            shape = tuple(tr.shape) if isinstance(tr, torch.Tensor) else type(tr).__name__
            raise RuntimeError(f"{self.name} returned tracks of shape {shape}, expected {(B, T, n, 2)}")
        if not isinstance(vi, torch.Tensor):
            raise RuntimeError(f"{self.name} returned visibility of type {type(vi).__name__}")
        if vi.dim() == 4 and vi.shape[-1] == 1:
            vi = vi[..., 0]
        if tuple(vi.shape) != (B, T, n):
            raise RuntimeError(
                f"{self.name} returned visibility of shape {tuple(vi.shape)}, expected {(B, T, n)}"
            )
        tracks = tr.float().cpu().numpy().astype(np.float32, copy=True)
        vis = visibility_to_bool(vi, self.cfg.vis_threshold).cpu().numpy().copy()
        tracks[:, 0] = grid
        vis[:, 0] = True
        for t in range(1, T):
            bad = ~np.isfinite(tracks[:, t]).all(axis=-1)  # (B, N)
            tracks[:, t][bad] = tracks[:, t - 1][bad]
            vis[:, t] &= ~bad
        x, y = tracks[..., 0], tracks[..., 1]
        vis &= (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
        return tracks, vis

"""The tokenizer training loop, run by each Ray Train (V2) worker or in-process without Ray.

:func:`train_worker` is the one loop. It talks to its surroundings only through a
:class:`WorkerIO`: rank and world size, device, model wrapping (DDP), the checkpoint to resume
from, an all-reduce for metric sums, and ``report(metrics, checkpoint_dir)``. Two of them:

* :class:`RayIO`, inside a ``TorchTrainer`` worker (:func:`laps_ray.training.fit.ray_train_loop`):
  ``ray.train.torch.prepare_model`` (DDP over gloo on CPU, nccl on GPU), ``ray.train.report`` on
  every rank the same number of times, rank 0 attaching the epoch checkpoint (a
  :func:`~laps_ray.io.checkpoints.save_tokenizer` directory with ``train_state.pt``), resume from
  ``ray.train.get_checkpoint()`` or an explicit path. Reports reach the
  :class:`~laps_ray.training.report.RunRecorder` through a controller callback on the driver's node.
* :class:`LocalIO` / :func:`run_local`: the same loop in this process (tests, laptops, no Ray);
  reports go to the RunRecorder directly.

**Why two and not Train V2's local mode** (``ScalingConfig(num_workers=0)``: the loop runs in the
calling process, no cluster). Read in Ray 2.60 (``ray/train/v2/_internal/execution/local_mode/``,
``train_fn_utils.LocalTrainFnUtils``) and measured on a 2-core machine (2026-11-30, a probe loop
reporting 3 checkpoints): it runs without ``ray.init`` and costs ~0.03 s per ``fit()``, but its
``report()`` only keeps the last metrics and checkpoint in memory. ``RunConfig.callbacks`` never run
(``UserCallback.after_report``: 0 calls for 3 reports), nothing is written under ``storage_path``
(empty after the fit) and the checkpoint stays in the worker's temporary folder, which
:func:`train_worker` deletes after reporting. So it would still need its own in-process path to the
RunRecorder (the second branch this pair already is), plus 1.3-2.2 s more imports
(``ray.train.torch``) and an INFO line with the whole metrics dict on every report; Ray 2.60 also
flags the mode as new ("file a report if you run into issues"). :class:`LocalIO` is ~25 lines.
``tests/unit/test_training.py`` re-checks the local mode's behaviour, so a Ray upgrade that changes it fails.

Data: every worker loads the (small, in-memory) windows of the split from the track files itself
and takes a disjoint shard per epoch (:func:`laps_ray.training.data.shard_batches`). Only
:class:`RayIO` imports Ray (``ray.train``), lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from laps_ray.config import to_dict
from laps_ray.core.codebook import collapse_warning
from laps_ray.io.checkpoints import load_tokenizer, load_train_state, save_tokenizer
from laps_ray.models.tokenizer import MotionTokenizer
from laps_ray.models.tokenizer_config import TokenizerConfig
from laps_ray.training.config import TrainSettings
from laps_ray.training.data import (
    check_model_fits,
    load_split,
    motion_weights,
    shard_batches,
    shard_indices,
    steps_per_epoch,
)
from laps_ray.training.report import RunRecorder, checkpoint_name
from laps_ray.training.steps import (
    MetricSums,
    eval_step,
    make_optimizer,
    make_scheduler,
    scale_input_projection,
    train_step,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class WorkerSpec:
    """Everything :func:`train_worker` gets: settings, the split (absolute paths), resume, provenance."""

    settings: TrainSettings
    train_files: list[str]
    val_files: list[str]
    resume_from: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    use_gpu: bool = False


class WorkerIO(Protocol):
    """How :func:`train_worker` talks to its surroundings (Ray Train or this process)."""

    rank: int
    world_size: int
    device: torch.device

    def prepare_model(self, model: nn.Module) -> nn.Module: ...

    def resume_dir(self) -> contextlib.AbstractContextManager[Path | None]: ...

    def all_reduce(self, tensor: Tensor) -> Tensor: ...

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None: ...


# ------------------------------------------------------------------------------------ the loop


def _amp_dtype(settings: TrainSettings, device: torch.device) -> torch.dtype | None:
    if not settings.amp or device.type != "cuda":
        return None
    if settings.amp_dtype == "bfloat16" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _restore(resume: Path, cfg: TokenizerConfig, model: MotionTokenizer) -> dict[str, Any]:
    """Load weights into ``model`` from a checkpoint directory and return its train state."""
    saved, saved_cfg = load_tokenizer(resume)
    if to_dict(saved_cfg) != to_dict(cfg):
        raise ValueError(
            f"{resume}: the checkpoint's model config differs from this run's model config; resume with "
            "the same model settings (see its config.yaml) or start a new --output"
        )
    model.load_state_dict(saved.state_dict())
    return load_train_state(resume)


def _init_from(path: Path, cfg: TokenizerConfig, model: MotionTokenizer) -> None:
    """Load a checkpoint's weights into a fresh model (fine-tuning); architectures must agree."""
    saved, _ = load_tokenizer(path)
    model.load_state_dict(saved.state_dict(), strict=True)


def train_worker(spec: WorkerSpec, io: WorkerIO) -> dict[str, Any]:
    """Train (or continue training) the tokenizer; returns the last epoch's metrics.

    Every rank runs the same number of steps and reports, so the DDP collectives and
    ``ray.train.report`` barriers line up. Metrics are all-reduced sums, so rank 0's reports are
    global. Rank 0 writes the epoch checkpoint.
    """
    s = spec.settings
    if s.threads > 0:
        torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    t_load = time.perf_counter()
    data = load_split(
        [Path(p) for p in spec.train_files],
        [Path(p) for p in spec.val_files],
        s.model.rel_grid,
        s.views,
        s.model.motion_input,
    )
    check_model_fits(data.train, s.model.num_views, s.model.T, s.model.num_points)
    if io.rank == 0:
        log.info(
            "loaded %d train windows (%d videos), %d val windows (%d videos) in %.1fs",
            len(data.train),
            len(data.train_files),
            len(data.val) if data.val is not None else 0,
            len(data.val_files),
            time.perf_counter() - t_load,
        )
    device = io.device
    model = MotionTokenizer(s.model)
    state: dict[str, Any] = {}
    with io.resume_dir() as resume:
        if resume is not None:
            state = _restore(Path(resume), s.model, model)
            if io.rank == 0:
                log.info("resuming from %s (epoch %s, step %s)", resume, state["epoch"], state["step"])
    if not state and s.init_from:
        _init_from(Path(s.init_from), s.model, model)
        if io.rank == 0:
            log.info("fine-tuning: weights initialised from %s", s.init_from)
    elif not state and s.init_input_std > 0:
        # Same sample on every rank (the first windows of the sorted training files): same weights.
        sample = torch.from_numpy(data.train.vel[: s.init_windows])
        factor = scale_input_projection(model, sample, s.init_input_std)
        if io.rank == 0:
            log.info("input layer scaled by %.1f (init_input_std=%g)", factor, s.init_input_std)
    model.to(device)
    net = io.prepare_model(model)
    optimizer = make_optimizer(model, s.optim)
    spe = steps_per_epoch(len(data.train), s.batch_size, io.world_size)
    scheduler = make_scheduler(optimizer, spe * s.epochs, s.optim)
    amp_dtype = _amp_dtype(s, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    step, start_epoch = 0, 1
    history: list[dict[str, Any]] = []
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, start_epoch = int(state["step"]), int(state["epoch"]) + 1
        history = list(state.get("codebook_history", []))
    weights = (
        motion_weights(data.train, s.sampling_floor, s.model.rel_grid) if s.sampling == "motion" else None
    )
    true_k = model.true_codebook_size
    epoch_sums, interval = MetricSums(true_k, device), MetricSums(true_k, device)
    reduce = io.all_reduce if io.world_size > 1 else None
    last: dict[str, Any] = {}
    if start_epoch > s.epochs and io.rank == 0:
        log.info("nothing to do: the checkpoint is at epoch %d and epochs=%d", start_epoch - 1, s.epochs)
    for epoch in range(start_epoch, s.epochs + 1):
        t0 = t_int = time.perf_counter()
        epoch_sums.reset()
        interval.reset()
        for idx in shard_batches(
            len(data.train), s.batch_size, epoch, s.seed, io.rank, io.world_size, weights=weights
        ):
            batch = data.train.batch(idx, device)
            res = train_step(
                net,
                batch,
                optimizer,
                s.loss,
                s.model.rel_grid,
                scheduler=scheduler,
                scaler=scaler,
                grad_clip=s.optim.grad_clip,
                amp_dtype=amp_dtype,
                with_metrics=step % s.train_metrics_every == 0,
            )
            step += 1
            epoch_sums.add(res, len(idx))
            interval.add(res, len(idx))
            if s.log_every_steps and step % s.log_every_steps == 0:
                m = interval.result("train", reduce)
                now = time.perf_counter()
                m.update(
                    report="step",
                    step=step,
                    epoch=epoch,
                    lr=scheduler.get_last_lr()[0],
                    windows_per_s=m["train/windows"] / max(now - t_int, 1e-9),
                )
                io.report(_finite(m), None)
                interval.reset()
                t_int = now
        train_m = epoch_sums.result("train", reduce)
        val_m = _evaluate(model, data.val, s, device, io, amp_dtype, true_k, reduce)
        seconds = time.perf_counter() - t0
        split, src = ("val", val_m) if val_m else ("train", train_m)
        history.append({k: src[f"{split}/{k}"] for k in ("unique_codes", "true_codebook_size")})
        warning = collapse_warning(history, s.collapse_threshold, s.collapse_epochs)
        metrics: dict[str, Any] = {
            "report": "epoch",
            "epoch": epoch,
            "step": step,
            "lr": scheduler.get_last_lr()[0],
            "epoch_seconds": seconds,
            "windows_per_s": train_m["train/windows"] / max(seconds, 1e-9),
            "codebook_size": s.model.codebook_size,
            "codebook_split": split,
            "codebook_collapsed": warning is not None,
            "collapse_warning": warning,
            **train_m,
            **val_m,
        }
        metrics = _finite(metrics)
        if warning and io.rank == 0:
            log.warning("epoch %d: %s", epoch, warning)
        train_state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "step": step,
            "epoch": epoch,
            "codebook_history": history,
        }
        _report_epoch(io, model, s, spec, metrics, train_state)
        last = metrics
    return last


def _evaluate(
    model: MotionTokenizer,
    val: Any,
    s: TrainSettings,
    device: torch.device,
    io: WorkerIO,
    amp_dtype: torch.dtype | None,
    true_k: int,
    reduce: Callable[[Tensor], Tensor] | None,
) -> dict[str, Any]:
    """Validation metrics over this rank's shard, all-reduced (empty dict without a validation split)."""
    if val is None or len(val) == 0:
        return {}
    sums = MetricSums(true_k, device)
    mine = shard_indices(len(val), io.rank, io.world_size)
    for start in range(0, len(mine), s.eval_batch_size):
        idx = mine[start : start + s.eval_batch_size]
        sums.add(eval_step(model, val.batch(idx, device), s.loss, s.model.rel_grid, amp_dtype), len(idx))
    return sums.result("val", reduce)


def _report_epoch(
    io: WorkerIO,
    model: MotionTokenizer,
    s: TrainSettings,
    spec: WorkerSpec,
    metrics: dict[str, Any],
    train_state: dict[str, Any],
) -> None:
    """Rank 0 writes the epoch checkpoint to a temporary directory; every rank reports."""
    if io.rank != 0:
        io.report(metrics, None)
        return
    tmp = Path(tempfile.mkdtemp(prefix="laps_ray_ckpt_"))
    try:
        meta = {
            "step": metrics["step"],
            "epoch": metrics["epoch"],
            "metrics": metrics,
            "train_settings": to_dict(s),
            **spec.meta,
        }
        ckpt = save_tokenizer(tmp / checkpoint_name(int(metrics["epoch"])), model, s.model, meta, train_state)
        io.report(metrics, ckpt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """NaN / inf → None (JSON has no NaN; e.g. accuracies of an interval without a metric step)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


# ------------------------------------------------------------------------------------ in-process


class LocalIO:
    """:class:`WorkerIO` for a single process: reports go straight to a :class:`RunRecorder`."""

    rank = 0
    world_size = 1

    def __init__(self, recorder: RunRecorder, resume_from: str | None, device: torch.device) -> None:
        self.recorder = recorder
        self.resume_from = resume_from
        self.device = device

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device)

    @contextlib.contextmanager
    def resume_dir(self) -> Iterator[Path | None]:
        yield Path(self.resume_from) if self.resume_from else None

    def all_reduce(self, tensor: Tensor) -> Tensor:
        return tensor

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.recorder.record_local(metrics, checkpoint_dir)


def run_local(spec: WorkerSpec, recorder: RunRecorder) -> dict[str, Any]:
    """Train in this process (no Ray): same loop, same outputs as a Ray Train run."""
    use_cuda = spec.use_gpu and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    return train_worker(spec, LocalIO(recorder, spec.resume_from, device))


# ------------------------------------------------------------------------------------ Ray Train


class RayIO:
    """:class:`WorkerIO` inside a Ray Train V2 worker (``ray.train`` only)."""

    def __init__(self, resume_from: str | None) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.resume_from = resume_from

    def prepare_model(self, model: nn.Module) -> nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    @contextlib.contextmanager
    def resume_dir(self) -> Iterator[Path | None]:
        import ray.train

        # A run restarted by Ray (worker failure, or the same storage folder) has a reported
        # checkpoint; otherwise --resume names the latest one explicitly.
        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                yield Path(d)
        else:
            yield Path(self.resume_from) if self.resume_from else None

    def all_reduce(self, tensor: Tensor) -> Tensor:
        import torch.distributed as dist

        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            dist.all_reduce(tensor)
        return tensor

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        import ray.train

        if checkpoint_dir is None:
            ray.train.report(metrics)
        else:
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint_dir)),
                checkpoint_dir_name=checkpoint_dir.name,
            )

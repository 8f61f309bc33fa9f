"""The LSTM embedder's training loop, run by each Ray Train (V2) worker or in this process.

Same shape as the tokenizer's loop (:mod:`laps_ray.training.loops`), whose :class:`WorkerIO`
implementations it reuses: :class:`~laps_ray.training.loops.RayIO` inside a ``TorchTrainer`` worker
(DDP over gloo/nccl, ``ray.train.report`` on every rank the same number of times, rank 0 attaching the
epoch checkpoint) and :class:`~laps_ray.training.loops.LocalIO` in-process. Reports reach a
:class:`~laps_ray.training.report.RunRecorder` (``metrics.jsonl``, ``latest``, ``best/`` = lowest
``val/loss``).

Objective: next-token cross-entropy (:func:`laps_ray.models.embedder.next_token_loss`). Early stopping
is class-free: the validation split holds whole videos, and training stops after ``patience`` epochs
without a ``min_delta`` decrease of their next-token loss. The decision uses all-reduced sums, so every
rank stops at the same epoch. The sequences travel inside the spec (a few ints per segment), so
workers need no shared filesystem for their data.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from laps_ray.config import to_dict
from laps_ray.io.checkpoints import load_train_state
from laps_ray.io.embedder_checkpoints import load_embedder, save_embedder
from laps_ray.models.embedder import EmbedderConfig, LSTMEmbedder, next_token_loss, to_tokens
from laps_ray.training.data import shard_batches, shard_indices, steps_per_epoch
from laps_ray.training.embedder_config import TrainEmbedderConfig
from laps_ray.training.loops import LocalIO, RayIO, WorkerIO
from laps_ray.training.report import RunRecorder, checkpoint_name
from laps_ray.training.steps import make_optimizer, make_scheduler

log = logging.getLogger(__name__)


@dataclasses.dataclass
class EmbedderSpec:
    """What every worker gets: settings, the model config, the sequences of each split, resume, meta."""

    settings: TrainEmbedderConfig
    model: EmbedderConfig
    train: list[np.ndarray]
    val: list[np.ndarray]
    resume_from: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    use_gpu: bool = False


def _sums(net: Any, tokens: torch.Tensor, idx: np.ndarray, device: torch.device, bs: int) -> torch.Tensor:
    """``[loss sum, tokens, correct]`` over ``tokens[idx]`` without gradients."""
    out = torch.zeros(3, device=device)
    with torch.no_grad():
        for start in range(0, len(idx), bs):
            batch = tokens[idx[start : start + bs]].to(device)
            logits, _ = net(batch)
            _, loss_sum, counts = next_token_loss(logits, batch)
            out += torch.cat([loss_sum.reshape(1), counts])
    return out


def _metrics(split: str, sums: torch.Tensor) -> dict[str, float]:
    loss_sum, n, correct = (float(v) for v in sums)
    loss = loss_sum / max(n, 1.0)
    return {
        f"{split}/loss": loss,
        f"{split}/perplexity": math.exp(min(loss, 20.0)),
        f"{split}/accuracy": correct / max(n, 1.0),
        f"{split}/tokens": n,
    }


def embedder_worker(spec: EmbedderSpec, io: WorkerIO) -> dict[str, Any]:
    """Train (or continue training) the LSTM; returns the last epoch's metrics."""
    s = spec.settings
    if s.threads > 0:
        torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)  # the same initial weights on every rank
    device = io.device
    train_tokens, _ = to_tokens(spec.train, spec.model.max_len)
    val_tokens, _ = to_tokens(spec.val, spec.model.max_len)
    model = LSTMEmbedder(spec.model)
    state: dict[str, Any] = {}
    with io.resume_dir() as resume:
        if resume is not None:
            saved, saved_cfg, _ = load_embedder(resume)
            if to_dict(saved_cfg) != to_dict(spec.model):
                raise ValueError(f"{resume}: the checkpoint's model config differs from this run's")
            model.load_state_dict(saved.state_dict())
            state = load_train_state(resume)
    model.to(device)
    net = io.prepare_model(model)
    optimizer = make_optimizer(model, s.optim)
    spe = steps_per_epoch(len(spec.train), s.batch_size, io.world_size)
    scheduler = make_scheduler(optimizer, spe * s.epochs, s.optim)
    step, start_epoch, best, bad = 0, 1, math.inf, 0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, start_epoch = int(state["step"]), int(state["epoch"]) + 1
        best, bad = float(state["best_val"]), int(state["bad_epochs"])
        if s.patience and bad >= s.patience:
            start_epoch = s.epochs + 1  # it had already stopped early
    reduce = io.all_reduce if io.world_size > 1 else (lambda t: t)
    last: dict[str, Any] = {}
    for epoch in range(start_epoch, s.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        sums = torch.zeros(3, device=device)
        for idx in shard_batches(len(spec.train), s.batch_size, epoch, s.seed, io.rank, io.world_size):
            batch = train_tokens[idx].to(device)
            logits, _ = net(batch)
            loss, loss_sum, counts = next_token_loss(logits, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if s.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            sums += torch.cat([loss_sum.reshape(1), counts.detach()])
        train_m = _metrics("train", reduce(sums).cpu())
        if not math.isfinite(train_m["train/loss"]):
            raise FloatingPointError(f"epoch {epoch}: the training loss is not finite")
        net.eval()
        val_m: dict[str, float] = {}
        if spec.val:
            mine = shard_indices(len(spec.val), io.rank, io.world_size)
            val_m = _metrics("val", reduce(_sums(net, val_tokens, mine, device, s.batch_size)).cpu())
        score = val_m.get("val/loss", train_m["train/loss"])
        if score < best - s.min_delta:
            best, bad = score, 0
        else:
            bad += 1
        stop = bool(s.patience) and bad >= s.patience
        metrics = {
            "report": "epoch",
            "epoch": epoch,
            "step": step,
            "lr": scheduler.get_last_lr()[0],
            "epoch_seconds": time.perf_counter() - t0,
            "max_len": spec.model.max_len,
            "best_score": best,
            "epochs_without_improvement": bad,
            "early_stop": stop,
            **train_m,
            **val_m,
        }
        train_state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "epoch": epoch,
            "best_val": best,
            "bad_epochs": bad,
        }
        _report(io, model, spec, metrics, train_state)
        last = metrics
        if stop:
            if io.rank == 0:
                log.info("early stop at epoch %d: no improvement for %d epochs", epoch, bad)
            break
    return last


def _report(
    io: WorkerIO, model: LSTMEmbedder, spec: EmbedderSpec, metrics: dict[str, Any], state: dict[str, Any]
) -> None:
    """Rank 0 writes the epoch checkpoint to a temporary folder; every rank reports."""
    if io.rank != 0:
        io.report(metrics, None)
        return
    tmp = Path(tempfile.mkdtemp(prefix="laps_ray_emb_"))
    try:
        meta = {"step": metrics["step"], "epoch": metrics["epoch"], "metrics": metrics, **spec.meta}
        ckpt = save_embedder(
            tmp / checkpoint_name(int(metrics["epoch"])), model, spec.model, "lstm", meta, state
        )
        io.report(metrics, ckpt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_embedder_local(spec: EmbedderSpec, recorder: RunRecorder) -> dict[str, Any]:
    """Train in this process (no Ray): the same loop and outputs as a Ray Train run."""
    device = torch.device("cuda" if spec.use_gpu and torch.cuda.is_available() else "cpu")
    return embedder_worker(spec, LocalIO(recorder, spec.resume_from, device))


def embedder_train_loop(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the ``TorchTrainer``: ``config = {"spec": EmbedderSpec}``."""
    spec: EmbedderSpec = config["spec"]
    if spec.settings.threads == 0:
        # Ray sets OMP_NUM_THREADS to the worker's reserved CPUs; follow it.
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    logging.getLogger("laps_ray").setLevel(logging.INFO)
    embedder_worker(spec, RayIO(spec.resume_from))

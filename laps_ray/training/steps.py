"""Pure-torch pieces of tokenizer training: optimiser, schedule, one train / eval step, metric sums.

No Ray here: :mod:`laps_ray.training.loops` runs these in a Ray Train worker or in-process.

* :class:`OptimConfig`, :func:`make_optimizer` (AdamW), :func:`make_scheduler` (linear warm-up then
  cosine to ``min_lr_ratio · lr``, stepped once per optimiser step).
* :func:`train_step` / :func:`eval_step`: forward, :func:`~laps_ray.models.losses.tokenizer_loss`,
  (backward, clip, step), returning detached parts, the code ids and (on metric steps) the
  reconstruction sums of :mod:`laps_ray.models.recon_metrics` (accuracies, EPE, ΔAUC, ...).
* :class:`MetricSums`: per-epoch / per-interval sums that ranks all-reduce before reporting.

Shape letters: B batch, V views, T frames, L = T-1 steps, N points, C = rel_grid² classes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from laps_ray.config import check
from laps_ray.core.codebook import CodebookAccumulator
from laps_ray.models.losses import TokenizerLossConfig, tokenizer_loss
from laps_ray.models.recon_metrics import RECON_FIELDS, reconstruction_metrics, reconstruction_sums


@dataclasses.dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule.

    Attributes:
        lr: peak learning rate.
        betas: AdamW betas (the original's (0.9, 0.95)).
        weight_decay: AdamW decoupled weight decay.
        grad_clip: max global gradient norm; 0 disables (the original had none).
        warmup_fraction: fraction of all optimiser steps spent in the linear warm-up.
        warmup_start: learning-rate factor at step 0 of the warm-up.
        min_lr_ratio: the cosine ends at ``min_lr_ratio · lr``.
    """

    lr: float = 1e-3
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup_fraction: float = 0.05
    warmup_start: float = 0.01
    min_lr_ratio: float = 0.01

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "betas",
            f"must be two values in [0, 1), got {self.betas}",
        )
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.grad_clip >= 0, "grad_clip", f"must be >= 0 (0 = off), got {self.grad_clip}")
        check(
            0 <= self.warmup_fraction < 1, "warmup_fraction", f"must be in [0, 1), got {self.warmup_fraction}"
        )
        check(0 < self.warmup_start <= 1, "warmup_start", f"must be in (0, 1], got {self.warmup_start}")
        check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over all parameters (weight decay applies to matrices only, not norms/biases/embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # 2-D weights of Linear layers decay; LayerNorm weights, biases, positions and embeddings do not.
        is_embedding = name.endswith(("_emb", ".pos"))
        (decay if p.dim() >= 2 and not is_embedding else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]))


def lr_factor(step: int, total_steps: int, warmup_steps: int, warmup_start: float, min_ratio: float) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based): linear warm-up, then cosine."""
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start + (1.0 - warmup_start) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, cfg: OptimConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step warm-up + cosine schedule (its state dict holds only plain values)."""
    warmup = int(round(cfg.warmup_fraction * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, total_steps, warmup, cfg.warmup_start, cfg.min_lr_ratio),
    )


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on CUDA when ``amp_dtype`` is set; a no-op otherwise (CPU trains in fp32)."""
    if amp_dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=amp_dtype)


@dataclasses.dataclass
class StepResult:
    """Detached results of one step: loss parts, code ids and (on metric steps) reconstruction sums."""

    parts: dict[str, Tensor]
    ids: Tensor
    recon: Tensor | None = None  # (len(RECON_FIELDS),) float64, see laps_ray.models.recon_metrics


def train_step(
    model: nn.Module,
    batch: dict[str, Tensor],
    optimizer: torch.optim.Optimizer,
    loss_cfg: TokenizerLossConfig,
    rel_grid: int,
    *,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float = 1.0,
    amp_dtype: torch.dtype | None = None,
    with_metrics: bool = False,
) -> StepResult:
    """One optimiser step on ``batch`` (``vel``, ``targets``, ``vis``, ``px_per_unit``).

    ``model`` may be DDP-wrapped (its backward then all-reduces the gradients). With ``scaler``
    (fp16 AMP) gradients are unscaled before clipping. ``with_metrics`` adds accuracies and the
    reconstruction sums (an argmax over all logits, ~10 % of a CPU step).

    Raises:
        FloatingPointError: the loss is not finite (names the usual cure).
    """
    model.train()
    device = batch["vel"].device
    with autocast(device, amp_dtype):
        out = model(batch["vel"])
        loss, parts = tokenizer_loss(out, batch["targets"], batch["vis"], loss_cfg)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"training loss is {float(loss)}; lower optim.lr or keep optim.grad_clip > 0 (currently "
            f"{grad_clip})"
        )
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if grad_clip > 0:
        parts["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, grad_clip).detach()
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    result = StepResult(parts=parts, ids=out.ids.detach())
    if with_metrics:
        result.recon = _recon_sums(out.rel_logits.detach(), batch, rel_grid)
    return result


def _recon_sums(rel_logits: Tensor, batch: dict[str, Tensor], rel_grid: int) -> Tensor:
    return reconstruction_sums(
        rel_logits, batch["targets"], batch["vel"], batch["px_per_unit"], batch["vis"], rel_grid
    )


@torch.no_grad()
def eval_step(
    model: nn.Module,
    batch: dict[str, Tensor],
    loss_cfg: TokenizerLossConfig,
    rel_grid: int,
    amp_dtype: torch.dtype | None = None,
) -> StepResult:
    """Loss, reconstruction sums and code ids of ``batch`` in eval mode (no gradient).

    Pass the *unwrapped* model (not DDP): ranks evaluate different numbers of batches, and a DDP
    forward would run collectives that then never match up.
    """
    model.eval()
    device = batch["vel"].device
    with autocast(device, amp_dtype):
        out = model(batch["vel"])
        _, parts = tokenizer_loss(out, batch["targets"], batch["vis"], loss_cfg)
    return StepResult(parts=parts, ids=out.ids, recon=_recon_sums(out.rel_logits, batch, rel_grid))


# Loss parts averaged over windows on every step (reconstruction measures only on metric steps).
LOSS_KEYS = ("loss", "recon", "usage", "usage_batch_entropy")


class MetricSums:
    """Sums of step results over an interval or an epoch, reduced across ranks before reporting.

    Loss parts are weighted by the batch's window count; the reconstruction measures are sums over
    the steps that computed them (:func:`~laps_ray.models.recon_metrics.reconstruction_sums`). Code
    ids go to a :class:`~laps_ray.core.codebook.CodebookAccumulator` (counts against the true
    codebook size).
    """

    def __init__(self, true_codebook_size: int, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.true_size = true_codebook_size
        # [loss keys..., windows, reconstruction sums...]
        self._n = len(LOSS_KEYS) + 1 + len(RECON_FIELDS)
        self.reset()

    def reset(self) -> None:
        """Forget everything (start of an interval or epoch)."""
        self.sums = torch.zeros(self._n, dtype=torch.float64, device=self.device)
        self.codes = CodebookAccumulator(self.true_size)

    def add(self, result: StepResult, num_windows: int) -> None:
        """Add one step's :class:`StepResult` for a batch of ``num_windows`` windows."""
        vals = [result.parts[k].double() * num_windows for k in LOSS_KEYS]
        vals.append(torch.tensor(float(num_windows), dtype=torch.float64, device=self.device))
        head = torch.stack([v.to(self.device) for v in vals])
        nl = len(head)
        self.sums[:nl] += head
        if result.recon is not None:
            self.sums[nl:] += result.recon.to(self.device, torch.float64)
        self.codes.update(result.ids)

    def result(self, prefix: str, all_reduce: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
        """Metrics ``{prefix}/{name}`` (loss parts, reconstruction measures, codebook stats).

        ``all_reduce`` sums a tensor over ranks in place (``torch.distributed.all_reduce``); every
        rank must call this the same number of times.
        """
        sums = self.sums.clone()
        counts = self.codes.counts
        if counts is None:
            counts = torch.zeros(self.true_size, dtype=torch.long, device=self.device)
        counts = counts.to(self.device).clone()
        if all_reduce is not None:
            all_reduce(sums)
            all_reduce(counts)
        s = sums.tolist()
        nl = len(LOSS_KEYS)
        windows = s[nl]
        out: dict[str, float] = {}
        for i, k in enumerate(LOSS_KEYS):
            out[f"{prefix}/{k}"] = s[i] / windows if windows else float("nan")
        out.update(reconstruction_metrics(s[nl + 1 :], prefix=f"{prefix}/"))
        out[f"{prefix}/windows"] = int(windows)
        acc = CodebookAccumulator(self.true_size, counts)
        stats = acc.stats(prefix)
        stats.pop(f"{prefix}/entropy", None)  # entropy_norm is the comparable one
        out.update(stats)
        return out


@torch.no_grad()
def scale_input_projection(model: nn.Module, vel: Tensor, target_std: float) -> float:
    """Data-dependent initialisation of the encoder's input layer; returns the factor applied.

    Normalised velocities are small (a 3 px step in a 320 px frame is 0.019) and mostly zero, so with
    a GPT-style init (std 0.02) ``in_proj(vel)`` varies ~100× less across windows than the learned
    positions it is added to: the encoder then sees almost only the time step, every window gets the
    same codes, and the codebook collapses (measured on the sample videos). Scaling ``in_proj.weight``
    so that its output's standard deviation over a sample of training windows equals ``target_std``
    fixes the scale once, at initialisation; the architecture and inference are unchanged.

    Args:
        model: a :class:`~laps_ray.models.tokenizer.MotionTokenizer` (unwrapped).
        vel: ``(B, V, L, N, 2)`` sample of training velocities (same on every rank).
        target_std: wanted std of ``in_proj.weight @ x`` (bias excluded) over the sample.
    """
    layer = model.in_proj
    # The model's own layout (input/point order) only permutes the input features; at
    # initialisation the weights are i.i.d., so the permutation does not change this statistic.
    x = vel.to(layer.weight.device, layer.weight.dtype)
    b, v, length, n, c = x.shape
    x = x.permute(0, 2, 1, 3, 4).reshape(b * length, v * n * c)
    std = float((x @ layer.weight.t()).std())
    if not math.isfinite(std) or std <= 0:
        return 1.0  # no motion in the sample: keep the default init
    factor = target_std / std
    layer.weight.mul_(factor)
    return factor

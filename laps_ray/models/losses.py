"""Targets and loss of the motion tokenizer.

* :func:`displacement_classes`: per point and step, the integer-pixel displacement on a
  ``rel_grid × rel_grid`` window (15×15 → ±7 px per axis) as one class id.
* :func:`tokenizer_loss`: cross-entropy (or focal loss) over those classes, optionally with radial
  class weights and visibility masking, plus an optional **differentiable** codebook-usage
  regulariser (:func:`codebook_usage_loss`). The original LAPS "diversity" term was the entropy of
  the detached integer code ids, so it had zero gradient and only shifted the reported loss.

Shape letters: B batch, V views, T frames, L = T-1 steps, N points, C = rel_grid² classes, d FSQ channels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from laps_ray.config import check
from laps_ray.models.tokenizer import TokenizerOutput

IGNORE_CLASS = -1


def displacement_classes(
    tracks_px: Tensor,
    rel_grid: int = 15,
    height: int | None = None,
    width: int | None = None,
) -> Tensor:
    """Displacement class of every point between consecutive frames.

    Positions are rounded to integer pixels, differenced, each axis clamped to ±``rel_grid // 2``
    (faster motion saturates on the border classes), and ``class = (dy + h) * rel_grid + (dx + h)``
    with ``h = rel_grid // 2``: rows of the class grid are y, columns x, and the centre class
    (``h * rel_grid + h``, 112 for 15) is "no motion". This is the same class layout as the original
    tokenizer's (row, col) classes, so it does not depend on the model's ``input_order``.

    Args:
        tracks_px: ``(..., T, N, 2)`` pixel (x, y) positions (e.g. ``(B, V, T, N, 2)``).
        rel_grid: odd number of classes per axis.
        height, width: if given, positions are first clamped to ``[0, width-1] × [0, height-1]``
            (as the original clamps to the image).

    Returns:
        int64 ``(..., T-1, N)`` classes in ``[0, rel_grid²)``; :data:`IGNORE_CLASS` (-1) where either
        endpoint is not finite (lost track), which :func:`tokenizer_loss` skips.
    """
    if rel_grid < 3 or rel_grid % 2 == 0:
        raise ValueError(f"rel_grid must be odd and >= 3, got {rel_grid}")
    tracks = torch.as_tensor(tracks_px)
    if tracks.dim() < 3 or tracks.shape[-1] != 2 or tracks.shape[-3] < 2:
        raise ValueError(f"tracks_px must be (..., T>=2, N, 2) pixel (x, y), got {tuple(tracks.shape)}")
    tracks = tracks.double()  # exact integer rounding for any frame size
    finite = torch.isfinite(tracks).all(dim=-1)
    tracks = torch.nan_to_num(tracks, nan=0.0, posinf=0.0, neginf=0.0)
    if width is not None:
        tracks[..., 0] = tracks[..., 0].clamp(0, width - 1)
    if height is not None:
        tracks[..., 1] = tracks[..., 1].clamp(0, height - 1)
    pix = tracks.round()
    classes = offset_classes(pix[..., 1:, :, :] - pix[..., :-1, :, :], rel_grid)
    valid = finite[..., 1:, :] & finite[..., :-1, :]
    return torch.where(valid, classes, torch.full_like(classes, IGNORE_CLASS))


def offset_classes(offsets_px: Tensor, rel_grid: int) -> Tensor:
    """Whole-pixel (dx, dy) offsets ``(..., 2)`` → class ids ``(...)`` int64, each axis clamped to
    ±``rel_grid // 2``; the layout of :func:`displacement_classes`."""
    half = rel_grid // 2
    d = offsets_px.clamp(-half, half).long() + half
    return d[..., 1] * rel_grid + d[..., 0]


def centre_class(rel_grid: int) -> int:
    """The "no motion" class id of :func:`displacement_classes` (112 for ``rel_grid`` 15)."""
    half = rel_grid // 2
    return half * rel_grid + half


def radial_class_weights(rel_grid: int, strength: float, power: float = 2.0) -> Tensor:
    """Per-class weight ``1 + strength · (r / r_max) ** power`` (LAPS used strength 4, power 2).

    ``r`` is the Euclidean distance of the class cell from the centre, ``r_max`` that of a corner, so
    the centre ("no motion") has weight 1 and the corners ``1 + strength``.

    Returns:
        float32 ``(rel_grid²,)`` in class order.
    """
    half = rel_grid // 2
    offsets = torch.arange(rel_grid, dtype=torch.float32) - half
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")  # class = row (dy) * grid + col (dx)
    r = torch.sqrt(dx**2 + dy**2).reshape(-1)
    return 1.0 + strength * (r / (math.sqrt(2.0) * half)) ** power


@dataclasses.dataclass
class TokenizerLossConfig:
    """Loss terms of the tokenizer (defaults: plain cross-entropy, like AMPLIFY).

    Attributes:
        focal: use focal loss ``-alpha (1 - p_t)^gamma log p_t`` instead of cross-entropy (LAPS: on).
        focal_gamma, focal_alpha: focal-loss parameters (LAPS: 4.0, 0.5).
        radial_weight_strength: ``s`` of :func:`radial_class_weights`; 0 disables (LAPS: 4.0).
        radial_power: ``p`` of :func:`radial_class_weights` (LAPS: 2.0).
        usage_weight: weight of :func:`codebook_usage_loss`; 0 disables (its value is still logged).
        usage_temperature: softness of the per-channel level assignment, in squared level units.
        usage_sample_weight: weight of the per-sample entropy term inside the usage loss.
        usage_moving_share: 0 = the usage term sees every token; > 0 = only tokens whose step has
            at least this share of its counted points moving (target class not "no motion"). Spread
            over every token, the term also spreads STATIC windows over many codes (measured: the
            token-difference energy then rose at rest, AUC 0.10); restricted to moving tokens it
            spreads the motion only (tests/unit/test_tokenizer.py).
        mask_invisible: when ``vis`` is passed, only steps whose point is visible at both ends count.
        view_weights: per-view weights of the per-view mean losses (None: equal, summing to 1).
    """

    focal: bool = False
    focal_gamma: float = 4.0
    focal_alpha: float = 0.5
    radial_weight_strength: float = 0.0
    radial_power: float = 2.0
    usage_weight: float = 0.0
    usage_temperature: float = 0.5
    usage_sample_weight: float = 1.0
    usage_moving_share: float = 0.0
    mask_invisible: bool = True
    view_weights: Optional[list[float]] = None  # noqa: UP045 (OmegaConf needs typing.Optional)

    def __post_init__(self) -> None:
        check(self.focal_gamma >= 0, "focal_gamma", f"must be >= 0, got {self.focal_gamma}")
        check(self.focal_alpha > 0, "focal_alpha", f"must be > 0, got {self.focal_alpha}")
        check(
            self.radial_weight_strength >= 0,
            "radial_weight_strength",
            f"must be >= 0, got {self.radial_weight_strength}",
        )
        check(self.radial_power > 0, "radial_power", f"must be > 0, got {self.radial_power}")
        check(self.usage_weight >= 0, "usage_weight", f"must be >= 0, got {self.usage_weight}")
        check(
            0 <= self.usage_moving_share <= 1,
            "usage_moving_share",
            f"must be in [0, 1], got {self.usage_moving_share}",
        )
        check(self.usage_temperature > 0, "usage_temperature", f"must be > 0, got {self.usage_temperature}")
        check(
            self.usage_sample_weight >= 0,
            "usage_sample_weight",
            f"must be >= 0, got {self.usage_sample_weight}",
        )
        if self.view_weights is not None:
            check(
                len(self.view_weights) > 0 and all(w >= 0 for w in self.view_weights),
                "view_weights",
                f"must be a non-empty list of weights >= 0, got {self.view_weights}",
            )


def codebook_usage_loss(
    level_pos: Tensor,
    levels: Sequence[int],
    temperature: float = 0.5,
    sample_weight: float = 1.0,
    token_mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Differentiable FSQ codebook-usage regulariser (LFQ-style entropy terms, per FSQ channel).

    Each channel's pre-rounding position ``x`` (``TokenizerOutput.level_pos``) is softly assigned to
    its level grid, ``q(k) = softmax_k(-(x - k)² / temperature)``. The loss is
    ``sample_weight · mean_tokens H(q) − H(mean_tokens q)``, each entropy divided by ``ln levels[i]``
    and averaged over channels: minimising it spreads the batch over all levels of every channel
    (batch entropy → 1) while keeping each token close to one level (sample entropy → 0). Unlike an
    entropy of the integer ids, it has a gradient through FSQ's ``tanh`` bound to the encoder.
    It balances each channel's marginal, not the joint code distribution; in practice that is what
    spreads the joint codes (tested in tests/unit/test_tokenizer.py).

    Args:
        level_pos: ``(..., d)`` float positions on the level grids.
        levels: ``d`` levels.
        temperature: softness, in squared level units.
        sample_weight: weight of the per-sample (confidence) term.
        token_mask: optional bool ``(...)`` (``level_pos`` without its last axis): only these tokens
            count; none selected gives a zero loss.

    Returns:
        (loss in about ``[-1, 1]``, parts ``{"usage_batch_entropy", "usage_sample_entropy"}`` detached,
        both normalised to ``[0, 1]``).
    """
    d = len(levels)
    if level_pos.shape[-1] != d:
        raise ValueError(f"level_pos has {level_pos.shape[-1]} channels but {d} levels were given")
    x = level_pos.float()
    if token_mask is not None:
        x = x[token_mask.to(x.device)]
        if x.shape[0] == 0:
            zero = level_pos.sum() * 0.0  # keeps the graph: a batch without moving tokens
            return zero, {"usage_batch_entropy": zero.detach(), "usage_sample_entropy": zero.detach()}
    x = x.reshape(-1, d, 1)  # (M, d, 1)
    lv = torch.tensor(levels, device=x.device)
    grid = torch.arange(max(levels), device=x.device, dtype=x.dtype)  # (K,)
    valid = grid[None, :] < lv[:, None]  # (d, K): level k exists in channel i
    logits = (-((x - grid) ** 2) / temperature).masked_fill(~valid, float("-inf"))
    logq = F.log_softmax(logits, dim=-1).masked_fill(~valid, 0.0)  # 0·log0 terms vanish below
    q = logq.exp() * valid
    norm = torch.log(lv.to(x.dtype))  # (d,)
    sample_h = (-(q * logq).sum(-1) / norm).mean()
    q_mean = q.mean(dim=0)  # (d, K)
    batch_h = (-(q_mean * torch.log(q_mean.clamp_min(1e-12))).sum(-1) / norm).mean()
    loss = sample_weight * sample_h - batch_h
    return loss, {"usage_batch_entropy": batch_h.detach(), "usage_sample_entropy": sample_h.detach()}


def _step_mask(vis: Tensor, targets: Tensor) -> Tensor:
    """Visibility ``(B, V, T, N)`` (both ends must be visible) or ``(B, V, L, N)`` → bool step mask."""
    vis = vis.bool()
    if vis.shape == targets.shape:
        return vis
    if vis.dim() == targets.dim() and vis.shape[-2] == targets.shape[-2] + 1:
        return vis[..., 1:, :] & vis[..., :-1, :]
    raise ValueError(
        f"vis must be (B, V, T, N) or (B, V, L, N) matching targets {tuple(targets.shape)}, "
        f"got {tuple(vis.shape)}"
    )


def tokenizer_loss(
    out: TokenizerOutput,
    targets: Tensor,
    vis: Tensor | None = None,
    cfg: TokenizerLossConfig | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Training loss of the tokenizer.

    ``recon`` is the per-element cross-entropy (or focal loss), multiplied by the radial weight of the
    target class, averaged over the counted (B, L, N) elements of each view (a plain mean over the
    counted elements, as the original's unreduced loss then ``mean``, not divided by the weight sum),
    then combined over views with ``view_weights``. Elements are counted when the target is not
    :data:`IGNORE_CLASS` and, if ``vis`` is given and ``cfg.mask_invisible``, the point is visible in
    both frames of the step (occluded points carry tracker guesses, not motion). The total is
    ``recon + usage_weight · usage``.

    Args:
        out: model output (``rel_logits (B, V, L, N, C)``, ``level_pos``, ``levels``).
        targets: ``(B, V, L, N)`` int64 from :func:`displacement_classes`.
        vis: optional bool visibility ``(B, V, T, N)`` or per-step ``(B, V, L, N)``.
        cfg: loss config (default: plain cross-entropy).

    Returns:
        (scalar loss, detached parts: ``loss``, ``recon``, ``usage``, ``usage_batch_entropy``,
        ``usage_sample_entropy``, ``counted_fraction``). Accuracies and the other reconstruction
        measures are in :mod:`laps_ray.models.recon_metrics`.
    """
    cfg = cfg or TokenizerLossConfig()
    logits = out.rel_logits
    num_classes = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets {tuple(targets.shape)} do not match rel_logits {tuple(logits.shape)}")
    grid = math.isqrt(num_classes)
    mask = targets >= 0
    if vis is not None and cfg.mask_invisible:
        mask = mask & _step_mask(vis.to(targets.device), targets)
    safe_targets = targets.clamp_min(0)

    # float32 log-softmax even under AMP (cross_entropy autocasts to fp32 on CUDA; explicit on CPU).
    ce = F.cross_entropy(
        logits.float().reshape(-1, num_classes), safe_targets.reshape(-1), reduction="none"
    ).view_as(targets)
    elem = ce
    if cfg.focal:
        p_t = torch.exp(-ce)
        elem = cfg.focal_alpha * (1.0 - p_t).pow(cfg.focal_gamma) * ce
    if cfg.radial_weight_strength > 0:
        weights = radial_class_weights(grid, cfg.radial_weight_strength, cfg.radial_power).to(ce.device)
        elem = elem * weights[safe_targets]
    maskf = mask.to(elem.dtype)
    reduce_dims = tuple(d for d in range(elem.dim()) if d != 1)  # all but the view axis
    per_view = (elem * maskf).sum(reduce_dims) / maskf.sum(reduce_dims).clamp_min(1.0)  # (V,)
    num_views = per_view.shape[0]
    if cfg.view_weights is None:
        view_w = torch.full((num_views,), 1.0 / num_views, device=per_view.device)
    else:
        if len(cfg.view_weights) != num_views:
            raise ValueError(f"view_weights has {len(cfg.view_weights)} entries for {num_views} views")
        view_w = torch.tensor(cfg.view_weights, dtype=per_view.dtype, device=per_view.device)
    recon = (per_view * view_w).sum()

    token_mask = None
    if cfg.usage_moving_share > 0:
        moving = (mask & (targets != centre_class(grid))).float().sum(dim=(1, 3))  # (B, L) moving points
        counted = mask.float().sum(dim=(1, 3)).clamp_min(1.0)
        token_mask = moving / counted >= cfg.usage_moving_share
    if cfg.usage_weight > 0:
        usage, usage_parts = codebook_usage_loss(
            out.level_pos, out.levels, cfg.usage_temperature, cfg.usage_sample_weight, token_mask
        )
        loss = recon + cfg.usage_weight * usage
    else:
        with torch.no_grad():
            usage, usage_parts = codebook_usage_loss(
                out.level_pos, out.levels, cfg.usage_temperature, cfg.usage_sample_weight, token_mask
            )
        loss = recon

    parts = {
        "loss": loss.detach(),
        "recon": recon.detach(),
        "usage": usage.detach(),
        **usage_parts,
        "counted_fraction": mask.float().mean(),
    }
    return loss, parts

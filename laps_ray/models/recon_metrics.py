"""Reconstruction measures of the motion tokenizer, as AMPLIFY reports them.

The decoder predicts, per point and step, an integer-pixel displacement class
(:func:`laps_ray.models.losses.displacement_classes`). These measures compare its argmax with the
tracked motion:

* ``accuracy``: argmax class = target class, over every counted step;
* ``accuracy_moving``: the same on steps whose *true* (float) displacement is ≥ ``moving_px`` (0.5 px),
  the number a model that always answers "no motion" cannot fake;
* ``accuracy_moving_ceiling``: what ``accuracy_moving`` would be for a decoder that knew each moving
  step's exact (float) displacement and rounded it. The target is the difference of the *rounded
  positions*, so it also depends on where inside its pixel the point started, which velocities do
  not carry: a point moving 2.3 px per step is labelled 2 or 3 px depending on that phase. This is
  the scale ``accuracy_moving`` is read against (0.61 on the shipped checkpoint's validation
  videos, foreground input), not a bound no model can pass;
* ``epe_px``: mean endpoint error of one step, in pixels (decoded class vs tracked displacement, so it
  includes the rounding to whole pixels and the saturation beyond ±``rel_grid // 2``);
* ``static_pred_share`` / ``static_true_share``: share of steps predicted as / labelled "no motion"
  (the centre class): a collapsed decoder has a predicted share near 1 whatever the true share;
* ``delta_auc``: AMPLIFY's ΔAUC — positions integrated from the predicted displacements, starting
  at the true first position, compared per coordinate with the tracked positions at every step; the
  share of coordinates within ``k`` px, averaged over ``k = 1 … 10`` (points visible over the whole
  window only);
* ``pixel_accuracy``: the same share at 1 px.

Sums are kept in one float64 vector (:data:`RECON_FIELDS`) so ranks can all-reduce them and an
epoch is a plain sum over batches; :func:`reconstruction_metrics` turns a sum into the measures.
Shape letters: B batch, V views, T frames, L = T-1 steps, N points, C classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from laps_ray.models.losses import centre_class, offset_classes

DAUC_TOLERANCES_PX = tuple(range(1, 11))
RECON_FIELDS = (
    "steps",
    "correct",
    "moving_steps",
    "moving_correct",
    "moving_rounded_correct",
    "epe_sum",
    "pred_static",
    "true_static",
    "coords",
    *(f"within_{k}px" for k in DAUC_TOLERANCES_PX),
)
RECON_METRIC_KEYS = (
    "accuracy",
    "accuracy_moving",
    "accuracy_moving_ceiling",
    "epe_px",
    "static_pred_share",
    "static_true_share",
    "delta_auc",
    "pixel_accuracy",
)


def classes_to_displacement(classes: Tensor, rel_grid: int) -> Tensor:
    """Displacement classes → integer pixel displacement (dx, dy).

    Inverse of :func:`laps_ray.models.losses.displacement_classes` on its ±``rel_grid // 2`` window:
    ``class = (dy + h) · rel_grid + (dx + h)``.

    Returns:
        float32 ``(..., 2)`` (dx, dy) in pixels.
    """
    half = rel_grid // 2
    dy = torch.div(classes, rel_grid, rounding_mode="floor") - half
    dx = classes % rel_grid - half
    return torch.stack([dx, dy], dim=-1).float()


@torch.no_grad()
def reconstruction_sums(
    rel_logits: Tensor,
    targets: Tensor,
    vel: Tensor,
    px_per_unit: Tensor,
    vis: Tensor,
    rel_grid: int,
    moving_px: float = 0.5,
) -> Tensor:
    """Sums behind the reconstruction measures for one batch.

    A step counts when its target is a class (not lost) and the point is visible at both ends.

    Args:
        rel_logits: ``(B, V, L, N, C)`` decoder logits.
        targets: ``(B, V, L, N)`` int64 target classes (``-1``: lost track).
        vel: ``(B, V, L, N, 2)`` normalised velocities (the model input).
        px_per_unit: ``(B, 2)`` pixels per velocity unit (x, y).
        vis: ``(B, V, T, N)`` bool visibility.
        rel_grid: classes per axis.
        moving_px: a step "moves" when its true displacement is at least this many pixels.

    Returns:
        float64 ``(len(RECON_FIELDS),)`` on the logits' device.
    """
    pred_cls = rel_logits.argmax(-1)
    centre = centre_class(rel_grid)
    step_vis = vis[..., 1:, :] & vis[..., :-1, :]
    counted = step_vis & (targets >= 0)
    true_d = vel.float() * px_per_unit[:, None, None, None, :].float()  # (B, V, L, N, 2) px
    pred_d = classes_to_displacement(pred_cls, rel_grid)
    moving = counted & (torch.linalg.vector_norm(true_d, dim=-1) >= moving_px)
    correct = (pred_cls == targets) & counted
    rounded_cls = offset_classes(true_d.round(), rel_grid)
    epe = torch.linalg.vector_norm(pred_d - true_d, dim=-1)

    # ΔAUC on integrated positions: both start at the true first position, so the error at step t
    # is the difference of the cumulative displacements. Only points visible over the whole window.
    whole = vis.all(dim=-2)  # (B, V, N)
    err = (pred_d.cumsum(dim=-3) - true_d.cumsum(dim=-3)).abs()  # (B, V, L, N, 2)
    err = err.permute(0, 1, 3, 2, 4)[whole]  # (P, L, 2)
    within = [(err < k).sum() for k in DAUC_TOLERANCES_PX]

    vals = [
        counted.sum(),
        correct.sum(),
        moving.sum(),
        (correct & moving).sum(),
        ((rounded_cls == targets) & moving).sum(),
        (epe * counted).sum(),
        ((pred_cls == centre) & counted).sum(),
        ((targets == centre) & counted).sum(),
        torch.tensor(err.numel(), device=rel_logits.device),
        *within,
    ]
    return torch.stack([v.to(torch.float64) for v in vals])


def reconstruction_metrics(sums: Sequence[float] | Tensor, prefix: str = "") -> dict[str, float]:
    """The measures (see module docstring) from a sum of :func:`reconstruction_sums` vectors.

    Args:
        sums: ``(len(RECON_FIELDS),)`` sums.
        prefix: key prefix, e.g. ``"val/"``.

    Returns:
        ``{prefix + key: value}`` for :data:`RECON_METRIC_KEYS`; NaN where nothing was counted.
    """
    s = dict(zip(RECON_FIELDS, [float(v) for v in (sums.tolist() if isinstance(sums, Tensor) else sums)]))
    if len(s) != len(RECON_FIELDS):
        raise ValueError(f"expected {len(RECON_FIELDS)} sums, got {len(s)}")

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    coords = s["coords"]
    accs = [ratio(s[f"within_{k}px"], coords) for k in DAUC_TOLERANCES_PX]
    out = {
        "accuracy": ratio(s["correct"], s["steps"]),
        "accuracy_moving": ratio(s["moving_correct"], s["moving_steps"]),
        "accuracy_moving_ceiling": ratio(s["moving_rounded_correct"], s["moving_steps"]),
        "epe_px": ratio(s["epe_sum"], s["steps"]),
        "static_pred_share": ratio(s["pred_static"], s["steps"]),
        "static_true_share": ratio(s["true_static"], s["steps"]),
        "delta_auc": sum(accs) / len(accs) if coords > 0 else float("nan"),
        "pixel_accuracy": accs[0],
    }
    return {f"{prefix}{k}": v for k, v in out.items()}

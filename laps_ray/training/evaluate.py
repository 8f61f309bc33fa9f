"""Reconstruction measures of any tokenizer checkpoint on any point tracks (no training, no Ray).

:func:`evaluate_windows` runs the same eval step and sums as a training run's validation
(:func:`laps_ray.training.steps.eval_step`, :class:`~laps_ray.training.steps.MetricSums`), so a
checkpoint scored here and the ``val/*`` line of its training run agree on the same windows. The
``evaluate_tokenizer`` job and ``benchmarks/tokenizer_quality.py`` use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from laps_ray.models.losses import TokenizerLossConfig
from laps_ray.models.tokenizer import MotionTokenizer
from laps_ray.training.data import WindowArrays, check_model_fits, window_arrays
from laps_ray.training.steps import MetricSums, eval_step


@torch.no_grad()
def evaluate_windows(
    model: MotionTokenizer,
    arrays: WindowArrays,
    batch_size: int = 64,
    loss_cfg: TokenizerLossConfig | None = None,
    prefix: str = "eval",
) -> dict[str, Any]:
    """Loss, reconstruction measures and codebook use of ``model`` on ``arrays``.

    Returns:
        ``{prefix}/loss``, ``/accuracy``, ``/accuracy_moving``, ``/epe_px``, ``/delta_auc``,
        ``/pixel_accuracy``, ``/static_pred_share``, ``/static_true_share``, ``/unique_codes``,
        ``/usage_ratio`` (against the true code count), ``/perplexity``, ... (see ``MetricSums``).
    """
    cfg = model.cfg
    check_model_fits(arrays, cfg.num_views, cfg.T, cfg.num_points)
    device = next(model.parameters()).device
    sums = MetricSums(model.true_codebook_size, device)
    loss_cfg = loss_cfg or TokenizerLossConfig()
    for start in range(0, len(arrays), batch_size):
        idx = range(start, min(start + batch_size, len(arrays)))
        batch = arrays.batch(list(idx), device)
        sums.add(eval_step(model, batch, loss_cfg, cfg.rel_grid), len(idx))
    out = sums.result(prefix)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def evaluate_tracks(
    model: MotionTokenizer, files: Sequence[Path], views: Sequence[str] | None = None, batch_size: int = 64
) -> dict[str, Any]:
    """:func:`evaluate_windows` on every window of the track ``files``."""
    from laps_ray.io.track_store import load_windows

    arrays = window_arrays(
        load_windows(list(files), views or None), model.cfg.rel_grid, model.cfg.motion_input
    )
    return evaluate_windows(model, arrays, batch_size)

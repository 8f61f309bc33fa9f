"""Reconstruction measures (AMPLIFY's) on hand-built tracks with values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from laps_ray.core.windows import normalized_velocities
from laps_ray.models.losses import displacement_classes
from laps_ray.models.recon_metrics import RECON_FIELDS, reconstruction_metrics, reconstruction_sums

H, W = 96, 128
CENTRE = 7 * 15 + 7


def _batch(tracks: np.ndarray, vis: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """(B, V, T, N, 2) pixel tracks → the tensors a step sees."""
    b, v, t, n, _ = tracks.shape
    return {
        "vel": torch.from_numpy(normalized_velocities(tracks, H, W)).float(),
        "targets": displacement_classes(torch.from_numpy(tracks), 15),
        "px_per_unit": torch.tensor([[W / 2, H / 2]] * b),
        "vis": torch.ones(b, v, t, n, dtype=torch.bool) if vis is None else torch.from_numpy(vis),
    }


def _metrics(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    sums = reconstruction_sums(logits, batch["targets"], batch["vel"], batch["px_per_unit"], batch["vis"], 15)
    assert sums.shape == (len(RECON_FIELDS),)
    return reconstruction_metrics(sums)


def _line(step_px: tuple[float, float], t: int = 16) -> np.ndarray:
    """One point moving by ``step_px`` per frame: (1, 1, T, 1, 2)."""
    pos = np.array([40.0, 30.0]) + np.arange(t)[:, None] * np.array(step_px)
    return pos[None, None, :, None, :]


def test_perfect_prediction_scores_one_and_no_error():
    rng = np.random.default_rng(0)
    steps = rng.integers(-3, 4, size=(2, 1, 15, 6, 2)).astype(np.float64)
    steps[:, :, :, :3] = 0  # half the points rest
    start = rng.integers(30, 50, size=(2, 1, 1, 6, 2)).astype(np.float64)
    tracks = np.concatenate([start, start + np.cumsum(steps, axis=2)], axis=2)
    batch = _batch(tracks)
    m = _metrics(torch.nn.functional.one_hot(batch["targets"], 225).float(), batch)
    assert m["accuracy"] == 1.0 and m["accuracy_moving"] == 1.0
    assert m["epe_px"] == pytest.approx(0.0, abs=1e-4)
    assert m["delta_auc"] == pytest.approx(1.0) and m["pixel_accuracy"] == pytest.approx(1.0)
    true_static = float((batch["targets"] == CENTRE).float().mean())
    assert m["static_true_share"] == pytest.approx(true_static) == m["static_pred_share"]


def test_a_decoder_that_always_answers_no_motion_is_exposed():
    tracks = np.concatenate([_line((2.0, 0.0)), _line((0.0, 0.0))], axis=3)  # one mover, one rest
    batch = _batch(tracks)
    still = torch.nn.functional.one_hot(torch.full_like(batch["targets"], CENTRE), 225).float()
    m = _metrics(still, batch)
    assert m["accuracy"] == pytest.approx(0.5)  # = the share of resting steps, as in the shipped model
    assert m["accuracy_moving"] == 0.0
    assert m["static_pred_share"] == 1.0 and m["static_true_share"] == pytest.approx(0.5)
    assert m["epe_px"] == pytest.approx(1.0)  # 2 px on half the steps


def test_integrated_error_and_delta_auc_worked_by_hand():
    # True motion +2 px/step in x; predicted +3 px/step: the integrated x error at step t is t px,
    # y is exact. 15 steps x 2 coordinates = 30; within k px (strictly below): 15 y + (k - 1) x.
    batch = _batch(_line((2.0, 0.0)))
    pred = torch.full_like(batch["targets"], CENTRE + 3)
    m = _metrics(torch.nn.functional.one_hot(pred, 225).float(), batch)
    assert m["epe_px"] == pytest.approx(1.0)
    assert m["accuracy"] == 0.0 and m["accuracy_moving"] == 0.0
    assert m["pixel_accuracy"] == pytest.approx(15 / 30)
    assert m["delta_auc"] == pytest.approx(np.mean([(15 + k - 1) / 30 for k in range(1, 11)]))


def test_moving_means_a_true_displacement_of_half_a_pixel_or_more():
    # 0.4 px/step: the rounded target moves now and then, but the step does not "move".
    batch = _batch(np.concatenate([_line((0.4, 0.0)), _line((0.6, 0.0))], axis=3))
    perfect = torch.nn.functional.one_hot(batch["targets"], 225).float()
    sums = reconstruction_sums(
        perfect, batch["targets"], batch["vel"], batch["px_per_unit"], batch["vis"], 15
    )
    s = dict(zip(RECON_FIELDS, sums.tolist()))
    assert s["steps"] == 30 and s["moving_steps"] == 15


def test_ceiling_is_the_rounded_true_displacement_and_a_model_can_pass_it():
    # 2.4 px/step from x = 40.2: rounded positions 40 43 45 47 50 52 55 57 59 62 64 67 69 71 74 76,
    # so the targets are 3 2 2 3 2 3 2 2 3 2 3 2 2 3 2 px. Rounding the true 2.4 gives 2: right on 9 of 15.
    line = _line((2.4, 0.0)) + np.array([0.2, 0.0])
    batch = _batch(line)
    assert (batch["targets"] - CENTRE).flatten().tolist() == [3, 2, 2, 3, 2, 3, 2, 2, 3, 2, 3, 2, 2, 3, 2]
    rounded = torch.nn.functional.one_hot(torch.full_like(batch["targets"], CENTRE + 2), 225).float()
    m = _metrics(rounded, batch)
    assert m["accuracy_moving_ceiling"] == pytest.approx(9 / 15) == m["accuracy_moving"]
    # a decoder that also knows where in its pixel the point started gets every step right
    perfect = _metrics(torch.nn.functional.one_hot(batch["targets"], 225).float(), batch)
    assert perfect["accuracy_moving"] == 1.0 and perfect["accuracy_moving_ceiling"] == pytest.approx(9 / 15)


def test_invisible_points_do_not_count_and_sums_add_up():
    tracks = np.concatenate([_line((2.0, 1.0)), _line((0.0, 0.0)), _line((-1.0, 0.0))], axis=3)
    vis = np.ones((1, 1, 16, 3), bool)
    vis[0, 0, 5, 2] = False  # point 2 unseen in frame 5: steps 4 and 5 drop, and it leaves ΔAUC
    batch = _batch(tracks, vis)
    pred = torch.nn.functional.one_hot(torch.full_like(batch["targets"], CENTRE), 225).float()
    s = dict(zip(RECON_FIELDS, reconstruction_sums(
        pred, batch["targets"], batch["vel"], batch["px_per_unit"], batch["vis"], 15).tolist()))  # fmt: skip
    assert s["steps"] == 45 - 2 and s["coords"] == 2 * 15 * 2
    # two batches summed = the metrics of both together
    a = reconstruction_sums(pred, batch["targets"], batch["vel"], batch["px_per_unit"], batch["vis"], 15)
    both = reconstruction_metrics(a + a)
    assert both == pytest.approx(reconstruction_metrics(a))

"""CUDA inference (skipped without a GPU): the tokenizer forward (``models.inference.tokenize``) with
and without AMP, and the CoTracker adapter on ``device=cuda`` with the stand-in hub directory.

Tolerances against the CPU (float32, the reference every CPU tier checks):

* float32 on CUDA: latents within 1e-4 (absolute; they are O(1), |z| < 4 here): only the summation
  order of the GEMMs differs (PyTorch keeps TF32 off for matmuls by default); >= 99 % of the code
  ids equal (an id flips only where a latent lies within that error of an FSQ rounding edge).
* fp16 autocast (``amp=True``): latents within 1e-2. fp16 keeps 11 significant bits (relative
  rounding 4.9e-4); the same forward under fp16 autocast on the CPU differs from float32 by 1.4e-3 at
  most (measured on this model and input), bfloat16 (8 bits) by 1.2e-2, so 1e-2 holds fp16 with a
  7x margin. >= 95 % of the code ids equal (fp16 on the CPU: 100 %, bfloat16: 97.4 %).
* Two runs on the same device with the same batch shape are bit-identical (the inference path fixes
  the batch shape; ``models/inference.py`` promises reproducibility per device, not CPU equality).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    FAKE_GAIN,
    check_offline_adapter,
    check_online_adapter,
    needs_cuda,
    tiny_checkpoint,
    write_cotracker_checkpoint,
    write_fake_hub,
)

from laps_ray.io.checkpoints import load_tokenizer
from laps_ray.models.inference import tokenize
from laps_ray.tracking import TrackerConfig, make_tracker

pytestmark = needs_cuda

WINDOWS, BATCH = 40, 16  # three forward calls, the last one zero-padded
TOLERANCE = {False: (1e-4, 0.99), True: (1e-2, 0.95)}  # amp -> (atol of z and zq, share of equal ids)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tok") / "tok")  # 400 points, T=16


@pytest.fixture(scope="module")
def velocities() -> np.ndarray:
    """(40, 15, 400, 2) normalised velocities of the size real windows have (~0.02 per step)."""
    return np.random.default_rng(0).normal(0, 0.02, (WINDOWS, 15, 400, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def on_cpu(checkpoint, velocities):
    model, _ = load_tokenizer(checkpoint, "cpu")
    return tokenize(model, velocities, BATCH)


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "amp"])
def test_tokenize_on_cuda_repeats_exactly_and_stays_close_to_cpu(checkpoint, velocities, on_cpu, amp):
    model, _ = load_tokenizer(checkpoint, "cuda")
    assert next(model.parameters()).device.type == "cuda"
    first = tokenize(model, velocities, BATCH, amp=amp)
    second = tokenize(model, velocities, BATCH, amp=amp)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)  # same device, same batch shape: the same bits
    z, zq, ids = first
    z_cpu, zq_cpu, ids_cpu = on_cpu
    assert z.shape == z_cpu.shape and zq.shape == zq_cpu.shape and ids.shape == ids_cpu.shape
    assert z.dtype == zq.dtype == np.float32 and ids.dtype == np.int64
    atol, share = TOLERANCE[amp]
    np.testing.assert_allclose(z, z_cpu, atol=atol, rtol=0)
    same = ids == ids_cpu
    assert same.mean() >= share, f"{same.mean():.3f} of the code ids equal the CPU's"
    np.testing.assert_allclose(zq[same], zq_cpu[same], atol=atol, rtol=0)


def test_amp_really_runs_the_encoder_in_half_precision(checkpoint, velocities, on_cpu):
    """``amp=True`` changes the arithmetic (fp16 autocast): its distance to the CPU result is far above
    float32's, which is only summation order."""
    model, _ = load_tokenizer(checkpoint, "cuda")
    err = {
        amp: float(np.abs(tokenize(model, velocities, BATCH, amp=amp)[0] - on_cpu[0]).max()) for amp in (0, 1)
    }
    assert err[1] > max(10 * err[0], 1e-5), err


# ------------------------------------------------------------------------------------------ CoTracker


def _tracker(tmp_path, name: str, **kw):
    hub = write_fake_hub(tmp_path / "co-tracker")
    ckpt = write_cotracker_checkpoint(tmp_path / "weights.pth", "model_wrapped")
    cfg = TrackerConfig(name=name, grid=4, hub_dir=str(hub), checkpoint=str(ckpt), device="cuda", **kw)
    tracker = make_tracker(cfg)
    gain = tracker.model.model.gain
    assert tracker.device.type == "cuda" and gain.device.type == "cuda"  # the weights moved to the GPU
    np.testing.assert_array_equal(gain.detach().cpu().numpy(), FAKE_GAIN)  # the checkpoint was applied
    return tracker


@pytest.mark.parametrize("amp", [True, False])
def test_cotracker_offline_adapter_on_cuda(tmp_path, amp):
    tracker = _tracker(tmp_path, "cotracker3_offline", batch_windows=2, amp=amp)
    calls = check_offline_adapter(tracker)  # the CPU tests' checks, tracks within 1e-4 px
    # frames reached the model on the GPU, under autocast exactly when amp is on
    assert all(c["device"] == "cuda" and c["autocast"] is amp for c in calls)


def test_cotracker_online_adapter_on_cuda(tmp_path):
    calls = check_online_adapter(_tracker(tmp_path, "cotracker3_online"))
    assert all(c["device"] == "cuda" for c in calls)

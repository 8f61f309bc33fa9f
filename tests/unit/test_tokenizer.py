"""Motion tokenizer: FSQ level table, model shapes and causality, losses, codebook metrics, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from laps_ray.config import ConfigError
from laps_ray.core.codebook import CodebookAccumulator, codebook_stats, collapse_warning
from laps_ray.core.windows import normalized_velocities
from laps_ray.io.checkpoints import (
    CheckpointError,
    checkpoint_sha256,
    load_tokenizer,
    load_train_state,
    read_meta,
    save_tokenizer,
    save_train_state,
)
from laps_ray.models.fsq_levels import levels_for_codebook_size, true_codebook_size
from laps_ray.models.losses import (
    TokenizerLossConfig,
    codebook_usage_loss,
    displacement_classes,
    radial_class_weights,
    tokenizer_loss,
)
from laps_ray.models.tokenizer import MotionTokenizer
from laps_ray.models.tokenizer_config import TokenizerConfig, named_config

PAPER_PARAMS = 30_232_805  # the original LAPS tokenizer (reference §1.7)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is faster and does not spin against other workers on 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny(**overrides) -> MotionTokenizer:
    torch.manual_seed(0)
    return MotionTokenizer(named_config("tiny", **overrides))


def _rigid_tracks(batch: int, views: int = 1, points: int = 16, seed: int = 0) -> torch.Tensor:
    """Pixel tracks (B, V, 16, N, 2) where all points of a window share an integer step per frame."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randint(-4, 5, (batch, views, 15, 1, 2), generator=g).float()
    start = torch.rand(batch, views, 1, points, 2, generator=g) * 60 + 20
    return torch.cat([start, start + torch.cumsum(steps, dim=2).expand(-1, -1, -1, points, -1)], dim=2)


def _velocities(tracks: torch.Tensor, size: int = 100) -> torch.Tensor:
    return torch.from_numpy(normalized_velocities(tracks.numpy(), size, size))


# ---------------------------------------------------------------------------------------------- FSQ


def test_level_table_and_true_sizes():
    expected = {
        16: ([5, 3], 15),
        64: ([8, 8], 64),
        256: ([8, 6, 5], 240),
        512: ([8, 8, 8], 512),
        1024: ([8, 5, 5, 5], 1000),
        2048: ([8, 8, 6, 5], 1920),
        4096: ([7, 5, 5, 5, 5], 4375),
    }
    for nominal, (levels, true) in expected.items():
        assert levels_for_codebook_size(nominal) == levels
        assert true_codebook_size(nominal) == true


def test_unknown_codebook_size_lists_valid_sizes():
    with pytest.raises(ValueError, match=r"valid sizes are \[16, 64, 256, 512, 1024, 2048, 4096\]"):
        levels_for_codebook_size(1000)
    with pytest.raises(ConfigError, match="codebook_size"):
        TokenizerConfig(codebook_size=128)


def test_fsq_ids_round_trip():
    model = _tiny().eval()
    fsq = model.fsq
    k = model.true_codebook_size
    assert k == 1920
    # every id → its normalised code → back to the same id (mixed radix, first level fastest)
    assert torch.equal(fsq.codes_to_indices(fsq.implicit_codebook).long(), torch.arange(k))
    level_idx = torch.stack([torch.arange(k) % 8, torch.arange(k) // 8 % 8, torch.arange(k) // 64 % 6], -1)
    assert torch.equal(fsq.indices_to_level_indices(torch.arange(k))[:, :3].long(), level_idx)
    # quantize → ids → codes reproduces zq; our pre-rounding level positions give FSQ's ids
    z = torch.randn(4, 15, 16) * 3
    zq, ids = model.quantize(z)
    assert ids.dtype == torch.int64 and ids.shape == (4, 15) and int(ids.max()) < k
    torch.testing.assert_close(model.ids_to_codes(ids), zq)
    basis = torch.tensor([1, 8, 64, 384])
    assert torch.equal((model.level_positions(z).round().long() * basis).sum(-1), ids)


# -------------------------------------------------------------------------------------------- model


def test_config_validation_names_key():
    with pytest.raises(ConfigError, match="num_heads"):
        TokenizerConfig(hidden_dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="input_order"):
        TokenizerConfig(input_order="yx")
    with pytest.raises(ConfigError, match="point_order"):
        TokenizerConfig(num_points=10, point_order="col_major")
    with pytest.raises(ValueError, match="valid names"):
        named_config("huge")


@pytest.mark.parametrize("views", [1, 2])
def test_shapes(views):
    model = _tiny(num_views=views).eval()
    vel = torch.randn(3, views, 15, 16, 2) * 0.05
    z = model.encode(vel)
    assert z.shape == (3, 15, 16)
    zq, ids = model.quantize(z)
    assert zq.shape == (3, 15, 16) and ids.shape == (3, 15) and ids.dtype == torch.int64
    logits = model.decode(zq)
    assert logits.shape == (3, views, 15, 16, 225)
    out = model(vel)
    assert out.rel_logits.shape == logits.shape and out.level_pos.shape == (3, 15, 4)
    assert out.levels == (8, 8, 6, 5)
    torch.testing.assert_close(out.z, z)
    assert torch.equal(out.ids, ids)


def test_rejects_positions_instead_of_velocities():
    model = _tiny()
    with pytest.raises(ValueError, match="L=T-1=15"):
        model.encode(torch.zeros(2, 1, 16, 16, 2))


def test_encoder_is_causal():
    model = _tiny(num_layers=2).eval()
    vel = torch.randn(2, 1, 15, 16, 2) * 0.05
    changed = vel.clone()
    changed[:, :, 10] += 1.0
    z, z2 = model.encode(vel), model.encode(changed)
    torch.testing.assert_close(z[:, :10], z2[:, :10])
    assert not torch.allclose(z[:, 10:], z2[:, 10:])


def test_input_and_point_order_are_internal_layouts():
    """'rc'/'col_major' weights see swapped channels / transposed grid; outputs stay in our order."""
    vel = torch.randn(2, 1, 15, 16, 2) * 0.05
    base = _tiny().eval()
    swapped = MotionTokenizer(named_config("tiny", input_order="rc", point_order="col_major")).eval()
    swapped.load_state_dict(base.state_dict())
    perm = torch.arange(16).reshape(4, 4).t().reshape(-1)
    torch.testing.assert_close(swapped.encode(vel), base.encode(vel.flip(-1)[..., perm, :]))
    zq, _ = base.quantize(base.encode(vel))
    # base's point j is our point perm[j] for `swapped`
    torch.testing.assert_close(swapped.decode(zq).index_select(3, perm), base.decode(zq))


def test_z_noise_only_in_training():
    model = _tiny(z_noise_std=0.5)
    vel = torch.randn(4, 1, 15, 16, 2) * 0.05
    model.eval()
    a, b = model(vel), model(vel)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.level_pos, b.level_pos)
    model.train()  # tiny has dropout 0, so only the noise differs
    c = model(vel)
    torch.testing.assert_close(c.z, a.z)
    assert not torch.allclose(c.level_pos, a.level_pos)


def test_runs_under_autocast():
    """Mixed precision (bf16 autocast on CPU here; fp16 on CUDA): FSQ still rounds in float32."""
    model = _tiny()
    tracks = _rigid_tracks(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_velocities(tracks))
        loss, _ = tokenizer_loss(out, displacement_classes(tracks), cfg=TokenizerLossConfig(usage_weight=0.1))
    assert out.rel_logits.dtype == torch.bfloat16 and out.level_pos.dtype == torch.float32
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.in_proj.weight.grad.abs().sum() > 0


def test_paper_parameter_count():
    assert MotionTokenizer(named_config("paper")).num_parameters() == PAPER_PARAMS


def test_tiny_overfits_one_batch():
    torch.manual_seed(0)
    model = _tiny()
    tracks = _rigid_tracks(8)
    vel, targets = _velocities(tracks), displacement_classes(tracks)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss, _ = tokenizer_loss(model(vel), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] <= 0.5 * losses[0], losses[::10]


# ------------------------------------------------------------------------------------------ targets


def test_displacement_classes_by_hand():
    # one view, 3 frames, 5 points: (x, y) pixel tracks
    t0 = [[10, 10], [10, 10], [10, 10], [10.4, 20.4], [0, 0]]
    t1 = [[10, 10], [11, 10], [10, 11], [10.6, 19.6], [30, -30]]
    t2 = [[10, 10], [11, 10], [float("nan"), 11], [10.6, 19.6], [30, -30]]
    tracks = torch.tensor([[[t0, t1, t2]]], dtype=torch.float32)  # (1, 1, 3, 5, 2)
    cls = displacement_classes(tracks)
    assert cls.shape == (1, 1, 2, 5) and cls.dtype == torch.int64
    # static 112; +1 px in x → 113; +1 px in y → 127; rounding 10.4→10, 10.6→11 (dx +1), 20.4→20,
    # 19.6→20 (dy 0) → 113; (+30, -30) saturates to (+7, -7) → (0 * 15) + 14 = 14
    assert cls[0, 0, 0].tolist() == [112, 113, 127, 113, 14]
    assert cls[0, 0, 1].tolist() == [112, 112, -1, 112, 112]  # NaN endpoint → ignored (-1)
    # clamping to the frame: x 0 → 30 becomes 0 → 4 in a 5-px-wide frame (dx +4), y -30 → 0 (dy 0)
    assert displacement_classes(tracks, height=10, width=5)[0, 0, 0, 4].item() == (0 + 7) * 15 + (4 + 7)
    assert displacement_classes(tracks, rel_grid=5)[0, 0, 0, 4].item() == 4  # ±2 grid: (dy -2, dx +2)


# ---------------------------------------------------------------------------------------------- loss


def _output_with_logits(logits: torch.Tensor, model: MotionTokenizer):
    out = model(torch.zeros(logits.shape[0], 1, 15, 16, 2))
    return out._replace(rel_logits=logits)


def test_radial_weights_by_hand():
    w = radial_class_weights(15, strength=4.0, power=2.0)
    assert w.shape == (225,)
    assert w[112].item() == pytest.approx(1.0)  # centre
    assert w[0].item() == pytest.approx(5.0) and w[224].item() == pytest.approx(5.0)  # corners
    assert w[7 * 15 + 14].item() == pytest.approx(3.0)  # (dy 0, dx +7): (7 / 7√2)² = 0.5


def test_ce_focal_radial_and_visibility_by_hand():
    model = _tiny().eval()
    logits = torch.zeros(1, 1, 15, 16, 225)  # uniform: p_t = 1/225 everywhere
    targets = torch.full((1, 1, 15, 16), 112)
    targets[..., 0] = 0  # one corner target per step
    out = _output_with_logits(logits, model)
    ln = math.log(225.0)
    loss, parts = tokenizer_loss(out, targets)
    assert loss.item() == pytest.approx(ln, rel=1e-5)
    assert parts["recon"].item() == pytest.approx(ln, rel=1e-5)

    focal = TokenizerLossConfig(focal=True, focal_gamma=4.0, focal_alpha=0.5)
    loss, _ = tokenizer_loss(out, targets, cfg=focal)
    assert loss.item() == pytest.approx(0.5 * (1 - 1 / 225) ** 4 * ln, rel=1e-5)

    radial = TokenizerLossConfig(radial_weight_strength=4.0)
    loss, _ = tokenizer_loss(out, targets, cfg=radial)
    assert loss.item() == pytest.approx((15 * 1.0 + 1 * 5.0) / 16 * ln, rel=1e-5)

    # visibility: only point 0 (the corner target) visible in both frames of each step → weight 5 only
    vis = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    vis[..., 0] = True
    loss, parts = tokenizer_loss(out, targets, vis=vis, cfg=radial)
    assert loss.item() == pytest.approx(5.0 * ln, rel=1e-5)
    assert parts["counted_fraction"].item() == pytest.approx(1 / 16)
    # a correct, confident prediction has ~0 loss
    sharp = torch.nn.functional.one_hot(targets, 225).float() * 50
    loss, parts = tokenizer_loss(_output_with_logits(sharp, model), targets)
    assert loss.item() < 1e-6


def test_usage_regulariser_has_encoder_gradient():
    model = _tiny()
    tracks = _rigid_tracks(4)
    out = model(_velocities(tracks))
    usage, _ = codebook_usage_loss(out.level_pos, out.levels)
    usage.backward()
    assert model.in_proj.weight.grad is not None and model.in_proj.weight.grad.abs().sum() > 0
    # ... whereas an entropy of the integer ids (the original's "diversity" term) is not differentiable
    assert not out.ids.requires_grad and not out.ids.is_floating_point()
    # through tokenizer_loss: the usage weight changes the encoder gradient
    grads = []
    for weight in (0.0, 1.0):
        model.zero_grad()
        loss, _ = tokenizer_loss(model(_velocities(tracks)), displacement_classes(tracks),
                                 cfg=TokenizerLossConfig(usage_weight=weight))  # fmt: skip
        loss.backward()
        grads.append(model.in_proj.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_usage_term_restricted_to_moving_tokens_leaves_static_windows_alone():
    """The measured failure (configs/train_tokenizer.yaml): a usage term over every token spreads
    static windows over many codes. With ``usage_moving_share`` its gradient reaches moving tokens
    only: static windows' FSQ positions get no push at all."""
    model = _tiny()
    out = model(torch.randn(4, 1, 15, 16, 2) * 0.01)
    level_pos = torch.rand(4, 15, len(out.levels), requires_grad=True)
    out = out._replace(level_pos=level_pos, rel_logits=out.rel_logits.detach())
    targets = torch.full((4, 1, 15, 16), 112)  # windows 0, 1 static ("no motion" everywhere)
    targets[2:, :, :, :8] = 113  # windows 2, 3: half the points move by +1 px in x at every step
    grads = {}
    for share in (0.0, 0.1):
        level_pos.grad = None
        loss, parts = tokenizer_loss(
            out, targets, cfg=TokenizerLossConfig(usage_weight=1.0, usage_moving_share=share)
        )
        loss.backward()
        g = level_pos.grad.abs().sum(dim=(1, 2))  # per window
        grads[share] = g
        assert torch.isfinite(parts["usage"])
    assert (grads[0.0][:2] > 0).all() and (grads[0.0][2:] > 0).all()  # every token pushed
    assert (grads[0.1][:2] == 0).all() and (grads[0.1][2:] > 0).all()  # only the moving ones
    # a batch without a moving token: zero usage, still a valid graph
    level_pos.grad = None
    only = TokenizerLossConfig(usage_weight=1.0, usage_moving_share=0.1)
    loss, parts = tokenizer_loss(out, torch.full((4, 1, 15, 16), 112), cfg=only)
    loss.backward()
    assert float(parts["usage"]) == 0.0 and float(level_pos.grad.abs().sum()) == 0.0


def test_usage_regulariser_spreads_collapsed_codes():
    torch.manual_seed(0)
    model = MotionTokenizer(named_config("tiny"))
    with torch.no_grad():  # collapse: FSQ inputs ≈ 0 → every token gets the same code
        model.fsq.project_in.weight.mul_(0.01)
        model.fsq.project_in.bias.zero_()
    vel = torch.randn(64, 1, 15, 16, 2) * 0.05
    before = model.quantize(model.encode(vel))[1].unique().numel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss, _ = codebook_usage_loss(model.level_positions(model.encode(vel)), model.levels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        ids = model.quantize(model.encode(vel))[1]
    assert before == 1
    after = codebook_stats(ids, model.true_codebook_size)
    assert after["unique_codes"] >= 20 and after["perplexity"] > 10


# ----------------------------------------------------------------------------------- codebook health


def test_codebook_stats_uniform_and_collapsed():
    k = true_codebook_size(2048)
    uniform = codebook_stats(torch.arange(k).repeat(3), k, prefix="train")
    assert uniform["train/perplexity"] == pytest.approx(k, rel=1e-9)
    assert uniform["train/entropy_norm"] == pytest.approx(1.0)
    assert uniform["train/dead_code_ratio"] == 0.0 and uniform["train/unique_codes"] == k
    collapsed = codebook_stats(torch.full((100, 15), 7), k)
    assert collapsed["perplexity"] == pytest.approx(1.0)
    assert collapsed["entropy_norm"] == pytest.approx(0.0)
    assert collapsed["dead_code_ratio"] == pytest.approx((k - 1) / k)  # against 1920, not 2048
    with pytest.raises(ValueError, match="1920"):
        codebook_stats(torch.tensor([1920]), k)


def test_accumulator_and_collapse_warning():
    k = 1920
    acc = CodebookAccumulator(k)
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.integers(0, k, size=(8, 15))) for _ in range(5)]
    for b in batches:
        acc.update(b)
    assert acc.stats() == codebook_stats(torch.cat(batches), k)
    other = CodebookAccumulator(k)
    other.update(torch.tensor([0, 1]))
    acc.merge(other)
    assert acc.stats()["num_ids"] == 5 * 8 * 15 + 2

    healthy = codebook_stats(torch.arange(k), k, prefix="train")
    low = codebook_stats(torch.arange(50), k, prefix="train")  # 50 < 5 % of 1920 = 96
    assert collapse_warning([healthy, low], prefix="train") is None  # one low epoch only
    msg = collapse_warning([healthy, low, low], prefix="train")
    assert msg is not None and "1920" in msg and "train/unique_codes" in msg
    assert collapse_warning([low, healthy], prefix="train") is None
    acc.reset()
    assert acc.stats()["unique_codes"] == 0


# --------------------------------------------------------------------------------------- checkpoints


def test_save_load_identical_outputs(tmp_path):
    model = _tiny(num_points=16).eval()
    cfg = model.cfg
    ckpt = save_tokenizer(tmp_path / "ckpt", model, cfg, meta={"step": 12, "metrics": {"val/loss": 1.5}})
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.yaml", "meta.json", "model.safetensors"]
    loaded, loaded_cfg = load_tokenizer(ckpt / "model.safetensors")
    assert loaded_cfg == cfg and not loaded.training
    vel = torch.randn(3, 1, 15, 16, 2) * 0.05
    a, b = model(vel), loaded(vel)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.rel_logits, b.rel_logits)
    meta = read_meta(ckpt)
    assert meta["step"] == 12 and meta["num_parameters"] == model.num_parameters()
    assert meta["true_codebook_size"] == 1920 and "torch" in meta["versions"]
    digest = checkpoint_sha256(ckpt)
    assert len(digest) == 64 and digest == checkpoint_sha256(ckpt / "model.safetensors")

    # overwrite in place: still one complete checkpoint, no temp directories left behind
    save_tokenizer(ckpt, model, cfg, meta={"step": 13})
    assert read_meta(ckpt)["step"] == 13
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]

    # a config that does not match the weights is an error naming the file (strict keys/shapes)
    (ckpt / "config.yaml").write_text(
        (ckpt / "config.yaml").read_text().replace("hidden_dim: 16", "hidden_dim: 32")
    )
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_tokenizer(ckpt)


def test_train_state_round_trip(tmp_path):
    model = _tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss, _ = tokenizer_loss(model(torch.zeros(2, 1, 15, 16, 2)), torch.full((2, 1, 15, 16), 112))
    loss.backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "step": 1, "rng": torch.get_rng_state()}
    save_tokenizer(tmp_path / "c", model, model.cfg, train_state=state)
    restored = load_train_state(tmp_path / "c")
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(restored["optimizer"])
    assert restored["step"] == 1
    torch.testing.assert_close(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    with pytest.raises(CheckpointError, match="not a tensor or plain Python value"):
        save_train_state(tmp_path / "bad.pt", {"sched": object()})

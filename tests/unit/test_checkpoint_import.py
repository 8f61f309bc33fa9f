"""Import of original AMPLIFY/LAPS tokenizer checkpoints: key mapping, parity, refusals.

The original-layout state dict and the reference forward below are written from the layer description
in reference/tokenizer_and_paper.md §1-2 (key names as in §2.3) with plain torch ops, independently of
laps_ray's modules, so the parity test checks the mapping, the fused QKV / K/V splits, the channel and
point orders and FSQ's rounding and id convention.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from laps_ray.io.checkpoints import CheckpointError, load_original_checkpoint, load_tokenizer, read_meta
from laps_ray.jobs.import_checkpoint import ImportCheckpointConfig, main, run
from laps_ray.models.original_import import (
    OriginalImportError,
    config_from_original,
    convert_original_state_dict,
)
from laps_ray.models.tokenizer import MotionTokenizer

LEVELS = [8, 8, 6, 5]  # codebook_size 2048


def original_config(hidden: int = 64, tracks: int = 16, layers: int = 2, heads: int = 4) -> dict:
    """A flat Hydra-style config as the original trainer stores it (subset + unrelated keys)."""
    return {
        "batch_size": 8,
        "lr": 1e-4,
        "compile": False,
        "img_shape": [480, 771],
        "cond_cameraviews": ["default"],
        "track_pred_horizon": 16,
        "true_horizon": 16,
        "num_tracks": tracks,
        "type": "transformer",
        "num_heads": heads,
        "num_layers": layers,
        "attn_pdrop": 0.1,
        "point_dim": 2,
        "hidden_dim": hidden,
        "codebook_size": 2048,
        "causal_encoder": True,
        "decoder_mlp_hidden_dim": 32 if hidden < 256 else 256,
        "decoder_pos_scale": 0.2,
        "cond_on_img": False,
        "loss": {"loss_fn": "relative_ce", "rel_cls_img_size": [15, 15], "use_focal": True},
        "per_view": False,
        "z_noise_std": 0.01,
    }


def original_state_dict(cfg: dict, seed: int = 0, fill=None) -> dict[str, torch.Tensor]:
    """State dict in the original key layout (random weights unless ``fill`` makes them constant)."""
    g = torch.Generator().manual_seed(seed)
    d, n, v = cfg["hidden_dim"], cfg["num_tracks"], len(cfg["cond_cameraviews"])
    steps, h, c, k = cfg["track_pred_horizon"] - 1, cfg["decoder_mlp_hidden_dim"], 225, len(LEVELS)

    def w(*shape, std=0.1):
        if fill is not None:
            return torch.full(shape, float(fill))
        return torch.randn(*shape, generator=g) * std

    def ln():
        return 1.0 + w(d, std=0.1)

    sd = {
        "encoder.encoder_proj.weight": w(d, v * n * 2, std=1.0 / math.sqrt(v * n * 2)),
        "encoder.encoder_proj.bias": w(d),
        "encoder.encoder.transformer.pos_emb.weight": w(steps, d),
        "encoder.encoder.transformer.ln_f.weight": ln(),
        "quantize.project_in.weight": w(k, d, std=1.0 / math.sqrt(d)),
        "quantize.project_in.bias": w(k),
        "quantize.project_out.weight": w(d, k),
        "quantize.project_out.bias": w(d),
        "decoder.track_pos_emb.weight": w(n, d, std=1.0),
        "decoder.view_emb.weight": w(v, d, std=1.0),
        "decoder.decoder_mlp.0.weight": w(h, 3 * d),
        "decoder.decoder_mlp.0.bias": w(h),
        "decoder.decoder_mlp.2.weight": w(d, h),
        "decoder.decoder_mlp.2.bias": w(d),
        "decoder.decoder_proj.weight": w(c, d),
        "decoder.decoder_proj.bias": w(c),
        "decoder.fixed_positional_emb.inv_freq": 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d)),
        "decoder.decoder.transformer.pos_emb.weight": w(steps, d),
        "decoder.decoder.transformer.ln_f.weight": ln(),
    }
    causal = torch.ones(steps, steps, dtype=torch.bool).tril().view(1, 1, steps, steps)
    full = torch.ones(1, 1, steps, steps, dtype=torch.bool)
    for i in range(cfg["num_layers"]):
        p = f"encoder.encoder.transformer.h.{i}."
        sd[p + "ln_1.weight"], sd[p + "ln_2.weight"] = ln(), ln()
        sd[p + "attn.c_attn.weight"] = w(3 * d, d)
        sd[p + "attn.c_proj.weight"] = w(d, d)
        sd[p + "attn.attn_mask"] = causal.clone()
        sd[p + "mlp.c_fc.weight"] = w(4 * d, d)
        sd[p + "mlp.c_proj.weight"] = w(d, 4 * d)
    for i in range(int(cfg["num_layers"] / 2)):
        p = f"decoder.decoder.transformer.h.{i}."
        for j in range(1, 5):
            sd[p + f"ln_{j}.weight"] = ln()
        sd[p + "self_attn.c_attn.weight"] = w(3 * d, d)
        sd[p + "self_attn.c_proj.weight"] = w(d, d)
        sd[p + "self_attn.attn_mask"] = full.clone()
        sd[p + "cross_attn.q_proj.weight"] = w(d, d)
        sd[p + "cross_attn.kv_proj.weight"] = w(2 * d, d)
        sd[p + "cross_attn.c_proj.weight"] = w(d, d)
        sd[p + "cross_attn.attn_mask"] = full.clone()
        for mlp in ("mlp", "mlp_2"):
            sd[p + f"{mlp}.c_fc.weight"] = w(4 * d, d)
            sd[p + f"{mlp}.c_proj.weight"] = w(d, 4 * d)
    return sd


# ------------------------------------------------------------------- independent reference forward


def _ln(x, weight):
    return F.layer_norm(x, (x.shape[-1],), weight, None, 1e-5)


def _attention(q_in, kv_in, wq, wk, wv, wo, heads, mask):
    b, tq, d = q_in.shape
    tk = kv_in.shape[1]
    q = (q_in @ wq.t()).view(b, tq, heads, -1).transpose(1, 2)
    k = (kv_in @ wk.t()).view(b, tk, heads, -1).transpose(1, 2)
    v = (kv_in @ wv.t()).view(b, tk, heads, -1).transpose(1, 2)
    att = (q @ k.transpose(-1, -2)) / math.sqrt(d // heads)
    att = att.masked_fill(~mask.view(tq, tk), float("-inf")).softmax(-1)
    return (att @ v).transpose(1, 2).reshape(b, tq, d) @ wo.t()


def _mlp(x, sd, p):
    return F.gelu(x @ sd[p + "c_fc.weight"].t()) @ sd[p + "c_proj.weight"].t()


def reference_forward(sd: dict, cfg: dict, x: torch.Tensor):
    """Original tokenizer in eval mode on ORIGINAL-layout velocities (B, V, L, N, 2) in (row, col)."""
    heads, d = cfg["num_heads"], cfg["hidden_dim"]
    b, v, steps, n, _ = x.shape
    h = x.permute(0, 2, 1, 3, 4).reshape(b, steps, v * n * 2)
    h = h @ sd["encoder.encoder_proj.weight"].t() + sd["encoder.encoder_proj.bias"]
    h = h + sd["encoder.encoder.transformer.pos_emb.weight"]
    for i in range(cfg["num_layers"]):
        p = f"encoder.encoder.transformer.h.{i}."
        wq, wk, wv = sd[p + "attn.c_attn.weight"].split(d, dim=0)
        a = _ln(h, sd[p + "ln_1.weight"])
        h = h + _attention(a, a, wq, wk, wv, sd[p + "attn.c_proj.weight"], heads, sd[p + "attn.attn_mask"])
        h = h + _mlp(_ln(h, sd[p + "ln_2.weight"]), sd, p + "mlp.")
    z = _ln(h, sd["encoder.encoder.transformer.ln_f.weight"])

    # FSQ (vector-quantize-pytorch semantics, reference §1.3)
    levels = torch.tensor(LEVELS, dtype=torch.float32)
    u = z @ sd["quantize.project_in.weight"].t() + sd["quantize.project_in.bias"]
    half_l = (levels - 1) * (1 + 1e-3) / 2
    offset = (levels % 2 == 0).float() * 0.5
    bounded = torch.tanh(u + torch.atanh(offset / half_l)) * half_l - offset
    half_width = torch.floor(levels / 2)
    code = bounded.round() / half_width
    basis = torch.tensor([1, 8, 64, 384], dtype=torch.float32)
    ids = ((code * half_width + half_width) * basis).sum(-1).round().long()
    zq = code @ sd["quantize.project_out.weight"].t() + sd["quantize.project_out.bias"]

    q = torch.zeros_like(zq) + sd["decoder.decoder.transformer.pos_emb.weight"]
    for i in range(int(cfg["num_layers"] / 2)):
        p = f"decoder.decoder.transformer.h.{i}."
        wq, wk, wv = sd[p + "self_attn.c_attn.weight"].split(d, dim=0)
        a = _ln(q, sd[p + "ln_1.weight"])
        q = q + _attention(
            a, a, wq, wk, wv, sd[p + "self_attn.c_proj.weight"], heads, sd[p + "self_attn.attn_mask"]
        )
        q = q + _mlp(_ln(q, sd[p + "ln_2.weight"]), sd, p + "mlp.")
        wk, wv = sd[p + "cross_attn.kv_proj.weight"].split(d, dim=0)
        a = _ln(q, sd[p + "ln_3.weight"])
        q = q + _attention(
            a, zq, sd[p + "cross_attn.q_proj.weight"], wk, wv, sd[p + "cross_attn.c_proj.weight"], heads,
            sd[p + "cross_attn.attn_mask"],
        )  # fmt: skip
        q = q + _mlp(_ln(q, sd[p + "ln_4.weight"]), sd, p + "mlp_2.")
    q = _ln(q, sd["decoder.decoder.transformer.ln_f.weight"])
    s = cfg["decoder_pos_scale"]
    tok = q[:, None, :, None, :].expand(b, v, steps, n, d)
    track = (sd["decoder.track_pos_emb.weight"] * s)[None, None, None].expand(b, v, steps, n, d)
    view = (sd["decoder.view_emb.weight"] * s)[None, :, None, None].expand(b, v, steps, n, d)
    hid = torch.relu(
        torch.cat([tok, track, view], -1) @ sd["decoder.decoder_mlp.0.weight"].t()
        + sd["decoder.decoder_mlp.0.bias"]
    )
    out = tok + hid @ sd["decoder.decoder_mlp.2.weight"].t() + sd["decoder.decoder_mlp.2.bias"]
    logits = out @ sd["decoder.decoder_proj.weight"].t() + sd["decoder.decoder_proj.bias"]
    return z, ids, zq, logits


def _to_original_layout(vel: torch.Tensor) -> torch.Tensor:
    """Our (x, y) row-major grid → the original's (row, col) column-major grid."""
    n = vel.shape[-2]
    side = math.isqrt(n)
    perm = torch.arange(n).reshape(side, side).t().reshape(-1)
    return vel[..., perm, :].flip(-1)


# -------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("compiled", [False, True])
def test_import_matches_reference_forward(tmp_path, compiled):
    cfg = original_config()
    sd = original_state_dict(cfg)
    stored = {("_orig_mod." + k if compiled else k): t for k, t in sd.items()}
    src = tmp_path / "latest.pt"
    torch.save({"config": cfg, "model": stored, "epoch": 3, "val_loss": 2.5, "optimizer": {}}, src)

    result = run(ImportCheckpointConfig(input=str(src), output=str(tmp_path / "ours")))
    assert len(result.ignored_keys) == 2 + 2 + 1  # 2 encoder masks, 2 decoder masks, inv_freq
    model, our_cfg = load_tokenizer(result.output)
    assert our_cfg.input_order == "rc" and our_cfg.point_order == "col_major"
    assert our_cfg.decoder_pos_scale == pytest.approx(0.2) and our_cfg.decoder_layers == 1
    meta = read_meta(result.output)
    assert (
        meta["epoch"] == 3 and meta["metrics"] == {"val_loss": 2.5} and meta["source"]["format"] == "amplify"
    )

    vel = torch.randn(4, 1, 15, 16, 2, generator=torch.Generator().manual_seed(1)) * 0.05  # ours: (x, y)
    with torch.no_grad():
        z_ref, ids_ref, zq_ref, logits_ref = reference_forward(sd, cfg, _to_original_layout(vel))
        z = model.encode(vel)
        zq, ids = model.quantize(z)
        logits = model.decode(zq)
    torch.testing.assert_close(z, z_ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(ids, ids_ref)
    assert len(ids.unique()) > 5  # a meaningful comparison, not one code everywhere
    torch.testing.assert_close(zq, zq_ref, atol=1e-5, rtol=1e-5)
    perm = torch.arange(16).reshape(4, 4).t().reshape(-1)  # our point perm[j] = original point j
    torch.testing.assert_close(logits.index_select(3, perm), logits_ref, atol=1e-4, rtol=1e-4)


def _save(tmp_path, cfg, sd, name="in.pt"):
    path = tmp_path / name
    torch.save({"config": cfg, "model": sd}, path)
    return path


def test_extra_key_is_an_error_naming_it(tmp_path):
    cfg = original_config()
    sd = original_state_dict(cfg)
    sd["encoder.encoder.transformer.h.0.attn.rotary.freqs"] = torch.zeros(4)
    with pytest.raises(
        OriginalImportError, match=r"unknown keys \['encoder.encoder.transformer.h.0.attn.rotary"
    ):
        run(ImportCheckpointConfig(input=str(_save(tmp_path, cfg, sd)), output=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_missing_key_is_an_error_naming_it(tmp_path):
    cfg = original_config()
    sd = original_state_dict(cfg)
    del sd["decoder.decoder.transformer.h.0.cross_attn.kv_proj.weight"]
    with pytest.raises(
        OriginalImportError, match=r"missing keys \['decoder.decoder.transformer.h.0.cross_attn"
    ):
        run(ImportCheckpointConfig(input=str(_save(tmp_path, cfg, sd)), output=str(tmp_path / "o")))


def test_wrong_shape_and_unsupported_options_are_errors(tmp_path):
    cfg = original_config()
    sd = original_state_dict(cfg)
    sd["decoder.view_emb.weight"] = torch.zeros(2, 64)  # two views' embeddings, config says one
    with pytest.raises(OriginalImportError, match="decoder.view_emb.weight"):
        run(ImportCheckpointConfig(input=str(_save(tmp_path, cfg, sd)), output=str(tmp_path / "o")))
    with pytest.raises(OriginalImportError, match="cond_on_img"):
        config_from_original({**cfg, "cond_on_img": True})
    bad_mask = original_state_dict(cfg)
    bad_mask["encoder.encoder.transformer.h.1.attn.attn_mask"] = torch.ones(1, 1, 15, 15, dtype=torch.bool)
    with pytest.raises(OriginalImportError, match="h.1.attn.attn_mask.*causal"):
        run(
            ImportCheckpointConfig(
                input=str(_save(tmp_path, cfg, bad_mask, "m.pt")), output=str(tmp_path / "o")
            )
        )


_EXECUTED: list[str] = []


def _side_effect():
    _EXECUTED.append("ran")
    return {}


class _Payload:
    """A pickled object whose unpickling would call a function (stands for any custom class/code)."""

    def __reduce__(self):
        return (_side_effect, ())


def test_pickled_custom_object_is_refused(tmp_path, capsys):
    cfg = original_config()
    path = tmp_path / "pickled.pt"
    torch.save({"config": cfg, "model": original_state_dict(cfg), "wandb": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"refusing to load.*weights_only=True.*convert"):
        load_original_checkpoint(path)
    assert _EXECUTED == []  # nothing from the file was executed
    assert main([str(path), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("import_checkpoint: error:") and "pickled Python objects" in err
    assert not (tmp_path / "out").exists()


def test_cli_writes_checkpoint(tmp_path, capsys):
    cfg = original_config(hidden=32, layers=1, heads=2)  # int(1/2) = 0 decoder blocks, as the original
    src = _save(tmp_path, cfg, original_state_dict(cfg))
    assert main([str(src), str(tmp_path / "ck"), "name=gtea"]) == 0
    assert "wrote tokenizer checkpoint" in capsys.readouterr().out
    model, our_cfg = load_tokenizer(tmp_path / "ck")
    assert our_cfg.name == "gtea" and our_cfg.decoder_layers == 0
    assert main([str(src), str(tmp_path / "ck")]) == 1  # exists, no overwrite
    assert main([str(src), str(tmp_path / "ck"), "overwrite=true"]) == 0


def test_paper_size_maps_to_30m_parameters():
    cfg = original_config(hidden=768, tracks=400, layers=2, heads=8)
    our_cfg = config_from_original(cfg)
    model = MotionTokenizer(our_cfg)
    assert model.num_parameters() == 30_232_805
    state, ignored = convert_original_state_dict(
        original_state_dict(cfg, fill=0.0), our_cfg, model.state_dict()
    )
    model.load_state_dict(state, strict=True)
    assert len(ignored) == 5

"""Map an original AMPLIFY/LAPS motion-tokenizer state dict onto :class:`MotionTokenizer`.

Pure functions on dicts and tensors (file reading is in :mod:`laps_ray.io.checkpoints`, the CLI in
:mod:`laps_ray.jobs.import_checkpoint`). The original loaded its own checkpoints non-strictly; here
every original key is either mapped explicitly (:func:`original_key_map`) or on a short documented
ignore list, and anything else — an unknown key, a missing key, a wrong shape, an unsupported config
option — is an error that lists the offending keys.

Layout differences handled:

* channel order: the original was trained on (row, col) = (y, x) velocities, so imported configs get
  ``input_order="rc"`` (our inputs stay (x, y); the model swaps them);
* point order: the original's 20×20 query grid lists points column-major (row index fastest), so
  imported configs get ``point_order="col_major"`` when N is a square. Note that the original grid only
  covered the left H×H square of landscape frames (reference §3.2); that coverage difference cannot be
  undone by re-ordering, so expect some drift on non-square frames;
* the displacement classes have the same (dy-major) layout in both, so ``rel_logits`` need no remap;
* fused QKV (``c_attn``: rows q, k, v) and fused K/V (``kv_proj``: rows k, v) have the same row order as
  ours, so they are copied unchanged (tested against an independent functional forward).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from laps_ray.models.fsq_levels import levels_for_codebook_size
from laps_ray.models.tokenizer_config import TokenizerConfig

log = logging.getLogger(__name__)

COMPILED_PREFIX = "_orig_mod."

# Original config defaults (pairlab/AMPLIFY cfg/train_motion_tokenizer.yaml, reference §2.1) used when a
# key is absent; the state-dict shape check catches a wrong default.
ORIGINAL_DEFAULTS: dict[str, Any] = {
    "type": "transformer",
    "hidden_dim": 768,
    "num_layers": 2,
    "num_heads": 8,
    "attn_pdrop": 0.1,
    "codebook_size": 2048,
    "num_tracks": 400,
    "point_dim": 2,
    "track_pred_horizon": 16,
    "cond_cameraviews": ["agentview", "eye_in_hand"],
    "decoder_mlp_hidden_dim": 256,
    "decoder_pos_scale": 1.0,  # AMPLIFY has no such key (= 1.0); LAPS sets 0.2
    "z_noise_std": 0.0,
    "causal_encoder": True,
    "per_view": False,
    "cond_on_img": False,
}


class OriginalImportError(ValueError):
    """The original checkpoint cannot be mapped faithfully; the message lists the keys involved."""


def _get(cfg: Mapping[str, Any], key: str) -> Any:
    value = cfg.get(key, None)
    return ORIGINAL_DEFAULTS[key] if value is None else value


def config_from_original(orig: Mapping[str, Any], name: str = "imported") -> TokenizerConfig:
    """Build our config from the original's (flat Hydra) config dict.

    Raises:
        OriginalImportError: an option we do not implement (image conditioning, per-view tokens,
            non-causal encoder, point_dim != 2, non-square or even displacement grid).
    """
    unsupported = []
    if _get(orig, "type") != "transformer":
        unsupported.append(f"type={_get(orig, 'type')!r} (only 'transformer')")
    if bool(_get(orig, "cond_on_img")):
        unsupported.append("cond_on_img=true (image-conditioned encoder)")
    if bool(_get(orig, "per_view")):
        unsupported.append("per_view=true (one token per view and step)")
    if _get(orig, "causal_encoder") is not True:
        unsupported.append(f"causal_encoder={_get(orig, 'causal_encoder')!r} (only true)")
    if int(_get(orig, "point_dim")) != 2:
        unsupported.append(f"point_dim={_get(orig, 'point_dim')} (only 2)")
    rel = (orig.get("loss") or {}).get("rel_cls_img_size") or [15, 15]
    if len(rel) != 2 or rel[0] != rel[1] or int(rel[0]) % 2 == 0:
        unsupported.append(f"loss.rel_cls_img_size={list(rel)} (only square, odd)")
    if unsupported:
        raise OriginalImportError("unsupported original config: " + "; ".join(unsupported))

    num_layers = int(_get(orig, "num_layers"))
    num_points = int(_get(orig, "num_tracks"))
    side = math.isqrt(num_points)
    point_order = "col_major" if side * side == num_points else "row_major"
    if point_order == "row_major":
        log.warning("num_tracks=%d is not a square grid: keeping the point order as stored", num_points)
    return TokenizerConfig(
        name=name,
        num_views=len(_get(orig, "cond_cameraviews")),
        T=int(_get(orig, "track_pred_horizon")),
        num_points=num_points,
        hidden_dim=int(_get(orig, "hidden_dim")),
        num_layers=num_layers,
        num_heads=int(_get(orig, "num_heads")),
        mlp_ratio=4,
        decoder_layers=int(num_layers / 2),  # as the original builds its decoder
        dropout=float(_get(orig, "attn_pdrop")),
        codebook_size=int(_get(orig, "codebook_size")),
        decoder_mlp_hidden=int(_get(orig, "decoder_mlp_hidden_dim")),
        # LAPS reads `decoder_pos_scale or 1.0`, so an explicit 0 meant 1.0 there too.
        decoder_pos_scale=float(_get(orig, "decoder_pos_scale") or 1.0),
        rel_grid=int(rel[0]),
        z_noise_std=float(_get(orig, "z_noise_std") or 0.0),
        input_order="rc",
        point_order=point_order,
    )


def original_key_map(cfg: TokenizerConfig) -> dict[str, str]:
    """Original parameter name → our parameter name, for every parameter of ``cfg``'s model."""
    m: dict[str, str] = {
        "encoder.encoder_proj.weight": "in_proj.weight",
        "encoder.encoder_proj.bias": "in_proj.bias",
        "encoder.encoder.transformer.pos_emb.weight": "encoder.pos",
        "encoder.encoder.transformer.ln_f.weight": "encoder.norm.weight",
        "decoder.decoder.transformer.pos_emb.weight": "decoder.pos",
        "decoder.decoder.transformer.ln_f.weight": "decoder.norm.weight",
        "decoder.track_pos_emb.weight": "track_emb",
        "decoder.view_emb.weight": "view_emb",
        "decoder.decoder_mlp.0.weight": "point_mlp.0.weight",
        "decoder.decoder_mlp.0.bias": "point_mlp.0.bias",
        "decoder.decoder_mlp.2.weight": "point_mlp.2.weight",
        "decoder.decoder_mlp.2.bias": "point_mlp.2.bias",
        "decoder.decoder_proj.weight": "head.weight",
        "decoder.decoder_proj.bias": "head.bias",
    }
    if cfg.hidden_dim != len(levels_for_codebook_size(cfg.codebook_size)):  # FSQ adds projections
        for part in ("project_in", "project_out"):
            for p in ("weight", "bias"):
                m[f"quantize.{part}.{p}"] = f"fsq.{part}.{p}"
    enc_block = {
        "ln_1.weight": "norm1.weight",
        "attn.c_attn.weight": "attn.qkv.weight",
        "attn.c_proj.weight": "attn.out.weight",
        "ln_2.weight": "norm2.weight",
        "mlp.c_fc.weight": "mlp.fc.weight",
        "mlp.c_proj.weight": "mlp.proj.weight",
    }
    for i in range(cfg.num_layers):
        for src, dst in enc_block.items():
            m[f"encoder.encoder.transformer.h.{i}.{src}"] = f"encoder.blocks.{i}.{dst}"
    dec_block = {
        "ln_1.weight": "norm1.weight",
        "self_attn.c_attn.weight": "self_attn.qkv.weight",
        "self_attn.c_proj.weight": "self_attn.out.weight",
        "ln_2.weight": "norm2.weight",
        "mlp.c_fc.weight": "mlp1.fc.weight",
        "mlp.c_proj.weight": "mlp1.proj.weight",
        "ln_3.weight": "norm3.weight",
        "cross_attn.q_proj.weight": "cross_attn.q.weight",
        "cross_attn.kv_proj.weight": "cross_attn.kv.weight",
        "cross_attn.c_proj.weight": "cross_attn.out.weight",
        "ln_4.weight": "norm4.weight",
        "mlp_2.c_fc.weight": "mlp2.fc.weight",
        "mlp_2.c_proj.weight": "mlp2.proj.weight",
    }
    for i in range(cfg.decoder_layers):
        for src, dst in dec_block.items():
            m[f"decoder.decoder.transformer.h.{i}.{src}"] = f"decoder.blocks.{i}.{dst}"
    return m


def _mask_keys(cfg: TokenizerConfig) -> dict[str, str]:
    """Attention-mask buffers the original stores (persistent) → the mask they must hold."""
    keys = {f"encoder.encoder.transformer.h.{i}.attn.attn_mask": "causal" for i in range(cfg.num_layers)}
    for i in range(cfg.decoder_layers):
        keys[f"decoder.decoder.transformer.h.{i}.self_attn.attn_mask"] = "full"
        keys[f"decoder.decoder.transformer.h.{i}.cross_attn.attn_mask"] = "full"
    return keys


# Keys that are not parameters of the model and carry nothing we need:
# * `decoder.fixed_positional_emb.inv_freq`: buffer of a sinusoidal encoding the original decoder builds
#   but never uses (persistent, so it is in every state dict);
# * `quantize._levels`, `quantize._basis`, `quantize.implicit_codebook`: FSQ buffers, non-persistent in
#   the pinned vector-quantize-pytorch but present in some versions; derivable from codebook_size
#   (`_levels` is checked against our level table when present);
# * attention masks (`*.attn_mask`): checked to be the causal / full masks our attention applies.
IGNORED_KEYS = ("decoder.fixed_positional_emb.inv_freq", "quantize._basis", "quantize.implicit_codebook")


def strip_compiled_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove torch.compile's ``_orig_mod.`` prefix from keys (checkpoints of compiled models)."""
    return {(k[len(COMPILED_PREFIX) :] if k.startswith(COMPILED_PREFIX) else k): v for k, v in state.items()}


def _check_mask(key: str, value: Tensor, kind: str, length: int) -> None:
    if tuple(value.shape[-2:]) != (length, length):
        raise OriginalImportError(
            f"{key}: attention mask shape {tuple(value.shape)}, expected (..., {length}, {length})"
        )
    mask = value.reshape(length, length).bool()
    want = torch.ones(length, length, dtype=torch.bool)
    if kind == "causal":
        want = want.tril()
    if not torch.equal(mask, want):
        raise OriginalImportError(f"{key}: attention mask is not the {kind} mask this model applies")


def convert_original_state_dict(
    state: Mapping[str, Tensor], cfg: TokenizerConfig, expected: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], list[str]]:
    """Rename and check an original state dict for a model built from ``cfg``.

    Args:
        state: the original ``model`` state dict (``_orig_mod.`` prefixes allowed).
        cfg: our config (from :func:`config_from_original`).
        expected: our model's ``state_dict()`` (names and shapes to fill).

    Returns:
        (our state dict as float32 tensors, sorted list of original keys that were ignored).

    Raises:
        OriginalImportError: unknown keys, missing keys, shape mismatches or unexpected masks, all
            listed in the message.
    """
    state = strip_compiled_prefix(state)
    key_map = original_key_map(cfg)
    masks = _mask_keys(cfg)
    missing_ours = sorted(set(expected) - set(key_map.values()))
    if missing_ours:  # a bug in the mapping table, not in the user's file
        raise OriginalImportError(f"internal: no original key maps onto our parameters {missing_ours}")

    unknown, ignored = [], []
    for key in state:
        if key in key_map:
            continue
        if key in masks or key in IGNORED_KEYS:
            ignored.append(key)
        elif key == "quantize._levels":
            if [int(v) for v in state[key].reshape(-1)] != list(levels_for_codebook_size(cfg.codebook_size)):
                raise OriginalImportError(
                    f"quantize._levels {state[key].tolist()} does not match codebook_size {cfg.codebook_size}"
                )
            ignored.append(key)
        else:
            unknown.append(key)
    missing = sorted(k for k in key_map if k not in state)
    if unknown or missing:
        raise OriginalImportError(
            f"original state dict does not match config '{cfg.name}' (hidden_dim={cfg.hidden_dim}, "
            f"num_layers={cfg.num_layers}, decoder_layers={cfg.decoder_layers}): "
            f"unknown keys {sorted(unknown)}; missing keys {missing}"
        )
    for key, kind in masks.items():
        if key in state:
            _check_mask(key, state[key], kind, cfg.num_tokens)

    out: dict[str, Tensor] = {}
    bad = []
    for src, dst in key_map.items():
        value = state[src]
        if tuple(value.shape) != tuple(expected[dst].shape):
            bad.append(f"{src} {tuple(value.shape)} (ours {dst} {tuple(expected[dst].shape)})")
            continue
        out[dst] = value.detach().to(torch.float32).clone()
    if bad:
        raise OriginalImportError(f"shape mismatch between the original config and its weights: {bad}")
    return out, sorted(ignored)

"""The motion tokenizer: causal Transformer encoder → FSQ → decoder of per-point displacement classes.

Architecture family of AMPLIFY's motion tokenizer (reference/tokenizer_and_paper.md §1), rebuilt:

* encoder: per time step the V·N·2 velocities are flattened → Linear → + learned positions → causal
  pre-LN Transformer → z ``(B, L, D)``;
* FSQ (``vector_quantize_pytorch.FSQ``): projects D → d = len(levels), bounds and rounds each channel,
  projects back → zq ``(B, L, D)`` and one code id per token ``(B, L)``;
* decoder: zero queries + learned positions, Transformer blocks with cross-attention to zq, then per
  point ``h + MLP([h, s·track_emb, s·view_emb])`` → Linear → ``rel_logits (B, V, L, N, rel_grid²)``.

Shape letters: B batch, V views, T frames per window, L = T-1 tokens, N points, D width, d FSQ channels,
C = rel_grid² displacement classes. Inputs are velocities from
:func:`laps_ray.core.windows.normalized_velocities` in our (x, y), row-major grid layout; the model never
re-normalises them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from laps_ray.models.fsq_levels import levels_for_codebook_size
from laps_ray.models.tokenizer_config import TokenizerConfig
from laps_ray.models.transformer import DecoderBlock, EncoderBlock, TransformerStack, init_gpt_weights

# FSQ bounds each channel to (L-1)(1+eps)/2 before rounding; vector_quantize_pytorch's default eps.
FSQ_BOUND_EPS = 1e-3


class TokenizerOutput(NamedTuple):
    """Everything a training step needs from one forward pass.

    Attributes:
        z: ``(B, L, D)`` encoder output (before the training-only noise).
        zq: ``(B, L, D)`` quantised latent (FSQ ``project_out`` of the code).
        ids: ``(B, L)`` int64 code ids in ``[0, true_codebook_size)``, mixed radix, first level fastest.
        rel_logits: ``(B, V, L, N, C)`` displacement-class logits.
        level_pos: ``(B, L, d)`` float32 position of each FSQ channel on its level grid *before*
            rounding (``round(level_pos[..., i])`` is the level index in ``[0, levels[i])``); carries
            gradient to the encoder, used by the codebook-usage regulariser.
        levels: FSQ levels per channel.
    """

    z: Tensor
    zq: Tensor
    ids: Tensor
    rel_logits: Tensor
    level_pos: Tensor
    levels: tuple[int, ...]


def grid_permutation(num_points: int, point_order: str) -> Tensor | None:
    """Index ``perm`` with ``model_points = our_points[perm]``; None when the orders agree.

    ``col_major`` (the original preprocessing) lists a square grid with the row index fastest; ours is
    row-major. The map is a transpose of the (side, side) index grid.
    """
    if point_order == "row_major":
        return None
    side = math.isqrt(num_points)
    return torch.arange(num_points).reshape(side, side).t().reshape(-1)


class MotionTokenizer(nn.Module):
    """Motion tokenizer built from a :class:`TokenizerConfig` (see module docstring)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        from vector_quantize_pytorch import FSQ  # heavy import, kept off the CLI --help path

        self.cfg = cfg
        self.levels: tuple[int, ...] = tuple(levels_for_codebook_size(cfg.codebook_size))
        self.true_codebook_size = math.prod(self.levels)
        dim, length = cfg.hidden_dim, cfg.num_tokens

        self.in_proj = nn.Linear(cfg.num_views * cfg.num_points * 2, dim)
        self.encoder = TransformerStack(
            [
                EncoderBlock(dim, cfg.num_heads, cfg.mlp_ratio, cfg.dropout, causal=True)
                for _ in range(cfg.num_layers)
            ],
            length,
            dim,
            cfg.dropout,
        )
        self.fsq = FSQ(dim=dim, levels=list(self.levels))
        self.decoder = TransformerStack(
            [DecoderBlock(dim, cfg.num_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.decoder_layers)],
            length,
            dim,
            cfg.dropout,
        )
        # N(0, 1) like nn.Embedding's default, as the original (it does not GPT-initialise these).
        self.track_emb = nn.Parameter(torch.randn(cfg.num_points, dim))
        self.view_emb = nn.Parameter(torch.randn(cfg.num_views, dim))
        self.point_mlp = nn.Sequential(
            nn.Linear(3 * dim, cfg.decoder_mlp_hidden), nn.ReLU(), nn.Linear(cfg.decoder_mlp_hidden, dim)
        )
        self.head = nn.Linear(dim, cfg.num_classes)
        init_gpt_weights(self.encoder, cfg.num_layers)
        init_gpt_weights(self.decoder, cfg.decoder_layers)

        levels = torch.tensor(self.levels, dtype=torch.float32)
        self.register_buffer("_levels_f", levels, persistent=False)
        perm = grid_permutation(cfg.num_points, cfg.point_order)
        self.register_buffer("_perm", perm, persistent=False)
        self.register_buffer("_inv_perm", None if perm is None else perm.argsort(), persistent=False)

    # ------------------------------------------------------------------ helpers

    def num_parameters(self) -> int:
        """Number of parameters (trainable or not)."""
        return sum(p.numel() for p in self.parameters())

    def _check_velocities(self, vel: Tensor) -> None:
        c = self.cfg
        want = (c.num_views, c.num_tokens, c.num_points, 2)
        if vel.dim() != 5 or tuple(vel.shape[1:]) != want:
            raise ValueError(
                f"tokenizer '{c.name}' expects velocities (B, V={c.num_views}, L=T-1={c.num_tokens}, "
                f"N={c.num_points}, 2), got {tuple(vel.shape)}; pass first differences of T={c.T} frames "
                "(laps_ray.core.windows.normalized_velocities), not positions"
            )
        if not vel.is_floating_point():
            raise ValueError(f"velocities must be floating point, got {vel.dtype}")

    def _to_model_layout(self, vel: Tensor) -> Tensor:
        """Our (x, y) row-major layout → the layout the weights expect (cfg.input_order, cfg.point_order)."""
        if self.cfg.input_order == "rc":
            vel = vel.flip(-1)
        if self._perm is not None:
            vel = vel.index_select(-2, self._perm)
        return vel

    # ------------------------------------------------------------------ model API

    def encode(self, vel: Tensor) -> Tensor:
        """Velocities ``(B, V, L, N, 2)`` → pre-quantisation latent z ``(B, L, D)``; causal in time."""
        self._check_velocities(vel)
        x = self._to_model_layout(vel)
        b, v, length, n, c = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b, length, v * n * c)  # one token per step: (v n xy) flattened
        return self.encoder(self.in_proj(x))

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z ``(B, L, D)`` → (zq ``(B, L, D)``, ids ``(B, L)`` int64). FSQ rounds in float32 itself."""
        zq, ids = self.fsq(z)
        return zq, ids.long()

    def ids_to_codes(self, ids: Tensor) -> Tensor:
        """Code ids ``(B, L)`` → zq ``(B, L, D)``, the inverse of the id part of :meth:`quantize`."""
        return self.fsq.indices_to_codes(ids)

    def level_positions(self, z: Tensor) -> Tensor:
        """Continuous position of each FSQ channel on its level grid, before rounding.

        Same bound as FSQ (``tanh(h + shift)·half_l − offset``) shifted by ``levels // 2``, so
        ``round(level_positions(z))`` gives the level indices FSQ picks and ids in mixed radix.

        Returns:
            float32 ``(B, L, d)`` in about ``[0, levels - 1]``, differentiable w.r.t. z.
        """
        h = self.fsq.project_in(z).float()
        levels = self._levels_f
        half_l = (levels - 1) * (1 + FSQ_BOUND_EPS) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(h + shift) * half_l - offset + torch.floor(levels / 2)

    def decode(self, zq: Tensor) -> Tensor:
        """zq ``(B, L, D)`` → rel_logits ``(B, V, L, N, C)`` in our point order."""
        c = self.cfg
        h = self.decoder(torch.zeros_like(zq), context=zq)  # (B, L, D)
        dim = c.hidden_dim
        fc1, fc2 = self.point_mlp[0], self.point_mlp[2]
        # The first point-MLP Linear acts on concat([h, s·track, s·view]); apply its three column
        # blocks separately and broadcast, instead of materialising a (B, V, L, N, 3D) tensor.
        w_tok, w_track, w_view = fc1.weight.split(dim, dim=1)
        s = c.decoder_pos_scale
        a_tok = F.linear(h, w_tok, fc1.bias)  # (B, L, H)
        a_track = F.linear(self.track_emb * s, w_track)  # (N, H)
        a_view = F.linear(self.view_emb * s, w_view)  # (V, H)
        act = F.relu(a_tok[:, None, :, None, :] + a_view[None, :, None, None, :] + a_track, inplace=True)
        # head(h + fc2(act)) = head(h) + (W_head·W_2)·act + W_head·b_2: one H→C product per point
        # instead of H→D→C (exact up to float rounding; the parameters are the same).
        w_point = self.head.weight @ fc2.weight  # (C, H)
        tok_bias = self.head.bias + F.linear(fc2.bias, self.head.weight)
        logits = F.linear(act, w_point) + F.linear(h, self.head.weight, tok_bias)[:, None, :, None, :]
        if self._inv_perm is not None:
            logits = logits.index_select(3, self._inv_perm)
        return logits

    def forward(self, vel: Tensor) -> TokenizerOutput:
        """Encode, (in training: add z noise), quantise and decode velocities ``(B, V, L, N, 2)``."""
        z = self.encode(vel)
        zn = z
        if self.training and self.cfg.z_noise_std > 0:
            zn = z + self.cfg.z_noise_std * torch.randn_like(z)
        zq, ids = self.quantize(zn)
        return TokenizerOutput(
            z=z,
            zq=zq,
            ids=ids,
            rel_logits=self.decode(zq),
            level_pos=self.level_positions(zn),
            levels=self.levels,
        )

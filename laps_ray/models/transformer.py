"""GPT-style pre-LN Transformer pieces of the motion tokenizer.

Same layer shapes as the original tokenizer (so its weights map one to one, see
:mod:`laps_ray.models.original_import`): LayerNorm without bias, fused QKV projection without bias,
``scaled_dot_product_attention``, MLP with exact GELU and no bias, dropout after every residual branch.
Shapes: B batch, S sequence length, D width, h heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-5


def layer_norm(dim: int) -> nn.LayerNorm:
    """LayerNorm with a weight and no bias (as the original)."""
    return nn.LayerNorm(dim, eps=LN_EPS, bias=False)


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    b, s, d = x.shape
    return x.view(b, s, num_heads, d // num_heads).transpose(1, 2)  # (B, h, S, D/h)


def _merge_heads(x: Tensor) -> Tensor:
    b, h, s, hd = x.shape
    return x.transpose(1, 2).reshape(b, s, h * hd)


class SelfAttention(nn.Module):
    """Multi-head self-attention, causal or full."""

    def __init__(self, dim: int, num_heads: int, dropout: float, causal: bool) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)  # output rows ordered q, k, v
        self.out = nn.Linear(dim, dim, bias=False)
        self.resid_drop = nn.Dropout(dropout)
        self.num_heads = num_heads
        self.dropout = dropout
        self.causal = causal

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(
            _split_heads(q, self.num_heads),
            _split_heads(k, self.num_heads),
            _split_heads(v, self.num_heads),
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal,
        )
        return self.resid_drop(self.out(_merge_heads(y)))


class CrossAttention(nn.Module):
    """Multi-head attention from ``x`` (queries) to ``context`` (keys/values from one fused Linear)."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)  # output rows ordered k, v
        self.out = nn.Linear(dim, dim, bias=False)
        self.resid_drop = nn.Dropout(dropout)
        self.num_heads = num_heads
        self.dropout = dropout

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        k, v = self.kv(context).chunk(2, dim=-1)
        y = F.scaled_dot_product_attention(
            _split_heads(self.q(x), self.num_heads),
            _split_heads(k, self.num_heads),
            _split_heads(v, self.num_heads),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.resid_drop(self.out(_merge_heads(y)))


class MLP(nn.Module):
    """Linear → GELU → Linear → dropout, no biases."""

    def __init__(self, dim: int, ratio: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, ratio * dim, bias=False)
        self.proj = nn.Linear(ratio * dim, dim, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class EncoderBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, dropout: float, causal: bool) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = SelfAttention(dim, num_heads, dropout, causal)
        self.norm2 = layer_norm(dim)
        self.mlp = MLP(dim, mlp_ratio, dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Pre-LN block: full self-attention, MLP, cross-attention to the codes, second MLP.

    The context (the codes) is not normalised, as in the original.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.self_attn = SelfAttention(dim, num_heads, dropout, causal=False)
        self.norm2 = layer_norm(dim)
        self.mlp1 = MLP(dim, mlp_ratio, dropout)
        self.norm3 = layer_norm(dim)
        self.cross_attn = CrossAttention(dim, num_heads, dropout)
        self.norm4 = layer_norm(dim)
        self.mlp2 = MLP(dim, mlp_ratio, dropout)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = x + self.self_attn(self.norm1(x))
        x = x + self.mlp1(self.norm2(x))
        x = x + self.cross_attn(self.norm3(x), context)
        return x + self.mlp2(self.norm4(x))


class TransformerStack(nn.Module):
    """Learned absolute positions + dropout + blocks + final LayerNorm.

    ``context`` is passed to every block when given (decoder), omitted for the encoder.
    """

    def __init__(self, blocks: list[nn.Module], seq_len: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(seq_len, dim))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(blocks)
        self.norm = layer_norm(dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.drop(x + self.pos[: x.shape[1]])
        for block in self.blocks:
            x = block(x) if context is None else block(x, context)
        return self.norm(x)


def init_gpt_weights(module: nn.Module, num_layers: int) -> None:
    """GPT-2 initialisation of a Transformer stack (as the original).

    Linear weights and positions ~ N(0, 0.02); the projections that feed the residual stream (attention
    ``out`` and MLP ``proj``) ~ N(0, 0.02 / sqrt(2 * num_layers)); LayerNorm weights 1.
    """
    residual_std = 0.02 / math.sqrt(2 * max(num_layers, 1))
    for name, p in module.named_parameters():
        if name.endswith(("attn.out.weight", "mlp1.proj.weight", "mlp2.proj.weight", "mlp.proj.weight")):
            nn.init.normal_(p, 0.0, residual_std)
        elif (name.endswith(".weight") and p.dim() == 2) or name == "pos":
            nn.init.normal_(p, 0.0, 0.02)
        elif p.dim() == 1 and "norm" in name:
            nn.init.ones_(p)

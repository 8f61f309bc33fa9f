"""The paper's frozen-Transformer embedding of a segment's quantized vectors, made reproducible.

LAPS embeds a segment by passing its quantized vectors through a randomly initialised, never trained
Transformer encoder and mean-pooling the outputs (laps_spec §5.2). The original neither seeded torch
nor switched the modules to eval mode, so dropout stayed on and every run gave different embeddings.
Here the weights come from ``seed`` alone (:func:`build_frozen_transformer`), the model is always in
eval mode with dropout 0, and the ``cluster`` job saves the weights with its run
(``laps_ray.io.embedder_checkpoints``), so a later run can reuse exactly them.

Shapes: ``B`` batch, ``N`` tokens, ``D`` vector width, ``E`` model width. Pure torch.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from laps_ray.config import check


@dataclasses.dataclass
class FrozenTransformerConfig:
    """Architecture of the frozen encoder (the paper's best: 4 layers, 4 heads, width 256).

    Attributes:
        input_dim: D, width of the quantized vectors (from the sidecars; 128 for the shipped tokenizer).
        d_model: E, encoder width.
        num_layers: encoder layers.
        num_heads: attention heads (must divide ``d_model``).
        ff_dim: feed-forward width.
        max_len: longest sequence; longer ones keep their first ``max_len`` vectors.
        seed: the weights' seed.
        position_scale: factor on the sinusoidal position codes. With the paper's 1.0, the codes
            (amplitude 1) outweigh the projected vectors, so the mean-pooled output mostly encodes the
            sequence LENGTH: on planted data (4 code generators, tests/unit/test_discovery_features.py)
            KMeans(4) reached ARI 0.00 at 1.0, 0.50 at 0.3 and 0.98 at 0.1.
        normalize_input: divide each vector by its RMS before the projection (scale-free input; with
            ``position_scale`` 0.3 it lifted that ARI from 0.50 to 0.98).
    """

    input_dim: int = 128
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 4
    ff_dim: int = 512
    max_len: int = 512
    seed: int = 0
    position_scale: float = 0.1
    normalize_input: bool = True

    def __post_init__(self) -> None:
        check(self.input_dim >= 1, "input_dim", f"must be >= 1, got {self.input_dim}")
        check(self.d_model >= 4, "d_model", f"must be >= 4, got {self.d_model}")
        check(self.num_layers >= 0, "num_layers", f"must be >= 0, got {self.num_layers}")
        check(
            self.num_heads >= 1 and self.d_model % self.num_heads == 0,
            "num_heads",
            f"must divide d_model={self.d_model}, got {self.num_heads}",
        )
        check(self.ff_dim >= 1, "ff_dim", f"must be >= 1, got {self.ff_dim}")
        check(self.max_len >= 1, "max_len", f"must be >= 1, got {self.max_len}")
        check(self.position_scale >= 0, "position_scale", f"must be >= 0, got {self.position_scale}")


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """(length, dim) fixed sine/cosine position codes (Vaswani et al.)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


class FrozenTransformer(nn.Module):
    """Linear projection → + positions → Transformer encoder (no dropout) → masked mean pooling."""

    def __init__(self, cfg: FrozenTransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(cfg.input_dim, cfg.d_model)
        self.register_buffer("pos", sinusoidal_positions(cfg.max_len, cfg.d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.num_heads, cfg.ff_dim, dropout=0.0, activation="gelu", batch_first=True
        )
        self.encoder = (
            nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
            if cfg.num_layers > 0
            else None
        )
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenTransformer:
        """Always eval: the embedding must not depend on a mode someone forgot to set."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, vectors: Tensor, lengths: Tensor) -> Tensor:
        """``vectors (B, N, D)`` zero-padded, ``lengths (B,)`` → ``(B, E)`` mean over real positions."""
        n = vectors.shape[1]
        if self.cfg.normalize_input:
            vectors = vectors / vectors.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-6)
        h = self.proj(vectors) + self.cfg.position_scale * self.pos[:n]  # (B, N, E)
        mask = torch.arange(n)[None, :] < lengths[:, None]  # (B, N) True = real
        if self.encoder is not None:
            h = self.encoder(h, src_key_padding_mask=~mask)
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def build_frozen_transformer(cfg: FrozenTransformerConfig) -> FrozenTransformer:
    """The model with weights drawn from ``cfg.seed`` only (the global RNG state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return FrozenTransformer(cfg)


def pad_vectors(seqs: list, max_len: int) -> tuple[Tensor, Tensor]:
    """B arrays (N_b, D) → ``(vectors (B, N, D) zero-padded, lengths (B,))``, N = min(max, max_len)."""
    lengths = torch.tensor([min(len(s), max_len) for s in seqs], dtype=torch.int64)
    n = max(1, int(lengths.max()) if len(seqs) else 1)
    d = seqs[0].shape[-1] if seqs else 1
    out = torch.zeros((len(seqs), n, d), dtype=torch.float32)
    for i, s in enumerate(seqs):
        k = int(lengths[i])
        if k:
            out[i, :k] = torch.as_tensor(s[:k], dtype=torch.float32)
    return out, lengths

"""The LSTM sequence embedder: a causal next-token model over a segment's code sequence.

Tokens are ``code + 1`` so that 0 is the padding token; sequences are cut to their first ``max_len``
tokens and right-padded. The LSTM is unidirectional, so the prediction at position t sees tokens
0..t only: the original's bidirectional LSTM saw the very token it had to predict through its backward
direction (laps_spec §5.1, "the task is leaky"). The embedding of a segment is the masked mean of
the top layer's hidden states over its real (non-padding) positions.

Shapes: ``B`` batch, ``L`` padded length, ``V`` vocabulary (true code count + 1), ``E`` width.
Built from :class:`EmbedderConfig` alone; pure torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from laps_ray.config import check

PAD = 0


@dataclasses.dataclass
class EmbedderConfig:
    """The LSTM embedder's architecture (saved as ``config.yaml`` with its weights).

    Attributes:
        num_codes: the tokenizer's TRUE code count (1920 for nominal 2048); vocabulary = num_codes + 1.
        max_len: tokens per sequence (longer ones are truncated); resolved from the data by
            ``train_embedder`` (a percentile of the lengths).
        embed_dim: token embedding and LSTM width.
        num_layers: stacked LSTM layers.
        dropout: after the embedding, between layers and before the output layer (training only).
    """

    num_codes: int = 1920
    max_len: int = 64
    embed_dim: int = 128
    num_layers: int = 2
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check(self.num_codes >= 2, "num_codes", f"must be >= 2, got {self.num_codes}")
        check(self.max_len >= 2, "max_len", f"must be >= 2, got {self.max_len}")
        check(self.embed_dim >= 4, "embed_dim", f"must be >= 4, got {self.embed_dim}")
        check(self.num_layers >= 1, "num_layers", f"must be >= 1, got {self.num_layers}")
        check(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")

    @property
    def vocab_size(self) -> int:
        return self.num_codes + 1


def to_tokens(sequences: Sequence[np.ndarray], max_len: int) -> tuple[Tensor, Tensor]:
    """Code sequences → padded token batch.

    Args:
        sequences: B code sequences (ints in ``[0, num_codes)``).
        max_len: L; longer sequences keep their first L codes.

    Returns:
        ``(tokens (B, L) int64 with codes + 1 and PAD = 0, lengths (B,) int64)``.
    """
    tokens = torch.zeros((len(sequences), max_len), dtype=torch.int64)
    lengths = torch.zeros(len(sequences), dtype=torch.int64)
    for i, seq in enumerate(sequences):
        s = torch.as_tensor(np.asarray(seq[:max_len], dtype=np.int64))
        tokens[i, : len(s)] = s + 1
        lengths[i] = len(s)
    return tokens, lengths


class LSTMEmbedder(nn.Module):
    """Causal LSTM language model over code tokens; :meth:`embed` gives a segment embedding."""

    def __init__(self, cfg: EmbedderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_emb = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD)
        self.drop = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(
            cfg.embed_dim,
            cfg.embed_dim,
            num_layers=cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            bidirectional=False,  # causal: position t must not see token t+1 (its target)
        )
        self.head = nn.Linear(cfg.embed_dim, cfg.vocab_size)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``tokens (B, L)`` → ``(logits (B, L, V) for the NEXT token, hidden (B, L, E) top layer)``."""
        h, _ = self.lstm(self.drop(self.token_emb(tokens)))  # (B, L, E)
        return self.head(self.drop(h)), h

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def embed(self, tokens: Tensor) -> Tensor:
        """Masked mean of the top layer's hidden states over real tokens. ``(B, L)`` → ``(B, E)``.

        Call in eval mode (dropout off); an all-padding row gives zeros.
        """
        _, h = self(tokens)
        mask = (tokens != PAD).unsqueeze(-1).to(h.dtype)  # (B, L, 1)
        return (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def next_token_loss(logits: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cross-entropy of predicting token t+1 from position t, padding targets ignored.

    Args:
        logits: (B, L, V) from :meth:`LSTMEmbedder.forward`.
        tokens: (B, L) the same batch's tokens.

    Returns:
        ``(loss, loss_sum, counts)``: the mean loss to back-propagate, its detached sum, and
        ``counts = [predicted tokens, correct predictions]``; sums, so workers can all-reduce them.
    """
    pred = logits[:, :-1].reshape(-1, logits.shape[-1])  # position t predicts ...
    target = tokens[:, 1:].reshape(-1)  # ... token t+1
    valid = target != PAD
    loss_sum = F.cross_entropy(pred, target, ignore_index=PAD, reduction="sum")
    n = valid.sum()
    correct = ((pred.argmax(-1) == target) & valid).sum()
    return loss_sum / n.clamp_min(1), loss_sum.detach(), torch.stack([n, correct]).to(loss_sum.dtype)

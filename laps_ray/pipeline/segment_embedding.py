"""Features of segments, one batch at a time: what a discovery actor (or the driver, locally) runs.

:class:`SegmentEmbedder` holds what a feature kind needs (the LSTM or frozen Transformer, loaded once)
and turns a batch of :class:`~laps_ray.io.segment_codes.SegmentRef` into one row each:

* ``bow`` / ``tfidf``: code counts (S, K) over the true code count; the driver turns them into
  frequencies or TF-IDF, because IDF needs every segment's counts;
* ``mean``: the mean quantized vector (S, D);
* ``lstm``: the trained LSTM's masked-mean hidden state (S, E);
* ``transformer``: the frozen Transformer's mean-pooled output (S, E).

Segments without codes get a zero row and length 0 (the job leaves them out of the clustering).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from laps_ray.core.sequence_features import bag_of_codes, mean_vector
from laps_ray.io.embedder_checkpoints import load_embedder
from laps_ray.io.segment_codes import SegmentRef, read_sequence
from laps_ray.models.embedder import to_tokens
from laps_ray.models.frozen_transformer import pad_vectors

FEATURES = ("bow", "tfidf", "mean", "lstm", "transformer")
NEEDS_MODEL = ("lstm", "transformer")
DENSE = ("mean", "lstm", "transformer")  # dense embeddings (vs. code frequencies)


@dataclass
class EmbeddedBatch:
    """Rows of one batch: ``index`` (S,) positions in the job's segment list, ``features`` (S, F)
    float32, ``lengths`` (S,) tokens per segment (0 = no codes)."""

    index: np.ndarray
    features: np.ndarray
    lengths: np.ndarray


class SegmentEmbedder:
    """Computes one feature kind for batches of segments.

    Args:
        kind: one of :data:`FEATURES`.
        num_codes: the tokenizer's true code count (for ``bow``/``tfidf``).
        model_dir: checkpoint of the LSTM (``lstm``) or the saved frozen Transformer (``transformer``).
        batch_size: segments per forward pass (a task's segments go through in length order).
        threads: torch threads (0 = leave as is).
    """

    def __init__(
        self, kind: str, num_codes: int, model_dir: str | None = None, batch_size: int = 64, threads: int = 0
    ) -> None:
        if kind not in FEATURES:
            raise ValueError(f"unknown feature {kind!r}; expected one of {list(FEATURES)}")
        if threads > 0:
            torch.set_num_threads(threads)
        self.kind = kind
        self.num_codes = num_codes
        self.batch_size = batch_size
        self.model = None
        self.model_cfg = None
        if kind in NEEDS_MODEL:
            if not model_dir:
                raise ValueError(f"feature {kind!r} needs a model checkpoint")
            self.model, self.model_cfg, loaded = load_embedder(model_dir)
            want = "lstm" if kind == "lstm" else "frozen_transformer"
            if loaded != want:
                raise ValueError(f"{model_dir}: holds a {loaded} embedder, feature {kind!r} needs a {want}")

    def embed(self, refs: Sequence[SegmentRef], index: Sequence[int]) -> EmbeddedBatch:
        """Features of ``refs`` (their positions in the job's list are ``index``).

        Raises:
            laps_ray.io.segment_codes.SegmentCodesError: a sidecar is missing or malformed.
            ValueError: codes outside the true code count, or vectors of the wrong width.
        """
        vectors_needed = self.kind in ("mean", "transformer")
        seqs, vecs = [], []
        for ref in refs:
            s, v = read_sequence(ref, with_vectors=vectors_needed)
            seqs.append(s)
            vecs.append(v)
        lengths = np.array([len(s) for s in seqs], np.int64)
        if self.kind in ("bow", "tfidf"):
            x = bag_of_codes(seqs, self.num_codes)
        elif self.kind == "mean":
            dim = next((v.shape[1] for v in vecs if v is not None and v.shape[0]), 0)
            x = np.stack([mean_vector(v) if len(v) else np.zeros(dim, np.float32) for v in vecs])
        else:
            # Batches of similar length: padding costs compute (the Transformer attends over it), and
            # the masked means make each row independent of its batch-mates.
            order = np.argsort(lengths, kind="stable")
            part = (
                self._lstm([seqs[i] for i in order])
                if self.kind == "lstm"
                else self._transformer([vecs[i] for i in order])
            )
            x = np.empty_like(part)
            x[order] = part
        x[lengths == 0] = 0.0
        return EmbeddedBatch(np.asarray(index, np.int64), x.astype(np.float32), lengths)

    def _lstm(self, seqs: list[np.ndarray]) -> np.ndarray:
        cfg = self.model_cfg
        out = []
        for i in range(0, len(seqs), self.batch_size):
            chunk = seqs[i : i + self.batch_size]
            bad = [int(s.max()) for s in chunk if len(s) and s.max() >= cfg.num_codes]
            if bad:
                raise ValueError(f"code {bad[0]} outside the embedder's {cfg.num_codes} codes")
            # The LSTM is causal: trailing padding never changes a real position's state, so pad
            # only to the batch's longest sequence.
            longest = max([len(s) for s in chunk] + [1])
            tokens, _ = to_tokens(chunk, min(cfg.max_len, longest))
            out.append(self.model.embed(tokens).numpy())
        return np.concatenate(out) if out else np.zeros((0, cfg.embed_dim), np.float32)

    def _transformer(self, vecs: list[np.ndarray]) -> np.ndarray:
        cfg = self.model_cfg
        out = []
        for i in range(0, len(vecs), self.batch_size):
            chunk = [
                v if len(v) else np.zeros((0, cfg.input_dim), np.float32)
                for v in vecs[i : i + self.batch_size]
            ]
            wrong = [v.shape[1] for v in chunk if len(v) and v.shape[1] != cfg.input_dim]
            if wrong:
                raise ValueError(f"vectors of width {wrong[0]}, the frozen Transformer takes {cfg.input_dim}")
            x, lengths = pad_vectors(chunk, cfg.max_len)
            out.append(self.model(x, lengths).numpy())
        return np.concatenate(out) if out else np.zeros((0, cfg.d_model), np.float32)

"""Fixed-size features of a segment from its latent action tokens: pure numpy.

A segment's codes sidecar holds the code ids of its selected windows, ``(W, L)``, and their quantized
vectors, ``(W, L, D)``. Consecutive windows overlap (T=16 frames every stride=4: 12 of a window's
15 steps are in the previous one), so concatenating the windows would count most steps several times
(the original did, see laps_spec §5.2). :func:`token_order` keeps each step once: every token of the
first window, then of each later window only the tokens of the steps it adds (``stride`` per window
step, all ``L`` after a gap of gated windows).

Features built on that order:

* :func:`bag_of_codes`: code counts over the TRUE code count ``K`` (1920 for the nominal 2048);
* :func:`tf_features` / :func:`tfidf_features`: L1 term frequency, and TF-IDF whose document frequency
  is counted on the raw counts (the original added a 1e-8 smoothing first, so every code occurred in
  every document and its TF-IDF equalled TF);
* :func:`mean_vector`: mean of the quantized vectors.

Shapes: ``W`` windows of a segment, ``L`` tokens per window, ``D`` vector width, ``S`` segments,
``K`` true code count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def token_order(windows: Sequence[int] | np.ndarray, num_tokens: int, stride: int) -> list[tuple[int, int]]:
    """Which ``(window row, token)`` pairs make the segment's sequence, each time step once, in order.

    Args:
        windows: (W,) increasing window ids of the sidecar's rows.
        num_tokens: L, tokens per window (one per velocity step).
        stride: frames between consecutive window starts.

    Returns:
        ``(row, token)`` pairs; ``L + sum(min(L, gap_i * stride))`` of them for W > 0.

    Raises:
        ValueError: window ids that do not increase, or a non-positive ``stride``/``num_tokens``.
    """
    if stride < 1 or num_tokens < 1:
        raise ValueError(f"stride and num_tokens must be >= 1, got {stride} and {num_tokens}")
    w = np.asarray(windows, dtype=np.int64)
    if w.size and np.any(np.diff(w) <= 0):
        raise ValueError(f"window ids must increase, got {w.tolist()}")
    pairs: list[tuple[int, int]] = []
    for row in range(w.size):
        # Window k+g starts g*stride frames after window k, so only its last g*stride steps are new.
        new = num_tokens if row == 0 else min(num_tokens, int(w[row] - w[row - 1]) * stride)
        pairs.extend((row, t) for t in range(num_tokens - new, num_tokens))
    return pairs


def segment_sequence(
    codes: np.ndarray, windows: Sequence[int] | np.ndarray, stride: int, vectors: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The segment's code sequence (and vector sequence) in time order, each step once.

    Args:
        codes: (W, L) int code ids.
        windows: (W,) window ids of the rows.
        stride: window stride in frames.
        vectors: optional (W, L, D) quantized vectors of the same windows.

    Returns:
        ``(seq (N,) int64, vec (N, D) float32 or None)``; N = 0 for a segment without windows.
    """
    codes = np.asarray(codes)
    if codes.size == 0:
        d = 0 if vectors is None else int(np.asarray(vectors).shape[-1])
        return np.zeros(0, np.int64), None if vectors is None else np.zeros((0, d), np.float32)
    if codes.ndim != 2:
        raise ValueError(f"codes must be (W, L), got shape {codes.shape}")
    pairs = token_order(windows, codes.shape[1], stride)
    rows = np.fromiter((p[0] for p in pairs), np.int64, len(pairs))
    cols = np.fromiter((p[1] for p in pairs), np.int64, len(pairs))
    seq = codes[rows, cols].astype(np.int64)
    vec = None
    if vectors is not None:
        v = np.asarray(vectors, dtype=np.float32)
        if v.shape[:2] != codes.shape:
            raise ValueError(f"vectors {v.shape} do not match codes {codes.shape}")
        vec = v[rows, cols]
    return seq, vec


def bag_of_codes(sequences: Sequence[np.ndarray], num_codes: int) -> np.ndarray:
    """Code counts per segment over the true code count.

    Args:
        sequences: S code sequences (each (N_s,) ints in ``[0, num_codes)``).
        num_codes: K, the tokenizer's TRUE code count (1920 for nominal 2048), not the nominal size.

    Returns:
        (S, K) float32 counts.

    Raises:
        ValueError: a code outside ``[0, num_codes)`` (the sidecars come from another tokenizer).
    """
    out = np.zeros((len(sequences), num_codes), np.float32)
    for i, seq in enumerate(sequences):
        s = np.asarray(seq, dtype=np.int64)
        if s.size and (s.min() < 0 or s.max() >= num_codes):
            raise ValueError(f"segment {i}: code {int(s.max())} outside [0, {num_codes})")
        out[i] = np.bincount(s, minlength=num_codes)
    return out


def tf_features(counts: np.ndarray) -> np.ndarray:
    """(S, K) counts → L1-normalised term frequencies (all-zero rows stay zero)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=1, keepdims=True)
    return (counts / np.where(total > 0, total, 1.0)).astype(np.float32)


def idf_weights(counts: np.ndarray) -> np.ndarray:
    """(K,) smoothed inverse document frequency ``ln((S + 1) / (df + 1)) + 1`` from (S, K) counts.

    ``df`` counts the segments in which a code really occurs (count > 0): a code in every segment
    gets weight 1, a rare one up to ``ln((S + 1) / 1) + 1``.
    """
    counts = np.asarray(counts)
    df = (counts > 0).sum(axis=0)
    return (np.log((counts.shape[0] + 1.0) / (df + 1.0)) + 1.0).astype(np.float32)


def tfidf_features(counts: np.ndarray, idf: np.ndarray | None = None) -> np.ndarray:
    """(S, K) counts → TF · IDF, rows L2-normalised; ``idf`` from :func:`idf_weights` (fitted) or None."""
    weights = idf_weights(counts) if idf is None else np.asarray(idf, np.float32)
    x = tf_features(counts) * weights[None, :]
    return l2_normalize(x)


def mean_vector(vectors: np.ndarray) -> np.ndarray:
    """(N, D) vector sequence → (D,) mean (zeros for an empty sequence)."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.shape[0] == 0:
        return np.zeros(v.shape[-1] if v.ndim == 2 else 0, np.float32)
    return v.mean(axis=0)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by their L2 norm (zero rows stay zero). (S, F) → (S, F) float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, eps)


def max_len_from_lengths(lengths: Sequence[int], percentile: float, multiple: int, cap: int = 0) -> int:
    """Maximum sequence length covering ``percentile`` % of the sequences, rounded UP to ``multiple``.

    Longer sequences are truncated to their first ``max_len`` tokens; the percentile keeps a few very
    long segments from padding every batch to their length.

    Args:
        lengths: (S,) sequence lengths (> 0 for at least one).
        percentile: in (0, 100].
        multiple: round up to a multiple of this (>= 1).
        cap: upper bound (0 = none); never below ``multiple``.

    Raises:
        ValueError: no non-empty sequence.
    """
    n = np.asarray([x for x in lengths if x > 0], dtype=np.float64)
    if n.size == 0:
        raise ValueError("no non-empty sequence to size max_len from")
    q = float(np.percentile(n, percentile))
    out = int(np.ceil(q / multiple) * multiple)
    out = min(out, int(np.ceil(n.max() / multiple) * multiple))
    if cap > 0:
        out = min(out, max(cap, multiple))
    return max(out, multiple)

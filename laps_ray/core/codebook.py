"""Codebook-health metrics of the tokenizer: perplexity, entropy, unique and dead codes.

Every ratio uses the TRUE number of FSQ codes (:func:`laps_ray.models.fsq_levels.true_codebook_size`,
1920 for the nominal 2048), never the nominal size: against 2048, 128 codes that can never occur would
count as dead. Metric names are ``split/name`` (``train/perplexity``) when a prefix is given.

Note that one batch of B·L ids bounds the measurable entropy (``ln(B·L) / ln(K)``, ~0.81 for 480 ids
and K = 2048), so collapse is judged on per-epoch counts (:class:`CodebookAccumulator`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def _counts(ids: Tensor, true_size: int) -> Tensor:
    flat = torch.as_tensor(ids).reshape(-1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= true_size):
        raise ValueError(
            f"code ids must lie in [0, {true_size}) (the true codebook size), "
            f"got range [{int(flat.min())}, {int(flat.max())}]"
        )
    return torch.bincount(flat, minlength=true_size)


def _prefixed(stats: dict[str, float | int], prefix: str | None) -> dict[str, float | int]:
    return {f"{prefix}/{k}": v for k, v in stats.items()} if prefix else stats


def stats_from_counts(counts: Tensor, true_size: int, prefix: str | None = None) -> dict[str, float | int]:
    """Codebook metrics from per-code counts ``(true_size,)``; see :func:`codebook_stats`."""
    counts = counts.detach().to("cpu", torch.float64)
    if counts.numel() != true_size:
        raise ValueError(f"counts has {counts.numel()} entries, expected true_size {true_size}")
    total = float(counts.sum())
    unique = int((counts > 0).sum())
    if total > 0:
        p = counts[counts > 0] / total
        entropy = float(-(p * p.log()).sum())
    else:
        entropy = 0.0
    stats = {
        "perplexity": math.exp(entropy) if total > 0 else 0.0,
        "entropy": entropy,
        "entropy_norm": entropy / math.log(true_size) if true_size > 1 else 0.0,
        "unique_codes": unique,
        "usage_ratio": unique / true_size,
        "dead_code_ratio": (true_size - unique) / true_size,
        "num_ids": int(total),
        "true_codebook_size": int(true_size),
    }
    return _prefixed(stats, prefix)


def codebook_stats(ids: Tensor, true_size: int, prefix: str | None = None) -> dict[str, float | int]:
    """Usage statistics of a batch of code ids.

    Args:
        ids: int tensor of any shape with values in ``[0, true_size)``.
        true_size: true number of codes (``prod(levels)``).
        prefix: optional split name; keys become ``"{prefix}/{name}"``.

    Returns:
        ``perplexity`` (exp of the entropy in nats; = number of codes if uniform), ``entropy`` (nats),
        ``entropy_norm`` (entropy / ln(true_size)), ``unique_codes``, ``usage_ratio`` (unique /
        true_size), ``dead_code_ratio`` (1 - usage_ratio), ``num_ids``, ``true_codebook_size``.

    Raises:
        ValueError: an id outside ``[0, true_size)``.
    """
    return stats_from_counts(_counts(ids, true_size), true_size, prefix)


@dataclasses.dataclass
class CodebookAccumulator:
    """Per-epoch code counts: ``update(ids)`` every step, ``stats()`` at the end, ``reset()``.

    Counts stay on the device of the first ids (no host sync per step); :meth:`merge` adds another
    accumulator's counts (e.g. gathered from other training workers).
    """

    true_size: int
    counts: Tensor | None = None

    def update(self, ids: Tensor) -> None:
        """Add a batch of ids (any shape) to the counts."""
        flat = ids.detach().reshape(-1).long()
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.true_size):
            lo, hi = int(flat.min()), int(flat.max())
            raise ValueError(f"code ids must lie in [0, {self.true_size}), got range [{lo}, {hi}]")
        batch = torch.bincount(flat, minlength=self.true_size)
        self.counts = batch if self.counts is None else self.counts + batch.to(self.counts.device)

    def merge(self, other: CodebookAccumulator) -> None:
        """Add the counts of ``other`` (same ``true_size``)."""
        if other.true_size != self.true_size:
            raise ValueError(f"cannot merge true_size {other.true_size} into {self.true_size}")
        if other.counts is not None:
            self.counts = (
                other.counts.clone()
                if self.counts is None
                else self.counts + other.counts.to(self.counts.device)
            )

    def reset(self) -> None:
        """Forget all counts (start of an epoch)."""
        self.counts = None

    def stats(self, prefix: str | None = None) -> dict[str, float | int]:
        """:func:`codebook_stats` of everything seen since the last reset."""
        counts = self.counts if self.counts is not None else torch.zeros(self.true_size, dtype=torch.long)
        return stats_from_counts(counts, self.true_size, prefix)


def collapse_warning(
    history: Sequence[Mapping[str, float]],
    threshold: float = 0.05,
    epochs: int = 2,
    prefix: str | None = None,
) -> str | None:
    """Warning text when the codebook has collapsed for the last ``epochs`` epochs, else None.

    Args:
        history: per-epoch stats dicts, oldest first (from :meth:`CodebookAccumulator.stats`).
        threshold: collapse when ``unique_codes < threshold * true_codebook_size``.
        epochs: consecutive epochs required.
        prefix: the prefix the stats were made with (e.g. ``"train"``), if any.
    """
    if len(history) < epochs:
        return None
    key = f"{prefix}/" if prefix else ""
    recent = history[-epochs:]
    try:
        pairs = [(int(h[f"{key}unique_codes"]), int(h[f"{key}true_codebook_size"])) for h in recent]
    except KeyError as exc:
        raise KeyError(f"collapse_warning: stats dict has no key {exc} (prefix={prefix!r})") from None
    if not all(unique < threshold * size for unique, size in pairs):
        return None
    size = pairs[-1][1]
    used = ", ".join(str(u) for u, _ in pairs)
    return (
        f"codebook collapse: {key}unique_codes < {threshold:.0%} of the {size} real codes for the last "
        f"{epochs} epochs ({used}); the tokens carry little information. Try loss.usage_weight > 0, "
        "focal loss / radial class weights, z_noise_std > 0, or check the input motion scale."
    )

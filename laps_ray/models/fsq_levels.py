"""Nominal codebook size → FSQ levels, with the true number of codes.

FSQ (finite scalar quantisation) bounds each of ``d = len(levels)`` latent channels to ``levels[i]``
integer values, so the codebook holds ``prod(levels)`` codes. The AMPLIFY/LAPS tokenizer names its
codebook by a power of two, but the levels chosen for it do not always multiply to that number:
nominal 2048 has levels 8·8·6·5 = **1920** codes, nominal 4096 has 7·5·5·5·5 = **4375** (more than
4096). Every metric (perplexity, dead codes) must use the true count. An unknown size is an error,
never a silent fallback.
"""

from __future__ import annotations

import math

# Same table as the original tokenizer (reference/tokenizer_and_paper.md §1.3), so imported checkpoints
# get the same quantiser layout.
FSQ_LEVELS: dict[int, tuple[int, ...]] = {
    16: (5, 3),
    64: (8, 8),
    256: (8, 6, 5),
    512: (8, 8, 8),
    1024: (8, 5, 5, 5),
    2048: (8, 8, 6, 5),
    4096: (7, 5, 5, 5, 5),
}


def valid_codebook_sizes() -> list[int]:
    """The nominal codebook sizes that have an FSQ level table entry, ascending."""
    return sorted(FSQ_LEVELS)


def levels_for_codebook_size(codebook_size: int) -> list[int]:
    """FSQ levels for a nominal codebook size.

    Raises:
        ValueError: ``codebook_size`` is not in the table; the message lists the valid sizes.
    """
    try:
        return list(FSQ_LEVELS[int(codebook_size)])
    except KeyError:
        raise ValueError(
            f"codebook_size {codebook_size!r} has no FSQ level table entry; "
            f"valid sizes are {valid_codebook_sizes()}"
        ) from None


def true_codebook_size(codebook_size: int) -> int:
    """Number of distinct codes FSQ can produce for a nominal size (e.g. 2048 → 1920, 4096 → 4375)."""
    return math.prod(levels_for_codebook_size(codebook_size))

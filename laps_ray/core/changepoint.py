"""Change-point score between the actions of adjacent blocks of windows.

The energy state machine only separates motion from rest. Two actions done back to back without
a pause keep the energy high, so the reference produced one long segment (or, with its 2 s cap,
periodic pieces unrelated to the actions). This module scores, for every window ``c``, how much the
motion (or latent actions) of the ``k`` windows ``c-k+1 .. c`` ("before") differ from those of the ``k``
windows ``c+1 .. c+k`` ("after"). ``score[c]`` is the score of a boundary *between window c and
window c+1*; the state machine turns local peaks above a threshold into END (window c) + START
(window c+1) while a segment is active.

Three statistics, all in [0, 1], 0 = same distribution, 1 = nothing in common, scale-free so one
threshold means the same thing for any codebook size, latent width or object size:

* ``code_mmd`` (default; needs only code ids, which ``energy.jsonl`` stores, so thresholds can be
  swept without re-running the tokenizer). With ``a_c``/``b_c`` the counts of code ``c`` in the
  before/after block (``n_a``/``n_b`` tokens)::

      S_aa = sum a_c (a_c - 1) / (n_a (n_a - 1))   # unbiased estimate of sum p_a(c)^2
      S_bb = likewise,   S_ab = sum a_c b_c / (n_a n_b)
      score = max(0, 1 - 2 S_ab / (S_aa + S_bb))

  i.e. the unbiased MMD^2 with the identity kernel, normalised by the blocks' self-similarity. Unlike
  a Jensen-Shannon divergence of histograms it has no small-sample bias towards "different"
  (expected value 0 under no change whatever the codebook size), and it reaches 1 for disjoint code
  sets however many codes each action uses.
* ``motion`` (default; needs the per-window motion features of ``core.motion.motion_features``:
  direction, frequency, turning and speed of the acting points, camera motion removed): the mean
  over the features of the one-way ANOVA R^2 of the before/after split, each feature on its own
  scale. It sees what changes when one action turns into another (a push sideways becoming a lift,
  a circle becoming a shake) and, like the ``motion`` energy, not the conveyor, the shaking camera or
  the flicker. The defaults ``k=5``, ``threshold=0.45`` were chosen on ``benchmarks/segment_quality.py``
  (8 x 45 s per setting, re-segmenting the cached runs at their thresholds, then from the
  ``otsu_log`` label rule): boundary F1@1s / back-to-back recall
  0.91-0.97 / 0.93-1.00 with each distractor alone and 0.79 / 0.76 with all of them, against
  0.88-0.95 / 0.93-1.00 and 0.78 / 0.72 at k=4, 0.5 (more false splits: precision 0.82 on clean
  scenes) and 0.78-0.89 / 0.00-0.34 without change points. The latent actions of the shipped
  tokenizer (``code_mmd``) lowered F1 there.
* ``latent_r2`` (needs the quantized vectors): the fraction of the variance of the 2k·L token
  vectors explained by splitting them into the two blocks, ``between / (between + within)``
  (one-way ANOVA R^2 summed over dimensions). It sees geometry (nearby codes = similar motions) but
  only mean shifts; under no change its expectation is about ``1 / (2·k·L + 1)``.

Measured limits (tests/unit/test_segmentation.py and a simulation done when this was designed): with
i.i.d. tokens per block (60 tokens per side, k=4, L=15) the no-change 99.9 % quantile of
``code_mmd`` is 0.21 for 4 distinct codes and 0.42 for 40, so the default threshold 0.5 holds. If
each window is dominated by one code drawn afresh per window, the effective sample is k, not k·L,
and a stationary but varied action scores 0.5-0.9 for 12-40 codes: then raise ``k`` or the
threshold. These two are therefore opt-in; ``motion`` is the default (measured above).

Streaming: the score of boundary ``c`` needs windows up to ``c + k``, so :func:`step` emits it
``k`` windows late (:func:`lag_windows`), and the state machine needs one more window to see that
``c`` is a local peak. An online caller therefore runs the segmentation state machine ``k``
windows behind the tokenizer; offline, :func:`changepoint_scores` (a fold of :func:`step`) gives
every score at once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from laps_ray.config import check, check_choice

CHANGEPOINT_METHODS = ("motion", "code_mmd", "latent_r2")
_INPUT = {"motion": ("features", 1), "code_mmd": ("codes", 1), "latent_r2": ("zq", 2)}  # name, ndim


@dataclass
class ChangePointConfig:
    """Splitting an active segment where the latent actions change without a rest.

    Attributes:
        enable: use change points in the state machine (on by default with ``motion``, measured:
            module doc).
        method: ``motion`` (motion features), ``code_mmd`` (code ids) or ``latent_r2`` (quantized
            vectors); see module doc.
        k: windows per block on each side (default 5: 32 frames = 1.6 s of video per side at
            T=16, stride=4, 20 fps). Also the streaming lag in windows.
        threshold: minimum score (0-1) of a peak to split.
        min_gap_windows: minimum distance, in windows, between two change boundaries (two peaks
            closer than one block use overlapping evidence).
        min_valid_windows: minimum number of windows with codes (not gated) in each block; fewer
            gives score 0. 0 means ceil(k / 2).
    """

    enable: bool = True
    method: str = "motion"
    k: int = 5
    threshold: float = 0.45
    min_gap_windows: int = 4
    min_valid_windows: int = 0

    def __post_init__(self) -> None:
        check_choice(self.method, CHANGEPOINT_METHODS, "changepoint.method")
        check(self.k >= 1, "changepoint.k", f"must be >= 1, got {self.k}")
        check(
            math.isfinite(self.threshold) and 0.0 < self.threshold <= 1.0,
            "changepoint.threshold",
            f"must be in (0, 1], got {self.threshold}",
        )
        check(self.min_gap_windows >= 0, "changepoint.min_gap_windows", "must be >= 0")
        check(
            0 <= self.min_valid_windows <= self.k,
            "changepoint.min_valid_windows",
            f"must be in [0, k={self.k}], got {self.min_valid_windows}",
        )

    @property
    def min_valid(self) -> int:
        """Effective minimum of valid windows per block."""
        return self.min_valid_windows or -(-self.k // 2)


def lag_windows(cfg: ChangePointConfig) -> int:
    """Windows between feeding window ``c + k`` and getting the score of boundary ``c``: ``k``."""
    return cfg.k


def code_mmd_score(before: np.ndarray, after: np.ndarray) -> float:
    """Normalised unbiased identity-kernel MMD^2 between two bags of code ids (see module doc).

    Args:
        before, after: 1-D int arrays of code ids (>= 2 each).

    Returns:
        Score in [0, 1]; 0 when either block has fewer than 2 tokens or every code in both blocks
        is unique (no repetition to compare).
    """
    a = np.asarray(before).ravel()
    b = np.asarray(after).ravel()
    if a.size < 2 or b.size < 2:
        return 0.0
    _, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    ca = np.bincount(inv[: a.size], minlength=inv.max() + 1).astype(np.float64)
    cb = np.bincount(inv[a.size :], minlength=inv.max() + 1).astype(np.float64)
    s_aa = float((ca * (ca - 1)).sum()) / (a.size * (a.size - 1))
    s_bb = float((cb * (cb - 1)).sum()) / (b.size * (b.size - 1))
    s_ab = float((ca * cb).sum()) / (a.size * b.size)
    self_sim = s_aa + s_bb
    if self_sim <= 0.0:
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - 2.0 * s_ab / self_sim)))


def feature_r2_score(before: np.ndarray, after: np.ndarray) -> float:
    """Mean over features of the share of each feature's variance explained by the before/after split.

    Args:
        before: (n_a, F) per-window features; after: (n_b, F).

    Returns:
        Score in [0, 1]; a feature that is constant over both blocks contributes 0.
    """
    a = np.asarray(before, dtype=np.float64)
    b = np.asarray(after, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return 0.0
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    mu = (len(a) * mu_a + len(b) * mu_b) / (len(a) + len(b))
    between = len(a) * (mu_a - mu) ** 2 + len(b) * (mu_b - mu) ** 2
    total = between + ((a - mu_a) ** 2).sum(axis=0) + ((b - mu_b) ** 2).sum(axis=0)
    scale = (np.concatenate([a, b]) ** 2).sum(axis=0)
    r2 = np.where(total > 1e-12 * np.maximum(scale, 1e-300), between / np.where(total > 0, total, 1.0), 0.0)
    return float(min(1.0, r2.mean()))


def latent_r2_score(before: np.ndarray, after: np.ndarray) -> float:
    """Fraction of token-vector variance explained by the before/after split.

    Args:
        before: (n_a, D) token vectors; after: (n_b, D).

    Returns:
        ``between / (between + within)`` in [0, 1]; 0 when all vectors are (numerically) equal.
    """
    a = np.asarray(before, dtype=np.float64).reshape(-1, np.shape(before)[-1])
    b = np.asarray(after, dtype=np.float64).reshape(-1, np.shape(after)[-1])
    if len(a) == 0 or len(b) == 0:
        return 0.0
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    mu = (len(a) * mu_a + len(b) * mu_b) / (len(a) + len(b))
    within = float(((a - mu_a) ** 2).sum() + ((b - mu_b) ** 2).sum())
    between = float(len(a) * ((mu_a - mu) ** 2).sum() + len(b) * ((mu_b - mu) ** 2).sum())
    total = within + between
    # Guard against rounding noise when every vector is the same (0/0).
    scale = float((np.concatenate([a, b]) ** 2).sum())
    if total <= 1e-12 * max(scale, 1e-300):
        return 0.0
    return float(min(1.0, between / total))


@dataclass(frozen=True)
class ChangePointState:
    """Streaming state: the last 2k windows' tokens (None for gated windows), oldest first.

    Attributes:
        next_window: index of the next window to feed.
        history: up to 2k entries; each (L,) codes or (L, D) vectors, or None (no tokens).
    """

    next_window: int = 0
    history: tuple[np.ndarray | None, ...] = ()


def init_changepoint() -> ChangePointState:
    """Fresh state for a new stream."""
    return ChangePointState()


def _block_score(before: list, after: list, cfg: ChangePointConfig) -> float:
    before = [x for x in before if x is not None]
    after = [x for x in after if x is not None]
    if len(before) < cfg.min_valid or len(after) < cfg.min_valid or not before or not after:
        return 0.0
    if cfg.method == "code_mmd":
        return code_mmd_score(np.concatenate(before), np.concatenate(after))
    if cfg.method == "motion":
        return feature_r2_score(np.stack(before), np.stack(after))
    return latent_r2_score(np.concatenate(before), np.concatenate(after))


def step(
    state: ChangePointState,
    cfg: ChangePointConfig,
    codes: np.ndarray | None = None,
    zq: np.ndarray | None = None,
    features: np.ndarray | None = None,
) -> tuple[ChangePointState, tuple[int, float] | None]:
    """Feed window ``t = state.next_window``; get the score of boundary ``t - k`` once known.

    Args:
        state: current state (not modified).
        cfg: change-point settings (``method`` picks which input is used).
        codes: (L,) int code ids of window t (``code_mmd``); None for a gated window.
        zq: (L, D) quantized vectors of window t (``latent_r2``); None for a gated window.
        features: (F,) motion features of window t (``motion``); None (or NaN) for a window that was
            not tracked.

    Returns:
        ``(new_state, (c, score))`` with ``c = t - k`` once ``t >= 2k - 1``, else ``(new_state, None)``.
    """
    name, want = _INPUT[cfg.method]
    item = {"codes": codes, "zq": zq, "features": features}[name]
    if item is not None:
        item = np.asarray(item)
        if item.ndim != want:
            w = state.next_window
            raise ValueError(f"changepoint window {w}: expected {want}-D {name}, got {item.shape}")
        if name == "features" and not np.isfinite(item).all():
            item = None  # an untracked window has no features
    k = cfg.k
    history = (*state.history, item)[-2 * k :]
    t = state.next_window
    new = dataclasses.replace(state, next_window=t + 1, history=history)
    if t < 2 * k - 1:
        return new, None
    return new, (t - k, _block_score(list(history[:k]), list(history[k:]), cfg))


def changepoint_scores(
    codes: np.ndarray | None,
    zq: np.ndarray | None,
    cfg: ChangePointConfig,
    valid: np.ndarray | None = None,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """Scores of every boundary of a video (a fold of :func:`step`).

    Args:
        codes: (W, L) int code ids, needed for ``code_mmd``.
        zq: (W, L, D) quantized vectors, needed for ``latent_r2``.
        cfg: change-point settings.
        features: (W, F) motion features (NaN rows: untracked windows), needed for ``motion``.
        valid: (W,) bool, False for gated windows (their tokens are ignored); default all valid.

    Returns:
        float64 (W,): ``out[c]`` scores a boundary between windows c and c+1; 0.0 where a full
        block is missing on either side (``c < k - 1`` or ``c > W - k - 1``).
    """
    name, item_ndim = _INPUT[cfg.method]
    data = {"codes": codes, "zq": zq, "features": features}[name]
    if data is None:
        raise ValueError(f"changepoint.method={cfg.method!r} needs {name}, which was not given")
    data = np.asarray(data)
    want = item_ndim + 1
    if data.ndim != want:
        raise ValueError(f"changepoint.method={cfg.method!r}: expected a {want}-D array, got {data.shape}")
    W = data.shape[0]
    valid = np.ones(W, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != (W,):
        raise ValueError(f"valid mask shape {valid.shape} != ({W},)")
    out = np.zeros(W, dtype=np.float64)
    state = init_changepoint()
    for w in range(W):
        x = data[w] if valid[w] else None
        state, res = step(state, cfg, **{name: x})
        if res is not None:
            out[res[0]] = res[1]
    return out

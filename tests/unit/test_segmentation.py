"""The segmentation state machine (every rule, table-driven) and the change-point score."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from laps_ray.config import ConfigError
from laps_ray.core import changepoint as cpm
from laps_ray.core.changepoint import ChangePointConfig, changepoint_scores, code_mmd_score, latent_r2_score
from laps_ray.core.segmentation import (
    ALIGNS,
    Drop,
    End,
    SegmentationConfig,
    SegState,
    Start,
    WindowGeometry,
    finish,
    segment_events,
    segment_offline,
    step,
)

GEOM = WindowGeometry(T=16, stride=4, target_fps=20.0)
H, M, LO = 2.0, 0.97, 0.0  # high (>= on), middle (in [off, on)), low (< off) for on=1, off=0.95


def cfg_(**kw) -> SegmentationConfig:
    kw.setdefault("threshold", 1.0)
    # Frames below are worked out for ``center`` (the alignment of a window-mean energy); the
    # default ``end`` is the motion energy's and is tested on its own below.
    kw.setdefault("align", "center")
    # The energy rules are tested without change points (on by default: they need change scores).
    kw.setdefault("changepoint", ChangePointConfig(enable=False))
    return SegmentationConfig(**kw)


def spans(energies, geom=GEOM, changes=None, **kw) -> list[tuple[int, int, str]]:
    """(start_window, end_window, reason) of the kept segments."""
    segs = segment_offline(np.asarray(energies, float), cfg_(**kw), geom, changes)
    return [(s.start_window, s.end_window, s.reason) for s in segs]


# ----------------------------------------------------------------------------- hysteresis, counts


@pytest.mark.parametrize(
    "energies, kw, expected",
    [
        # values in [off, on) keep the segment alive; END after 2 lows, the lows included
        ([LO, LO, H, H, H, M, M, H, LO, LO, LO], {}, [(2, 9, "low_energy")]),
        # the same values below off end it after two of them
        ([LO, LO, H, H, H, 0.9, 0.9, H, LO, LO, LO], {}, [(2, 6, "low_energy")]),
        # middle values never start a segment
        ([M] * 10, {}, []),
        # one isolated low window does not end (down_count 2)
        ([H, H, LO, H, H, LO, LO, LO], {}, [(0, 6, "low_energy")]),
        # up_count: an isolated high window does not start, a run of 2 does, from its first window
        ([H, LO, LO, H, H, LO, LO, LO, LO, LO], {"min_duration_sec": 0}, [(3, 6, "low_energy")]),
        ([H, LO, H, H, LO, H, H, H, LO, LO], {"up_count": 3, "min_duration_sec": 0}, [(5, 9, "low_energy")]),
        ([H, LO, LO, LO, LO], {"up_count": 1, "min_duration_sec": 0}, [(0, 2, "low_energy")]),
        # down_count 1 and 3
        (
            [H, H, H, LO, H, H],
            {"down_count": 1, "cooldown_windows": 0, "min_duration_sec": 0},
            [(0, 3, "low_energy"), (4, 5, "end_of_stream")],
        ),
        ([H, H, LO, LO, H, LO, LO, LO, LO], {"down_count": 3}, [(0, 7, "low_energy")]),
        # hysteresis ratio 1: on == off
        ([H, H, 1.0, 0.999, 0.999, LO], {"hysteresis_ratio": 1.0}, [(0, 4, "low_energy")]),
    ],
)
def test_hysteresis_and_counts(energies, kw, expected):
    assert spans(energies, **kw) == expected


def test_start_event_is_emitted_on_deciding_window_with_onset_window():
    cfg = cfg_(up_count=3)
    state, seen = SegState(), []
    for w, e in enumerate([LO, H, H, H, H]):
        state, evs = step(state, e, cfg, GEOM, window=w)
        seen += [(w, ev) for ev in evs]
    assert seen == [(3, Start(window=1, start_frame=1 * 4 + 8, cause="energy"))]


# ------------------------------------------------------------------------------------------ cooldown


@pytest.mark.parametrize("cooldown, onset", [(0, 6), (1, 7), (2, 10), (3, 10)])
def test_cooldown_blocks_exactly_that_many_windows(cooldown, onset):
    # segment 0..5 (END at window 5), then H H H L H H H
    e = [H, H, H, H, LO, LO, H, H, H, LO, H, H, H, LO, LO]
    got = spans(e, cooldown_windows=cooldown, min_duration_sec=0)
    assert got[0] == (0, 5, "low_energy")
    assert got[1][0] == onset


def test_cooldown_one_is_not_a_no_op():
    # The reference decremented before checking, so cooldown 1 behaved like 0.
    e = [H, H, LO, LO, H, H, LO, LO]
    assert spans(e, cooldown_windows=0, min_duration_sec=0)[1][0] == 4
    assert spans(e, cooldown_windows=1, min_duration_sec=0)[1:] == []


# ------------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    "min_sec, kept",
    [(0.0, True), (0.2, True), (0.21, False), (0.8, False)],
)
def test_min_duration_drops_never_raises(min_sec, kept):
    # u = d = 1, one high window at 3: starts at its centre 3*4+8 = 20; END on window 4, the segment
    # ends at the last high window's centre + stride - 1 = 3*4+8+3 = 23: 4 frames = 0.2 s
    e = [LO, LO, LO, H, LO, LO, LO]
    cfg = cfg_(up_count=1, down_count=1, min_duration_sec=min_sec)
    events = segment_events(e, cfg, GEOM)
    assert isinstance(events[0], Start)
    closing = events[1]
    assert type(closing) is (End if kept else Drop)
    assert (closing.start_frame, closing.end_frame, closing.window) == (20, 23, 4)
    assert len(segment_offline(e, cfg, GEOM)) == int(kept)


def test_max_duration_cuts_and_is_never_exceeded():
    e = [H] * 30
    segs = segment_offline(e, cfg_(max_duration_sec=2.0), GEOM)
    # first: frames 8..47 (40 frames = 2 s), END on window 8 (its last frame 47 reaches 2 s)
    assert (segs[0].start_window, segs[0].end_window, segs[0].start_frame, segs[0].end_frame) == (0, 8, 8, 47)
    assert segs[0].reason == "max_duration"
    # cooldown 1 blocks window 9; onset 10 -> starts at frame 48, contiguous with the previous one
    assert segs[1].start_frame == 48
    assert all(s.num_frames <= 40 for s in segs)
    assert [s.reason for s in segs][:-1] == ["max_duration"] * (len(segs) - 1)
    # off by default: one segment
    assert spans(e) == [(0, 29, "end_of_stream")]


def test_duration_config_validation():
    with pytest.raises(ConfigError, match="max_duration_sec"):
        SegmentationConfig(min_duration_sec=1.0, max_duration_sec=0.5)
    with pytest.raises(ConfigError, match="align"):
        SegmentationConfig(align="middle")
    with pytest.raises(ConfigError, match="up_count"):
        SegmentationConfig(up_count=0)
    with pytest.raises(ConfigError, match="hysteresis_ratio"):
        SegmentationConfig(hysteresis_ratio=1.5)
    with pytest.raises(ValueError, match="is .auto.: the job resolves it"):
        step(SegState(), 1.0, SegmentationConfig(), GEOM)
    with pytest.raises(ValueError, match="not finite"):
        step(SegState(), float("nan"), cfg_(), GEOM)
    with pytest.raises(ValueError, match="expected window 0"):
        step(SegState(), 1.0, cfg_(), GEOM, window=1)


# ------------------------------------------------------------------------------------ alignment


@pytest.mark.parametrize(
    "align, start_frame, end_frame", [("start", 12, 35), ("center", 20, 31), ("end", 24, 24)]
)
def test_alignment_start_and_end_frame(align, start_frame, end_frame):
    # onset window 3 (frames 12..27); last high window 5 (frames 20..35); END on window 7 (lows 6, 7).
    # start: 12 / 35 (all motion); center: 3*4+8 = 20 / 5*4+8+3 = 31; end: 3*4+12 = 24 / 5*4+3 = 23,
    # clamped to the start (the strictest alignment leaves one frame of three moving windows)
    e = [LO, LO, LO, H, H, H, LO, LO, LO]
    (seg,) = segment_offline(e, cfg_(align=align, min_duration_sec=0), GEOM)
    assert (seg.start_window, seg.start_frame, seg.end_window, seg.end_frame) == (
        3,
        start_frame,
        7,
        end_frame,
    )
    assert seg.mean_energy == pytest.approx((3 * H + 2 * LO) / 5)


def test_onset_alignment_is_unbiased_on_a_planted_action():
    # Energy of a window = fraction of its frames inside a true action [f0, f1]; threshold 0.5.
    f0, f1, F = 101, 300, 420
    starts = np.arange(0, F - 16 + 1, 4)
    e = np.array([np.clip(min(s + 15, f1) - max(s, f0) + 1, 0, None) / 16 for s in starts])
    (seg,) = segment_offline(e, cfg_(threshold=0.5), GEOM, num_frames=F)
    assert abs(seg.start_frame - f0) <= 4  # within one stride; the deciding window would be later
    # The end is where motion stops: the last window with e >= off is the one starting at 292
    # (fraction (300-292+1)/16 >= 0.475), its centre + stride - 1 = 303: within one stride of f1.
    assert abs(seg.end_frame - f1) <= 4


def test_end_alignment_is_unbiased_for_an_energy_that_fires_on_any_motion_in_the_window():
    # The motion energy (core.motion) is high as soon as any frame of a window moves: model it as
    # 1 when the window overlaps the action [f0, f1], else 0. The first high window is the one whose
    # last frame reaches f0 and the last is the one whose first frame is f1, so ``end`` (the
    # default) puts both boundaries within one stride; ``center`` would be ~T/2 early and late.
    f0, f1, F = 101, 300, 420
    starts = np.arange(0, F - 16 + 1, 4)
    e = np.array([1.0 if (s + 15 >= f0 and s <= f1) else 0.0 for s in starts])
    (seg,) = segment_offline(
        e, SegmentationConfig(threshold=0.5, changepoint=ChangePointConfig(enable=False)), GEOM, num_frames=F
    )
    assert SegmentationConfig().align == "end"
    assert abs(seg.start_frame - f0) <= 4 and abs(seg.end_frame - f1) <= 4
    (centred,) = segment_offline(e, cfg_(threshold=0.5), GEOM, num_frames=F)
    assert seg.start_frame - centred.start_frame >= 4 and centred.end_frame - seg.end_frame >= 4


# ---------------------------------------------------------------------------------- end of stream


def test_end_of_stream_closes_and_clamps_to_last_frame():
    # F = 50 frames -> 10 windows, the last one (36..51) padded past frame 49
    e = [LO, LO, H, H, H, H, H, H, H, H]
    (seg,) = segment_offline(e, cfg_(), GEOM, num_frames=50)
    assert (seg.start_window, seg.end_window, seg.end_frame, seg.reason) == (2, 9, 49, "end_of_stream")


def test_end_of_stream_short_tail_is_dropped_not_lost_silently():
    e = [LO] * 8 + [H, H]  # onset 8 (centre 40) to the last frame 49: 10 frames < 0.8 s
    events = segment_events(e, cfg_(min_duration_sec=0.8), dataclasses.replace(GEOM, num_frames=50))
    assert [type(ev) for ev in events] == [Start, Drop]
    assert events[1].reason == "end_of_stream" and events[1].end_frame - events[1].start_frame + 1 == 10
    state = SegState()
    for x in e:
        state, _ = step(state, x, cfg_(), GEOM)
    with pytest.raises(ValueError, match="last fed window"):
        finish(state, cfg_(), GEOM, last_window=3)
    closed, _ = finish(state, cfg_(), GEOM, last_window=9)
    assert not closed.active and finish(closed, cfg_(), GEOM) == (closed, [])


# ------------------------------------------------------------------------- offline == online, invariants


def _online(energies, cfg, geom, changes=None):
    state, starts, segs = SegState(), [], []
    for w, e in enumerate(energies):
        before = state
        state, evs = step(state, e, cfg, geom, None if changes is None else changes[w], window=w)
        assert before.next_window == w  # the input state was not mutated
        for ev in evs:
            (starts if isinstance(ev, Start) else segs).append(ev)
    _, evs = finish(state, cfg, geom)
    segs += [ev for ev in evs if not isinstance(ev, Start)]
    starts += [ev for ev in evs if isinstance(ev, Start)]
    return starts, segs


@pytest.mark.parametrize("seed", range(8))
def test_offline_equals_online_and_invariants(seed):
    rng = np.random.default_rng(seed)
    W = 300
    # piecewise-constant regimes with noise so every rule gets exercised
    e = np.repeat(rng.choice([0.2, 0.97, 1.5], size=W // 10), 10) + rng.normal(0, 0.15, W)
    e = np.clip(e, 0, None)
    changes = rng.random(W)
    cfg = cfg_(
        up_count=int(rng.integers(1, 4)),
        down_count=int(rng.integers(1, 4)),
        cooldown_windows=int(rng.integers(0, 3)),
        min_duration_sec=float(rng.choice([0.0, 0.8, 1.5])),
        max_duration_sec=float(rng.choice([0.0, 3.0])),
        align=str(rng.choice(["start", "center", "end"])),
        changepoint=ChangePointConfig(enable=bool(seed % 2), threshold=0.8, min_gap_windows=3),
    )
    geom = dataclasses.replace(GEOM, num_frames=W * 4 + 12)
    offline = segment_offline(e, cfg, geom, changes)
    starts, closings = _online(e, cfg, geom, changes)
    assert [c.segment() for c in closings if isinstance(c, End)] == offline
    assert len(starts) == len(closings)  # every START is closed exactly once (End or Drop)

    on, off = cfg.threshold, cfg.threshold * cfg.hysteresis_ratio
    min_f = round(cfg.min_duration_sec * 20)
    prev_end_window = None
    for st, c in zip(starts, closings):
        assert st.window == c.start_window and st.start_frame == c.start_frame
        n = c.end_frame - c.start_frame + 1
        assert (n >= min_f) == isinstance(c, End)
        if cfg.max_duration_sec:
            assert n <= cfg.max_duration_sec * 20
        if st.cause == "energy":
            assert np.all(e[st.window : st.window + cfg.up_count] >= on)
            if prev_end_window is not None:  # cooldown respected after a non-change END
                assert st.window >= prev_end_window + 1 + cfg.cooldown_windows
        if c.reason == "low_energy":
            assert np.all(e[c.window - cfg.down_count + 1 : c.window + 1] < off)
        if c.reason == "change":
            assert cfg.changepoint.enable
        seg_e = e[c.start_window : c.window + 1]
        assert c.mean_energy == pytest.approx(seg_e.mean())
        # no END by low energy inside: no run of down_count lows before the last window
        lows = seg_e[:-1] < off
        run = 0
        for x in lows:
            run = run + 1 if x else 0
            assert run < cfg.down_count
        prev_end_window = c.window if c.reason != "change" else None
    kept = [c for c in closings if isinstance(c, End)]
    for a, b in zip(kept, kept[1:]):
        assert a.end_frame < b.start_frame and a.window < b.start_window


# ------------------------------------------------------------------------------- change points: score


def test_code_mmd_by_hand():
    assert code_mmd_score(np.array([0, 0, 1, 1]), np.array([2, 2, 3, 3])) == 1.0  # disjoint
    assert code_mmd_score(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])) == 0.0  # same (clipped)
    # S_aa = S_bb = 6/12, S_ab = 6/16 -> 1 - 2 * 0.375 / 1.0
    assert code_mmd_score(np.array([0, 0, 0, 1]), np.array([1, 1, 1, 0])) == pytest.approx(0.25)
    assert code_mmd_score(np.array([0]), np.array([1, 1])) == 0.0


def test_latent_r2_by_hand():
    assert latent_r2_score(np.array([[0.0], [0.0]]), np.array([[2.0], [2.0]])) == 1.0
    # within 4, between 4
    assert latent_r2_score(np.array([[0.0], [2.0]]), np.array([[2.0], [4.0]])) == pytest.approx(0.5)
    assert latent_r2_score(np.ones((3, 2)), np.ones((3, 2))) == 0.0


def test_streaming_scores_lag_k_and_match_offline():
    rng = np.random.default_rng(3)
    cfg = ChangePointConfig(method="code_mmd", k=3)
    codes = rng.integers(0, 5, size=(12, 15))
    valid = np.ones(12, bool)
    valid[4] = False
    offline = changepoint_scores(codes, None, cfg, valid)
    state, got = cpm.init_changepoint(), {}
    for t in range(12):
        state, res = cpm.step(state, cfg, codes=codes[t] if valid[t] else None)
        if res is not None:
            assert res[0] == t - cpm.lag_windows(cfg)
            got[res[0]] = res[1]
    assert sorted(got) == list(range(2, 9))  # k-1 .. W-k-1
    np.testing.assert_allclose([offline[c] for c in sorted(got)], [got[c] for c in sorted(got)])
    assert np.all(offline[:2] == 0) and np.all(offline[9:] == 0)
    with pytest.raises(ValueError, match="needs zq"):
        changepoint_scores(codes, None, ChangePointConfig(method="latent_r2"))


# --------------------------------------------------------------------- change points: segmentation


def _synthetic(method: str, seed: int, change: bool, W: int = 60, L: int = 15):
    """Windows 0-29 from distribution A, 30-59 from B (or A throughout); returns scores."""
    rng = np.random.default_rng(seed)
    is_b = (np.arange(W) >= 30) & change
    if method == "code_mmd":
        # A uses codes 0..11, B codes 8..19: overlapping supports (population score 2/3)
        codes = rng.integers(0, 12, size=(W, L)) + 8 * is_b[:, None]
        return changepoint_scores(codes, None, ChangePointConfig(enable=True, method="code_mmd"))
    # A ~ N(mu_a, I), B ~ N(mu_b, I) in D = 8, ||mu_a - mu_b|| = 6 (population R^2 = 36 / 68)
    D = 8
    mu = np.zeros((W, 1, D))
    mu[is_b, 0, 0] = 6.0
    zq = mu + rng.normal(size=(W, L, D))
    return changepoint_scores(None, zq, ChangePointConfig(enable=True, method="latent_r2", threshold=0.3))


@pytest.mark.parametrize("method", ["code_mmd", "latent_r2"])
@pytest.mark.parametrize("seed", range(4))
def test_change_point_splits_a_continuous_active_run(method, seed):
    scores = _synthetic(method, seed, change=True)
    thr = 0.5 if method == "code_mmd" else 0.3
    e = np.full(60, H)
    cp = ChangePointConfig(enable=True, method=method, threshold=thr)
    with_cp = segment_offline(e, cfg_(changepoint=cp), GEOM, scores)
    assert len(with_cp) == 2
    first, second = with_cp
    assert first.reason == "change" and abs(second.start_window - 30) <= 2
    assert first.end_window + 1 == second.start_window and first.end_frame + 1 == second.start_frame
    assert second.reason == "end_of_stream" and second.end_window == 59
    # without change points: one long segment
    assert spans(e) == [(0, 59, "end_of_stream")]


@pytest.mark.parametrize("method", ["code_mmd", "latent_r2"])
def test_change_point_does_not_split_a_stationary_run(method):
    thr = 0.5 if method == "code_mmd" else 0.3
    cp = ChangePointConfig(enable=True, method=method, threshold=thr)
    max_score = 0.0
    for seed in range(10):
        scores = _synthetic(method, 100 + seed, change=False)
        max_score = max(max_score, scores.max())
        assert spans(np.full(60, H), changes=scores, changepoint=cp) == [(0, 59, "end_of_stream")]
    assert max_score < thr


def test_change_point_does_not_split_off_the_fading_tail():
    # Action A (codes 0..11) active for windows 0..29, then rest with code 0 only: the latents change
    # at 30 but the energy falls, so the segment ends by energy with no "change" fragment.
    rng = np.random.default_rng(7)
    W, L = 45, 15
    codes = rng.integers(0, 12, size=(W, L))
    codes[30:] = 12
    e = np.where(np.arange(W) < 30, H, LO)
    scores = changepoint_scores(codes, None, ChangePointConfig(enable=True, method="code_mmd"))
    assert scores[29] > 0.9  # the rest looks like a "change"
    for align in ("start", "center", "end"):
        cp = ChangePointConfig(enable=True, method="code_mmd")
        assert spans(e, changes=scores, changepoint=cp, align=align) == [(0, 31, "low_energy")]


def _peak(W: int, *peaks: tuple[int, float]) -> np.ndarray:
    s = np.zeros(W)
    for c, v in peaks:
        s[c] = v
        s[c - 1] = max(s[c - 1], v / 2)
        s[c + 1] = max(s[c + 1], v / 2)
    return s


@pytest.mark.parametrize(
    "scores, kw, expected",
    [
        # a clear peak at 15: END at window 15, START at 16
        (_peak(40, (15, 0.9)), {}, [(0, 15, "change"), (16, 39, "end_of_stream")]),
        # below threshold: nothing
        (_peak(40, (15, 0.4)), {}, [(0, 39, "end_of_stream")]),
        # plateau 15-16: one split, at the plateau's last window
        (
            np.where(np.isin(np.arange(40), [15, 16]), 0.9, 0.0),
            {},
            [(0, 16, "change"), (17, 39, "end_of_stream")],
        ),
        # min_gap 4: the peak 3 windows after the first is ignored, one 5 after is used
        (_peak(40, (15, 0.9), (18, 0.9)), {}, [(0, 15, "change"), (16, 39, "end_of_stream")]),
        (
            _peak(40, (15, 0.9), (20, 0.9)),
            {},
            [(0, 15, "change"), (16, 20, "change"), (21, 39, "end_of_stream")],
        ),
        # old side too short (peak right after the start at window 0): no split
        (_peak(40, (2, 0.9)), {}, [(0, 39, "end_of_stream")]),
        # new side too short before the stream ends: split abandoned
        (_peak(40, (38, 0.9)), {}, [(0, 39, "end_of_stream")]),
        # new side long enough at the end of the stream: committed by finish
        (_peak(40, (35, 0.9)), {}, [(0, 35, "change"), (36, 39, "end_of_stream")]),
        # disabled: scores ignored
        (_peak(40, (15, 0.9)), {"enable": False}, [(0, 39, "end_of_stream")]),
    ],
)
def test_change_point_rules(scores, kw, expected):
    cp = ChangePointConfig(
        **{"enable": True, "method": "code_mmd", "threshold": 0.5, "min_gap_windows": 4, **kw}
    )
    # the cases are worked out with a 0.8 s (16 frames) minimum on both sides of a split
    assert spans(np.full(40, H), changes=scores, changepoint=cp, min_duration_sec=0.8) == expected


def test_change_split_is_contiguous_and_emitted_once_new_side_is_long_enough():
    cp = ChangePointConfig(enable=True, method="code_mmd", threshold=0.5)
    cfg = cfg_(changepoint=cp, min_duration_sec=0.8)
    scores = _peak(40, (15, 0.9))
    state, log = SegState(), []
    for w in range(40):
        state, evs = step(state, H, cfg, GEOM, scores[w])
        log += [(w, ev) for ev in evs]
    (w_start, _), (w_end, end), (w_new, new) = log
    assert isinstance(end, End) and isinstance(new, Start) and new.cause == "change"
    # midway between the centres of windows 15 (frame 67.5) and 16 (71.5): frame 70, whatever align
    assert (end.window, end.end_frame, new.window, new.start_frame) == (15, 69, 16, 70)
    for align in ALIGNS:
        segs = segment_offline(
            np.full(40, H), cfg_(changepoint=cp, min_duration_sec=0.8, align=align), GEOM, scores
        )
        assert (segs[0].end_frame, segs[1].start_frame) == (69, 70), align
    # the new side (from frame 70) must last max(0.8 s = 16 frames, k=5 windows x stride 4 = 20
    # frames), counted to its END frame: 20*4 + 8 + 3 = 91 with align=center (window 19's, 87, is short)
    assert w_end == w_new == 20
    with pytest.raises(ValueError, match="no change scores"):
        segment_offline(np.full(5, H), cfg, GEOM)


def test_segments_never_overlap_with_short_cooldown():
    # align start: the first segment ends at its last high window's last frame 1*4+15 = 19; the next
    # onset (window 4, first frame 16) would overlap it and is moved to 20
    e = [H, H, LO, LO, H, H, LO, LO]
    segs = segment_offline(e, cfg_(cooldown_windows=0, min_duration_sec=0, align="start"), GEOM)
    assert [(s.start_frame, s.end_frame) for s in segs] == [(0, 19), (20, 35)]

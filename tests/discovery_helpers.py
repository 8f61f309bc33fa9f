"""Planted token data for the discovery tests: K Markov generators over partly shared codes, and
segment_folder-shaped outputs (segments.json + codes sidecars + optional clips) made from them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

L, STRIDE, NUM_CODES, DIM = 15, 4, 1920, 16


def generators(k: int, seed: int = 0, own: int = 14, shared: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (codes (C,), transition matrix (C, C)) pairs; every generator also uses the same ``shared`` codes."""
    rng = np.random.default_rng(seed)
    pool = rng.permutation(NUM_CODES)
    common = pool[:shared]
    out = []
    for i in range(k):
        codes = np.concatenate([common, pool[shared + i * own : shared + (i + 1) * own]])
        trans = rng.dirichlet(np.full(len(codes), 0.3), size=len(codes))
        out.append((codes, trans))
    return out


def sample(gen: tuple[np.ndarray, np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """A sequence of ``n`` codes from one generator."""
    codes, trans = gen
    state = int(rng.integers(len(codes)))
    out = np.empty(n, np.int64)
    for t in range(n):
        out[t] = codes[state]
        state = int(rng.choice(len(codes), p=trans[state]))
    return out


def planted(k: int = 4, per_kind: int = 30, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """``per_kind`` sequences (15 + 4·(W-1) codes, W in 2..7 windows) of each of ``k`` generators."""
    gens = generators(k, seed)
    rng = np.random.default_rng(seed + 1)
    seqs, labels = [], []
    for i in range(per_kind * k):
        kind = i % k
        seqs.append(sample(gens[kind], L + STRIDE * (int(rng.integers(2, 8)) - 1), rng))
        labels.append(kind)
    return seqs, np.array(labels)


def vector_table(seed: int = 0) -> np.ndarray:
    """(NUM_CODES, DIM) quantized vector of each code (what a tokenizer's FSQ output would be)."""
    return np.random.default_rng(seed + 7).normal(0, 0.3, (NUM_CODES, DIM)).astype(np.float32)


def to_windows(seq: np.ndarray) -> np.ndarray:
    """A sequence as the (W, L) codes of overlapping windows (window w holds steps 4w .. 4w+14)."""
    w = (len(seq) - L) // STRIDE + 1
    return np.stack([seq[STRIDE * i : STRIDE * i + L] for i in range(w)])


def write_planted_outputs(
    root: Path, k: int = 4, per_kind: int = 30, videos: int = 6, seed: int = 0, clips: bool = False
) -> tuple[Path, Path]:
    """A segment_folder-shaped output of planted segments (kinds mixed within each video) and a
    ``labels.csv`` (``video,segment,label``). Returns ``(output folder, labels file)``."""
    seqs, labels = planted(k, per_kind, seed)
    table = vector_table(seed)
    rng = np.random.default_rng(seed + 3)
    out = root / "segments"
    rows = []
    for v in range(videos):
        vdir = out / f"video_{v:02d}"
        (vdir / "codes").mkdir(parents=True, exist_ok=True)
        mine = list(range(v, len(seqs), videos))
        segments, t = [], 0.0
        for j, i in enumerate(mine):
            label = f"segment_{j:04d}"
            codes = to_windows(seqs[i])
            vectors = table[codes] + rng.normal(0, 0.02, codes.shape + (DIM,)).astype(np.float32)
            np.save(vdir / "codes" / f"{label}.npy", vectors.astype(np.float32))
            side = {
                "format": "laps_ray.codes/1",
                "video": f"video_{v:02d}.mp4",
                "segment": label,
                "windows": list(range(10 * j, 10 * j + len(codes))),
                "codes": codes.tolist(),
                "vectors": f"{label}.npy",
                "vectors_shape": list(vectors.shape),
            }
            (vdir / "codes" / f"{label}.json").write_text(json.dumps(side))
            clip = None
            if clips:
                clip = f"clips/{label}.mp4"
                _write_clip(vdir / clip, int(labels[i]))
            dur = 0.2 * len(codes)
            segments.append(
                {
                    "start_sec": t,
                    "end_sec": t + dur,
                    "label": label,
                    "codes": f"codes/{label}.json",
                    "vectors": f"codes/{label}.npy",
                    "clip": clip,
                }
            )
            rows.append((f"video_{v:02d}.mp4", label, f"kind_{labels[i]}"))
            t += dur + 0.5
        doc = {
            "format": "laps_ray.segments/1",
            "video": f"video_{v:02d}.mp4",
            "video_duration_sec": t,
            "fps": 20.0,
            "segments": segments,
            "params": {"stride": STRIDE, "T": 16, "tokenizer": {"codebook_size": 2048}},
        }
        (vdir / "segments.json").write_text(json.dumps(doc))
    labels_file = root / "labels.csv"
    with open(labels_file, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "segment", "label"])
        w.writerows(rows)
    return out, labels_file


def _write_clip(path: Path, kind: int) -> None:
    """A 6-frame 32×32 clip whose colour says the kind (for the report's videos and posters)."""
    from laps_ray.io.video import write_video

    colour = np.array([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)][kind % 4], np.uint8)
    frames = [np.broadcast_to(colour, (32, 32, 3)).copy() for _ in range(6)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, frames, fps=10.0)

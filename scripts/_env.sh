# Sourced by scripts/demo.sh and scripts/test.sh: create or reuse the virtual environment.
#   LAPS_VENV         venv path (default .venv in the repo)
#   LAPS_TORCH_SPEC   torch requirement (default torch==2.13.0)
#   LAPS_TORCH_INDEX  optional --index-url for torch, e.g. https://download.pytorch.org/whl/cpu on a
#                     CPU-only machine that has no local CPU wheel (a plain PyPI torch is a CUDA build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${LAPS_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  echo "[setup] creating virtual environment $VENV" >&2
  python3 -m venv "$VENV"
fi
pipq() { "$PY" -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "is ignored" || true; }
# Presence checks read package metadata instead of importing torch: before numpy is installed, an
# import prints "UserWarning: Failed to initialize NumPy".
has_torch() { "$PY" -c "import importlib.metadata as m; m.version('torch')" 2>/dev/null; }
if ! has_torch; then
  # Torch first: later packages only need torch>=2.4 and must not pull a CUDA build.
  echo "[setup] installing ${LAPS_TORCH_SPEC:-torch==2.13.0}" >&2
  if [ -n "${LAPS_TORCH_INDEX:-}" ]; then
    pipq "${LAPS_TORCH_SPEC:-torch==2.13.0}" --index-url "$LAPS_TORCH_INDEX"
  else
    pipq "${LAPS_TORCH_SPEC:-torch==2.13.0}"
  fi
  has_torch || { echo "[setup] torch failed to install" >&2; exit 1; }
fi
STAMP="$VENV/.laps_ray_installed"
WANT="$(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup] installing laps_ray and its dependencies (a few minutes the first time)" >&2
  pipq -e ".[dev]"
  "$PY" -c "import laps_ray, ray, vector_quantize_pytorch, av, cv2, h5py" || { echo "[setup] install failed" >&2; exit 1; }
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"

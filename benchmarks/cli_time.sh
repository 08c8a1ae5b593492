#!/usr/bin/env bash
# Wall time of the `semseg` commands that need no model (version, help, list, plugins, config).
# Usage: benchmarks/cli_time.sh [RUNS]   (default 5 runs per command; prints median and min in seconds)
# Uses hyperfine when installed, else a plain loop timed with `date`.
# SEMSEG overrides the command (default: the venv's `semseg`, else `semseg` on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
semseg="${SEMSEG:-}"
if [[ -z "$semseg" ]]; then
  if [[ -x .venv/bin/semseg ]]; then semseg=.venv/bin/semseg; else semseg=semseg; fi
fi

commands=(
  "--version"
  "--help"
  "train --help"
  "list"
  "list --json"
  "plugins"
  "config synthetic_deeplabv3"
  "config synthetic_deeplabv3 train.iters=10 model.backbone.name=resnet"
  "config --list"
)

if command -v hyperfine >/dev/null 2>&1; then
  args=()
  for c in "${commands[@]}"; do args+=("$semseg $c"); done
  exec hyperfine --warmup 1 --runs "$runs" --style basic "${args[@]}"
fi

printf '%-60s %8s %8s\n' "command" "median" "min"
for c in "${commands[@]}"; do
  "$semseg" $c >/dev/null 2>&1 || { echo "failed: semseg $c" >&2; exit 1; }  # warm-up, also checks it works
  times=()
  for ((i = 0; i < runs; i++)); do
    start=$(date +%s%N)
    "$semseg" $c >/dev/null 2>&1
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000000 )))
  done
  sorted=($(printf '%s\n' "${times[@]}" | sort -n))
  median=${sorted[$(( runs / 2 ))]}
  awk -v c="semseg $c" -v m="$median" -v n="${sorted[0]}" 'BEGIN { printf "%-60s %7.2fs %7.2fs\n", c, m / 1000, n / 1000 }'
done

#!/usr/bin/env bash
# Time the quick start's main job (train + eval on the embedded dataset) and print its mIoU.
# Usage: bash benchmarks/quickstart.sh [extra key=value overrides]   (needs `pip install -e ".[cpu]"`)
set -euo pipefail
out=$(mktemp -d)
start=$(date +%s.%N)
semseg train "runtime.output_dir=$out" "$@"
end=$(date +%s.%N)
python3 - "$out/metrics.json" "$start" "$end" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))
print(f"wall time {float(sys.argv[3]) - float(sys.argv[2]):.1f} s, val mIoU {metrics['mIoU']:.4f}")
PY

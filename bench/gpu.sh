#!/usr/bin/env bash
# Every real-size benchmark in one go, for a single GPU (bf16, random weights at the published
# sizes, nothing downloaded): Show-o, Janus-Pro-1B and the judges. Writes each log to $OUT (or
# ./bench-logs) so the numbers can be copied into bench/RESULTS.md with this command.
#   bash bench/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench-logs}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python bench/generators.py --kind showo --size realistic --batches 1 4 16 64 2>&1 | tee "$out/showo.log"
python bench/generators.py --kind janus --size realistic --batches 1 4 16 32 2>&1 | tee "$out/janus.log"
python bench/judges.py --size realistic --images 64 --batches 1 4 16 32 2>&1 | tee "$out/judges.log"

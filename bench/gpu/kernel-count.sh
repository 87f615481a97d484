#!/usr/bin/env bash
# Kernels and GPU time per training step (base, bf16, 64 × 128), as ../shared/gpu/kernel-count.py
# says: two Nsight Compute runs of the same program, 2 and 4 timed steps after the same warm-up;
# the kernels of the two extra steps are counted and grouped. Writes ncu2.csv, ncu4.csv and
# kernel-count.txt into $1. Exits 3 (skipped) without ncu or the counting script.
set -euo pipefail
work=$1
command -v ncu > /dev/null || { echo "skip: ncu (Nsight Compute) is not on PATH"; exit 3; }
[ -f .gpu/tools/kernel-count.py ] || { echo "skip: .gpu/tools/kernel-count.py missing (npm run gpu:prepare copies it from ../shared/gpu)"; exit 3; }
for steps in 2 4; do
  ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
    node bench/gpu/steps.mjs --size base --dtype bf16 --batch 64 --seq 128 --warmup 2 --steps $steps > "$work/ncu$steps.csv"
done
python3 .gpu/tools/kernel-count.py "$work/ncu2.csv" "$work/ncu4.csv" | tee "$work/kernel-count.txt"

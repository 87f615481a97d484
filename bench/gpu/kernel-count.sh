#!/usr/bin/env bash
# Kernels and GPU time per training step (base, bf16, 64 × 128), as ../shared/gpu/kernel-count.py
# says: two Nsight Compute runs of the same program, 2 and 4 steps after one warm-up step; the
# kernels of the two extra steps are counted and grouped. The steps run without CUDA graphs
# (--graphs off: what an eager step launches; with graphs the same kernels are one replay). With
# the fused kernels (the default) into $1/kernel-count.txt; with KERNEL_COUNT_UNFUSED=1 also
# without them (ROFORMER_FUSED=0) into $1/kernel-count-unfused.txt (about 45 s per ncu run on an
# H200: 2026-12-01's lease measured 613 kernels and 15.3 ms fused, 1,134 and 19.6 ms unfused).
# Exits 3 (skipped) without ncu or the counting script.
set -euo pipefail
work=$1
command -v ncu > /dev/null || { echo "skip: ncu (Nsight Compute) is not on PATH"; exit 3; }
[ -f .gpu/tools/kernel-count.py ] || { echo "skip: .gpu/tools/kernel-count.py missing (npm run gpu:prepare copies it from ../shared/gpu)"; exit 3; }
count() {  # name, then the environment of the runs
  local name=$1; shift
  for steps in 2 4; do
    env "$@" ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
      node bench/gpu/steps.mjs --size base --dtype bf16 --batch 64 --seq 128 --warmup 1 --steps $steps --graphs off > "$work/$name-ncu$steps.csv"
  done
  echo "== $name"
  python3 .gpu/tools/kernel-count.py "$work/$name-ncu2.csv" "$work/$name-ncu4.csv" | tee "$work/$name.txt"
}
count kernel-count ROFORMER_FUSED=auto
[ "${KERNEL_COUNT_UNFUSED:-0}" = 1 ] && count kernel-count-unfused ROFORMER_FUSED=0
exit 0

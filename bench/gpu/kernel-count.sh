#!/usr/bin/env bash
# Kernels and GPU time per training step (base, bf16, 64 × 128), as ../shared/gpu/kernel-count.py
# says: two Nsight Compute runs of the same program, 2 and 4 steps after one warm-up step; the
# kernels of the two extra steps are counted and grouped. The steps run without CUDA graphs
# (--graphs off: what an eager step launches; with graphs the same kernels are one replay).
#
#   bench/gpu/kernel-count.sh WORK [fused] [unfused] [by-op]     (default: fused)
#
#   fused    with the fused kernels (the default build's path) → WORK/kernel-count.txt
#   unfused  without them (ROFORMER_FUSED=0) → WORK/kernel-count-unfused.txt
#   by-op    fused, each kernel named after the libtorch op that launched it (ROFORMER_NVTX_OPS=1,
#            ncu --nvtx --print-nvtx-rename kernel; bench/gpu/op-count.py) → WORK/kernel-ops.txt
#
# About 45 s per ncu run on an H200; 2026-12-01's lease measured 613 kernels and 15.3 ms fused,
# 1,134 and 19.6 ms unfused. The ncu CSVs stay beside the reports. Exits 3 (skipped) without ncu
# or the counting script.
set -euo pipefail
work=$1
shift
modes=${*:-fused}
command -v ncu > /dev/null || { echo "skip: ncu (Nsight Compute) is not on PATH"; exit 3; }
[ -f .gpu/tools/kernel-count.py ] || { echo "skip: .gpu/tools/kernel-count.py missing (npm run gpu:prepare copies it from ../shared/gpu)"; exit 3; }
runs() {  # name, extra ncu flags (one word), then the environment of the runs
  local name=$1 flags=$2; shift 2
  for steps in 2 4; do
    # shellcheck disable=SC2086
    env "$@" ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base $flags \
      node bench/gpu/steps.mjs --size base --dtype bf16 --batch 64 --seq 128 --warmup 1 --steps $steps --graphs off > "$work/$name-ncu$steps.csv"
  done
}
for mode in $modes; do
  case $mode in
    fused) runs kernel-count "" ROFORMER_FUSED=auto
      echo "== kernel-count"
      python3 .gpu/tools/kernel-count.py "$work/kernel-count-ncu2.csv" "$work/kernel-count-ncu4.csv" | tee "$work/kernel-count.txt" ;;
    unfused) runs kernel-count-unfused "" ROFORMER_FUSED=0
      echo "== kernel-count-unfused"
      python3 .gpu/tools/kernel-count.py "$work/kernel-count-unfused-ncu2.csv" "$work/kernel-count-unfused-ncu4.csv" | tee "$work/kernel-count-unfused.txt" ;;
    by-op) runs kernel-ops "--nvtx --print-nvtx-rename kernel" ROFORMER_FUSED=auto ROFORMER_NVTX_OPS=1
      echo "== kernel-ops"
      python3 bench/gpu/op-count.py "$work/kernel-ops-ncu2.csv" "$work/kernel-ops-ncu4.csv" | tee "$work/kernel-ops.txt" ;;
    *) echo "kernel-count.sh: unknown mode '$mode' (fused, unfused, by-op)" >&2; exit 2 ;;
  esac
done

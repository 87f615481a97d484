#!/usr/bin/env bash
# The compiler's resource report of the fused kernels for Hopper (nvcc -arch=sm_90 -Xptxas -v):
# registers, shared memory, stack frame and spills per kernel, written to
# bench/results/kernels-ptxas-sm90.txt with a summary line; fails when any kernel spills.
# Needs only nvcc (no GPU, no torch): npm run kernels:ptxas
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
nvcc=$(command -v nvcc || ls /usr/local/cuda*/bin/nvcc 2> /dev/null | head -1 || true)
[ -n "$nvcc" ] || { echo "kernels:ptxas: nvcc not found (PATH or /usr/local/cuda*/bin)" >&2; exit 1; }
report=$root/bench/results/kernels-ptxas-sm90.txt
log=$("$nvcc" -std=c++17 --extended-lambda -arch=sm_90 -Xptxas -v -c "$root/native/kernels/fused_kernels.cu" -o /dev/null 2>&1)
kernels=$(grep -c "Compiling entry function" <<< "$log")
spilling=$(grep "spill" <<< "$log" | grep -vc " 0 bytes spill stores, 0 bytes spill loads" || true)
registers=$(grep -o "Used [0-9]* registers" <<< "$log" | awk '{print $2}' | sort -n | tail -1)
summary="$("$nvcc" --version | tail -1 | sed 's/^Build //'): $kernels kernels for sm_90, at most $registers registers, $spilling with spills"
{ echo "# nvcc -arch=sm_90 -Xptxas -v native/kernels/fused_kernels.cu ($(date -u +%F))"; echo "# $summary"; echo; echo "$log" | c++filt; } > "$report"
echo "$summary (full report: ${report#$root/})"
[ "$spilling" = 0 ]

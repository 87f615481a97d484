#!/usr/bin/env bash
# The prepared GPU check (issues 21 item 5 and 19): one script that builds the addon against the
# GPU machine's pip torch and checks and measures everything that needs a GPU, each phase
# time-boxed so that one failure does not eat the lease, in about 9 minutes on an H100/H200.
#
#   bench/gpu/check.sh [--out DIR] [--budget SECONDS] [--only a,b] [--skip a,b] [--dry-run]
#
#   --out DIR       where the results go (default: $OUT, set by the device tool). At most 8 files,
#                   so that all of them come back through the device tool:
#                     summary.json        every phase's status, time and figures
#                     check.log           every phase's log, in order
#                     results.tar.gz      every file the phases wrote (bench JSON, ncu CSV, ...)
#                     roformer_native.node  the addon built there (reusable: ROFORMER_NATIVE=...)
#   --budget S      the whole run's wall-clock budget (default 560): each phase gets its own cap or
#                   what is left of the budget, whichever is less, and is skipped when too little is left
#   --only / --skip run only / leave out these phases (names as --dry-run prints them)
#   --dry-run       print the phases, their caps and commands, and exit
#
# Phases: env (the machine), build, cuda-check (scripts/cuda-check.mjs: every feature on CUDA),
# kernels (each fused kernel against the unfused expression: values and gradients), static-step
# (the static step against the eager one), graphs (CUDA-graph steps against eager ones),
# weight-copies (the weights' kept bf16 copies against a cast per forward, under graphs, across a
# loadStateDict),
# bench-128 and bench-512 (roformer-bench --vs-pytorch, base, bf16, 64 × 128 and 16 × 512),
# compile-128 (the same models in PyTorch under torch.compile at 64 × 128),
# kernel-count (Nsight Compute: kernels and GPU time per training step), op-count (the same step's
# libtorch ops by phase and name, roformer-bench --count-ops: beside kernel-count, how well the
# CPU-side count stands for kernels), pretrain-128 (`roformer
# pretrain --device cuda` at 64 × 128 beside bench-128's tokens/s), bench-256x128 (the
# issue's 256 × 128 shape), encode-128 (forward only, 64 × 128), kernel-ops (the kernel count
# by libtorch op, through NVTX ranges), hf-anchor (the Hugging
# Face RoBERTa step, eager and torch.compile; measured on 2026-12-01's run, so last). A phase whose feature this build lacks is
# recorded as skipped with the reason, not as a failure.
#
# Before a run, on the CPU machine: `npm run gpu:prepare` (makes .gpu/ and dist/), then through
# the device tool: run(command="bash bench/gpu/check.sh", carry=[".gpu", "dist"], timeout_s=600).
# Reusing an addon built by an earlier run: put it in .gpu/roformer_native.node (it is used
# instead of building when present and ROFORMER_GPU_REBUILD is not 1).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${OUT:-}
budget=560
only=
skip=
dry_run=0
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --skip) skip=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $budget =~ ^[0-9]+$ ]] || { echo "check.sh: --budget takes whole seconds, got '$budget'" >&2; exit 2; }

# name|cap (s)|command. Commands run in the project root with PATH holding the carried node.
bench_args="--device cuda --size base --dtype bf16 --vs-pytorch --no-torch-compile --steps 20 --warmup 5"
# torch.compile traces each model for a minute or so: a phase of its own, at the issue's shape.
compile_args="--device cuda --size base --dtype bf16 --vs-pytorch --steps 10 --warmup 3 --seq 128 --batch 64"
phases=(
  "env|30|bash bench/gpu/env.sh \$WORK/env.json"
  "build|300|bash bench/gpu/build.sh \$WORK"
  "cuda-check|150|node scripts/cuda-check.mjs --json \$WORK/cuda-check.json"
  "kernels|60|node bench/gpu/fused-check.mjs --json \$WORK/kernels.json"
  "static-step|90|node bench/gpu/static-step.mjs --json \$WORK/static-step.json"
  "graphs|120|node bench/gpu/graph-check.mjs --json \$WORK/graphs.json"
  "weight-copies|60|node bench/gpu/weight-copies-check.mjs --json \$WORK/weight-copies.json"
  "bench-128|120|node dist/bench/cli.js $bench_args --seq 128 --batch 64 --json \$WORK/bench-128.json"
  "bench-512|120|node dist/bench/cli.js $bench_args --seq 512 --batch 16 --json \$WORK/bench-512.json"
  "compile-128|200|node dist/bench/cli.js $compile_args --json \$WORK/compile-128.json"
  "kernel-count|150|bash bench/gpu/kernel-count.sh \$WORK"
  "op-count|45|node dist/bench/cli.js --count-ops --op-detail --device cuda --size base --dtype bf16 --seq 128 --batch 64 --warmup 2 --json \$WORK/op-count.json"
  "pretrain-128|90|node bench/gpu/pretrain-speed.mjs --json \$WORK/pretrain-128.json"
  "bench-256x128|90|node dist/bench/cli.js $bench_args --seq 128 --batch 256 --steps 10 --warmup 4 --json \$WORK/bench-256x128.json"
  "encode-128|60|node dist/bench/cli.js --device cuda --size base --dtype bf16 --mode encode --steps 20 --warmup 5 --seq 128 --batch 64 --json \$WORK/encode-128.json"
  "kernel-ops|120|bash bench/gpu/kernel-count.sh \$WORK by-op"
  "hf-anchor|150|python3 .gpu/tools/hf_anchor.py --size base --seq 128 --batch 64 --json \$WORK/hf-anchor.json"
)
listed() { [[ ",$1," == *",$2,"* ]]; }
for phase in "${phases[@]}"; do
  name=${phase%%|*}
  known+=",$name"
done
for name in ${only//,/ } ${skip//,/ }; do
  listed "$known," "$name" || { echo "check.sh: no phase named '$name' (phases:${known//,/ })" >&2; exit 2; }
done

if [ "$dry_run" = 1 ]; then
  echo "check.sh --dry-run: budget ${budget} s, output under ${out:-<--out DIR or \$OUT>}"
  for phase in "${phases[@]}"; do
    IFS='|' read -r name cap command <<< "$phase"
    state=run
    { [ -n "$only" ] && ! listed "$only" "$name"; } && state=off
    listed "$skip" "$name" && state=off
    printf '  %-13s cap %3s s  %-3s  %s\n' "$name" "$cap" "$state" "$command"
  done
  exit 0
fi
[ -n "$out" ] || { echo "check.sh: no output folder: pass --out DIR (the device tool sets \$OUT)" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
export WORK=$out/work
# Under the device tool only 8 files come back: the phases write into a work folder beside
# (not under) $OUT, which is packed into results.tar.gz after every phase.
[ -n "${OUT:-}" ] && [ "$out" = "$(cd "$OUT" && pwd)" ] && WORK=$(mktemp -d /tmp/roformer-gpu-check.XXXX)
mkdir -p "$WORK"
cd "$root"

# Node and the npm packages travel in .gpu (bench/gpu/prepare.sh); the tree's node_modules is a
# link that did not travel with it, or a real folder here.
if [ -f .gpu/node.xz ] && ! command -v node > /dev/null; then
  mkdir -p .gpu/bin && xz -d < .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
fi
export PATH=$root/.gpu/bin:$PATH
if [ -d .gpu/node_modules ] && [ ! -d node_modules/commander ]; then
  rm -rf node_modules && ln -s .gpu/node_modules node_modules
fi
if [ -z "${CMAKE_PREFIX_PATH:-}" ] && command -v python3 > /dev/null; then
  CMAKE_PREFIX_PATH=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2> /dev/null) && export CMAKE_PREFIX_PATH
fi
export PYTHONUNBUFFERED=1

started=$(date +%s)
blocked=
: > "$out/check.log"
: > "$WORK/phases.jsonl"
pack() {
  tar -C "$WORK" --exclude=roformer_native.node -czf "$out/results.tar.gz.partial" . 2> /dev/null && mv "$out/results.tar.gz.partial" "$out/results.tar.gz"
}
record() {  # name status seconds reason
  printf '{"phase":"%s","status":"%s","seconds":%s,"reason":"%s"}\n' "$1" "$2" "$3" "${4//\"/\'}" >> "$WORK/phases.jsonl"
  printf '%-13s %-8s %4s s  %s\n' "$1" "$2" "$3" "$4" | tee -a "$out/check.log"
}

for phase in "${phases[@]}"; do
  IFS='|' read -r name cap command <<< "$phase"
  if { [ -n "$only" ] && ! listed "$only" "$name"; } || listed "$skip" "$name"; then continue; fi
  if [ -n "$blocked" ]; then
    record "$name" skipped 0 "$blocked"
    continue
  fi
  left=$((budget - ($(date +%s) - started) - 10))
  limit=$((cap < left ? cap : left))
  if [ "$limit" -lt 15 ]; then
    record "$name" skipped 0 "no time left in the ${budget} s budget"
    continue
  fi
  log=$WORK/$name.log
  printf '\n===== %s (cap %s s): %s\n' "$name" "$limit" "$command" >> "$out/check.log"
  phase_started=$(date +%s)
  timeout --kill-after=10 "$limit" bash -c "$command" > "$log" 2>&1
  rc=$?
  seconds=$(($(date +%s) - phase_started))
  cat "$log" >> "$out/check.log"
  case $rc in
    0) record "$name" ok "$seconds" "" ;;
    3) record "$name" skipped "$seconds" "$(grep '^skip:' "$log" | tail -1 | cut -c7-)" ;;
    124 | 137) record "$name" timeout "$seconds" "stopped at its ${limit} s cap" ;;
    *) record "$name" failed "$seconds" "exit $rc: $(grep -v '^\s*$' "$log" | tail -1 | cut -c1-200)" ;;
  esac
  # Without an addon there is nothing left to check.
  [ "$name" = build ] && [ $rc != 0 ] && blocked="the build failed"
  pack
done

[ -f "$WORK/roformer_native.node" ] && cp "$WORK/roformer_native.node" "$out/"
python3 bench/gpu/summarize.py "$WORK" "$out/summary.json" $((($(date +%s) - started)))
pack
rm -f "$out/results.tar.gz.partial"

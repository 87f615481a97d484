#!/usr/bin/env bash
# The GPU machine as check.sh found it: GPU, driver, nvcc, python3's torch, Nsight Compute.
# Writes JSON to $1 and prints it.
set -uo pipefail
field() { "$@" 2> /dev/null | head -1 | tr -d '"' ; }
gpu=$(field nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader)
nvcc=$(field bash -c "nvcc --version | grep release")
torch=$(field python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")')
node=$(field node --version)
cat > "$1" <<JSON
{ "date": "$(date -u +%FT%TZ)", "gpu": "$gpu", "nvcc": "$nvcc", "ncu": "$(field ncu --version | grep -i version)",
  "torch": "$torch", "node": "$node", "cpus": $(nproc), "host": "$(hostname)" }
JSON
cat "$1"
nvidia-smi 2>&1 | head -20 || true

#!/usr/bin/env bash
# Builds the addon against python3's torch (CMAKE_PREFIX_PATH, set by check.sh) with cmake-js's own
# bin (there is no npm on the GPU machine), or reuses .gpu/roformer_native.node from an earlier
# run (ROFORMER_GPU_REBUILD=1 builds anyway). Copies the result and the build's JSON into $1.
set -euo pipefail
work=$1
mkdir -p build/Release
if [ -f .gpu/roformer_native.node ] && [ "${ROFORMER_GPU_REBUILD:-0}" != 1 ]; then
  echo "build: reusing .gpu/roformer_native.node (ROFORMER_GPU_REBUILD=1 builds instead)"
  cp .gpu/roformer_native.node build/Release/roformer_native.node
else
  # One try with everything; where that fails (a libtorch newer than this code knows), the same
  # build without the NVTX op ranges (a diagnostic), then without the CUDA graphs, then without
  # the fused kernels too, so the phases after this one still have an addon to check (the log
  # says which build it is).
  built=
  for extra in "" "--CDROFORMER_NVTX_OPS=OFF" "--CDROFORMER_NVTX_OPS=OFF --CDROFORMER_CUDA_GRAPHS=OFF" \
    "--CDROFORMER_NVTX_OPS=OFF --CDROFORMER_CUDA_GRAPHS=OFF --CDROFORMER_FUSED_KERNELS=OFF"; do
    echo "build: cmake-js compile --CDCMAKE_BUILD_TYPE=Release $extra"
    # shellcheck disable=SC2086
    if CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) node node_modules/cmake-js/bin/cmake-js compile --CDCMAKE_BUILD_TYPE=Release $extra; then
      built=yes
      break
    fi
    echo "build: FAILED with '${extra:-everything}'"
  done
  [ -n "$built" ] || exit 1
  cp build/Release/roformer_native.node "$work/"
  cp build/roformer-build.json "$work/" 2> /dev/null || true
fi
node dist/lib/cli.js info

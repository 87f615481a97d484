#!/usr/bin/env bash
# Makes .gpu/ in the project root: what bench/gpu/check.sh needs on a GPU machine that has
# python3 with a CUDA torch, nvcc and CMake but no Node.js, no npm and no network
# (../shared/gpu.md). Run it here, then carry `.gpu` and `dist` with the working tree.
#
#   .gpu/node.xz          this machine's node binary, xz-compressed (~24 MiB; x86-64 Linux)
#   .gpu/node_modules/    the build packages (cmake-js, node-addon-api, node-api-headers) and the
#                         run-time packages that dist/ imports (commander, cli-progress, ...)
#   .gpu/tools/           kernel-count.py and hf_anchor.py from ../shared/gpu/ (they do not travel)
#
# npm run gpu:prepare   (also compiles TypeScript into dist/, which check.sh runs)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
gpu=$root/.gpu
# Run-time packages: the package's dependencies that its CLI and bench import (not the dev ones).
packages="cmake-js node-addon-api node-api-headers commander cli-progress fflate protobufjs"

grep -qx '/.gpu/' .gitignore 2> /dev/null || grep -qx '/.gpu/' .git/info/exclude 2> /dev/null ||
  echo /.gpu/ >> "$(git rev-parse --git-path info/exclude)"
mkdir -p "$gpu/bin" "$gpu/tools"

node_bin=$(readlink -f "$(command -v node)")
if [ ! -f "$gpu/node.xz" ] || [ "$node_bin" -nt "$gpu/node.xz" ]; then
  echo "gpu:prepare: compressing $node_bin ($(node --version)) into .gpu/node.xz"
  xz -T2 -c "$node_bin" > "$gpu/node.xz.partial" && mv "$gpu/node.xz.partial" "$gpu/node.xz"
fi

# The versions this project's package-lock.json pins, so the GPU machine runs what CI tests.
specs=$(node -e '
  const lock = require("./package-lock.json");
  console.log(process.argv.slice(1).map((name) => {
    const entry = lock.packages["node_modules/" + name];
    return entry ? `${name}@${entry.version}` : name;
  }).join(" "));' $packages)
if [ ! -f "$gpu/package.json" ] || [ "$(cat "$gpu/.specs" 2> /dev/null)" != "$specs" ]; then
  echo "gpu:prepare: npm install $specs"
  (cd "$gpu" && rm -rf node_modules package-lock.json && echo '{"name":"roformer-gpu-kit","private":true}' > package.json &&
    npm install --no-save --no-audit --no-fund --ignore-scripts $specs > /dev/null)
  echo "$specs" > "$gpu/.specs"
fi

shared=$(cd "$root" && for d in ../shared ../../shared /work/shared; do [ -d "$d/gpu" ] && { (cd "$d/gpu" && pwd); break; }; done || true)
if [ -n "$shared" ]; then
  cp "$shared"/*.py "$gpu/tools/"
else
  echo "gpu:prepare: ../shared/gpu not found: the kernel count and the Hugging Face anchor will be skipped" >&2
fi

npx tsc -p tsconfig.json
echo "gpu:prepare: .gpu is $(du -sh "$gpu" | cut -f1), dist $(du -sh dist | cut -f1); carry [\".gpu\", \"dist\"]"

#!/usr/bin/env bash
# Checks the addon against libtorch 2.x and CUDA on a machine without a GPU (npm run check:cuda-build).
#
# Debian 13 (trixie) packages libtorch 2.6 twice: `libtorch-cuda-dev` (built with CUDA 12.4, NCCL
# and Gloo) and `libtorch-dev` (CPU). The two conflict, so each gets a root of its own, made with
# debootstrap and kept in a cache outside the repository (the host's own apt sources are never
# touched):
#
#   cuda  libtorch-cuda-dev, nvidia-cuda-toolkit (nvcc 12.4), libnccl-dev, libgloo-dev:
#         the addon compiles and links with warnings in native/ as errors, and becomes the
#         prebuilt flavour prebuilds/linux-x64/torch2.6-cuda12.4/. Build only: libtorch_cuda.so
#         needs cuDNN (libcudnn.so.9), which Debian ships only as a downloader package
#         (nvidia-cudnn) that cannot run offline, and it is linked BIND_NOW, so nothing that
#         links it can be loaded there.
#   cpu   libtorch-dev, libgloo-dev: the addon is built (warnings as errors) and the whole test
#         suite runs against it (npm test), with the FewCLUE data mounted where the tests look.
#
# The working tree (tracked and untracked-but-not-ignored files) is copied into each root at
# /src/roformer-v2; node_modules is installed there by trixie's own node 20 / npm, and build/
# stays there between runs, so a second run only rebuilds what changed.
#
# Usage: scripts/cuda-build-check.sh [--cache DIR] [--only cuda|cpu] [--jobs N] [--test-args "..."]
#   --cache DIR   where the roots live (default $ROFORMER_TRIXIE_CACHE, else ~/.cache/roformer-v2)
#   --only R      check one root
#   --jobs N      parallel compile jobs (default: the number of CPUs)
#   --test-args   extra arguments for vitest in the CPU root (e.g. "test/model.test.ts")
# Environment: ROFORMER_DEBIAN_MIRROR (default http://deb.debian.org/debian),
#   ROFORMER_FEWCLUE (the FewCLUE folder; default: shared/data/fewclue found above the checkout).
# Needs: root (or sudo), debootstrap, unshare, chroot, git. ~8 GB per root; the first run
# downloads ~2.7 GB.
set -euo pipefail
[ "$(id -u)" = 0 ] || exec sudo -E "$0" "$@"   # debootstrap, mounts and chroot need root

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ROFORMER_TRIXIE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roformer-v2}
mirror=${ROFORMER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
only=
jobs=$(nproc)
test_args=
while [ $# -gt 0 ]; do
  case $1 in
    --cache) cache=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --test-args) test_args=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "cuda-build-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case $only in '' | cuda | cpu) ;; *) echo "cuda-build-check: --only must be cuda or cpu, got '$only'" >&2; exit 2 ;; esac

# The packages of each root (the CUDA libtorch wants the CUDA build of Gloo).
common_packages="nodejs npm cmake g++ make git binutils ca-certificates"
cuda_packages="$common_packages libtorch-cuda-dev nvidia-cuda-toolkit libnccl-dev libgloo-cuda-dev"
cpu_packages="$common_packages libtorch-dev libopenblas0-pthread libgloo-dev"

say() { printf '\ncuda-build-check: %s\n' "$*" >&2; }
die() { printf 'cuda-build-check: %s\n' "$*" >&2; exit 1; }
seconds_since() { echo $(($(date +%s) - $1)); }

for tool in debootstrap unshare chroot git dpkg-deb; do
  command -v "$tool" > /dev/null || die "$tool is missing (Debian/Ubuntu: apt-get install -y debootstrap util-linux coreutils git)"
done

# The FewCLUE data the tests read, looked for as test/fewclue.ts does.
find_fewclue() {
  if [ -n "${ROFORMER_FEWCLUE:-}" ]; then echo "$ROFORMER_FEWCLUE"; return; fi
  local dir=$repo
  while :; do
    for candidate in "$dir/shared/data/fewclue" "$dir/../shared/data/fewclue"; do
      if [ -f "$candidate/tnews/train_few_all.json" ]; then (cd "$candidate" && pwd); return; fi
    done
    [ "$dir" = / ] && break
    dir=$(dirname "$dir")
  done
}

# Runs a command as root inside a root, in a private mount namespace: /proc, /dev and the
# FewCLUE data are mounted for the command only and vanish with it, whatever happens.
in_root() {
  local root=$1; shift
  local fewclue=${fewclue_dir:-}
  unshare --mount --propagation private --fork -- /bin/bash -euo pipefail -c '
    root=$1 fewclue=$2; shift 2
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    if [ -n "$fewclue" ]; then
      mkdir -p "$root/src/shared/data/fewclue"
      mount --bind "$fewclue" "$root/src/shared/data/fewclue"
      mount -o remount,bind,ro "$root/src/shared/data/fewclue"
    fi
    exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      DEBIAN_FRONTEND=noninteractive NPM_CONFIG_CAFILE=/etc/ssl/certs/host-ca-bundle.crt \
      ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
      ROFORMER_FEWCLUE=/src/shared/data/fewclue "$@"
  ' in_root "$root" "$fewclue" "$@"
}

# libtorch-cuda-2.6 depends on nvidia-cudnn, a downloader package whose configure step fetches
# cuDNN from NVIDIA and fails offline; compiling needs none of its files. An empty package of
# that name (a higher version, held) satisfies the dependency, so the real one is never run.
stub_nvidia_cudnn() {
  local root=$1
  local version; version=$(in_root "$root" apt-cache show nvidia-cudnn 2> /dev/null | sed -n 's/^Version: //p' | head -1)
  [ -n "$version" ] || return 0   # not in this mirror: nothing depends on it then
  local stub=$root/var/cache/roformer-nvidia-cudnn-stub
  rm -rf "$stub" && mkdir -p "$stub/DEBIAN"
  printf '%s\n' 'Package: nvidia-cudnn' "Version: $version+roformer.stub" 'Architecture: all' \
    'Maintainer: roformer-v2 scripts/cuda-build-check.sh <nobody@invalid>' \
    'Description: empty stand-in for the cuDNN downloader (build checks only, no cuDNN files)' > "$stub/DEBIAN/control"
  dpkg-deb --build "$stub" "$stub.deb" > /dev/null
  in_root "$root" dpkg -i /var/cache/roformer-nvidia-cudnn-stub.deb
  in_root "$root" apt-mark hold nvidia-cudnn
}

# Creates the root `name` with `packages`, or reuses it when it already has them.
ensure_root() {
  local name=$1 packages=$2
  local root=$cache/trixie-$name
  local stamp=$root/etc/roformer-check-packages
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$packages" ]; then
    say "reusing $root"
    return
  fi
  local started; started=$(date +%s)
  if [ ! -x "$root/usr/bin/apt-get" ]; then
    say "creating $root (debootstrap trixie from $mirror)"
    rm -rf "$root.partial"
    mkdir -p "$cache"
    debootstrap --variant=minbase --components=main,contrib,non-free trixie "$root.partial" "$mirror" > "$cache/debootstrap-$name.log" 2>&1 ||
      die "debootstrap failed; see $cache/debootstrap-$name.log"
    mv "$root.partial" "$root"
  fi
  # The root's own sources and pins; the host's apt configuration is not read or changed.
  echo "deb $mirror trixie main contrib non-free" > "$root/etc/apt/sources.list"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  say "installing into $root: $packages"
  in_root "$root" apt-get update -q
  stub_nvidia_cudnn "$root"
  # shellcheck disable=SC2086 # the package list is meant to split
  in_root "$root" apt-get install -y -q --no-install-recommends $packages
  in_root "$root" apt-get clean
  echo "$packages" > "$stamp"
  say "$root ready in $(seconds_since "$started") s ($(du -sh "$root" | cut -f1))"
}

# Copies the working tree into the root (tracked and untracked-but-not-ignored files; the root's
# own node_modules and build/ are kept), and the host's CA bundle for npm (a proxy's CA included).
copy_source() {
  local root=$1
  local dest=$root/src/roformer-v2
  mkdir -p "$dest"
  # The last copy's contents, to find what changed (below).
  local sums; sums=$(mktemp)
  (cd "$dest" && find . \( -path ./node_modules -o -path ./build \) -prune -o -type f -print0 | xargs -0 -r sha256sum) > "$sums"
  find "$dest" -mindepth 1 -maxdepth 1 ! -name node_modules ! -name build -exec rm -rf {} +
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -) | tar -C "$dest" -xf -
  # tar keeps the working tree's mtimes, and make rebuilds by mtime: a file edited while an earlier
  # run was building, after that run's copy, is older than the objects built from its previous
  # content. Every file whose content changed since the last copy is touched, so it rebuilds.
  (cd "$dest" && sha256sum -c --quiet "$sums" 2> /dev/null | sed -n 's/: FAILED.*$//p' | tr '\n' '\0' | xargs -0 -r touch --)
  rm -f "$sums"
  local bundle
  for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt "$root/etc/ssl/certs/ca-certificates.crt"; do
    if [ -f "$bundle" ]; then cp -L "$bundle" "$root/etc/ssl/certs/host-ca-bundle.crt"; break; fi
  done
  # Also npm's global config: the install test runs npm with a cleaned environment, where
  # NPM_CONFIG_CAFILE does not reach it.
  echo "cafile=/etc/ssl/certs/host-ca-bundle.crt" > "$root/etc/npmrc"
}

# npm ci inside the root, by trixie's own npm, when package-lock.json changed (install scripts
# off: the build is ours to run).
install_node_modules() {
  local root=$1
  local lock_hash; lock_hash=$(sha256sum "$repo/package-lock.json" | cut -d' ' -f1)
  local stamp=$root/src/roformer-v2/node_modules/.roformer-lock-hash
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_hash" ]; then return; fi
  say "npm ci in $root"
  in_root "$root" /bin/sh -c 'cd /src/roformer-v2 && npm ci --ignore-scripts --no-audit --no-fund'
  echo "$lock_hash" > "$stamp"
}

# Configures (every time: the header set may have changed) and builds the addon, warnings as
# errors; make keeps going after a failed file (-k), so one run reports every file that fails.
build_addon() {
  local root=$1
  in_root "$root" /bin/sh -c "cd /src/roformer-v2 &&
    npx cmake-js configure --CDCMAKE_BUILD_TYPE=Release --CDROFORMER_WERROR=ON &&
    MAKEFLAGS=-k CMAKE_BUILD_PARALLEL_LEVEL=$jobs npx cmake-js build"
}

summary=()
status=0

# Brings the root `name` up to date and builds the addon in it; false when the build fails.
prepare_and_build() {
  local name=$1 packages=$2
  local root=$cache/trixie-$name started
  started=$(date +%s)
  ensure_root "$name" "$packages"
  copy_source "$root"
  install_node_modules "$root"
  summary+=("$name: root ready in $(seconds_since "$started") s")
  started=$(date +%s)
  say "$name: building the addon (warnings in native/ as errors)"
  if build_addon "$root"; then
    summary+=("$name: addon built in $(seconds_since "$started") s")
  else
    summary+=("$name: the build FAILED after $(seconds_since "$started") s")
    status=1
    return 1
  fi
}

check_cuda() {
  local root=$cache/trixie-cuda
  prepare_and_build cuda "$cuda_packages" || return 0
  # The prebuilt flavour: made inside the root (readelf, dpkg), then copied into this checkout.
  in_root "$root" /bin/sh -c 'cd /src/roformer-v2 && node scripts/prebuild.mjs --no-load'
  mkdir -p "$repo/prebuilds/linux-x64"
  local flavour
  for flavour in "$root"/src/roformer-v2/prebuilds/linux-x64/*cuda*; do
    rm -rf "$repo/prebuilds/linux-x64/$(basename "$flavour")"
    cp -r "$flavour" "$repo/prebuilds/linux-x64/"
    summary+=("cuda: prebuilt flavour prebuilds/linux-x64/$(basename "$flavour")")
  done
}

check_cpu() {
  local root=$cache/trixie-cpu started
  fewclue_dir=$(find_fewclue)
  [ -n "$fewclue_dir" ] || die "the FewCLUE data was not found (set ROFORMER_FEWCLUE to the folder holding tnews/, iflytek/, …)"
  prepare_and_build cpu "$cpu_packages" || return 0
  in_root "$root" /bin/sh -c 'cd /src/roformer-v2 && npx tsc -p tsconfig.json && node dist/lib/cli.js info'
  say "cpu: npm test"
  started=$(date +%s)
  local log=$cache/trixie-cpu-test.log
  if in_root "$root" /bin/sh -c "cd /src/roformer-v2 && npm test -- $test_args" 2>&1 | tee "$log"; then
    summary+=("cpu: npm test passed in $(seconds_since "$started") s: $(grep -E '^ +Tests ' "$log" | tail -1 | sed 's/^ *//')")
  else
    summary+=("cpu: npm test FAILED after $(seconds_since "$started") s: $(grep -E '^ +Tests ' "$log" | tail -1 | sed 's/^ *//') (log: $log)")
    status=1
  fi
}

total_started=$(date +%s)
[ "$only" = cpu ] || check_cuda
[ "$only" = cuda ] || check_cpu
say "summary (total $(seconds_since "$total_started") s)"
printf '  %s\n' "${summary[@]}" >&2
exit $status

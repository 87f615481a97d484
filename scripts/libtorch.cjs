// What this machine has for roformer-v2, without loading the addon: the libtorch
// installations found (where, version, CPU/CUDA, whether they can be built against),
// the prebuilt addon flavours in the package and whether each matches, the tools a
// build from source needs, and the exact command that installs what is missing.
//
// Plain CommonJS with no dependencies on purpose: it is used by the npm install hook
// (scripts/install.mjs, which runs before the TypeScript is compiled), by the loader
// (bindings/load.ts, synchronously), by `roformer doctor` and by scripts/prebuild.mjs.
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ADDON_FILE = 'roformer_native.node';
const MANIFEST_FILE = 'manifest.json';
const PLATFORM = `${process.platform}-${process.arch}`;

const TRIPLETS = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', ppc64: 'powerpc64le-linux-gnu', s390x: 's390x-linux-gnu' };

function readText(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function listDir(dir) {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** Compares dotted versions: <0, 0, >0. */
function compareVersions(a, b) {
  const pa = String(a).split('.').map((x) => parseInt(x, 10) || 0);
  const pb = String(b).split('.').map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** '1.13.1+cpu' → '1.13' */
function abiOf(version) {
  const m = /^(\d+)\.(\d+)/.exec(String(version ?? ''));
  return m ? `${m[1]}.${m[2]}` : undefined;
}

/** /etc/os-release as an object (empty off Linux). */
function osRelease() {
  const text = readText('/etc/os-release') ?? '';
  const result = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) result[m[1]] = m[2].replace(/^"(.*)"$/, '$1');
  }
  return result;
}

function isDebianLike(os = osRelease()) {
  return /\b(debian|ubuntu)\b/.test(`${os.ID ?? ''} ${os.ID_LIKE ?? ''}`);
}

/** The glibc this process runs on, or undefined (musl, not Linux). */
let glibc;
function glibcVersion() {
  if (glibc === undefined) {
    try {
      glibc = process.report?.getReport?.().header?.glibcVersionRuntime ?? null;
    } catch {
      glibc = null;
    }
  }
  return glibc ?? undefined;
}

/** Directories the dynamic loader searches, in its order (LD_LIBRARY_PATH, ld.so.conf, defaults). */
function librarySearchDirs() {
  const dirs = [];
  for (const d of (process.env.LD_LIBRARY_PATH ?? '').split(':')) if (d) dirs.push({ dir: d, source: 'LD_LIBRARY_PATH' });
  const confFiles = ['/etc/ld.so.conf', ...listDir('/etc/ld.so.conf.d').filter((f) => f.endsWith('.conf')).map((f) => `/etc/ld.so.conf.d/${f}`)];
  for (const file of confFiles) {
    for (const line of (readText(file) ?? '').split('\n')) {
      const d = line.trim();
      if (d.startsWith('/')) dirs.push({ dir: d, source: 'system' });
    }
  }
  const triplet = TRIPLETS[process.arch];
  for (const d of [triplet && `/lib/${triplet}`, triplet && `/usr/lib/${triplet}`, '/lib64', '/usr/lib64', '/lib', '/usr/lib', '/usr/local/lib']) {
    if (d) dirs.push({ dir: d, source: 'system' });
  }
  const seen = new Set();
  return dirs.filter(({ dir }) => {
    let real = dir;
    try {
      real = fs.realpathSync(dir);
    } catch {
      return false;
    }
    if (seen.has(real)) return false;
    seen.add(real);
    return true;
  });
}

/** Looks at one lib directory; returns a libtorch description or undefined. */
function describeLibDir(libDir, source, versionHint) {
  const files = listDir(libDir).filter((f) => /^lib(torch|c10)[\w]*\.so/.test(f));
  if (!files.some((f) => /^libtorch_cpu\.so/.test(f))) return undefined;
  let version = versionHint;
  if (!version) {
    // the soname (libtorch_cpu.so.1.13): Debian names the file 1.13.0 even for libtorch 1.13.1
    const versions = files.map((f) => /^libtorch_cpu\.so\.(\d+\.\d+(?:\.\d+)?)$/.exec(f)?.[1]).filter(Boolean);
    if (versions.length > 0) version = versions.sort((a, b) => a.length - b.length)[0];
  }
  if (!version) {
    const buildVersion = readText(path.join(libDir, '..', 'build-version')); // an unzipped libtorch download
    if (buildVersion) version = buildVersion.trim();
  }
  if (!version) {
    const py = /__version__\s*=\s*'([^']+)'/.exec(readText(path.join(libDir, '..', 'version.py')) ?? ''); // pip's torch/lib
    if (py) version = py[1];
  }
  const cuda = files.some((f) => /^(libtorch_cuda|libc10_cuda)\.so/.test(f));
  const root = path.dirname(libDir);
  const triplet = TRIPLETS[process.arch];
  const cmakeDirs = [
    path.join(libDir, 'cmake', 'Torch'),
    path.join(root, 'share', 'cmake', 'Torch'),
    triplet ? path.join(root, 'lib', triplet, 'cmake', 'Torch') : undefined,
  ].filter(Boolean);
  const cmakeConfig = cmakeDirs.find((d) => fs.existsSync(path.join(d, 'TorchConfig.cmake')));
  return {
    where: libDir,
    source,
    version,
    abi: abiOf(version),
    cuda,
    libraries: files.sort(),
    cmakeConfig,
  };
}

/**
 * The libtorch installations this process can see, most specific first:
 * LIBTORCH (a libtorch root), LD_LIBRARY_PATH, the system's library directories,
 * and (with { python: true }, slower) python3's torch package.
 */
function findLibtorch(options = {}) {
  const found = [];
  const add = (entry) => {
    if (!entry) return;
    let real = entry.where;
    try {
      real = fs.realpathSync(entry.where);
    } catch {
      // keep as is
    }
    if (!found.some((f) => f.real === real)) found.push({ ...entry, real });
  };
  if (process.env.LIBTORCH) add(describeLibDir(path.join(process.env.LIBTORCH, 'lib'), 'LIBTORCH'));
  for (const { dir, source } of librarySearchDirs()) add(describeLibDir(dir, source));
  if (options.python) {
    const py = pythonTorch();
    if (py) add(describeLibDir(path.join(py.dir, 'lib'), 'python3 torch', py.version));
  }
  return found.map(({ real, ...rest }) => rest);
}

/** python3's torch package: { version, dir } or undefined (takes a second or two). */
function pythonTorch() {
  const probe = spawnSync('python3', ['-c', 'import os, torch; print(torch.__version__); print(os.path.dirname(torch.__file__))'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (probe.status !== 0) return undefined;
  const [version, dir] = probe.stdout.trim().split('\n');
  return version && dir ? { version: version.trim(), dir: dir.trim() } : undefined;
}

function describeLibtorch(lt) {
  return `libtorch ${lt.version ?? '(version unknown)'} (${lt.cuda ? 'CUDA' : 'CPU'}) at ${lt.where}`;
}

// ---------------------------------------------------------------------------
// Prebuilt flavours: prebuilds/<platform>-<arch>/<flavour>/{roformer_native.node,manifest.json}
// ---------------------------------------------------------------------------

/** Why `manifest` cannot be used here, or undefined if it can; `libtorch` is findLibtorch()'s answer. */
function flavourMismatch(manifest, libtorch, dir) {
  if (!manifest || typeof manifest !== 'object') return 'no readable manifest.json';
  const wanted = `${manifest.platform}-${manifest.arch}`;
  if (wanted !== PLATFORM) return `built for ${wanted}, this is ${PLATFORM}`;
  const napi = Number(process.versions.napi ?? 0);
  if (manifest.napi && napi < manifest.napi) return `needs Node-API ${manifest.napi}, this Node.js (${process.version}) has ${napi}`;
  if (manifest.glibc) {
    const glibc = glibcVersion();
    if (!glibc) return `needs glibc ≥ ${manifest.glibc}; this system has no glibc (musl?)`;
    if (compareVersions(glibc, manifest.glibc) < 0) return `needs glibc ≥ ${manifest.glibc}, this system has ${glibc}`;
  }
  const want = manifest.libtorch ?? {};
  const label = `libtorch ${want.abi ?? '?'} (${want.cuda ? ['CUDA', want.cudaVersion].filter(Boolean).join(' ') : 'CPU'})`;
  const sameAbi = libtorch.filter((lt) => lt.abi === want.abi);
  const candidates = sameAbi.filter((lt) => (want.cuda ? lt.cuda : true));
  const usable = candidates.find((lt) => (want.sonames ?? []).every((s) => lt.libraries.includes(s)));
  if (usable) return undefined;
  if (libtorch.length === 0) return `needs ${label}; no libtorch was found (looked in LIBTORCH, LD_LIBRARY_PATH and the system's library directories)`;
  const seen = libtorch.map(describeLibtorch).join('; ');
  if (sameAbi.length === 0) return `needs ${label}; found ${seen}`;
  if (candidates.length === 0) return `needs ${label}, but the libtorch ${want.abi} found has no CUDA libraries (${seen})`;
  return `needs ${label} with ${(want.sonames ?? []).join(', ')}; found ${seen} without all of them`;
}

/**
 * Every prebuilt flavour in the package for this platform, each with `match` (the libtorch it fits)
 * or `reason` (why it was skipped). Matching flavours come first: CUDA before CPU, then newest.
 */
function prebuiltFlavours(root, libtorch = findLibtorch()) {
  const platformDir = path.join(root, 'prebuilds', PLATFORM);
  const flavours = [];
  for (const name of listDir(platformDir).sort()) {
    const dir = path.join(platformDir, name);
    try {
      if (!fs.statSync(dir).isDirectory()) continue;
    } catch {
      continue; // a dangling link
    }
    const file = path.join(dir, ADDON_FILE);
    let manifest;
    try {
      manifest = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8'));
    } catch {
      manifest = undefined;
    }
    let reason = fs.existsSync(file) ? flavourMismatch(manifest, libtorch, dir) : `${ADDON_FILE} is missing`;
    if (!reason && process.env.ROFORMER_BUILD_FROM_SOURCE === '1') reason = 'prebuilts disabled (ROFORMER_BUILD_FROM_SOURCE=1)';
    const want = manifest?.libtorch ?? {};
    const match = reason ? undefined : libtorch.find((lt) => lt.abi === want.abi && (want.cuda ? lt.cuda : true));
    flavours.push({ name, dir, file, manifest, reason, match });
  }
  const rank = (f) => (f.reason ? 2 : f.manifest?.libtorch?.cuda ? 0 : 1);
  flavours.sort((a, b) => rank(a) - rank(b) || compareVersions(b.manifest?.libtorch?.version ?? 0, a.manifest?.libtorch?.version ?? 0));
  return { platformDir, flavours, otherPlatforms: listDir(path.join(root, 'prebuilds')).filter((d) => d !== PLATFORM) };
}

// ---------------------------------------------------------------------------
// Building from source, and the commands that fix what is missing
// ---------------------------------------------------------------------------

function onPath(names) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    for (const name of names) {
      const file = path.join(dir, name);
      try {
        fs.accessSync(file, fs.constants.X_OK);
        if (fs.statSync(file).isFile()) return file;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

/** What a build from source needs: cmake, a C++ compiler, a libtorch with its CMake config (the headers). */
function buildTools(options = {}) {
  const cmake = onPath(['cmake']);
  const compiler = process.env.CXX ? onPath([process.env.CXX]) ?? (fs.existsSync(process.env.CXX) ? process.env.CXX : undefined) : onPath(['c++', 'g++', 'clang++']);
  let libtorchDev;
  const explicit = process.env.Torch_DIR || process.env.CMAKE_PREFIX_PATH;
  if (explicit) libtorchDev = { where: explicit, source: process.env.Torch_DIR ? 'Torch_DIR' : 'CMAKE_PREFIX_PATH' };
  if (!libtorchDev) {
    const withConfig = findLibtorch({ python: options.python !== false }).find((lt) => lt.cmakeConfig);
    if (withConfig) libtorchDev = { where: withConfig.cmakeConfig, source: withConfig.source, version: withConfig.version, cuda: withConfig.cuda };
  }
  if (!libtorchDev) {
    const triplet = TRIPLETS[process.arch];
    const dirs = [triplet && `/usr/lib/${triplet}/cmake/Torch`, '/usr/share/cmake/Torch', '/usr/local/share/cmake/Torch'].filter(Boolean);
    const dir = dirs.find((d) => fs.existsSync(path.join(d, 'TorchConfig.cmake')));
    if (dir) libtorchDev = { where: dir, source: 'system' };
  }
  return { cmake, compiler, libtorchDev };
}

function sudo() {
  return typeof process.getuid === 'function' && process.getuid() === 0 ? '' : 'sudo ';
}

function aptCommand(packages) {
  const s = sudo();
  return `${s}apt-get update && ${s}apt-get install -y ${packages.join(' ')}`;
}

/** The command that installs the libtorch runtime a prebuilt flavour needs (Debian names), or undefined. */
function runtimeFixFor(manifest) {
  const want = manifest?.libtorch;
  if (!want) return undefined;
  if (want.debianPackage && isDebianLike()) return aptCommand([want.debianPackage, 'libopenblas0-pthread']);
  if (want.pip) return want.pip;
  return undefined;
}

/** The command(s) that make a build from source possible here, given buildTools()'s answer. */
function sourceBuildFix(tools) {
  const debian = isDebianLike();
  const packages = [];
  if (!tools.libtorchDev) packages.push('libtorch-dev', 'libopenblas0-pthread');
  if (!tools.cmake) packages.push('cmake');
  if (!tools.compiler) packages.push('g++');
  if (packages.length === 0) return [];
  if (debian) return [aptCommand(packages)];
  const fixes = [];
  if (!tools.libtorchDev) fixes.push('pip install torch   (python3\'s torch is found automatically), or export LIBTORCH=/path/to/libtorch');
  if (!tools.cmake || !tools.compiler) fixes.push(`install ${[!tools.cmake && 'cmake', !tools.compiler && 'a C++17 compiler (g++ or clang++)'].filter(Boolean).join(' and ')}`);
  return fixes;
}

module.exports = {
  ADDON_FILE,
  MANIFEST_FILE,
  PLATFORM,
  abiOf,
  aptCommand,
  buildTools,
  compareVersions,
  describeLibtorch,
  findLibtorch,
  flavourMismatch,
  glibcVersion,
  isDebianLike,
  osRelease,
  prebuiltFlavours,
  pythonTorch,
  runtimeFixFor,
  sourceBuildFix,
};

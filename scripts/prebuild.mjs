// Produces the prebuilt addon that `npm pack` ships:
//   prebuilds/<platform>-<arch>/<flavour>/roformer_native.node
//   prebuilds/<platform>-<arch>/<flavour>/manifest.json
// <flavour> is torch<major.minor>-cpu or torch<major.minor>-cuda<major.minor>, e.g. torch1.13-cpu
// for Debian 12's libtorch-dev, torch2.6-cuda12.4 for Debian 13's libtorch-cuda-dev; building on
// another libtorch (LIBTORCH=…, pip's torch with CUDA) adds another flavour beside it.
// The manifest says what the binary needs (libtorch version and sonames, CPU/CUDA, Node-API,
// glibc); the loader (bindings/load.ts via scripts/libtorch.cjs) uses a flavour only where it matches.
//
//   node scripts/prebuild.mjs                 # builds with cmake-js if build/Release has no addon, then packages it
//   node scripts/prebuild.mjs --rebuild       # always builds first
//   node scripts/prebuild.mjs --no-load       # packages an addon this machine cannot load (a CUDA
//                                             # libtorch without its cuDNN: scripts/cuda-build-check.sh);
//                                             # build/roformer-build.json says what it was built against
//
// CI runs it (.ci/run); the binaries are not committed (prebuilds/ is in .gitignore).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const lt = require('./libtorch.cjs');

const built = join(root, 'build', 'Release', lt.ADDON_FILE);
if (process.argv.includes('--rebuild') || !existsSync(built)) {
  console.log('prebuild: building the addon (cmake-js)...');
  const build = spawnSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--CDCMAKE_BUILD_TYPE=Release'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (build.status !== 0) process.exit(build.status ?? 1);
}

function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error}`);
  return r.stdout;
}

// What the binary links against (DT_NEEDED) and where it looks (RUNPATH).
const dynamic = run('readelf', ['-d', built]);
const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
const runpath = /\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[([^\]]+)\]/.exec(dynamic)?.[1];
const sonames = needed.filter((n) => /^lib(torch|c10)/.test(n));
const cuda = sonames.some((n) => /cuda/.test(n));

// The libtorch it was built against: CMake's record of the configure (build/roformer-build.json),
// else the addon's own report.
const loadable = !process.argv.includes('--no-load');
const record = readJson(join(root, 'build', 'roformer-build.json'));
let version = record?.libtorch;
if (loadable) {
  const probe = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(built)}).runtimeInfo().libtorchVersion))`], {
    encoding: 'utf8',
  });
  if (probe.status !== 0) {
    console.error(`prebuild: the built addon does not load:\n${probe.stderr}`);
    process.exit(1);
  }
  version ??= JSON.parse(probe.stdout.trim().split('\n').pop());
}
if (!version) {
  console.error('prebuild: build/roformer-build.json is missing (configure again with cmake-js): the libtorch version is unknown');
  process.exit(1);
}
const abi = lt.abiOf(version);
const cudaVersion = cuda ? lt.abiOf(record?.cuda) : undefined;

// The oldest glibc / libstdc++ it can run on: the newest symbol versions it references.
const bytes = readFileSync(built).toString('latin1');
const maxVersion = (re) => [...new Set([...bytes.matchAll(re)].map((m) => m[1]))].sort(lt.compareVersions).pop();
const glibc = maxVersion(/GLIBC_(\d+\.\d+(?:\.\d+)?)\0/g);
const glibcxx = maxVersion(/GLIBCXX_(\d+\.\d+(?:\.\d+)?)\0/g);

// The distribution package that provides those libraries, if any (Debian: libtorch1.13).
const found = lt.findLibtorch().find((l) => l.abi === abi && sonames.every((s) => l.libraries.includes(s)));
let debianPackage;
if (found) {
  const dpkg = spawnSync('dpkg', ['-S', realpathSync(join(found.where, sonames.find((s) => /torch_cpu/.test(s)) ?? sonames[0]))], { encoding: 'utf8' });
  debianPackage = dpkg.status === 0 ? /^([^:]+):/.exec(dpkg.stdout)?.[1] : undefined;
}
const os = lt.osRelease();

const flavour = `torch${abi}-${cuda ? `cuda${cudaVersion ?? ''}` : 'cpu'}`;
const outDir = join(root, 'prebuilds', lt.PLATFORM, flavour);
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
const target = join(outDir, lt.ADDON_FILE);
copyFileSync(built, target);
// Debug sections are not needed at run time; keep the unstripped copy if strip is missing or breaks it.
const strip = spawnSync('strip', ['--strip-unneeded', target]);
if (strip.status !== 0) copyFileSync(built, target);

const manifest = {
  flavour,
  platform: process.platform,
  arch: process.arch,
  file: lt.ADDON_FILE,
  libtorch: {
    version,
    abi,
    cuda,
    ...(cudaVersion ? { cudaVersion } : {}),
    sonames,
    ...(debianPackage ? { debianPackage } : {}),
    builtFrom: found ? lt.describeLibtorch(found) : 'unknown',
  },
  napi: Number(/NAPI_VERSION=(\d+)/.exec(readFileSync(join(root, 'CMakeLists.txt'), 'utf8'))?.[1] ?? 8),
  glibc,
  glibcxx,
  needed,
  ...(runpath ? { runpath } : {}),
  builtOn: os.PRETTY_NAME ?? `${process.platform} ${process.arch}`,
  builtWith: `node ${process.version}`,
  package: `${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name}@${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version}`,
  sha256: createHash('sha256').update(readFileSync(target)).digest('hex'),
  builtAt: new Date().toISOString(),
};
writeFileSync(join(outDir, lt.MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');

// It must still load from its new place.
if (loadable) {
  const check = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(target)}).runtimeInfo()`], { encoding: 'utf8' });
  if (check.status !== 0) {
    console.error(`prebuild: ${target} does not load:\n${check.stderr}`);
    process.exit(1);
  }
} else {
  console.log('prebuild: --no-load: not loaded here');
}
console.log(`prebuild: ${target} (${flavour}: libtorch ${version} ${cuda ? `CUDA ${cudaVersion ?? ''}` : 'CPU'}, Node-API ${manifest.napi}, glibc ≥ ${glibc})`);

// npm install hook: make the native addon available.
//   1. a prebuilt flavour (prebuilds/<platform>-<arch>/<flavour>/) whose manifest matches the
//      libtorch found here and that loads → done, nothing is compiled;
//   2. otherwise build from source with cmake-js against the libtorch found (see CMakeLists.txt),
//      but only if cmake, a C++ compiler and libtorch's headers are all there: when one is
//      missing, print the exact command that installs it (apt on Debian/Ubuntu, else pip),
//      not a CMake error;
//   3. if nothing works, explain why and how to fix it, but let the install finish:
//      importing the package and every CLI's --help work without the addon, and the
//      first call that needs it repeats the explanation. ROFORMER_REQUIRE_NATIVE=1
//      makes a failure fail the install instead; ROFORMER_BUILD_FROM_SOURCE=1 ignores the prebuilts.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const lt = require('./libtorch.cjs');
const say = (line) => console.log(`roformer-v2: ${line}`);

function loads(path) {
  const probe = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path)}).runtimeInfo()`], { encoding: 'utf8' });
  return { ok: probe.status === 0, error: probe.stderr.trim().split('\n').find((l) => /Error/.test(l)) ?? probe.stderr.trim() };
}

function fail(lines) {
  console.error(['', ...lines.map((l) => (l.startsWith('    ') ? l : `roformer-v2: ${l}`))].join('\n')); // commands unprefixed, to copy
  console.error(
    '  The package is installed; importing it and `roformer --help` work, and calls that need libtorch throw\n' +
      '  until the addon is available. `npx roformer doctor` shows what is found and what is missing.',
  );
  process.exit(process.env.ROFORMER_REQUIRE_NATIVE === '1' ? 1 : 0);
}

// 1. prebuilt flavours
const libtorch = lt.findLibtorch();
const { flavours } = lt.prebuiltFlavours(root, libtorch);
const skipped = [];
for (const f of flavours) {
  if (f.reason) {
    skipped.push(f);
    say(`prebuilt ${f.name} skipped: ${f.reason}`);
    continue;
  }
  const result = loads(f.file);
  if (result.ok) {
    say(`using the prebuilt addon ${relative(root, f.file)} (matches ${lt.describeLibtorch(f.match)}); nothing to compile`);
    process.exit(0);
  }
  say(`prebuilt ${f.name} matches but does not load (${result.error})`);
  skipped.push(f);
}

// 2. build from source, if it can work
const tools = lt.buildTools();
const missing = [!tools.libtorchDev && 'libtorch (with its headers)', !tools.cmake && 'cmake', !tools.compiler && 'a C++ compiler'].filter(Boolean);
if (missing.length > 0) {
  const lines = [`the native addon cannot be built here: ${missing.join(', ')} not found.`];
  // A matching libtorch runtime is all a prebuilt needs: offer that first when the package has one.
  const runtimeFix = skipped.map((f) => (libtorch.some((l) => l.abi === f.manifest?.libtorch?.abi) ? undefined : lt.runtimeFixFor(f.manifest))).find(Boolean);
  if (runtimeFix) {
    lines.push(`To use the prebuilt addon (${skipped[0].name}), install its libtorch runtime, then run \`npm rebuild roformer-v2\`:`, `    ${runtimeFix}`);
    lines.push('Or, to build from source, install what is missing:');
  } else {
    lines.push('Install what is missing, then run `npm rebuild roformer-v2` (or `npm run build:native` in this package):');
  }
  for (const fix of lt.sourceBuildFix(tools)) lines.push(`    ${fix}`);
  fail(lines);
}

say(`building the native addon from source (cmake-js, ${tools.compiler}, libtorch from ${tools.libtorchDev.where})...`);
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const build = spawnSync(process.execPath, [cmakeJs, 'compile', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
if (build.status === 0) process.exit(0);

fail([
  'the native addon could not be built (see the CMake output above).',
  'If libtorch is the problem, install it, then run `npm run build:native` in ' + root + ':',
  ...(lt.isDebianLike() ? [`    ${lt.aptCommand(['libtorch-dev', 'libopenblas0-pthread', 'cmake', 'g++'])}`] : []),
  "    or: pip install torch          (python3's torch is found automatically)",
  '    or: export LIBTORCH=/path/to/libtorch',
]);

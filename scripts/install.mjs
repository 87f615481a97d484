// npm install hook: make the native addon available.
//   1. a prebuilt binary for this platform (prebuilds/<platform>-<arch>/) that loads → done;
//   2. otherwise build from source with cmake-js against the libtorch found (see CMakeLists.txt);
//   3. if that fails, explain why and how to fix it, but let the install finish:
//      importing the package and every CLI's --help work without the addon, and the
//      first call that needs it repeats the explanation. ROFORMER_REQUIRE_NATIVE=1
//      makes a failed build fail the install instead.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function loads(path) {
  const probe = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path)})`], { encoding: 'utf8' });
  return { ok: probe.status === 0, error: probe.stderr.trim().split('\n').find((l) => /Error/.test(l)) ?? probe.stderr.trim() };
}

const prebuilt = join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'roformer_native.node');
if (existsSync(prebuilt)) {
  const result = loads(prebuilt);
  if (result.ok) {
    console.log(`roformer-v2: using the prebuilt addon ${prebuilt}`);
    process.exit(0);
  }
  console.log(`roformer-v2: the prebuilt addon does not load here (${result.error}); building from source`);
}

console.log('roformer-v2: building the native addon from source (cmake-js + libtorch)...');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const build = spawnSync(process.execPath, [cmakeJs, 'compile', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
if (build.status === 0) process.exit(0);

console.error(`
roformer-v2: the native addon could not be built (see the CMake output above).
  Most often libtorch is missing. Install it, then run \`npm run build:native\` in ${root}:
    Debian/Ubuntu:  sudo apt-get install -y libtorch-dev libopenblas0-pthread cmake g++
    or:             pip install torch          (python3's torch is found automatically)
    or:             export LIBTORCH=/path/to/libtorch
  The package is installed; calls that need libtorch will throw until the addon is built.`);
process.exit(process.env.ROFORMER_REQUIRE_NATIVE === '1' ? 1 : 0);

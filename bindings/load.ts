// Finds and loads the native addon, lazily: importing the package never loads it,
// so `import 'roformer-v2'` and every CLI's --help work even without libtorch.
// When nothing loads, one Error lists each path tried, why it failed, and how to fix it.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { NativeAddon } from './native.js';

const ADDON_FILE = 'roformer_native.node';

export interface LoadAttempt {
  path: string;
  reason: string;
}

export class NativeLoadError extends Error {
  constructor(readonly attempts: LoadAttempt[]) {
    super(
      'roformer-v2: could not load the native addon. Tried:\n' +
        attempts.map((a) => `  - ${a.path}\n      ${a.reason}`).join('\n') +
        '\nTo fix: install libtorch (Debian/Ubuntu: `apt-get install -y libtorch-dev libopenblas0-pthread`,\n' +
        'or `pip install torch`, or set LIBTORCH=/path/to/libtorch), then build the addon with\n' +
        '`npm run build:native` in the roformer-v2 package directory. ROFORMER_NATIVE=/path/to/roformer_native.node\n' +
        'loads a specific build.',
    );
    this.name = 'NativeLoadError';
  }
}

/** The directory of the roformer-v2 package (works from sources and from dist/). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if (JSON.parse(readFileSync(manifest, 'utf8')).name === 'roformer-v2') return dir;
      } catch {
        // not ours; keep looking upwards
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('roformer-v2: cannot find the package root above ' + import.meta.url);
    dir = parent;
  }
}

/** Where the addon may be, in the order they are tried. */
export function candidatePaths(root = packageRoot()): string[] {
  const paths: string[] = [];
  if (process.env.ROFORMER_NATIVE) paths.push(process.env.ROFORMER_NATIVE);
  paths.push(join(root, 'build', 'Release', ADDON_FILE));
  paths.push(join(root, 'prebuilds', `${process.platform}-${process.arch}`, ADDON_FILE));
  return paths;
}

/** Turns a dlopen/require failure into a reason a user can act on. */
export function explainLoadFailure(path: string, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (!existsSync(path)) return 'not found (the addon has not been built here)';
  const missingLibrary = /(lib[\w.+-]*\.so[\w.]*): cannot open shared object file/.exec(message);
  if (missingLibrary) {
    return (
      `libtorch not found at run time: ${missingLibrary[1]} is missing. Install libtorch-dev, or add your ` +
      `libtorch's lib directory to LD_LIBRARY_PATH.`
    );
  }
  if (/undefined symbol|version `[^']*' not found/.test(message)) {
    return (
      'libtorch.so version mismatch: the addon was built against a different libtorch than the one found now ' +
      `(${message.split('\n')[0]}). Rebuild with \`npm run build:native\`.`
    );
  }
  if (/NODE_MODULE_VERSION|invalid ELF|wrong ELF class|not a valid Win32/.test(message)) {
    return `built for another platform or Node.js (${message.split('\n')[0]}). Rebuild with \`npm run build:native\`.`;
  }
  return message.split('\n')[0];
}

let cached: NativeAddon | undefined;

/** Loads the addon on first use and returns it; throws NativeLoadError if none loads. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const attempts: LoadAttempt[] = [];
  for (const path of candidatePaths()) {
    try {
      cached = require(path) as NativeAddon;
      return cached;
    } catch (error) {
      attempts.push({ path, reason: explainLoadFailure(path, error) });
    }
  }
  throw new NativeLoadError(attempts);
}

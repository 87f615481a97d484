// Finds and loads the native addon, lazily: importing the package never loads it,
// so `import 'roformer-v2'` and every CLI's --help work even without libtorch.
// When nothing loads, one Error lists each path tried, why it failed, and how to fix it.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { shortenIdleSpin } from './idle-spin.js';
import { environment, type PrebuiltManifest } from './environment.js';
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
        'loads a specific build. `npx roformer doctor` diagnoses the set-up and prints the exact commands.',
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

export type AddonKind = 'ROFORMER_NATIVE' | 'built' | 'prebuilt';

/** A place the addon may be loaded from, and either why it would be used or why it is skipped. */
export interface AddonCandidate {
  path: string;
  kind: AddonKind;
  /** The prebuilt flavour (prebuilds/<platform>-<arch>/<flavour>/). */
  flavour?: string;
  manifest?: PrebuiltManifest;
  /** Set when the candidate is not even tried: the file is absent or its manifest does not match. */
  skip?: string;
  /** Why this one is used when it loads. */
  why: string;
}

/**
 * Where the addon may be, in the order tried: ROFORMER_NATIVE, a build from source (build/Release:
 * it matches the libtorch it was built against), then each prebuilt flavour for this platform
 * whose manifest matches the libtorch found (the others are listed with the reason they are skipped).
 */
export function addonCandidates(root = packageRoot()): AddonCandidate[] {
  const list: AddonCandidate[] = [];
  if (process.env.ROFORMER_NATIVE) {
    list.push({ path: process.env.ROFORMER_NATIVE, kind: 'ROFORMER_NATIVE', why: 'ROFORMER_NATIVE names it' });
  }
  list.push({
    path: join(root, 'build', 'Release', ADDON_FILE),
    kind: 'built',
    why: 'built from source in this package (npm install or npm run build:native); a local build comes before the prebuilts',
  });
  const env = environment(packageRoot());
  const { platformDir, flavours, otherPlatforms } = env.prebuiltFlavours(root);
  if (flavours.length === 0) {
    const others = otherPlatforms.length > 0 ? `; it has prebuilts for ${otherPlatforms.join(', ')}` : '';
    list.push({ path: platformDir, kind: 'prebuilt', skip: `not found (no prebuilt addon for ${env.PLATFORM} in this package${others})`, why: '' });
  }
  for (const f of flavours) {
    list.push({
      path: f.file,
      kind: 'prebuilt',
      flavour: f.name,
      manifest: f.manifest,
      skip: f.reason ? `prebuilt ${f.name} skipped: ${f.reason}` : undefined,
      why: f.match
        ? `prebuilt ${f.name} matches ${env.describeLibtorch(f.match)} (${f.match.source})`
        : `prebuilt ${f.name}`,
    });
  }
  return list;
}

/** The paths of addonCandidates(), in order. */
export function candidatePaths(root = packageRoot()): string[] {
  return addonCandidates(root).map((c) => c.path);
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

/** The addon in use: where it came from and why it was chosen. */
export interface LoadedAddon {
  path: string;
  kind: AddonKind;
  flavour?: string;
  manifest?: PrebuiltManifest;
  why: string;
}

export interface LoadReport {
  /** Undefined when nothing loaded. */
  loaded?: LoadedAddon;
  /** Every candidate tried or skipped before the one loaded (all of them when nothing loaded). */
  attempts: LoadAttempt[];
  /** The addon itself, when it loaded. */
  addon?: NativeAddon;
}

let report: LoadReport | undefined;

/** Loads the addon (once) and says what was used and why, or what was tried; never throws. */
export function nativeLoadReport(): LoadReport {
  if (report) return report;
  shortenIdleSpin();  // before libtorch (and OpenBLAS with it) loads: OpenBLAS reads it once
  const require = createRequire(import.meta.url);
  const attempts: LoadAttempt[] = [];
  let candidates: AddonCandidate[];
  try {
    candidates = addonCandidates();
  } catch (error) {
    return { attempts: [{ path: packageRoot(), reason: `cannot list the addon candidates: ${(error as Error).message}` }] };
  }
  for (const c of candidates) {
    if (c.skip) {
      attempts.push({ path: c.path, reason: c.skip });
      continue;
    }
    try {
      const addon = require(c.path) as NativeAddon;
      report = { loaded: { path: c.path, kind: c.kind, flavour: c.flavour, manifest: c.manifest, why: c.why }, attempts, addon };
      return report;
    } catch (error) {
      const reason = explainLoadFailure(c.path, error);
      attempts.push({ path: c.path, reason: c.kind === 'prebuilt' ? `prebuilt ${c.flavour} matches but does not load: ${reason}` : reason });
    }
  }
  return { attempts };
}

/** Loads the addon on first use and returns it; throws NativeLoadError if none loads. */
export function loadNative(): NativeAddon {
  const result = nativeLoadReport();
  if (!result.addon) throw new NativeLoadError(result.attempts);
  return result.addon;
}

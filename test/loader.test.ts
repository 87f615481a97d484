// The addon loader: how load failures are explained, which prebuilt flavour is chosen for
// the libtorch found (CUDA before CPU, each skip explained), and (in child processes) that the
// package imports and its CLI's --help work without the addon, while the first native call
// explains what is missing and how to fix it.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import {
  NativeLoadError,
  candidatePaths,
  explainLoadFailure,
  loadNative,
  packageRoot,
  type LoadAttempt,
} from '../bindings/load.js';
import type { EnvironmentModule, LibtorchInstall, PrebuiltManifest } from '../bindings/environment.js';
import { runtimeInfo } from '../lib/index.js';
import { copyPackageWithoutAddon } from './package-copy.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ADDON = path.join(ROOT, 'build', 'Release', 'roformer_native.node');
const PLATFORM_DIR = `${process.platform}-${process.arch}`;

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'roformer-loader-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

/** A file with the addon's extension that is not a shared library. */
const garbageAddon = path.join(tmpRoot, 'garbage', 'roformer_native.node');
fs.mkdirSync(path.dirname(garbageAddon));
fs.writeFileSync(garbageAddon, Buffer.alloc(4096, 0x41));

/** The error Node itself gives when asked to load `file` as an addon. */
function requireError(file: string): Error {
  try {
    createRequire(import.meta.url)(file);
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return error as Error;
  }
  throw new Error(`expected loading ${file} to fail`);
}

/** The environment of this process without ROFORMER_NATIVE (plus overrides). */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  if (!('ROFORMER_NATIVE' in extra)) delete env.ROFORMER_NATIVE;
  return env;
}

/** Runs `node --input-type=module -e script` and returns its stdout (throws on a non-zero exit). */
function nodeEval(script: string, env: NodeJS.ProcessEnv): string {
  return execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
}

describe('explainLoadFailure', () => {
  it("a path that does not exist is 'not found'", () => {
    const missing = path.join(tmpRoot, 'nowhere', 'roformer_native.node');
    expect(explainLoadFailure(missing, requireError(missing))).toMatch(/^not found/);
    expect(explainLoadFailure(missing, new Error('whatever'))).toMatch(/not found \(the addon has not been built here\)/);
  });

  it('a real file with garbage bytes: built for another platform / invalid ELF', () => {
    const error = requireError(garbageAddon);
    expect(error.message).toMatch(/invalid ELF header/); // what Node/dlopen says on Linux
    const reason = explainLoadFailure(garbageAddon, error);
    expect(reason).toMatch(/built for another platform or Node\.js/);
    expect(reason).toMatch(/invalid ELF header/);
    expect(reason).toMatch(/npm run build:native/);
  });

  it('a missing libtorch shared library: libtorch not found, naming the library', () => {
    const reason = explainLoadFailure(
      ADDON,
      new Error(`${ADDON}: libtorch_cpu.so: cannot open shared object file: No such file or directory`),
    );
    expect(reason).toMatch(/libtorch not found at run time/);
    expect(reason).toMatch(/libtorch_cpu\.so is missing/);
    expect(reason).toMatch(/libtorch-dev/);
    expect(reason).toMatch(/LD_LIBRARY_PATH/);
    expect(
      explainLoadFailure(ADDON, new Error('libtorch_cpu.so: cannot open shared object file: No such file or directory')),
    ).toMatch(/libtorch not found at run time: libtorch_cpu\.so is missing/);
    // A versioned soname is named in full.
    expect(explainLoadFailure(ADDON, new Error('libc10.so.1.13: cannot open shared object file: No such file or directory'))).toMatch(
      /libc10\.so\.1\.13 is missing/,
    );
  });

  it('an undefined symbol: a libtorch version mismatch, rebuild with npm run build:native', () => {
    const reason = explainLoadFailure(
      ADDON,
      new Error(`${ADDON}: undefined symbol: _ZN3c1019UndefinedTensorImpl10_singletonE\nsecond line`),
    );
    expect(reason).toMatch(/version mismatch/);
    expect(reason).toMatch(/undefined symbol: _ZN3c1019UndefinedTensorImpl10_singletonE/);
    expect(reason).not.toMatch(/second line/);
    expect(reason).toMatch(/`npm run build:native`/);
    expect(explainLoadFailure(ADDON, new Error("/lib/libstdc++.so.6: version `GLIBCXX_3.4.32' not found"))).toMatch(
      /version mismatch/,
    );
  });

  it('a Node ABI mismatch: built for another Node.js', () => {
    const reason = explainLoadFailure(
      ADDON,
      new Error('was compiled against a different Node.js version using NODE_MODULE_VERSION 93. This version requires 115.'),
    );
    expect(reason).toMatch(/another platform or Node\.js/);
    expect(reason).toMatch(/NODE_MODULE_VERSION 93/);
  });

  it('anything else is passed on as its first line; non-Errors are stringified', () => {
    expect(explainLoadFailure(ADDON, new Error('something odd\nstack'))).toBe('something odd');
    expect(explainLoadFailure(ADDON, 'a thrown string')).toBe('a thrown string');
  });
});

describe('NativeLoadError', () => {
  it('lists every attempt with its reason and says how to fix it', () => {
    const attempts: LoadAttempt[] = [
      { path: '/somewhere/custom.node', reason: 'not found (the addon has not been built here)' },
      { path: '/pkg/build/Release/roformer_native.node', reason: 'libtorch not found at run time: libtorch_cpu.so is missing.' },
      { path: `/pkg/prebuilds/${PLATFORM_DIR}/roformer_native.node`, reason: 'built for another platform' },
    ];
    const error = new NativeLoadError(attempts);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('NativeLoadError');
    expect(error.attempts).toEqual(attempts);
    expect(error.message).toMatch(/^roformer-v2: could not load the native addon\. Tried:/);
    for (const { path: p, reason } of attempts) {
      expect(error.message).toContain(p);
      expect(error.message).toContain(reason);
    }
    // Each reason follows its path.
    expect(error.message.indexOf('libtorch_cpu.so is missing')).toBeGreaterThan(
      error.message.indexOf('/pkg/build/Release/roformer_native.node'),
    );
    expect(error.message).toMatch(/apt-get install -y libtorch-dev/);
    expect(error.message).toMatch(/npm run build:native/);
    expect(error.message).toMatch(/ROFORMER_NATIVE=/);
  });
});

describe('candidate paths and loading in this process', () => {
  it('finds the package root and tries ROFORMER_NATIVE, build/Release, prebuilds in that order', () => {
    expect(packageRoot()).toBe(ROOT);
    const saved = process.env.ROFORMER_NATIVE;
    try {
      delete process.env.ROFORMER_NATIVE;
      expect(candidatePaths('/pkg')).toEqual([
        path.join('/pkg', 'build', 'Release', 'roformer_native.node'),
        path.join('/pkg', 'prebuilds', PLATFORM_DIR), // no flavours there (test/install.test.ts has those)
      ]);
      process.env.ROFORMER_NATIVE = '/custom/addon.node';
      expect(candidatePaths('/pkg')[0]).toBe('/custom/addon.node');
      expect(candidatePaths('/pkg')).toHaveLength(3);
    } finally {
      if (saved === undefined) delete process.env.ROFORMER_NATIVE;
      else process.env.ROFORMER_NATIVE = saved;
    }
  });

  it('loads the built addon once and caches it', () => {
    const a = loadNative();
    expect(loadNative()).toBe(a);
    expect(typeof a.tensorFromArray).toBe('function');
    expect(runtimeInfo().libtorchVersion).toMatch(/^\d+\.\d+/);
  });
});

describe('end to end, in child processes', () => {
  /** A copy of the built package without the addon. */
  let bare: string;

  beforeAll(() => {
    // The package's `pretest` runs tsc; compile here too if dist/ is missing or older than a source.
    const sources = ['lib', 'bindings'].flatMap((dir) =>
      fs
        .readdirSync(path.join(ROOT, dir))
        .filter((f) => f.endsWith('.ts'))
        .map((f) => ({ ts: path.join(ROOT, dir, f), js: path.join(ROOT, 'dist', dir, f.replace(/\.ts$/, '.js')) })),
    );
    const stale = sources.some(({ ts, js }) => !fs.existsSync(js) || fs.statSync(js).mtimeMs < fs.statSync(ts).mtimeMs);
    if (stale) {
      execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
        cwd: ROOT,
        stdio: 'pipe',
      });
    }
    expect(fs.existsSync(path.join(ROOT, 'dist', 'lib', 'index.js'))).toBe(true);

    bare = copyPackageWithoutAddon(tmpRoot, 'bare-');
    expect(fs.existsSync(path.join(bare, 'build'))).toBe(false);
  }, 120_000);

  const indexUrl = () => pathToFileURL(path.join(bare, 'dist', 'lib', 'index.js')).href;

  /** In a child: import the bare package, call tensor([1]) and report what was thrown, as JSON. */
  function tryTensorInBareCopy(env: NodeJS.ProcessEnv): {
    threw: boolean;
    isError?: boolean;
    name?: string;
    message?: string;
    attempts?: LoadAttempt[];
  } {
    const script = `
      const m = await import(${JSON.stringify(indexUrl())});
      try {
        m.tensor([1]);
        console.log(JSON.stringify({ threw: false }));
      } catch (e) {
        console.log(JSON.stringify({ threw: true, isError: e instanceof Error, name: e.name, message: e.message, attempts: e.attempts }));
      }`;
    return JSON.parse(nodeEval(script, env).trim().split('\n').pop()!);
  }

  it('(a) importing the package works without the addon', () => {
    const out = nodeEval(
      `const m = await import(${JSON.stringify(indexUrl())}); console.log(typeof m.RoFormerV2, typeof m.tensor, typeof m.MODEL_SIZES);`,
      childEnv(),
    );
    expect(out.trim()).toBe('function function object');
  });

  it('(b) the first native call throws one Error listing each path tried and how to fix it', () => {
    const result = tryTensorInBareCopy(childEnv());
    expect(result.threw).toBe(true);
    expect(result.isError).toBe(true);
    expect(result.name).toBe('NativeLoadError');
    const built = path.join(bare, 'build', 'Release', 'roformer_native.node');
    const prebuilt = path.join(bare, 'prebuilds', PLATFORM_DIR);
    expect(result.message).toContain('could not load the native addon');
    expect(result.message).toContain(built);
    expect(result.message).toContain(prebuilt);
    expect(result.message).toContain('libtorch-dev');
    expect(result.attempts).toEqual([
      { path: built, reason: 'not found (the addon has not been built here)' },
      { path: prebuilt, reason: `not found (no prebuilt addon for ${PLATFORM_DIR} in this package)` },
    ]);
  });

  it('(b) with ROFORMER_NATIVE pointing at a broken file, that attempt comes first with its reason', () => {
    const result = tryTensorInBareCopy(childEnv({ ROFORMER_NATIVE: garbageAddon }));
    expect(result.threw).toBe(true);
    expect(result.attempts).toHaveLength(3);
    expect(result.attempts![0]!.path).toBe(garbageAddon);
    expect(result.attempts![0]!.reason).toMatch(/another platform.*invalid ELF header/);
    expect(result.message).toContain(garbageAddon);
  });

  it('(c) the CLI prints usage for --help without the addon, and explains the failure for a native command', () => {
    const cli = path.join(bare, 'dist', 'lib', 'cli.js');
    const help = spawnSync(process.execPath, [cli, '--help'], { env: childEnv(), encoding: 'utf8', timeout: 60_000 });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/Usage: roformer/);
    expect(help.stdout).toMatch(/\binfo\b/);
    expect(help.stdout).toMatch(/\binit\b/);

    const info = spawnSync(process.execPath, [cli, 'info'], { env: childEnv(), encoding: 'utf8', timeout: 60_000 });
    expect(info.status).toBe(1); // a clean exit with a message, not a crash
    expect(info.signal).toBeNull();
    expect(info.stderr).toContain('could not load the native addon');
    expect(info.stderr).toContain(path.join(bare, 'build', 'Release', 'roformer_native.node'));
    expect(info.stderr).not.toMatch(/^\s+at /m); // no stack trace
  });

  it('with the real package, ROFORMER_NATIVE=/nonexistent.node falls back to build/Release', () => {
    const indexJs = pathToFileURL(path.join(ROOT, 'dist', 'lib', 'index.js')).href;
    const loadJs = pathToFileURL(path.join(ROOT, 'dist', 'bindings', 'load.js')).href;
    const out = nodeEval(
      `const m = await import(${JSON.stringify(indexJs)});
       const l = await import(${JSON.stringify(loadJs)});
       console.log(JSON.stringify({ first: l.candidatePaths()[0], version: m.runtimeInfo().libtorchVersion,
         values: Array.from(m.tensor([1, 2]).toArray()) }));`,
      childEnv({ ROFORMER_NATIVE: '/nonexistent.node' }),
    );
    const result = JSON.parse(out.trim().split('\n').pop()!);
    expect(result.first).toBe('/nonexistent.node');
    expect(result.version).toBe(runtimeInfo().libtorchVersion);
    expect(result.version).toMatch(/^\d+\.\d+/);
    expect(result.values).toEqual([1, 2]);
  });

  it("the loader sets OPENBLAS_THREAD_TIMEOUT=4 (OpenBLAS's workers sleep at once) before libtorch loads, keeping a value the user set, and leaves OpenMP's spinning alone", () => {
    const loadJs = pathToFileURL(path.join(ROOT, 'dist', 'bindings', 'load.js')).href;
    const names = ['OPENBLAS_THREAD_TIMEOUT', 'GOMP_SPINCOUNT', 'OMP_WAIT_POLICY'];
    const run = (env: NodeJS.ProcessEnv) =>
      JSON.parse(
        nodeEval(
          `const l = await import(${JSON.stringify(loadJs)});
           const pick = () => Object.fromEntries(${JSON.stringify(names)}.map((n) => [n, process.env[n] ?? null]));
           const before = pick();
           l.loadNative();
           console.log(JSON.stringify({ before, after: pick() }));`,
          env,
        ).trim().split('\n').pop()!,
      );
    const unset = childEnv();
    for (const name of names) delete unset[name]; // this process has loaded the addon, so its own are set
    expect(run(unset)).toEqual({
      before: { OPENBLAS_THREAD_TIMEOUT: null, GOMP_SPINCOUNT: null, OMP_WAIT_POLICY: null },
      after: { OPENBLAS_THREAD_TIMEOUT: '4', GOMP_SPINCOUNT: null, OMP_WAIT_POLICY: null },
    });
    expect(run(childEnv({ OPENBLAS_THREAD_TIMEOUT: '12' })).after.OPENBLAS_THREAD_TIMEOUT).toBe('12');
  });

  it('with the real package the CLI info command runs', () => {
    const cli = path.join(ROOT, 'dist', 'lib', 'cli.js');
    const info = spawnSync(process.execPath, [cli, 'info'], { env: childEnv(), encoding: 'utf8', timeout: 60_000 });
    expect(info.status).toBe(0);
    expect(info.stdout).toContain(`libtorch        ${runtimeInfo().libtorchVersion}`);
  });
});

describe('choosing among prebuilt flavours, CUDA included (simulated manifests and libtorch installs)', () => {
  const env = createRequire(import.meta.url)(path.join(ROOT, 'scripts', 'libtorch.cjs')) as EnvironmentModule;
  const pkg = path.join(tmpRoot, 'flavours');
  const debian13 = (cuda: boolean): LibtorchInstall => ({
    where: '/usr/lib/x86_64-linux-gnu',
    source: 'system',
    version: '2.6',
    abi: '2.6',
    cuda,
    libraries: ['libc10.so.2.6', 'libtorch.so.2.6', 'libtorch_cpu.so.2.6', ...(cuda ? ['libc10_cuda.so.2.6', 'libtorch_cuda.so.2.6'] : [])],
  });
  // pip's torch names its libraries without a version.
  const pipCuda: LibtorchInstall = {
    where: '/venv/lib/python3.12/site-packages/torch/lib',
    source: 'python3 torch',
    version: '2.6.0+cu124',
    abi: '2.6',
    cuda: true,
    libraries: ['libc10.so', 'libc10_cuda.so', 'libtorch.so', 'libtorch_cpu.so', 'libtorch_cuda.so'],
  };

  /** A flavour as scripts/prebuild.mjs writes it (the addon file is never loaded here). */
  function addFlavour(name: string, libtorch: PrebuiltManifest['libtorch'], glibc = '2.14'): void {
    const dir = path.join(pkg, 'prebuilds', PLATFORM_DIR, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'roformer_native.node'), Buffer.alloc(16));
    const manifest: PrebuiltManifest = { flavour: name, platform: process.platform, arch: process.arch, file: 'roformer_native.node', napi: 8, glibc, libtorch };
    fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  }
  const cpuSonames = ['libc10.so.2.6', 'libtorch_cpu.so.2.6', 'libtorch.so.2.6'];
  addFlavour('torch2.6-cuda12.4', {
    version: '2.6.0',
    abi: '2.6',
    cuda: true,
    cudaVersion: '12.4',
    sonames: [...cpuSonames, 'libc10_cuda.so.2.6', 'libtorch_cuda.so.2.6'],
    debianPackage: 'libtorch-cuda-2.6',
  });
  addFlavour('torch2.6-cpu', { version: '2.6.0', abi: '2.6', cuda: false, sonames: cpuSonames, debianPackage: 'libtorch2.6' });
  addFlavour('torch1.13-cpu', { version: '1.13.1', abi: '1.13', cuda: false, sonames: ['libc10.so.1.13', 'libtorch_cpu.so.1.13'] });

  const choose = (libtorch: LibtorchInstall[]) => {
    const { flavours } = env.prebuiltFlavours(pkg, libtorch);
    return Object.fromEntries(flavours.map((f) => [f.name, f])) as Record<string, (typeof flavours)[number]>;
  };

  it("Debian 13's CUDA libtorch: the CUDA flavour comes first, the CPU one of the same libtorch after it", () => {
    const { flavours } = env.prebuiltFlavours(pkg, [debian13(true)]);
    expect(flavours.map((f) => [f.name, f.reason === undefined])).toEqual([
      ['torch2.6-cuda12.4', true],
      ['torch2.6-cpu', true],
      ['torch1.13-cpu', false],
    ]);
    expect(flavours[0]!.match).toEqual(debian13(true));
    expect(flavours[2]!.reason).toBe('needs libtorch 1.13 (CPU); found libtorch 2.6 (CUDA) at /usr/lib/x86_64-linux-gnu');
  });

  it("Debian 13's CPU libtorch: the CUDA flavour is skipped for want of CUDA libraries", () => {
    const f = choose([debian13(false)]);
    expect(f['torch2.6-cuda12.4']!.reason).toBe(
      'needs libtorch 2.6 (CUDA 12.4), but the libtorch 2.6 found has no CUDA libraries (libtorch 2.6 (CPU) at /usr/lib/x86_64-linux-gnu)',
    );
    expect(f['torch2.6-cpu']!.reason).toBeUndefined();
    expect(env.prebuiltFlavours(pkg, [debian13(false)]).flavours[0]!.name).toBe('torch2.6-cpu');
  });

  it("pip's CUDA torch 2.6 (unversioned sonames): both 2.6 flavours are skipped, naming the sonames they need", () => {
    const f = choose([pipCuda]);
    expect(f['torch2.6-cuda12.4']!.reason).toMatch(
      /^needs libtorch 2\.6 \(CUDA 12\.4\) with libc10\.so\.2\.6, .*libtorch_cuda\.so\.2\.6; found libtorch 2\.6\.0\+cu124 \(CUDA\) at .* without all of them$/,
    );
    expect(f['torch2.6-cpu']!.reason).toMatch(/without all of them$/);
  });

  it('a CUDA flavour built on a newer glibc than this one is skipped, saying so', () => {
    addFlavour('torch2.6-cuda12.4', { version: '2.6.0', abi: '2.6', cuda: true, cudaVersion: '12.4', sonames: ['libtorch_cuda.so.2.6'] }, '99.0');
    expect(choose([debian13(true)])['torch2.6-cuda12.4']!.reason).toMatch(/^needs glibc ≥ 99\.0, this system has \d+\.\d+/);
  });
});

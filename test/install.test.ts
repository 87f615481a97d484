// Installing like users do (issue 11): prebuilt flavours chosen only where their manifest matches
// the libtorch found (and each skip explained), the fallback to a source build or to the
// explained error, `roformer doctor --json`, and the packed tarball installed into an empty
// project with cmake and the compiler unusable: it uses the prebuilt and compiles nothing.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { EnvironmentModule, LibtorchInstall, PrebuiltManifest } from '../bindings/environment.js';
import { copyPackageWithoutAddon } from './package-copy.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ADDON = path.join(ROOT, 'build', 'Release', 'roformer_native.node');
const PLATFORM = `${process.platform}-${process.arch}`;
const env = createRequire(import.meta.url)(path.join(ROOT, 'scripts', 'libtorch.cjs')) as EnvironmentModule;
const hasAddon = fs.existsSync(ADDON);
/** The libtorch this machine has (Debian 12: 1.13; scripts/cuda-build-check.sh's root: 2.6). */
const installed = env.findLibtorch()[0];
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'roformer-install-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

const systemTorch: LibtorchInstall = {
  where: '/usr/lib/x86_64-linux-gnu',
  source: 'system',
  version: '1.13',
  abi: '1.13',
  cuda: false,
  libraries: ['libc10.so.1.13', 'libtorch.so.1.13', 'libtorch_cpu.so.1.13'],
};

function manifest(over: Partial<PrebuiltManifest> = {}, libtorch: Partial<PrebuiltManifest['libtorch']> = {}): PrebuiltManifest {
  return {
    flavour: 'torch1.13-cpu',
    platform: process.platform,
    arch: process.arch,
    file: 'roformer_native.node',
    napi: 8,
    glibc: '2.14',
    ...over,
    libtorch: {
      version: '1.13.1',
      abi: '1.13',
      cuda: false,
      sonames: ['libc10.so.1.13', 'libtorch_cpu.so.1.13', 'libtorch.so.1.13'],
      debianPackage: 'libtorch1.13',
      ...libtorch,
    },
  };
}

function ensureDist(): void {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'lib', 'cli', 'doctor.js'))) {
    execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: ROOT });
  }
}

/** The environment without ROFORMER_NATIVE / ROFORMER_BUILD_FROM_SOURCE (plus overrides). */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env };
  delete e.ROFORMER_NATIVE;
  delete e.ROFORMER_BUILD_FROM_SOURCE;
  return { ...e, ...extra };
}

describe('flavour matching (simulated manifests)', () => {
  it('a manifest for the libtorch found matches', () => {
    expect(env.flavourMismatch(manifest(), [systemTorch])).toBeUndefined();
  });

  it('another libtorch version: skipped, naming what it needs and what was found', () => {
    const reason = env.flavourMismatch(manifest({}, { abi: '2.1', version: '2.1.0', sonames: ['libtorch_cpu.so'] }), [systemTorch]);
    expect(reason).toMatch(/needs libtorch 2\.1 \(CPU\); found libtorch 1\.13 \(CPU\) at \/usr\/lib\/x86_64-linux-gnu/);
  });

  it('a CUDA flavour where libtorch has no CUDA libraries is skipped', () => {
    const reason = env.flavourMismatch(manifest({}, { cuda: true, sonames: ['libtorch_cuda.so.1.13'] }), [systemTorch]);
    expect(reason).toMatch(/needs libtorch 1\.13 \(CUDA\), but the libtorch 1\.13 found has no CUDA libraries/);
  });

  it('no libtorch at all, another platform, a newer Node-API or glibc: each says why', () => {
    expect(env.flavourMismatch(manifest(), [])).toMatch(/needs libtorch 1\.13 \(CPU\); no libtorch was found/);
    expect(env.flavourMismatch(manifest({ platform: 'win32', arch: 'arm64' }), [systemTorch])).toBe(`built for win32-arm64, this is ${PLATFORM}`);
    expect(env.flavourMismatch(manifest({ napi: 99 }), [systemTorch])).toMatch(/needs Node-API 99, this Node\.js/);
    expect(env.flavourMismatch(manifest({ glibc: '9.99' }), [systemTorch])).toMatch(/needs glibc ≥ 9\.99/);
    expect(env.flavourMismatch(undefined, [systemTorch])).toMatch(/no readable manifest/);
    expect(env.flavourMismatch(manifest(), [{ ...systemTorch, libraries: ['libtorch_cpu.so.1.13'] }])).toMatch(/without all of them/);
  });

  it('the fix for a missing runtime is the exact apt command (Debian) for the flavour', () => {
    if (!env.isDebianLike()) return;
    expect(env.runtimeFixFor(manifest())).toMatch(/apt-get update && (sudo )?apt-get install -y libtorch1\.13 libopenblas0-pthread$/);
    expect(env.sourceBuildFix({})).toEqual([expect.stringMatching(/apt-get install -y libtorch-dev libopenblas0-pthread cmake g\+\+$/)]);
    expect(env.sourceBuildFix({ cmake: '/x', compiler: '/y', libtorchDev: { where: '/z', source: 'system' } })).toEqual([]);
  });
});

describe.skipIf(!hasAddon)('the loader with prebuilt flavours, in a copy of the package (child processes)', () => {
  let pkg: string;
  const cli = () => path.join(pkg, 'dist', 'lib', 'cli.js');
  const flavourDir = (name: string) => path.join(pkg, 'prebuilds', PLATFORM, name);

  function addFlavour(name: string, m: PrebuiltManifest, file: string | Buffer = ADDON): void {
    fs.mkdirSync(flavourDir(name), { recursive: true });
    if (typeof file === 'string') fs.copyFileSync(file, path.join(flavourDir(name), 'roformer_native.node'));
    else fs.writeFileSync(path.join(flavourDir(name), 'roformer_native.node'), file);
    fs.writeFileSync(path.join(flavourDir(name), 'manifest.json'), JSON.stringify(m));
  }

  function doctor(extra: Record<string, string> = {}) {
    const r = spawnSync(process.execPath, [cli(), 'doctor', '--json'], { env: childEnv(extra), encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, report: JSON.parse(r.stdout), stderr: r.stderr };
  }

  beforeAll(() => {
    ensureDist();
    pkg = copyPackageWithoutAddon(tmpRoot, 'pkg-');
  }, 120_000);

  it('a prebuilt whose manifest does not match is skipped with its reason; with no build, the error lists it', () => {
    addFlavour('torch9.9-cpu', manifest({ flavour: 'torch9.9-cpu' }, { abi: '9.9', version: '9.9.0' }));
    const { status, report } = doctor();
    expect(status).toBe(1);
    expect(report.ok).toBe(false);
    expect(report.addon.loaded).toBe(false);
    const skipped = report.addon.skipped as Array<{ path: string; reason: string }>;
    expect(skipped.map((a) => a.path)).toEqual([
      path.join(pkg, 'build', 'Release', 'roformer_native.node'),
      path.join(flavourDir('torch9.9-cpu'), 'roformer_native.node'),
    ]);
    expect(skipped[1]!.reason).toMatch(/^prebuilt torch9\.9-cpu skipped: needs libtorch 9\.9 \(CPU\); found /);
    expect(skipped[1]!.reason).toContain(`found ${env.describeLibtorch(installed!)}`);
    expect(report.problems[0].problem).toMatch(/the native addon cannot load/);
    expect(report.problems[0].fix.join('\n')).toMatch(/npm run build:native/);

    // The first native call throws the explained error, naming the skip.
    const info = spawnSync(process.execPath, [cli(), 'info'], { env: childEnv(), encoding: 'utf8', timeout: 60_000 });
    expect(info.status).toBe(1);
    expect(info.stderr).toContain('could not load the native addon');
    expect(info.stderr).toMatch(/torch9\.9-cpu skipped: needs libtorch 9\.9/);
    expect(info.stderr).toContain('roformer doctor');
  });

  it('… and falls back to a build from source when there is one', () => {
    fs.mkdirSync(path.join(pkg, 'build', 'Release'), { recursive: true });
    fs.symlinkSync(ADDON, path.join(pkg, 'build', 'Release', 'roformer_native.node'));
    try {
      const { status, report } = doctor();
      expect(status).toBe(0);
      expect(report.ok).toBe(true);
      expect(report.addon).toMatchObject({ loaded: true, kind: 'built', path: path.join(pkg, 'build', 'Release', 'roformer_native.node') });
      expect(report.addon.why).toMatch(/built from source/);
    } finally {
      fs.rmSync(path.join(pkg, 'build'), { recursive: true });
    }
  });

  it('a matching prebuilt is used (and a matching one that does not load is skipped with dlopen’s reason)', () => {
    // The simulated manifests describe the libtorch found here (its CPU libraries).
    expect(installed?.abi).toMatch(/^\d+\.\d+$/);
    const abi = installed!.abi!;
    const abiPattern = escapeRegExp(abi);
    const sonames = ['libc10', 'libtorch_cpu', 'libtorch'].map((l) => `${l}.so.${abi}`).filter((s) => installed!.libraries.includes(s));
    const cpu = `torch${abi}-cpu`;
    const cudaFlavour = `torch${abi}-cuda`;
    const libtorch = { abi, version: installed!.version!, sonames };
    if (!installed!.cuda) {
      addFlavour(cudaFlavour, manifest({ flavour: cudaFlavour }, { ...libtorch, cuda: true, sonames: [...sonames, `libtorch_cuda.so.${abi}`] }));
    }
    addFlavour(cpu, manifest({ flavour: cpu }, libtorch), Buffer.alloc(4096, 0x41)); // matches, but garbage
    let { status, report } = doctor();
    expect(status).toBe(1);
    const reasons = (report.addon.skipped as Array<{ path: string; reason: string }>).map((a) => a.reason).join('\n');
    expect(reasons).toMatch(new RegExp(`prebuilt torch${abiPattern}-cpu matches but does not load: built for another platform or Node\\.js \\(.*invalid ELF header`));
    if (!installed!.cuda) {
      expect(reasons).toMatch(
        new RegExp(`prebuilt torch${abiPattern}-cuda skipped: needs libtorch ${abiPattern} \\(CUDA\\), but the libtorch ${abiPattern} found has no CUDA libraries`),
      );
    }
    expect(reasons).toMatch(/prebuilt torch9\.9-cpu skipped/);

    addFlavour(cpu, manifest({ flavour: cpu }, libtorch));
    ({ status, report } = doctor());
    expect(status).toBe(0);
    expect(report.addon).toMatchObject({ loaded: true, kind: 'prebuilt', flavour: cpu });
    expect(report.addon.why).toMatch(new RegExp(`^prebuilt torch${abiPattern}-cpu matches libtorch ${abiPattern} \\((CPU|CUDA)\\) at `));
    expect(report.libtorch.inUse.version.startsWith(abi)).toBe(true);
    // ROFORMER_BUILD_FROM_SOURCE=1 turns the prebuilts off.
    ({ status, report } = doctor({ ROFORMER_BUILD_FROM_SOURCE: '1' }));
    expect(status).toBe(1);
    expect(JSON.stringify(report.addon.skipped)).toMatch(/prebuilts disabled \(ROFORMER_BUILD_FROM_SOURCE=1\)/);
  });
});

describe.skipIf(!hasAddon)('roformer doctor in this package', () => {
  it('--json: the report’s shape, exit code 0 when the addon loads', () => {
    ensureDist();
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'lib', 'cli.js'), 'doctor', '--json'], {
      env: childEnv(),
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(Object.keys(report).sort()).toEqual(
      ['addon', 'blas', 'buildFromSource', 'cuda', 'libtorch', 'memory', 'ok', 'problems', 'system', 'threads'].sort(),
    );
    expect(report.ok).toBe(true);
    expect(report.system).toMatchObject({ platform: PLATFORM, node: process.version });
    expect(report.libtorch.found.length).toBeGreaterThan(0);
    expect(report.libtorch.found[0]).toMatchObject({ where: expect.any(String), version: expect.any(String), cuda: expect.any(Boolean) });
    expect(report.libtorch.inUse).toMatchObject({ version: expect.stringMatching(/^\d+\.\d+/), cuda: expect.any(Boolean) });
    expect(report.addon).toMatchObject({ loaded: true, path: expect.any(String), why: expect.any(String) });
    expect(['built', 'prebuilt', 'ROFORMER_NATIVE']).toContain(report.addon.kind);
    expect(report.threads.numThreads).toBeGreaterThan(0);
    expect(typeof report.blas).toBe('string');
    expect(report.cuda).toMatchObject({ available: expect.any(Boolean), deviceCount: expect.any(Number) });
    expect(report.memory.freeBytes).toBeGreaterThan(0);
    expect(report.memory.totalBytes).toBeGreaterThanOrEqual(report.memory.freeBytes);
    expect(typeof report.buildFromSource.possible).toBe('boolean');
    for (const p of report.problems) expect(p).toMatchObject({ problem: expect.any(String), fix: expect.any(Array) });

    const text = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'lib', 'cli.js'), 'doctor'], { env: childEnv(), encoding: 'utf8', timeout: 60_000 });
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^libtorch\s+\S+ \((CPU|CUDA)\) at /m);
    expect(text.stdout).toMatch(/^addon\s+(built from source|prebuilt \(|ROFORMER_NATIVE)/m);
    expect(text.stdout).toMatch(/^threads\s+\d+ of \d+/m);
  });
});

describe('the install hook where nothing can work (child processes)', () => {
  let pkg: string;
  beforeAll(() => {
    pkg = fs.mkdtempSync(path.join(tmpRoot, 'hook-'));
    fs.mkdirSync(path.join(pkg, 'scripts'));
    fs.mkdirSync(path.join(pkg, 'bin'));
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'));
    for (const f of ['install.mjs', 'libtorch.cjs']) fs.copyFileSync(path.join(ROOT, 'scripts', f), path.join(pkg, 'scripts', f));
    fs.symlinkSync(process.execPath, path.join(pkg, 'bin', 'node'));
  });

  /** Runs the hook with only node on PATH (no cmake, no compiler). */
  function hook(extra: Record<string, string> = {}) {
    return spawnSync(process.execPath, [path.join(pkg, 'scripts', 'install.mjs')], {
      cwd: pkg,
      env: childEnv({ PATH: path.join(pkg, 'bin'), CXX: '', ...extra }),
      encoding: 'utf8',
      timeout: 60_000,
    });
  }

  it('no prebuilt, no cmake, no compiler: the exact command, no CMake error; the install still succeeds', () => {
    const r = hook();
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/the native addon cannot be built here: (libtorch \(with its headers\), )?cmake, a C\+\+ compiler not found/);
    if (env.isDebianLike()) expect(r.stderr).toMatch(/^ {4}(sudo )?apt-get update && (sudo )?apt-get install -y .*cmake g\+\+$/m);
    expect(r.stderr).toContain('roformer doctor');
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/CMake Error|building the native addon from source/);
    expect(hook({ ROFORMER_REQUIRE_NATIVE: '1' }).status).toBe(1);
  });

  it('a prebuilt for a libtorch that is not installed: its skip reason, then the runtime package that makes it work', () => {
    const dir = path.join(pkg, 'prebuilds', PLATFORM, 'torch9.9-cpu');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'roformer_native.node'), Buffer.alloc(16));
    fs.writeFileSync(
      path.join(dir, 'manifest.json'),
      JSON.stringify(manifest({ flavour: 'torch9.9-cpu' }, { abi: '9.9', version: '9.9.0', debianPackage: 'libtorch9.9' })),
    );
    const r = hook();
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/roformer-v2: prebuilt torch9\.9-cpu skipped: needs libtorch 9\.9 \(CPU\)/);
    if (env.isDebianLike()) {
      expect(r.stderr).toMatch(/To use the prebuilt addon \(torch9\.9-cpu\), install its libtorch runtime/);
      expect(r.stderr).toMatch(/^ {4}(sudo )?apt-get update && (sudo )?apt-get install -y libtorch9\.9 libopenblas0-pthread$/m);
    }
  });
});

/** A bin directory with node, npm, npx and sh, and cmake / compilers / make that only record being called. */
function sandboxPath(dir: string, log: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const which = (name: string) => execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  fs.symlinkSync(process.execPath, path.join(dir, 'node'));
  for (const tool of ['npm', 'npx', 'sh']) fs.symlinkSync(fs.realpathSync(which(tool)), path.join(dir, tool));
  for (const tool of ['cmake', 'c++', 'g++', 'gcc', 'cc', 'clang++', 'make', 'ninja']) {
    fs.writeFileSync(path.join(dir, tool), `#!/bin/sh\necho "${tool} $*" >> ${JSON.stringify(log)}\nexit 127\n`, { mode: 0o755 });
  }
  return dir;
}

describe.skipIf(!hasAddon)('the packed tarball in an empty project, no compiler', () => {
  it('npm install uses the prebuilt, compiles nothing, and `roformer info` runs', () => {
    ensureDist();
    // A flavour for this machine's libtorch (others, such as the CUDA one that
    // scripts/cuda-build-check.sh leaves in prebuilds/, do not count).
    const hasPrebuilt = env.prebuiltFlavours(ROOT).flavours.some((f) => !f.reason && !f.manifest?.libtorch.cuda);
    if (!hasPrebuilt) execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'prebuild.mjs')], { cwd: ROOT, stdio: 'pipe' });

    // npm's own variables (set when the tests run under `npm test`) would leak into the inner npm.
    const clean = Object.fromEntries(Object.entries(childEnv()).filter(([k]) => !/^npm_/i.test(k)));
    const packDir = fs.mkdtempSync(path.join(tmpRoot, 'pack-'));
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir], { cwd: ROOT, env: clean, encoding: 'utf8' }),
    )[0] as { filename: string; files: Array<{ path: string }> };
    const files = packed.files.map((f) => f.path);
    const flavourFiles = files.filter((f) => f.startsWith(`prebuilds/${PLATFORM}/`));
    expect(flavourFiles.some((f) => /\/torch\d+\.\d+-(cpu|cuda)\/roformer_native\.node$/.test(f))).toBe(true);
    expect(flavourFiles.some((f) => f.endsWith('/manifest.json'))).toBe(true);
    expect(files).toContain('scripts/libtorch.cjs');
    expect(files.some((f) => f.startsWith('build/'))).toBe(false);

    const project = fs.mkdtempSync(path.join(tmpRoot, 'project-'));
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'empty-project', version: '1.0.0', private: true }));
    const log = path.join(tmpRoot, 'compiler-calls.log');
    const bin = sandboxPath(path.join(tmpRoot, 'bin'), log);
    const sandbox = { ...clean, PATH: bin, CXX: '', CC: '' };
    const install = spawnSync(
      'npm',
      ['install', path.join(packDir, packed.filename), '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'],
      { cwd: project, env: sandbox, encoding: 'utf8', timeout: 240_000 },
    );
    const output = `${install.stdout}\n${install.stderr}`;
    expect(install.status, output).toBe(0);
    expect(output).toMatch(/roformer-v2: using the prebuilt addon prebuilds\/linux-x64\/torch[\d.]+-cpu\/roformer_native\.node .*nothing to compile/);
    expect(fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '').toBe(''); // cmake, make and the compilers were never called
    const installed = path.join(project, 'node_modules', 'roformer-v2');
    expect(fs.existsSync(path.join(installed, 'build'))).toBe(false);

    const roformer = path.join(project, 'node_modules', '.bin', 'roformer');
    const info = spawnSync(roformer, ['info'], { cwd: project, env: sandbox, encoding: 'utf8', timeout: 60_000 });
    expect(info.status, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/^libtorch\s+\d+\.\d+/m);
    expect(info.stdout).toMatch(/^threads\s+\d+ of \d+/m);

    const doctor = spawnSync(roformer, ['doctor', '--json'], { cwd: project, env: sandbox, encoding: 'utf8', timeout: 60_000 });
    expect(doctor.status, doctor.stderr).toBe(0);
    const report = JSON.parse(doctor.stdout);
    expect(report.addon).toMatchObject({ loaded: true, kind: 'prebuilt' });
    expect(report.addon.path.startsWith(path.join(installed, 'prebuilds', PLATFORM))).toBe(true);
  }, 300_000);
});

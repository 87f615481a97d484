// `roformer doctor`: is this machine set up for roformer-v2, and if not, the exact command that
// fixes each problem. libtorch found (where, version, CPU/CUDA), the addon in use (prebuilt or
// built, and why; the others and why they were skipped), BLAS and threads, CUDA devices and
// driver, free memory, what a build from source would need. `--json` for machines; the exit
// code is 1 when the addon cannot load.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as os from 'node:os';

import { Command } from 'commander';

import { environment, type BuildTools, type LibtorchInstall } from '../../bindings/environment.js';
import { nativeLoadReport, packageRoot, type LoadAttempt, type LoadedAddon } from '../../bindings/load.js';

export interface DoctorProblem {
  problem: string;
  /** Commands (or steps) that fix it, most direct first. */
  fix: string[];
}

export interface DoctorReport {
  /** The addon loads: everything that needs libtorch can run. */
  ok: boolean;
  system: { platform: string; os?: string; node: string; napi: number; glibc?: string; packageRoot: string };
  libtorch: { found: LibtorchInstall[]; inUse?: { version: string; cuda: boolean } };
  addon: { loaded: boolean; path?: string; kind?: LoadedAddon['kind']; flavour?: string; why?: string; skipped: LoadAttempt[] };
  blas?: string;
  threads?: { numThreads: number; availableCores: number };
  cuda: { available: boolean; deviceCount: number; driver?: string; devices?: string[] };
  memory: { freeBytes: number; totalBytes: number };
  buildFromSource: { possible: boolean } & BuildTools;
  problems: DoctorProblem[];
}

/** MemAvailable (what can be used without swapping), else os.freemem(). */
function freeMemory(): number {
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return os.freemem();
}

function nvidia(): { driver?: string; devices?: string[] } {
  let driver = /Kernel Module\s+([\d.]+)/.exec(existsSync('/proc/driver/nvidia/version') ? readFileSync('/proc/driver/nvidia/version', 'utf8') : '')?.[1];
  const smi = spawnSync('nvidia-smi', ['--query-gpu=name,driver_version,memory.free,memory.total', '--format=csv,noheader'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (smi.status !== 0) return { driver };
  const rows = smi.stdout.trim().split('\n').filter(Boolean).map((l) => l.split(',').map((x) => x.trim()));
  driver ??= rows[0]?.[1];
  return { driver, devices: rows.map(([name, , free, total]) => `${name} (${free} free of ${total})`) };
}

export async function doctorReport(): Promise<DoctorReport> {
  const root = packageRoot();
  const env = environment(root);
  const found = env.findLibtorch({ python: true });
  const load = nativeLoadReport();
  const tools = env.buildTools({ python: false });
  const problems: DoctorProblem[] = [];
  const osName = env.osRelease().PRETTY_NAME;
  const gpu = nvidia();

  const report: DoctorReport = {
    ok: Boolean(load.addon),
    system: {
      platform: env.PLATFORM,
      os: osName,
      node: process.version,
      napi: Number(process.versions.napi ?? 0),
      glibc: env.glibcVersion(),
      packageRoot: root,
    },
    libtorch: { found },
    addon: {
      loaded: Boolean(load.addon),
      path: load.loaded?.path,
      kind: load.loaded?.kind,
      flavour: load.loaded?.flavour,
      why: load.loaded?.why,
      skipped: load.attempts,
    },
    cuda: { available: false, deviceCount: 0, ...gpu },
    memory: { freeBytes: freeMemory(), totalBytes: os.totalmem() },
    buildFromSource: { possible: Boolean(tools.cmake && tools.compiler && tools.libtorchDev), ...tools },
    problems,
  };

  if (found.length === 0) {
    problems.push({
      problem: 'no libtorch found (looked in LIBTORCH, LD_LIBRARY_PATH, the system library directories and python3 torch)',
      fix: env.isDebianLike()
        ? [env.aptCommand(['libtorch-dev', 'libopenblas0-pthread'])]
        : ['pip install torch', 'or export LIBTORCH=/path/to/libtorch (an unzipped libtorch download)'],
    });
  }

  if (load.addon) {
    const info = load.addon.runtimeInfo();
    const { blasInUse } = await import('../model/runtime.js');
    report.libtorch.inUse = { version: info.libtorchVersion, cuda: /USE_CUDA=(ON|1)/.test(info.buildConfig) };
    report.blas = blasInUse(info.buildConfig);
    report.threads = { numThreads: info.numThreads, availableCores: info.availableCores };
    report.cuda.available = info.cudaAvailable;
    report.cuda.deviceCount = info.cudaDeviceCount;
    if (/reference BLAS/.test(report.blas)) {
      problems.push({ problem: `slow reference BLAS in use (${report.blas.split(':')[0]})`, fix: [env.aptCommand(['libopenblas0-pthread'])] });
    }
    if (info.numThreads === 1 && info.availableCores > 1) {
      problems.push({
        problem: `libtorch uses 1 thread of ${info.availableCores} cores`,
        fix: [`export ROFORMER_NUM_THREADS=${info.availableCores}`],
      });
    }
    if (report.libtorch.inUse.cuda && !info.cudaAvailable) {
      problems.push({
        problem: 'libtorch has CUDA but no CUDA device is usable',
        fix: [gpu.driver ? 'check `nvidia-smi` and that the driver supports this libtorch\'s CUDA version' : 'install the NVIDIA driver (no driver found)'],
      });
    }
  } else {
    const fix: string[] = [];
    const { flavours } = env.prebuiltFlavours(root, found);
    const needsRuntime = flavours.find((f) => f.manifest && !found.some((l) => l.abi === f.manifest!.libtorch.abi));
    const runtimeFix = needsRuntime && env.runtimeFixFor(needsRuntime.manifest);
    if (runtimeFix) fix.push(`${runtimeFix}   (the libtorch the prebuilt ${needsRuntime!.name} needs), then npm rebuild roformer-v2`);
    const toolFix = env.sourceBuildFix(tools);
    fix.push(...toolFix.map((c) => `${c}   (to build from source)`));
    fix.push(`npm run build:native   (in ${root}${toolFix.length > 0 ? ', after the commands above' : ''})`);
    problems.push({ problem: 'the native addon cannot load: ' + load.attempts.map((a) => `${a.path}: ${a.reason}`).join('; '), fix });
  }

  const gib = 1024 ** 3;
  if (report.memory.freeBytes < 2 * gib) {
    problems.push({
      problem: `only ${(report.memory.freeBytes / gib).toFixed(1)} GiB of memory free`,
      fix: ['close other programs, or train with --size small and a smaller --batch-size'],
    });
  }
  return report;
}

function printReport(r: DoctorReport): void {
  const gib = (n: number) => `${(n / 1024 ** 3).toFixed(1)} GiB`;
  const line = (label: string, value: string) => console.log(`${label.padEnd(18)}${value}`);
  line('system', `${r.system.os ?? r.system.platform} (${r.system.platform}), node ${r.system.node}, Node-API ${r.system.napi}${r.system.glibc ? `, glibc ${r.system.glibc}` : ''}`);
  if (r.libtorch.found.length === 0) line('libtorch', 'not found');
  for (const [i, lt] of r.libtorch.found.entries()) {
    line(i === 0 ? 'libtorch' : '', `${lt.version ?? '?'} (${lt.cuda ? 'CUDA' : 'CPU'}) at ${lt.where} [${lt.source}]${lt.cmakeConfig ? ', with headers' : ', runtime only'}`);
  }
  if (r.addon.loaded) {
    line('addon', `${r.addon.kind === 'prebuilt' ? `prebuilt (${r.addon.flavour})` : r.addon.kind === 'built' ? 'built from source' : 'ROFORMER_NATIVE'}: ${r.addon.path}`);
    line('', `why: ${r.addon.why}`);
  } else {
    line('addon', 'cannot load');
  }
  for (const a of r.addon.skipped) line('', `skipped ${a.path}: ${a.reason}`);
  if (r.libtorch.inUse) line('libtorch in use', `${r.libtorch.inUse.version} (${r.libtorch.inUse.cuda ? 'CUDA build' : 'CPU build'})`);
  if (r.blas) line('BLAS', r.blas);
  if (r.threads) line('threads', `${r.threads.numThreads} of ${r.threads.availableCores} available cores`);
  line('CUDA', `${r.cuda.available ? `${r.cuda.deviceCount} device(s)` : 'not available'}${r.cuda.driver ? `, driver ${r.cuda.driver}` : ', no NVIDIA driver'}`);
  for (const d of r.cuda.devices ?? []) line('', d);
  line('memory', `${gib(r.memory.freeBytes)} free of ${gib(r.memory.totalBytes)}`);
  const b = r.buildFromSource;
  line(
    'build from source',
    `${b.possible ? 'possible' : 'not possible'}: cmake ${b.cmake ?? 'missing'}, compiler ${b.compiler ?? 'missing'}, libtorch headers ${b.libtorchDev?.where ?? 'missing'}`,
  );
  console.log('');
  if (r.problems.length === 0) {
    console.log('no problems found');
    return;
  }
  for (const p of r.problems) {
    console.log(`problem: ${p.problem}`);
    for (const f of p.fix) console.log(`  fix: ${f}`);
  }
}

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('check libtorch, the addon in use (prebuilt or built), BLAS, threads, CUDA and memory; print the fix for each problem')
    .option('--json', 'print the report as JSON')
    .action(async (options: { json?: boolean }) => {
      const report = await doctorReport();
      if (options.json) console.log(JSON.stringify(report, null, 2));
      else printReport(report);
      process.exitCode = report.ok ? 0 : 1;
    });
}

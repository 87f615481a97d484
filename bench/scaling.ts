// Data-parallel scaling: N ranks against 1, each rank a process of its own with the
// same threads, training the same model on random batches of the same size per rank
// (so N ranks process N times the tokens per step). Gloo over loopback on the CPU.
//
// The 1-rank and N-rank runs alternate (1, N, N, 1, …) so that drift on a shared
// machine hits both; each pair gives a ratio of global tokens/s, and the figure is
// the median of those ratios.
//
// The machine's own ceiling is measured beside it: N independent 1-rank processes at
// once, no communication at all. Where N cores do not give N times the arithmetic
// (shared FPUs, memory bandwidth, SMT siblings under a hypervisor), no data-parallel
// implementation can beat that ceiling; ratio / ceiling is what communication cost.
//
//   npx roformer-bench --ranks 2 --threads 1 --size small --seq 128 --batch 8

import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

import { packageRoot } from '../bindings/load.js';
import type { Precision } from './harness.js';
import { summarise } from './harness.js';
import type { ModelSize, RoFormerV2Config } from '../lib/model/config.js';

/** What every rank of one run needs (bench/scaling-child.ts). */
export interface ScalingJob {
  size: ModelSize;
  config: Partial<RoFormerV2Config>;
  seq: number;
  /** Samples per step on each rank. */
  batch: number;
  dtype: Precision;
  steps: number;
  warmup: number;
}

export interface ScalingOptions extends Omit<ScalingJob, 'seq'> {
  seqs: number[];
  /** Ranks of the data-parallel run (compared with 1). */
  ranks: number;
  /** Intra-op threads of every rank. */
  threads: number;
  /** (1 rank, N ranks) pairs to run. */
  repeats: number;
}

export interface ScalingRun {
  world: number;
  /** N processes without communication (the ceiling), rather than N ranks. */
  independent: boolean;
  repeat: number;
  msPerStep: ReturnType<typeof summarise>;
  /** Tokens per second over all ranks (world × batch × seq per step). */
  tokensPerSecond: number;
}

export interface ScalingResult {
  seq: number;
  runs: ScalingRun[];
  /** Each pair's N-rank tokens/s over its 1-rank tokens/s. */
  pairRatios: number[];
  /** The median pair ratio: the scaling figure. */
  ratio: number;
  /** ratio / N. */
  efficiency: number;
  /** The median over pairs of N independent processes' tokens/s over 1 process's. */
  ceiling: number;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * One run of `world` processes: ranks of one data-parallel run, or (independent)
 * separate 1-rank runs at the same time. Resolves with each process's step times (ms).
 */
async function runProcesses(job: ScalingJob, world: number, threads: number, independent: boolean): Promise<number[][]> {
  const child = join(packageRoot(), 'dist', 'bench', 'scaling-child.js'); // the built script, also when run from source
  const port = await freePort();
  const ranks = Array.from({ length: world }, (_, rank) => {
    const distributed = world > 1 && !independent;
    const env = { ...process.env, ROFORMER_NUM_THREADS: String(threads), ...(distributed ? { RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) } : {}) };
    const proc = spawn(process.execPath, [child, JSON.stringify(job)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    return new Promise<string>((resolve, reject) =>
      proc.on('exit', (code, signal) => (code === 0 ? resolve(stdout) : reject(new Error(`scaling benchmark: rank ${rank} of ${world} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`)))),
    );
  });
  const outputs = await Promise.all(ranks);
  // A data-parallel run's rank 0 alone reports (every step ends with the all-reduce).
  return outputs.filter((o) => o.trim() !== '').map((o) => (JSON.parse(o.trim().split('\n').pop()!) as { msPerStep: number[] }).msPerStep);
}

/** Every length of `seqs`: `repeats` pairs of (1 rank, N ranks). */
export async function runScalingBenchmark(options: ScalingOptions, onRun?: (seq: number, run: ScalingRun) => void): Promise<ScalingResult[]> {
  if (options.ranks < 2) throw new RangeError('--ranks must be at least 2 (it is compared with 1 rank)');
  const results: ScalingResult[] = [];
  for (const seq of options.seqs) {
    const job: ScalingJob = { size: options.size, config: options.config, seq, batch: options.batch, dtype: options.dtype, steps: options.steps, warmup: options.warmup };
    const runs: ScalingRun[] = [];
    const pairRatios: number[] = [];
    const ceilings: number[] = [];
    const N = options.ranks;
    const kinds = [{ world: 1, independent: false }, { world: N, independent: false }, { world: N, independent: true }];
    for (let repeat = 0; repeat < options.repeats; repeat++) {
      const measured: ScalingRun[] = [];
      for (const { world, independent } of repeat % 2 === 0 ? kinds : [...kinds].reverse()) {
        const perProcess = await runProcesses(job, world, options.threads, independent);
        const summaries = perProcess.map(summarise);
        // Tokens/s over all processes: a data-parallel step is world × batch × seq tokens.
        const tokensPerSecond = independent
          ? summaries.reduce((sum, ms) => sum + (options.batch * seq * 1000) / ms.median, 0)
          : (world * options.batch * seq * 1000) / summaries[0]!.median;
        const run: ScalingRun = { world, independent, repeat, msPerStep: summarise(perProcess.flat()), tokensPerSecond };
        runs.push(run);
        measured.push(run);
        onRun?.(seq, run);
      }
      const one = measured.find((r) => r.world === 1)!.tokensPerSecond;
      pairRatios.push(measured.find((r) => r.world === N && !r.independent)!.tokensPerSecond / one);
      ceilings.push(measured.find((r) => r.independent)!.tokensPerSecond / one);
    }
    const ratio = summarise(pairRatios).median;
    results.push({ seq, runs, pairRatios, ratio, efficiency: ratio / N, ceiling: summarise(ceilings).median });
  }
  return results;
}

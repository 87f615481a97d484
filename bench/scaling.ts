// Data-parallel scaling: N ranks against 1, each rank a process of its own with the
// same threads, training the same model on random batches of the same size per rank
// (so N ranks process N times the tokens per step). Gloo over loopback on the CPU.
//
// The 1-rank and N-rank runs alternate (1, N, N, 1, …) so that drift on a shared
// machine hits both; each pair gives a ratio of global tokens/s, and the figure is
// the median of those ratios.
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

/** One run of `world` ranks; resolves with rank 0's step times (ms). */
async function runRanks(job: ScalingJob, world: number, threads: number): Promise<number[]> {
  const child = join(packageRoot(), 'dist', 'bench', 'scaling-child.js'); // the built script, also when run from source
  const port = await freePort();
  const ranks = Array.from({ length: world }, (_, rank) => {
    const env = { ...process.env, ROFORMER_NUM_THREADS: String(threads), ...(world > 1 ? { RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) } : {}) };
    const proc = spawn(process.execPath, [child, JSON.stringify(job)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    return new Promise<string>((resolve, reject) =>
      proc.on('exit', (code, signal) => (code === 0 ? resolve(stdout) : reject(new Error(`scaling benchmark: rank ${rank} of ${world} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`)))),
    );
  });
  const [rank0] = await Promise.all(ranks);
  const last = rank0!.trim().split('\n').pop() ?? '';
  return (JSON.parse(last) as { msPerStep: number[] }).msPerStep;
}

/** Every length of `seqs`: `repeats` pairs of (1 rank, N ranks). */
export async function runScalingBenchmark(options: ScalingOptions, onRun?: (seq: number, run: ScalingRun) => void): Promise<ScalingResult[]> {
  if (options.ranks < 2) throw new RangeError('--ranks must be at least 2 (it is compared with 1 rank)');
  const results: ScalingResult[] = [];
  for (const seq of options.seqs) {
    const job: ScalingJob = { size: options.size, config: options.config, seq, batch: options.batch, dtype: options.dtype, steps: options.steps, warmup: options.warmup };
    const runs: ScalingRun[] = [];
    const pairRatios: number[] = [];
    for (let repeat = 0; repeat < options.repeats; repeat++) {
      const order = repeat % 2 === 0 ? [1, options.ranks] : [options.ranks, 1];
      const pair = new Map<number, ScalingRun>();
      for (const world of order) {
        const msPerStep = summarise(await runRanks(job, world, options.threads));
        const run = { world, repeat, msPerStep, tokensPerSecond: (world * options.batch * seq * 1000) / msPerStep.median };
        runs.push(run);
        pair.set(world, run);
        onRun?.(seq, run);
      }
      pairRatios.push(pair.get(options.ranks)!.tokensPerSecond / pair.get(1)!.tokensPerSecond);
    }
    const ratio = summarise(pairRatios).median;
    results.push({ seq, runs, pairRatios, ratio, efficiency: ratio / options.ranks });
  }
  return results;
}

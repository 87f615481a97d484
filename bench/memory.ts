// Peak resident memory of a training loop, each model in a process of its own.
//
// The speed harness alternates both models (and a matmul peak) in one process, so
// its resident-memory high-water mark mixes them. Here every (model, length) runs
// in a fresh child process (bench/memory-child.ts) and reports the kernel's own
// high-water mark (VmHWM): the figure a user's machine has to hold.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { packageRoot } from '../bindings/load.js';

import type { BenchOptions, ModelName } from './harness.js';

export interface MemoryResult {
  model: ModelName;
  seq: number;
  batch: number;
  steps: number;
  /** The process's peak resident memory (VmHWM), bytes. */
  peakRssBytes: number;
  /** Resident memory after the last step, bytes. */
  rssAfterBytes: number;
}

/** The options a child needs: one model, one length. */
export interface MemoryJob extends Omit<BenchOptions, 'seqs'> {
  model: ModelName;
  seq: number;
  threads?: number;
}

/** VmHWM and VmRSS of this process from /proc (Linux); process.memoryUsage elsewhere. */
export function residentMemory(): { peakBytes: number; currentBytes: number } {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    const peakBytes = kb('VmHWM');
    const currentBytes = kb('VmRSS');
    if (Number.isFinite(peakBytes) && Number.isFinite(currentBytes)) return { peakBytes, currentBytes };
  } catch {
    // not Linux: fall through
  }
  const rss = process.memoryUsage.rss();
  return { peakBytes: rss, currentBytes: rss };
}

/** Runs `job` in a fresh Node process and returns what it measured. */
export function measureInChild(job: MemoryJob): MemoryResult {
  const child = join(packageRoot(), 'dist', 'bench', 'memory-child.js'); // the built script, also when run from source
  const output = execFileSync(process.execPath, [child, JSON.stringify(job)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  const last = output.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as MemoryResult;
}

/** Every model × length of `options`, each in its own process. */
export function runMemoryBenchmark(options: BenchOptions & { threads?: number }, onResult?: (r: MemoryResult) => void): MemoryResult[] {
  const results: MemoryResult[] = [];
  const models: ModelName[] = ['roformer-v2', 'roberta-baseline', ...(options.gauAlpha ? (['gau-alpha'] as const) : [])];
  for (const seq of options.seqs) {
    for (const model of models) {
      const { seqs: _seqs, ...rest } = options;
      const result = measureInChild({ ...rest, model, seq });
      results.push(result);
      onResult?.(result);
    }
  }
  return results;
}

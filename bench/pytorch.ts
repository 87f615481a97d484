// --vs-pytorch: runs bench/pytorch_bench.py (the same models and training step in
// PyTorch eager, and under torch.compile where torch >= 2) with the same
// configurations, when a python3 with torch exists.

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

import { packageRoot } from '../bindings/load.js';
import type { RoFormerV2Config } from '../lib/model/config.js';
import { summarise, type ModelName, type Precision } from './harness.js';

export interface PytorchResult {
  model: ModelName;
  seq: number;
  /** "targets": the MLM head at the target positions, as ours; "full": at every position. */
  head: 'targets' | 'full';
  /** Forward and loss under torch.compile (static target slots), else eager. */
  compiled: boolean;
  msPerStep: ReturnType<typeof summarise>;
  torchVersion: string;
  threads: number;
}

/** Whether this torch has torch.compile (2.0 and later). */
export function hasTorchCompile(version: string): boolean {
  return Number.parseInt(version, 10) >= 2;
}

/** The first python3 that imports torch (Debian's python3-torch lives under /usr/bin/python3). */
export function findPythonWithTorch(): { python: string; version: string } | null {
  for (const python of ['python3', '/usr/bin/python3']) {
    try {
      const version = execFileSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      return { python, version };
    } catch {
      // not this one
    }
  }
  return null;
}

export function runPytorch(
  python: string,
  options: { config: RoFormerV2Config; seqs: number[]; batch: number; dtype: Precision; device: string; steps: number; warmup: number; threads: number; compile: boolean },
): PytorchResult[] {
  const variants: Array<[ModelName, 'targets' | 'full', boolean]> = [
    ['roformer-v2', 'targets', false],
    ['roberta-baseline', 'targets', false],
    ['roformer-v2', 'full', false],
  ];
  if (options.compile) variants.push(['roformer-v2', 'targets', true], ['roberta-baseline', 'targets', true]);
  const configs = options.seqs.flatMap((seq) =>
    variants.map(([model, head, compile]) => ({
      model,
      head,
      compile,
      seq,
      config: options.config,
      batch: options.batch,
      dtype: options.dtype,
      device: options.device === 'cuda' ? 'cuda:0' : options.device,
      steps: options.steps,
      warmup: options.warmup,
      threads: options.threads,
    })),
  );
  const script = join(packageRoot(), 'bench', 'pytorch_bench.py');
  const output = execFileSync(python, [script, JSON.stringify(configs)], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const raw = JSON.parse(output) as Array<{ model: ModelName; seq: number; head: 'targets' | 'full'; compiled: boolean; msSamples: number[]; torchVersion: string; threads: number }>;
  return raw.map((r) => ({ model: r.model, seq: r.seq, head: r.head, compiled: r.compiled, msPerStep: summarise(r.msSamples), torchVersion: r.torchVersion, threads: r.threads }));
}

export interface PytorchMemoryResult {
  model: ModelName;
  seq: number;
  head: 'targets' | 'full';
  /** The Python process's peak resident memory (ru_maxrss), bytes. */
  peakRssBytes: number;
}

/**
 * Peak resident memory of the same RoFormerV2 training loop in PyTorch, one
 * process per configuration (so each high-water mark is that configuration's own):
 * with the MLM head at the targets (our step) and at every position (the ports).
 */
export function runPytorchMemory(
  python: string,
  options: { config: RoFormerV2Config; seqs: number[]; batch: number; dtype: Precision; device: string; steps: number; warmup: number; threads: number },
): PytorchMemoryResult[] {
  const script = join(packageRoot(), 'bench', 'pytorch_bench.py');
  const results: PytorchMemoryResult[] = [];
  for (const seq of options.seqs) {
    for (const head of ['targets', 'full'] as const) {
      const config = { ...options, model: 'roformer-v2', head, seq, device: options.device === 'cuda' ? 'cuda:0' : options.device };
      const output = execFileSync(python, [script, JSON.stringify([config])], { encoding: 'utf8', maxBuffer: 64 << 20 });
      const [raw] = JSON.parse(output) as Array<{ peakRssBytes: number }>;
      results.push({ model: 'roformer-v2', seq, head, peakRssBytes: raw!.peakRssBytes });
    }
  }
  return results;
}

// metrics.jsonl: one JSON record per line, appended as a run goes.
//
//   {"type":"train","step":12,"loss":3.91,"lr":0.0005,…,"rssMB":873.4}
//   {"type":"train","step":13,"task":"tnews","loss":1.02,…}            multi-task: the step's task
//   {"type":"eval","step":20,"loss":3.55,"perplexity":34.8,"accuracy":0.31,"targets":812}
//   {"type":"eval","step":20,"task":"tnews","loss":1.1,"accuracy":0.52}  one record per task
//
// Records are flat so that `jq` and pandas read them as they are. The run loop
// writes them (lib/training/run-loop.ts); the report draws them (report.ts).

import { appendFile, readFile } from 'node:fs/promises';

import { writeFileAtomic } from '../util/atomic-file.js';

export interface TrainMetric {
  type: 'train';
  step: number;
  /** The task of the step's micro-batches when they share one (multi-task training, fine-tuning). */
  task?: string;
  loss: number;
  /** Steps mixing tasks: each task's loss, when the trainer reports it. */
  taskLosses?: Record<string, number>;
  lr: number;
  alpha: number;
  gradNorm: number;
  /** Real tokens per second over every rank (data-parallel: the global figure). */
  tokensPerSecond: number;
  /** Data-parallel runs: the number of ranks. */
  worldSize?: number;
  skipped: boolean;
  elapsedSeconds: number;
  /** Resident memory of the process after the step, in MB (2^20 bytes): the figure `top` shows as RES. */
  rssMB: number;
}

/**
 * Held-out figures at one step: whatever the stage measures (loss, perplexity,
 * accuracy, f1, em, …), by name, for one task or for the run as a whole.
 */
export interface EvalMetric {
  type: 'eval';
  step: number;
  task?: string;
  [figure: string]: number | string | undefined;
}

export type Metric = TrainMetric | EvalMetric;

/** A figure of an eval record as a number (undefined when absent or not a number). */
export function figure(metric: EvalMetric, name: string): number | undefined {
  const value = metric[name];
  return typeof value === 'number' ? value : undefined;
}

export async function appendMetric(path: string, metric: Metric): Promise<void> {
  await appendFile(path, JSON.stringify(metric) + '\n');
}

export async function readMetrics(path: string): Promise<Metric[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Metric);
}

/**
 * Keeps the records up to `step` (resume: the steps after the checkpoint belong
 * to the interrupted attempt and are about to be run again).
 */
export async function keepMetricsUpTo(path: string, step: number): Promise<void> {
  const kept = (await readMetrics(path)).filter((m) => m.step <= step);
  await writeFileAtomic(path, [kept.map((m) => JSON.stringify(m) + '\n').join('')]);
}

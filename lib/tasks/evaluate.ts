// Evaluation of one task: the head's predictions over a set of examples, in
// batches, decoded into predictions and scored with the task's own metrics.

import type { Trainer } from '../training/trainer.js';
import { collate, disposeBatch } from './batch.js';
import { EVAL_BATCH_SIZE } from './config.js';
import { decodePredictions } from './decode.js';
import { taskMetrics } from './metrics.js';
import type { Task } from './registry.js';
import type { Example, LoadedExample, Prediction } from './types.js';

/** A task's metrics (fractions in [0, 1]). */
export type Metrics = Partial<Record<'accuracy' | 'precision' | 'recall' | 'f1' | 'em', number>>;

export interface TaskEvaluation {
  task: string;
  /** The task's metrics; empty when no example has a label. */
  metrics: Metrics;
  /** Mean loss over the labelled examples, or null when none has a label. */
  loss: number | null;
  predictions: Prediction[];
  examples: number;
}

/** Whether an example carries a gold label (test files often don't). */
export function isLabelled(example: Example): boolean {
  return example.kind === 'multilabel' || example.kind === 'span' || example.label >= 0;
}

/** Unlabelled examples get a placeholder label so they can be batched; their loss is not used. */
function batchable(example: Example): Example {
  if (isLabelled(example)) return example;
  return { ...example, label: 0 } as Example;
}

export async function evaluateTask(
  trainer: Trainer,
  task: Task,
  examples: readonly LoadedExample[],
  options: { batchSize?: number } = {},
): Promise<TaskEvaluation> {
  const batchSize = options.batchSize ?? EVAL_BATCH_SIZE;
  const predictions: Prediction[] = [];
  let lossSum = 0;
  let lossCount = 0;
  for (let start = 0; start < examples.length; start += batchSize) {
    const chunk = examples.slice(start, start + batchSize).map((e) => e.example);
    const labelled = chunk.every(isLabelled);
    const batch = collate(chunk.map(batchable), { task: task.name, numLabels: task.labels.length });
    try {
      const output = await trainer.predict(batch);
      try {
        predictions.push(...decodePredictions(output, chunk));
        if (labelled && output.loss !== null) {
          lossSum += output.loss * chunk.length;
          lossCount += chunk.length;
        }
      } finally {
        disposeBatch(output as unknown as Record<string, unknown>);
      }
    } finally {
      disposeBatch(batch as unknown as Record<string, unknown>);
    }
  }
  const anyLabelled = examples.some((e) => isLabelled(e.example));
  return {
    task: task.name,
    metrics: anyLabelled ? taskMetrics(task, examples, predictions) : {},
    loss: lossCount > 0 ? lossSum / lossCount : null,
    predictions,
    examples: examples.length,
  };
}

// roformer-bench --count-ops: the libtorch ops of one eager training step of each model, by
// phase (forward and backward, update) and by name — the innermost working ops, about one kernel
// launch each on CUDA (native/op_count.h) — so that work on the kernel count of a step (issue 19:
// ≤ 400 without graphs) can be measured on a machine without a GPU. CUDA graphs are off here:
// a replay runs no op one by one. On the CPU the attention and (libtorch < 2.4) the optimiser
// run other kernels than on CUDA: compare counts of the same device.

import { loadNative } from '../bindings/load.js';
import { resolveConfig } from '../lib/model/config.js';
import { makeRunner, randomBatch, type BenchOptions, type ModelName } from './harness.js';

export interface OpCount {
  phase: string;
  op: string;
  count: number;
  /** Host wall time in the op less the ops it ran (the CPU's time per op; on CUDA, launch cost only). */
  selfSeconds: number;
}

export interface StepOpCount {
  model: ModelName;
  seq: number;
  batch: number;
  /** Every counted op of the step. */
  total: number;
  /** Ops per phase of the step ('forward and backward', 'update'; 'other' outside the trainer's phases). */
  byPhase: Record<string, number>;
  /** Host wall time of the counted step (on the CPU, the step's time). */
  seconds: number;
  /** By phase and op, most frequent first. */
  ops: OpCount[];
}

/** Warm-up steps before the counted one: at least one, since the first step allocates the gradients and the optimiser state. */
export const countedAfter = (warmup: number) => Math.max(1, warmup);

/**
 * One eager training step of RoFormerV2 and the baseline (and GAU-α with `gauAlpha`) per length,
 * counted after warm-up; `detail` names each op with its inputs' dtypes and the op it ran in.
 */
export async function countStepOps(options: BenchOptions, detail = false): Promise<StepOpCount[]> {
  const native = loadNative();
  const config = resolveConfig({ size: options.size, ...options.config });
  const names: ModelName[] = ['roformer-v2', 'roberta-baseline', ...(options.gauAlpha ? (['gau-alpha'] as const) : [])];
  const out: StepOpCount[] = [];
  for (const seq of options.seqs) {
    for (const name of names) {
      const runner = makeRunner(name, { ...options, mode: 'train' }, config, { cudaGraphs: false });
      const warmup = countedAfter(options.warmup);
      for (let step = 0; step <= warmup; step++) {
        const batch = randomBatch(options.batch, seq, config.vocab_size, options.targetFraction, step);
        const counted = step === warmup;
        if (counted) native.opCountStart(detail ? { parents: 1, dtypes: true } : {});
        const started = performance.now();
        try {
          await runner.step(batch);
        } finally {
          if (counted) {
            const seconds = (performance.now() - started) / 1000;
            const ops = native.opCountStop();
            const byPhase: Record<string, number> = {};
            for (const o of ops) byPhase[o.phase] = (byPhase[o.phase] ?? 0) + o.count;
            out.push({ model: name, seq, batch: options.batch, total: ops.reduce((sum, o) => sum + o.count, 0), byPhase, seconds, ops });
          }
          batch.inputIds.dispose();
          batch.targetPositions.dispose();
          batch.targetIds.dispose();
        }
      }
    }
  }
  return out;
}

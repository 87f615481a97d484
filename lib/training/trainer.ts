// The Trainer: one optimisation step per call, run natively off the JS thread.
//
//   const trainer = new Trainer(model, { optimizer: 'lamb', lr: linearWarmupDecay({...}), precision: 'bf16' });
//   const { loss, gradNorm, skipped } = await trainer.step([microBatch1, microBatch2]);  // accumulation
//   await trainer.save('runs/x', { dataPosition });
//   const { dataPosition } = await trainer.load('runs/x');                               // exact resume
//
// Schedules (learning rate, residual α) live here and are passed with each step.
// Steps are queued: calling step() again before the last one settles waits its turn.
//
// Multi-task: give the trainer task heads and, optionally, a gradient normalisation;
// each micro-batch names its task (none = MLM):
//
//   const trainer = new Trainer(model, { heads: { tnews: { kind: 'classification', numLabels: 15 } },
//                                        gradientNormalization: 'unit' });
//   const { tasks } = await trainer.step([collate(tnewsExamples, { task: 'tnews' }), mlmBatch]);
//   const output = await trainer.predict(collate(devExamples, { task: 'tnews' }));

import { loadNative } from '../../bindings/load.js';
import type {
  AnyMicroBatch,
  GradientNormalization,
  HeadPrediction,
  MicroBatch,
  NativeTrainer,
  NativeTrainerOptions,
  StepResult,
  TaskMicroBatch,
  TaskStepResult,
  Tensor,
} from '../../bindings/native.js';
import { configMismatches, CheckpointError, readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { continuationProblems, headMismatches, HeadsError, nativeHeads, readHeads, validateHeadSpecs, writeHeads, type HeadSpecs } from './heads.js';
import { writeModelDir } from '../model/model-dir.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { join } from 'node:path';
import type { RobertaBaseline, TrainableEncoder } from '../model/model.js';
import { constant, residualWarmup, type Schedule } from './schedules.js';
import type { Distributed } from './distributed.js';
import { TRAINING_DEFAULTS } from './defaults.js';

export type { AnyMicroBatch, HeadPrediction, MicroBatch, StepResult, TaskMicroBatch, TaskStepResult, GradientNormalization } from '../../bindings/native.js';

export interface TrainerOptions extends Omit<NativeTrainerOptions, 'heads' | 'processGroup'> {
  /**
   * Data-parallel training: this rank's process group. Every rank's step sums its
   * gradients, losses and counts with the others' (rank 0's weights are broadcast at the
   * first step), so all ranks make the same update: W ranks × batch b train as one
   * process with batch W·b.
   */
  distributed?: Distributed;
  /** Task heads trained with the encoder, by task name. */
  heads?: HeadSpecs;
  /** Learning rate: a number or a schedule of the step number. Default: the stages' (TRAINING_DEFAULTS.lr), constant. */
  lr?: number | Schedule;
  /** Residual scale α warmed from 0 to 1 over this many steps (0: α = 1 throughout). */
  alphaWarmupSteps?: number;
}

/** What Trainer.continueHeads() did with one head: loaded from the model dir, or started fresh (why). */
export type HeadContinuation = { task: string; loaded: true } | { task: string; loaded: false; why: string };

export interface TrainStepResult extends StepResult {
  /** The learning rate and α the step used. */
  lr: number;
  alpha: number;
  /** Each task's loss in this step, by task name ('mlm' for masked-language modelling). */
  taskLosses: Record<string, number>;
}

export class Trainer {
  readonly native: NativeTrainer;
  /** The task heads (validated), by task name. */
  readonly heads: HeadSpecs;
  private readonly lr: Schedule;
  private readonly alpha: Schedule;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly model: TrainableEncoder | RobertaBaseline,
    readonly options: TrainerOptions = {},
  ) {
    const { lr = TRAINING_DEFAULTS.lr, alphaWarmupSteps = 0, heads = {}, distributed, ...nativeOptions } = options;
    this.lr = typeof lr === 'number' ? constant(lr) : lr;
    this.alpha = residualWarmup(alphaWarmupSteps);
    this.heads = validateHeadSpecs(heads);
    this.native = loadNative().createTrainer(model.native, {
      ...nativeOptions,
      heads: nativeHeads(this.heads),
      ...(distributed ? { processGroup: distributed.native } : {}),
    });
  }

  /** Optimiser updates made so far (skipped steps not counted). */
  get globalStep(): number {
    return this.native.counters().step;
  }

  /**
   * One optimisation step over one or more micro-batches (their gradients are
   * accumulated). Resolves with the loss, gradient norm, loss scale and whether
   * the step was skipped for inf/NaN.
   */
  step(microBatches: AnyMicroBatch | AnyMicroBatch[], options: { lr?: number } = {}): Promise<TrainStepResult> {
    const batches = Array.isArray(microBatches) ? microBatches : [microBatches];
    return this.enqueue(async () => {
      const step = this.globalStep;
      const lr = options.lr ?? this.lr(step);
      const alpha = this.alpha(step);
      const result = await this.native.step(batches, lr, alpha);
      return { ...result, lr, alpha, taskLosses: Object.fromEntries(result.tasks.map((t) => [t.task, t.loss])) };
    });
  }

  /** Masked-token loss and accuracy on one batch, without updating (eval mode). */
  evaluate(batch: MicroBatch): Promise<{ lossSum: number; correct: number; targets: number }> {
    return this.enqueue(() => this.native.evaluate(batch));
  }

  /**
   * A head's outputs on one micro-batch, in eval mode, without updating: class logits,
   * option scores or span score matrices (plus the spans scoring > 0), and the loss when
   * the batch has labels. decodePredictions() (lib/tasks/decode.ts) turns them into
   * predictions. The caller disposes the returned tensors.
   */
  predict(batch: TaskMicroBatch): Promise<HeadPrediction> {
    return this.enqueue(() => this.native.predict(batch));
  }

  /**
   * The combined gradient the step would apply (before clipping), without updating,
   * by optimiser name; `normalization` overrides the trainer's option.
   */
  gradients(
    microBatches: AnyMicroBatch | AnyMicroBatch[],
    normalization?: GradientNormalization,
  ): Promise<{ gradients: Record<string, Tensor>; tasks: TaskStepResult[] }> {
    const batches = Array.isArray(microBatches) ? microBatches : [microBatches];
    return this.enqueue(() => this.native.gradients(batches, this.alpha(this.globalStep), normalization));
  }

  /**
   * The random generators' states (base64 by generator), which a checkpoint holds for
   * rank 0 only: data-parallel runs keep every rank's own with the data positions.
   */
  randomState(): Record<string, string> {
    const state = this.native.randomState();
    try {
      return Object.fromEntries(Object.entries(state).map(([key, t]) => [key, t.toBuffer().toString('base64')]));
    } finally {
      Object.values(state).forEach((t) => t.dispose());
    }
  }
  setRandomState(state: Record<string, string>): void {
    const tensors = Object.fromEntries(
      Object.entries(state).map(([key, text]) => {
        const bytes = Buffer.from(text, 'base64');
        return [key, loadNative().tensorFromBytes(bytes, [bytes.length], 'uint8')];
      }),
    );
    try {
      this.native.loadRandomState(tensors);
    } finally {
      Object.values(tensors).forEach((t) => t.dispose());
    }
  }

  /** Detached views of the heads' weights ('heads.<task>.…'). */
  headParameters(): Record<string, Tensor> {
    return this.native.headParameters();
  }

  /**
   * Writes a fine-tuned model dir: the Hugging Face model dir (RoFormerV2.fromPretrained
   * loads the encoder) plus heads.json and heads.safetensors.
   */
  saveModel(dir: string, extra: { files?: Record<string, string | Buffer> } = {}): Promise<void> {
    return this.enqueue(async () => {
      const parameters = this.model.namedParameters();
      const heads = this.native.headParameters();
      try {
        await writeModelDir(dir, this.model.savedConfig(), parameters);
        if (Object.keys(this.heads).length > 0) await writeHeads(dir, this.heads, heads);
        for (const [file, data] of Object.entries(extra.files ?? {})) await writeFileAtomic(join(dir, file), [data]);
      } finally {
        for (const t of [...Object.values(parameters), ...Object.values(heads)]) t.dispose();
      }
    });
  }

  /** Loads the head weights of a fine-tuned model dir or checkpoint (its heads.json must match this trainer's heads). */
  loadHeads(dir: string): Promise<void> {
    return this.enqueue(async () => {
      const saved = await readHeads(dir);
      if (!saved) throw new HeadsError(`${dir} has no heads.json`);
      try {
        const problems = headMismatches(saved.specs, this.heads);
        if (problems.length > 0) throw new HeadsError(`${dir}: its heads do not match this trainer's (${problems.join('; ')})`);
        this.native.loadHeadParameters(saved.state);
      } finally {
        for (const t of Object.values(saved.state)) t.dispose();
      }
    });
  }

  /**
   * Starts this trainer's heads from the heads of the same names saved in a model dir (a
   * fine-tuned or multi-task model, whose other heads are passed over): each that matches
   * in kind, size, labels and tensor shapes is loaded; the others keep their fresh weights.
   * Says, per head of ours, which happened and why.
   */
  continueHeads(dir: string): Promise<HeadContinuation[]> {
    return this.enqueue(async () => {
      const saved = await readHeads(dir);
      const ours = this.native.headParameters();
      try {
        const state: Record<string, Tensor> = { ...ours };
        const outcome: HeadContinuation[] = [];
        for (const [task, spec] of Object.entries(this.heads)) {
          const savedSpec = saved?.specs[task];
          const names = Object.keys(ours).filter((name) => name.startsWith(`heads.${task}.`));
          const problems = !savedSpec ? [`no ${task} head saved there`] : continuationProblems(task, savedSpec, spec, dir);
          for (const name of problems.length > 0 ? [] : names) {
            const from = saved!.state[name];
            if (!from) problems.push(`head tensor ${name} is missing there`);
            else if (from.shape.join() !== ours[name]!.shape.join()) problems.push(`head tensor ${name} has shape [${from.shape.join(', ')}] there, [${ours[name]!.shape.join(', ')}] here`);
          }
          if (problems.length === 0) for (const name of names) state[name] = saved!.state[name]!;
          outcome.push(problems.length === 0 ? { task, loaded: true } : { task, loaded: false, why: problems.join('; ') });
        }
        if (outcome.some((o) => o.loaded)) this.native.loadHeadParameters(state);
        return outcome;
      } finally {
        for (const t of [...Object.values(ours), ...Object.values(saved?.state ?? {})]) t.dispose();
      }
    });
  }

  /**
   * Writes a checkpoint (model dir + heads + optimiser + counters + `dataPosition`) into
   * `runDir/checkpoint-<step>` and points `runDir/latest` at it.
   */
  save(runDir: string, extra: { dataPosition?: unknown; files?: Record<string, string | Buffer>; keepLast?: number } = {}): Promise<string> {
    return this.enqueue(async () => {
      const trainerState = this.native.stateTensors(); // copies: disposed below, not left to the GC
      const parameters = this.model.namedParameters();
      const headParameters = this.native.headParameters();
      const { lr, distributed, ...serialisable } = this.options;
      try {
        return await writeCheckpoint(runDir, {
          config: this.model.savedConfig(),
          parameters,
          trainerState,
          state: {
            ...this.native.counters(),
            options: { ...serialisable, lr: typeof lr === 'number' ? lr : 'schedule', ...(distributed ? { worldSize: distributed.worldSize } : {}) },
            dataPosition: extra.dataPosition ?? null,
          },
          heads: { specs: this.heads, parameters: headParameters },
          files: extra.files,
          keepLast: extra.keepLast,
        });
      } finally {
        for (const t of [...Object.values(trainerState), ...Object.values(parameters), ...Object.values(headParameters)]) t.dispose();
        // The copies were model-sized: hand their memory back now, so a checkpoint
        // does not leave the process a few hundred MB larger for the rest of the run.
        this.releaseMemory();
      }
    });
  }

  /**
   * Restores a checkpoint (a checkpoint dir, or a run dir's latest) into this
   * trainer and its model. Everything is read and checked before anything changes.
   */
  load(path: string): Promise<{ dir: string; step: number; dataPosition: unknown }> {
    return this.enqueue(async () => {
      const checkpoint = await readCheckpoint(path);
      try {
        const mismatches = configMismatches(checkpoint.config, this.model.config);
        if (mismatches.length > 0) {
          throw new CheckpointError(`${checkpoint.dir} is for a different model size (${mismatches.join('; ')})`);
        }
        const savedOptimizer = checkpoint.state.options?.optimizer ?? 'adamw';
        const ourOptimizer = this.options.optimizer ?? 'adamw';
        if (savedOptimizer !== ourOptimizer) {
          throw new CheckpointError(`${checkpoint.dir} was saved with optimizer ${String(savedOptimizer)}, this trainer uses ${ourOptimizer}`);
        }
        const headProblems = headMismatches(checkpoint.heads?.specs ?? {}, this.heads);
        if (headProblems.length > 0) throw new CheckpointError(`${checkpoint.dir}: its heads do not match this trainer's (${headProblems.join('; ')})`);
        this.native.loadStateTensors(checkpoint.trainerState);
        if (checkpoint.heads) this.native.loadHeadParameters(checkpoint.heads.state);
        this.model.loadStateDict(checkpoint.modelState);
        const { step, skippedSteps, lossScale, growthTracker } = checkpoint.state;
        this.native.setCounters({ step, skippedSteps, lossScale, growthTracker });
        this.model.setResidualScale(checkpoint.config.residual_scale);
        return { dir: checkpoint.dir, step, dataPosition: checkpoint.state.dataPosition };
      } finally {
        const heads = Object.values(checkpoint.heads?.state ?? {});
        for (const t of [...Object.values(checkpoint.modelState), ...Object.values(checkpoint.trainerState), ...heads]) t.dispose();
      }
    });
  }

  /**
   * Frees the optimiser state and the trainer's hold on the model's weights now,
   * instead of when the garbage collector gets to them (dispose the model too to
   * free the weights). A step in flight finishes first. Later use throws.
   */
  dispose(): void {
    this.native.dispose();
  }
  get disposed(): boolean {
    return this.native.disposed;
  }

  /**
   * Returns memory that native code and collected JS buffers freed to the system
   * (glibc's malloc_trim; the CUDA cache). The run loop calls it every 100 steps.
   */
  releaseMemory(): void {
    loadNative().releaseMemory();
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** The optimiser on its own: applies one update per entry of `gradsPerStep` to `params` in place. */
export function optimizerSteps(
  options: NativeTrainerOptions,
  params: Record<string, Tensor>,
  gradsPerStep: Array<Record<string, Tensor>>,
  lrs: number[],
): void {
  loadNative().optimizerSteps(options, params, gradsPerStep, lrs);
}

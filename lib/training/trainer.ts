// The Trainer: one optimisation step per call, run natively off the JS thread.
//
//   const trainer = new Trainer(model, { optimizer: 'lamb', lr: linearWarmupDecay({...}), precision: 'bf16' });
//   const { loss, gradNorm, skipped } = await trainer.step([microBatch1, microBatch2]);  // accumulation
//   await trainer.save('runs/x', { dataPosition });
//   const { dataPosition } = await trainer.load('runs/x');                               // exact resume
//
// Schedules (learning rate, residual α) live here and are passed with each step.
// Steps are queued: calling step() again before the last one settles waits its turn.

import { loadNative } from '../../bindings/load.js';
import type { MicroBatch, NativeTrainer, NativeTrainerOptions, StepResult, Tensor } from '../../bindings/native.js';
import { configMismatches, CheckpointError, readCheckpoint, writeCheckpoint } from './checkpoint.js';
import type { RobertaBaseline, RoFormerV2 } from '../model/model.js';
import { constant, residualWarmup, type Schedule } from './schedules.js';

export type { MicroBatch, StepResult } from '../../bindings/native.js';

export interface TrainerOptions extends NativeTrainerOptions {
  /** Learning rate: a number or a schedule of the step number. Default 1e-4. */
  lr?: number | Schedule;
  /** Residual scale α warmed from 0 to 1 over this many steps (0: α = 1 throughout). */
  alphaWarmupSteps?: number;
}

export interface TrainStepResult extends StepResult {
  /** The learning rate and α the step used. */
  lr: number;
  alpha: number;
}

export class Trainer {
  readonly native: NativeTrainer;
  private readonly lr: Schedule;
  private readonly alpha: Schedule;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly model: RoFormerV2 | RobertaBaseline,
    readonly options: TrainerOptions = {},
  ) {
    const { lr = 1e-4, alphaWarmupSteps = 0, ...nativeOptions } = options;
    this.lr = typeof lr === 'number' ? constant(lr) : lr;
    this.alpha = residualWarmup(alphaWarmupSteps);
    this.native = loadNative().createTrainer(model.native, nativeOptions);
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
  step(microBatches: MicroBatch | MicroBatch[], options: { lr?: number } = {}): Promise<TrainStepResult> {
    const batches = Array.isArray(microBatches) ? microBatches : [microBatches];
    return this.enqueue(async () => {
      const step = this.globalStep;
      const lr = options.lr ?? this.lr(step);
      const alpha = this.alpha(step);
      const result = await this.native.step(batches, lr, alpha);
      return { ...result, lr, alpha };
    });
  }

  /** Masked-token loss and accuracy on one batch, without updating (eval mode). */
  evaluate(batch: MicroBatch): Promise<{ lossSum: number; correct: number; targets: number }> {
    return this.enqueue(() => this.native.evaluate(batch));
  }

  /**
   * Writes a checkpoint (model dir + optimiser + counters + `dataPosition`) into
   * `runDir/checkpoint-<step>` and points `runDir/latest` at it.
   */
  save(runDir: string, extra: { dataPosition?: unknown; files?: Record<string, string | Buffer>; keepLast?: number } = {}): Promise<string> {
    return this.enqueue(async () => {
      const trainerState = this.native.stateTensors(); // copies: disposed below, not left to the GC
      const parameters = this.model.namedParameters();
      const { lr, ...serialisable } = this.options;
      try {
        return await writeCheckpoint(runDir, {
          config: this.model.savedConfig(),
          parameters,
          trainerState,
          state: {
            ...this.native.counters(),
            options: { ...serialisable, lr: typeof lr === 'number' ? lr : 'schedule' },
            dataPosition: extra.dataPosition ?? null,
          },
          files: extra.files,
          keepLast: extra.keepLast,
        });
      } finally {
        for (const t of [...Object.values(trainerState), ...Object.values(parameters)]) t.dispose();
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
        this.native.loadStateTensors(checkpoint.trainerState);
        this.model.loadStateDict(checkpoint.modelState);
        const { step, skippedSteps, lossScale, growthTracker } = checkpoint.state;
        this.native.setCounters({ step, skippedSteps, lossScale, growthTracker });
        this.model.setResidualScale(checkpoint.config.residual_scale);
        return { dir: checkpoint.dir, step, dataPosition: checkpoint.state.dataPosition };
      } finally {
        for (const t of [...Object.values(checkpoint.modelState), ...Object.values(checkpoint.trainerState)]) t.dispose();
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

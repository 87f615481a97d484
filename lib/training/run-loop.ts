// The run loop every training stage shares: MLM pre-training, fine-tuning one
// task, multi-task training. The stage supplies the data and the evaluation; the
// loop does the rest, the same way for all of them:
//
//   trainer.load(checkpoint) ─ stage.resumeAt(dataPosition)              (resume)
//   evaluate at step 0
//   repeat until `steps` (or the data ends, or the signal aborts):
//       trainer.step(micro-batches)   ← the stage prepares the next ones meanwhile
//       metrics.jsonl ← train record (loss, lr, tokens/s, resident memory, task)
//       every evalEvery steps: stage.evaluate() → eval records, report.svg
//       every saveEvery steps: trainer.save(out, { dataPosition, files })
//   a checkpoint at the end (also after Ctrl-C), a last evaluation, report.svg
//
// Learning-rate and α schedules belong to the Trainer; the loop only counts steps.
//
// Data-parallel (options.distributed): every rank runs this loop on its own shard; before
// each step the ranks agree on whether to go on (data left everywhere, no Ctrl-C) and sum
// their tokens; rank 0 alone writes metrics, the report, the events and the checkpoints,
// whose data position holds every rank's own.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { MicroBatch } from '../../bindings/native.js';
import { positionForRank } from './distributed.js';
import { appendMetric, keepMetricsUpTo, readMetrics, type EvalMetric, type TrainMetric } from './metrics.js';
import { writeReport } from './report.js';
import { METRICS_FILE, REPORT_FILE } from './run-dir.js';

/** One micro-batch as a stage hands it to the loop. */
export interface TrainingBatch<M = MicroBatch> {
  /** What the trainer's step takes. */
  microBatch: M;
  /** Real (non-padding) tokens, for the tokens/s figure. */
  tokens: number;
  /** The task the micro-batch belongs to (multi-task training, fine-tuning). */
  task?: string;
  /** Where the data continues after this batch: saved with each checkpoint, handed back to resumeAt(). */
  dataPosition: unknown;
  /** Frees the batch's tensors; called once the step that used it is done. */
  dispose(): void;
}

/** Held-out figures (loss, accuracy, f1, em, …) for one task, or for the whole model when `task` is absent. */
export interface EvalFigures {
  task?: string;
  [figure: string]: number | string | undefined;
}

/** What a stage plugs into the loop. Only nextBatch() is required. */
export interface TrainingStage<M = MicroBatch> {
  /** The next training micro-batch; null when the data is used up (the run ends there). */
  nextBatch(): Promise<TrainingBatch<M> | null>;
  /** Continue a resumed run: called once, before the first nextBatch(), with the last trained batch's dataPosition. */
  resumeAt?(dataPosition: unknown): void;
  /** Held-out evaluation of the model as it is now: one entry per task (one entry without a task for a single-task stage). */
  evaluate?(): Promise<EvalFigures[]>;
  /** Files each checkpoint carries besides the model and trainer state (vocab.txt, head configs, …). */
  checkpointFiles?(): Record<string, string | Buffer>;
  /** Bad input skipped so far (reported at the end), with a few `file:line: reason` examples. */
  problems?(): { count: number; examples: string[] };
  /** The tasks trained, for the start event (empty or absent: a single unnamed task). */
  readonly tasks?: string[];
}

/** What the loop needs of a trainer; `Trainer` (trainer.ts) is one. */
export interface StepTrainer<M = MicroBatch> {
  /** Optimiser updates made so far (skipped steps not counted). */
  readonly globalStep: number;
  readonly model: { readonly parameterCount: number };
  step(microBatches: M[]): Promise<{
    step: number;
    loss: number;
    lr: number;
    alpha: number;
    gradNorm: number;
    skipped: boolean;
    /** Steps mixing tasks: each task's loss. */
    taskLosses?: Record<string, number>;
  }>;
  save(runDir: string, extra: { dataPosition?: unknown; files?: Record<string, string | Buffer>; keepLast?: number }): Promise<string>;
  load(path: string): Promise<{ dir: string; step: number; dataPosition: unknown }>;
  /** Data-parallel: each rank's own random state goes with its data position. */
  randomState?(): unknown;
  setRandomState?(state: unknown): void;
  /** Hands memory freed since the last call back to the system (glibc keeps it otherwise). */
  releaseMemory?(): void;
}

/** Steps between releaseMemory() calls: a checkpoint's or an evaluation's garbage, once collected, goes back. */
const RELEASE_MEMORY_EVERY = 100;

export interface RunOptions {
  /** The run directory: checkpoints, metrics.jsonl, report.svg. */
  out: string;
  /** Train until the trainer has made this many updates. */
  steps: number;
  /** Micro-batches per optimiser step (gradient accumulation). Default 1. */
  accumulate?: number;
  /** Evaluate every n steps, at step 0 and at the end (0: never). */
  evalEvery: number;
  /** Checkpoint every n steps (0: only at the end and on abort). */
  saveEvery: number;
  /** Checkpoints kept (default 3). */
  keepLast?: number;
  /** The checkpoint to continue from (openRunDir's answer); absent or null: a new run. */
  resumeFrom?: string | null;
  /** Aborting stops after the current step, with a checkpoint (Ctrl-C). */
  signal?: AbortSignal;
  onEvent?: (event: RunEvent) => void;
  /** Title of report.svg. */
  reportTitle?: string;
  /** Data-parallel training: this rank's process group (see the top of this file). */
  distributed?: RunDistributed;
}

/** What the loop needs of a process group; `Distributed` (distributed.ts) is one. */
export interface RunDistributed {
  readonly rank: number;
  readonly worldSize: number;
  readonly isWriter: boolean;
  allReduce(values: number[], op?: 'sum' | 'min' | 'max'): Promise<number[]>;
  allGather<T>(value: T): Promise<T[]>;
}

export type RunEvent =
  | { type: 'start'; step: number; steps: number; parameters: number; resumedFrom: string | null; tasks: string[] }
  | ({ type: 'step'; steps: number; etaSeconds: number } & Omit<TrainMetric, 'type'>)
  | EvalMetric
  | { type: 'checkpoint'; step: number; dir: string }
  | { type: 'problems'; count: number; examples: string[] }
  | { type: 'end'; step: number; interrupted: boolean; checkpoint: string; loopOverhead: number; seconds: number };

export interface RunResult {
  /** The trainer's step count at the end. */
  step: number;
  /** Stopped by the signal (a checkpoint was still written). */
  interrupted: boolean;
  /** The last checkpoint written (or resumed from). */
  checkpoint: string;
  /** The records of the latest evaluation, one per task; empty when none ran. */
  lastEval: EvalMetric[];
  /** Time spent in JS between native steps, over the native step time (evaluation and saving excluded). */
  loopOverhead: number;
  seconds: number;
}

/** Resident memory in MB (2^20 bytes), one decimal. */
const residentMB = () => Math.round((process.memoryUsage.rss() / 2 ** 20) * 10) / 10;

/** Runs (or continues) a training run; see the top of this file. */
export async function runTraining<M>(trainer: StepTrainer<M>, stage: TrainingStage<M>, options: RunOptions): Promise<RunResult> {
  const { out, steps, evalEvery, saveEvery, signal } = options;
  const accumulate = options.accumulate ?? 1;
  const dist = options.distributed;
  const writer = dist?.isWriter ?? true;
  const emit = (writer && options.onEvent) || (() => {});
  const metricsPath = join(out, METRICS_FILE);
  const reportPath = join(out, REPORT_FILE);
  await mkdir(out, { recursive: true });

  // Where the run starts: the trainer's state and the stage's data position come from the same checkpoint.
  let dataPosition: unknown = null;
  let checkpoint = '';
  let savedStep = -1;
  if (options.resumeFrom) {
    const restored = await trainer.load(options.resumeFrom);
    dataPosition = positionForRank(restored.dataPosition, dist?.worldSize ?? 1, dist?.rank ?? 0, restored.dir);
    if (dist) {
      const mine = dataPosition as { data: unknown; random?: unknown };
      if (mine.random && trainer.setRandomState) trainer.setRandomState(mine.random);
      dataPosition = mine.data;
    }
    stage.resumeAt?.(dataPosition);
    [checkpoint, savedStep] = [restored.dir, restored.step];
    if (writer) await keepMetricsUpTo(metricsPath, restored.step);
  } else if (writer) {
    await writeFile(metricsPath, '');
  }
  const startStep = trainer.globalStep;
  emit({ type: 'start', step: startStep, steps, parameters: trainer.model.parameterCount, resumedFrom: options.resumeFrom ?? null, tasks: stage.tasks ?? [] });

  const writeMetricsReport = async () => writer && writeReport(reportPath, await readMetrics(metricsPath), options.reportTitle);
  const evaluates = evalEvery > 0 && stage.evaluate !== undefined;
  let lastEval: EvalMetric[] = [];
  let lastEvalStep = -1;
  const evaluate = async () => {
    const step = trainer.globalStep;
    const records = (await stage.evaluate!()).map((figures): EvalMetric => ({ type: 'eval', step, ...figures }));
    for (const record of records) {
      if (writer) await appendMetric(metricsPath, record);
      emit(record);
    }
    if (records.length > 0) lastEval = records;
    lastEvalStep = step;
  };
  const save = async () => {
    // Data-parallel: every rank's position, gathered; rank 0 writes.
    const position = dist
      ? { worldSize: dist.worldSize, ranks: await dist.allGather({ data: dataPosition, random: trainer.randomState?.() }) }
      : dataPosition;
    const files = stage.checkpointFiles?.();
    checkpoint = writer
      ? await trainer.save(out, { dataPosition: position, files, keepLast: options.keepLast })
      : join(out, `checkpoint-${trainer.globalStep}`);
    savedStep = trainer.globalStep;
    emit({ type: 'checkpoint', step: savedStep, dir: checkpoint });
  };
  /** The micro-batches of one step; fewer (or none) when the data ends. */
  const nextMicroBatches = async (): Promise<Array<TrainingBatch<M>>> => {
    const list: Array<TrainingBatch<M>> = [];
    while (list.length < accumulate) {
      const batch = await stage.nextBatch();
      if (batch === null) break;
      list.push(batch);
    }
    return list;
  };

  let interrupted = false;
  // For the loop-overhead figure: JS time between steps, with evaluation and saving left out.
  let nativeSeconds = 0;
  let betweenSeconds = 0;
  let lastStepEnd: number | null = null;
  let excludedMs = 0;
  const runStart = performance.now();
  let stepFailed = false;
  let pending: Promise<Array<TrainingBatch<M>>> | null = null;
  try {
    if (startStep === 0 && evaluates) await evaluate();
    pending = trainer.globalStep < steps ? nextMicroBatches() : null;
    while (pending && trainer.globalStep < steps) {
      if (!dist && signal?.aborted) {
        interrupted = true;
        break;
      }
      const batches = await pending;
      pending = null;
      let tokens = batches.reduce((n, b) => n + b.tokens, 0);
      if (dist) {
        // Every rank steps, or none: data left on all of them, and no Ctrl-C on any.
        const [empty, allTokens, stop] = await dist.allReduce([batches.length === 0 ? 1 : 0, tokens, signal?.aborted ? 1 : 0]);
        tokens = allTokens!;
        if (empty! > 0 || stop! > 0) {
          batches.forEach((b) => b.dispose());
          interrupted = stop! > 0;
          break;
        }
      }
      if (batches.length === 0) break; // the data is used up
      const stepStart = performance.now();
      if (lastStepEnd !== null) betweenSeconds += (stepStart - lastStepEnd - excludedMs) / 1000;
      excludedMs = 0;
      const stepPromise = trainer.step(batches.map((b) => b.microBatch));
      // Prepare the next batch while the native step runs on its worker thread. Always prefetch:
      // whether another step is needed is known only after this one (a skipped step doesn't count).
      pending = nextMicroBatches();
      pending.catch(() => undefined); // surfaced when awaited
      stepFailed = true;
      const result = await stepPromise.finally(() => batches.forEach((b) => b.dispose()));
      stepFailed = false;
      lastStepEnd = performance.now();
      const stepSeconds = (lastStepEnd - stepStart) / 1000;
      nativeSeconds += stepSeconds;
      dataPosition = batches[batches.length - 1]!.dataPosition;

      const step = result.step;
      const tasks = new Set(batches.map((b) => b.task));
      const task = tasks.size === 1 ? [...tasks][0] : undefined;
      const elapsed = (performance.now() - runStart) / 1000;
      const metric: TrainMetric = {
        type: 'train',
        step,
        ...(task !== undefined ? { task } : {}),
        loss: result.loss,
        // Several tasks in one step: each one's loss (a single task's is `loss` itself).
        ...(result.taskLosses && task === undefined ? { taskLosses: result.taskLosses } : {}),
        lr: result.lr,
        alpha: result.alpha,
        gradNorm: result.gradNorm,
        tokensPerSecond: tokens / stepSeconds,
        ...(dist ? { worldSize: dist.worldSize } : {}),
        skipped: result.skipped,
        elapsedSeconds: elapsed,
        rssMB: residentMB(),
      };
      if (writer) await appendMetric(metricsPath, metric);
      const done = step - startStep;
      const { type: _, ...fields } = metric;
      emit({ type: 'step', steps, etaSeconds: done > 0 ? (elapsed / done) * (steps - step) : 0, ...fields });

      const extraStart = performance.now();
      if (!result.skipped && evaluates && step % evalEvery === 0) {
        await evaluate();
        await writeMetricsReport();
      }
      if (!result.skipped && saveEvery > 0 && step % saveEvery === 0) await save();
      if (step % RELEASE_MEMORY_EVERY === 0) trainer.releaseMemory?.();
      excludedMs += performance.now() - extraStart;
      if (!dist && signal?.aborted) {
        interrupted = true;
        break;
      }
    }
  } catch (error) {
    // Work since the last checkpoint survives a failing data source or evaluation. After a failed
    // native step the trainer's state is not known to be consistent, so nothing is saved then.
    // Data-parallel: not attempted (saving gathers from every rank, and one may be gone).
    if (!dist && !stepFailed && trainer.globalStep > Math.max(savedStep, startStep)) {
      await save().then(
        () => error instanceof Error && (error.message += `\n(steps up to ${savedStep} were saved in ${checkpoint}: --resume continues from there)`),
        () => undefined,
      );
    }
    throw error;
  } finally {
    // The prefetched batch (if any) is not needed any more.
    if (pending) (await pending.catch(() => [])).forEach((b) => b.dispose());
  }

  if (savedStep !== trainer.globalStep) await save();
  if (!interrupted && evaluates && lastEvalStep !== trainer.globalStep) await evaluate();
  await writeMetricsReport();
  const problems = stage.problems?.();
  if (problems && problems.count > 0) emit({ type: 'problems', ...problems });
  const result: RunResult = {
    step: trainer.globalStep,
    interrupted,
    checkpoint,
    lastEval,
    loopOverhead: nativeSeconds > 0 ? Math.max(0, betweenSeconds) / nativeSeconds : 0,
    seconds: (performance.now() - runStart) / 1000,
  };
  emit({ type: 'end', step: result.step, interrupted, checkpoint, loopOverhead: result.loopOverhead, seconds: result.seconds });
  return result;
}

// One training stage, start to end: the skeleton every stage (pre-training,
// fine-tuning, multi-task training) shares, written once. A stage describes only
// what is its own: the model it starts from, its data and heads, the trainer's
// settings, and what it reports at the end.
//
//   mkdir <out>, openRunDir (a new run, or --resume from the latest checkpoint)
//   description.prepare(resumeFrom)       → the model (and the stage's vocab, tasks, …)
//   joinRanks → the model on this rank's device
//   description.plan(prepared, context)   → trainer options, loop settings, the stage's data
//   new Trainer → plan.stage(trainer) → run_config.json (rank 0)
//   runTraining (steps, evaluation, checkpoints, resume, report)
//   plan.finish(run, trainer)             → the stage's results (final evaluation, model dir)
//   leaveRanks, and the stage's data disposed, also when any of this failed

import { mkdir } from 'node:fs/promises';

import type { AnyMicroBatch, Device } from '../../bindings/native.js';
import type { TrainableEncoder } from '../model/model.js';
import { joinRanks, leaveRanks, type Distributed, type DistributedSettings } from './distributed.js';
import { openRunDir, writeRunConfig } from './run-dir.js';
import { runTraining, type RunEvent, type RunOptions, type RunResult, type TrainingStage } from './run-loop.js';
import { Trainer, type TrainerOptions } from './trainer.js';

/** What a stage reports to, and takes from, its caller (the CLI's terminal runner, or a program). */
export interface StageHooks<E = RunEvent> {
  /** Continue the run in config.out from its latest checkpoint (required when there is one). */
  resume?: boolean;
  onEvent?: (event: E) => void;
  /** Bad records, truncation and other notes about the data. */
  onNote?: (message: string) => void;
  /** Aborting stops the run after the current step, with a checkpoint (Ctrl-C). */
  signal?: AbortSignal;
  /** Data-parallel training: this rank's settings (distributedFromEnv()) or process group; rank 0 writes the run directory. */
  distributed?: DistributedSettings | Distributed | null;
  /** How the caller names a setting in errors: the CLI, its flag (maxSteps → --max-steps); default the key. */
  settingName?: (key: string) => string;
}

/** The settings every stage has, whatever else its config holds. */
export interface StageSettings {
  /** The run directory. */
  out: string;
  device: Device;
  seed: number;
  /** What run_config.json records: the settings this attempt runs with (--resume reads them back). */
  runConfig: unknown;
}

/** Where the stage runs, handed to its plan. */
export interface StageContext {
  /** The checkpoint a resumed run continues from; null for a new run. */
  resumeFrom: string | null;
  /** This rank's process group (undefined: one process). */
  dist: Distributed | undefined;
  /** This rank's slice of the data. */
  shard: { rank: number; worldSize: number };
  /** Whether this process writes the run directory (rank 0). */
  writer: boolean;
  note: (message: string) => void;
}

/** What a stage trains with, once its model is on its device. */
export interface StagePlan<R> {
  trainer: Omit<TrainerOptions, 'distributed'>;
  loop: Pick<RunOptions, 'steps' | 'accumulate' | 'evalEvery' | 'saveEvery' | 'keepLast' | 'reportTitle'>;
  /** The stage's data and evaluation, given the trainer (and, e.g., heads loaded into it). */
  stage(trainer: Trainer): Promise<TrainingStage<AnyMicroBatch> & { dispose(): void }>;
  /** After the run (also an interrupted one): the stage's results. */
  finish(run: RunResult, trainer: Trainer): Promise<R>;
}

/** A stage: the model it starts from, then its plan. */
export interface StageDescription<P extends { model: TrainableEncoder }, R> {
  /** The model to train (and whatever the stage builds with it, e.g. its vocab): the checkpoint's when resuming. */
  prepare(resumeFrom: string | null): Promise<P>;
  plan(prepared: P, context: StageContext): Promise<StagePlan<R>>;
}

export async function runStage<P extends { model: TrainableEncoder }, R>(
  settings: StageSettings,
  hooks: StageHooks,
  description: StageDescription<P, R>,
): Promise<R> {
  await mkdir(settings.out, { recursive: true });
  const resumeFrom = await openRunDir(settings.out, Boolean(hooks.resume));
  const prepared = await description.prepare(resumeFrom);
  const place = await joinRanks(hooks.distributed, settings.device, settings.seed);
  if (place.device !== 'cpu') prepared.model.to(place.device);
  const dist = place.dist;
  const writer = dist?.isWriter ?? true;
  let stage: { dispose(): void } | undefined;
  try {
    const plan = await description.plan(prepared, {
      resumeFrom,
      dist,
      shard: dist?.shard ?? { rank: 0, worldSize: 1 },
      writer,
      note: hooks.onNote ?? (() => {}),
    });
    const trainer = new Trainer(prepared.model, { ...plan.trainer, distributed: dist });
    const training = await plan.stage(trainer);
    stage = training;
    // The settings this attempt runs with (e.g. a longer --steps) are the run's settings from now on.
    if (writer) await writeRunConfig(settings.out, settings.runConfig);
    const run = await runTraining(trainer, training, {
      ...plan.loop,
      out: settings.out,
      resumeFrom,
      signal: hooks.signal,
      onEvent: hooks.onEvent,
      distributed: dist,
    });
    const results = await plan.finish(run, trainer);
    await leaveRanks(place, true);
    return results;
  } finally {
    stage?.dispose(); // its evaluation batches, also when the run failed
    await leaveRanks(place, false);
  }
}

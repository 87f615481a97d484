// Fine-tuning on one labelled task: the stage behind `roformer finetune`.
//
//   task files → examples (lib/tasks/load.ts) → SupervisedStage with one task
//        → runTraining (steps, evaluation on dev every epoch, checkpoints, resume)
//        → dev/test metrics, the majority-class baseline → <out>/results.json
//        → <out>/model: the fine-tuned model dir (encoder + head, vocab, tasks.json)
//
// Defaults are the authors' CLUE recipe: Adafactor, lr 5e-4, batch 32, 10 epochs,
// length 128 (or the task's own maximum where its inputs are longer).

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import type { Device } from '../../bindings/native.js';
import type { ModelSize, RoFormerV2Config } from '../model/config.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { openRunDir, writeRunConfig } from '../training/run-dir.js';
import { runTraining } from '../training/run-loop.js';
import { linearWarmupDecay } from '../training/schedules.js';
import { Trainer } from '../training/trainer.js';
import { joinRanks, leaveRanks } from '../training/distributed.js';
import { evaluateTask, isLabelled } from './evaluate.js';
import { resolveTask } from './load.js';
import { majorityAccuracy, majorityClass } from './metrics.js';
import type { Task } from './registry.js';
import { headsFor, inputNoise, loadExamples, prepareEncoder, runFiles, type StageHooks } from './setup.js';
import { SupervisedStage } from './supervised-stage.js';
import type { LoadedExample } from './types.js';

export interface FinetuneConfig {
  /** A task name from the registry (tnews, cluener, …) or a task spec. */
  task: string | Task;
  train: string;
  dev?: string;
  test?: string;
  /** Model dir / checkpoint / run dir to start from; absent: a fresh model. */
  model?: string;
  out: string;
  /** Fresh model only. */
  size: ModelSize;
  /** Fresh model only: config keys overriding the size. */
  modelConfig?: Partial<RoFormerV2Config>;
  vocabSize: number;
  epochs: number;
  /** Stop after this many updates even if the epochs are not done (0: no cap). */
  maxSteps: number;
  batchSize: number;
  lr: number;
  optimizer: 'adamw' | 'lamb' | 'adafactor';
  /** Share of the steps spent warming the learning rate up (then constant). */
  warmupFraction: number;
  /** Tokens per sequence; default: the task's (128 for most). */
  maxLength?: number;
  /** Evaluate on dev every n steps (0: once per epoch). */
  evalEvery: number;
  /** Checkpoint every n steps (0: once per epoch). */
  saveEvery: number;
  /** The authors' light input noise on the training inputs. */
  noise: boolean;
  seed: number;
  device: Device;
  precision: 'fp32' | 'bf16' | 'fp16';
}

export const FINETUNE_DEFAULTS: Omit<FinetuneConfig, 'task' | 'train' | 'out'> = {
  size: 'small',
  vocabSize: 8000,
  epochs: 10,
  maxSteps: 0,
  batchSize: 32,
  lr: 5e-4,
  optimizer: 'adafactor',
  warmupFraction: 0.06,
  evalEvery: 0,
  saveEvery: 0,
  noise: false,
  seed: 0,
  device: 'cpu',
  precision: 'fp32',
};

export type Metrics = Partial<Record<'accuracy' | 'precision' | 'recall' | 'f1' | 'em', number>>;

/** What `<out>/results.json` holds. */
export interface FinetuneResults {
  task: string;
  dev: Metrics | null;
  test: Metrics | null;
  /** Accuracy of always predicting the training set's most frequent label (classification, multiple choice). */
  majority: { dev: number | null; test: number | null };
  steps: number;
  epochs: number;
  seconds: number;
  examples: { train: number; dev: number; test: number };
  /** The fine-tuned model dir. */
  model: string;
  startedFrom: string | null;
  interrupted: boolean;
}

export type FinetuneHooks = StageHooks;

export const RESULTS_FILE = 'results.json';
export const MODEL_SUBDIR = 'model';

/** The gold label index of each example, for the majority baseline (classification and multiple choice). */
function goldLabels(examples: readonly LoadedExample[]): number[] | null {
  const labels: number[] = [];
  for (const { example } of examples) {
    if (example.kind !== 'classification' && example.kind !== 'multiple-choice') return null;
    if (example.label >= 0) labels.push(example.label);
  }
  return labels;
}

export async function finetune(config: FinetuneConfig, hooks: FinetuneHooks = {}): Promise<FinetuneResults> {
  const note = hooks.onNote ?? (() => {});
  await mkdir(config.out, { recursive: true });
  const resumeFrom = await openRunDir(config.out, Boolean(hooks.resume));
  // The length trained with is stored with the task (tasks.json), so that eval and predict truncate alike.
  const resolved = await resolveTask(config.task, config.train);
  const task = config.maxLength ? { ...resolved, maxLength: config.maxLength } : resolved;

  const { model, tokenizer, dir } = await prepareEncoder(
    { model: resumeFrom ?? config.model, size: config.size, config: config.modelConfig, vocabSize: config.vocabSize, seed: config.seed },
    [config.train],
  );
  const place = await joinRanks(hooks.distributed, config.device, config.seed);
  if (place.device !== 'cpu') model.to(place.device);
  const dist = place.dist;
  const writer = dist?.isWriter ?? true;
  const load = (file: string, training = false) => loadExamples(task, file, tokenizer, config.maxLength, note, { training });
  const train = (await load(config.train, true)).examples.filter((e) => isLabelled(e.example));
  if (train.length === 0) throw new Error(`${config.train}: no labelled training examples`);
  const dev = config.dev ? (await load(config.dev)).examples : [];
  const test = config.test ? (await load(config.test)).examples : [];

  const stepsPerEpoch = Math.ceil(train.length / (config.batchSize * (dist?.worldSize ?? 1)));
  const epochSteps = config.epochs * stepsPerEpoch;
  const steps = config.maxSteps > 0 ? Math.min(config.maxSteps, epochSteps) : epochSteps;
  const trainer = new Trainer(model, {
    optimizer: config.optimizer,
    lr: linearWarmupDecay({ peak: config.lr, warmupSteps: Math.floor(config.warmupFraction * steps), totalSteps: steps, final: config.lr }),
    precision: config.precision,
    heads: headsFor([task]),
    distributed: dist,
  });
  // A model dir fine-tuned on this task before brings its head along.
  if (dir && !resumeFrom) {
    await trainer.loadHeads(dir).catch(() => note(`${dir}: no ${task.name} head saved there; the head starts fresh`));
  }
  if (writer) await writeRunConfig(config.out, { ...config, task: task.name });

  const files = runFiles(tokenizer, [task]);
  const stage = new SupervisedStage(trainer, [{ task, train, dev, weight: 1, batchSize: config.batchSize }], null, {
    seed: config.seed,
    noise: config.noise ? inputNoise(tokenizer) : null,
    evalBatchSize: 64,
    files,
    shard: dist?.shard,
  });
  try {
    const run = await runTraining(trainer, stage, {
      out: config.out,
      steps,
      evalEvery: config.evalEvery || stepsPerEpoch,
      saveEvery: config.saveEvery || stepsPerEpoch,
      resumeFrom,
      signal: hooks.signal,
      onEvent: hooks.onEvent,
      reportTitle: `RoFormerV2 fine-tuning: ${task.name}`,
      distributed: dist,
    });

    // The final evaluation: dev and test through the trained head; the majority baseline.
    const devResult = dev.length > 0 ? await evaluateTask(trainer, task, dev) : null;
    const testResult = test.length > 0 ? await evaluateTask(trainer, task, test) : null;
    const trainGold = goldLabels(train);
    const majority = trainGold && trainGold.length > 0 ? majorityClass(trainGold) : null;
    const majorityOn = (examples: readonly LoadedExample[]) => {
      const gold = goldLabels(examples);
      return majority !== null && gold && gold.length > 0 ? majorityAccuracy(gold, majority) : null;
    };
    const modelDir = join(config.out, MODEL_SUBDIR);
    if (writer) await trainer.saveModel(modelDir, { files });
    const results: FinetuneResults = {
      task: task.name,
      dev: devResult && Object.keys(devResult.metrics).length > 0 ? devResult.metrics : null,
      test: testResult && Object.keys(testResult.metrics).length > 0 ? testResult.metrics : null,
      majority: { dev: majorityOn(dev), test: majorityOn(test) },
      steps: run.step,
      epochs: run.step / stepsPerEpoch,
      seconds: run.seconds,
      examples: { train: train.length, dev: dev.length, test: test.length },
      model: modelDir,
      startedFrom: config.model ?? null,
      interrupted: run.interrupted,
    };
    if (writer) await writeFileAtomic(join(config.out, RESULTS_FILE), [JSON.stringify(results, null, 2) + '\n']);
    await leaveRanks(place, true);
    return results;
  } finally {
    stage.dispose(); // its evaluation batches, also when the run failed
    await leaveRanks(place, false);
  }
}


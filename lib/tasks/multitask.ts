// Supervised multi-task training: the stage behind `roformer multitask`.
//
//   tasks.json → each task's examples (and, optionally, an MLM corpus)
//        → SupervisedStage: every micro-batch one task, drawn ∝ weight
//        → Trainer with one head per task and per-task gradient normalisation
//        → runTraining (per-task evaluation, checkpoints with every head, resume)
//        → <out>/results.json (per-task dev metrics), <out>/model
//
// tasks.json (paths relative to the file):
//   { "tasks": [
//       { "name": "tnews", "task": "tnews", "files": { "train": "tnews/train.json", "dev": "tnews/dev.json" }, "weight": 2 },
//       { "name": "mine",  "task": { "kind": "classification", "textField": "text", "labelField": "label" },
//         "files": { "train": "mine.jsonl" }, "maxLength": 64, "batchSize": 16 },
//       { "name": "mlm",   "task": "mlm", "files": { "corpus": ["poems.txt"] }, "weight": 0.5 } ] }

import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';

import type { Device, GradientNormalization } from '../../bindings/native.js';
import { Corpus } from '../data/corpus.js';
import { MlmPipeline } from '../data/pipeline.js';
import type { ModelSize, RoFormerV2Config } from '../model/config.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { joinRanks, leaveRanks } from '../training/distributed.js';
import { openRunDir, writeRunConfig } from '../training/run-dir.js';
import { runTraining } from '../training/run-loop.js';
import { linearWarmupDecay } from '../training/schedules.js';
import { Trainer } from '../training/trainer.js';
import { evaluateTask, isLabelled } from './evaluate.js';
import type { Metrics } from './finetune.js';
import { MODEL_SUBDIR, RESULTS_FILE } from './finetune.js';
import { resolveTask } from './load.js';
import { toTaskSpec, type JsonlTaskSpec, type TaskSpec } from './registry.js';
import { headsFor, inputNoise, loadExamples, prepareEncoder, runFiles, type StageHooks } from './setup.js';
import { MLM_TASK, SupervisedStage, type StageMlm, type StageTask } from './supervised-stage.js';

export class TaskListError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TaskListError';
  }
}

/** One entry of tasks.json, paths resolved. */
export interface TaskListEntry {
  name: string;
  /** A registry task name, a user's JSONL spec, or 'mlm'. */
  task: string | JsonlTaskSpec | TaskSpec;
  files: { train?: string; dev?: string; corpus?: string[] };
  weight: number;
  maxLength?: number;
  batchSize: number;
}

/** Reads and checks tasks.json, naming the entry and field of every problem. */
export async function readTaskList(path: string, defaults: { batchSize: number }): Promise<TaskListEntry[]> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new TaskListError(`${path}: ${(error as Error).message}`);
  }
  const list = Array.isArray(raw) ? raw : (raw as { tasks?: unknown })?.tasks;
  if (!Array.isArray(list) || list.length === 0) throw new TaskListError(`${path}: expected {"tasks": [ … ]} with at least one task`);
  const base = dirname(path);
  const at = (p: unknown, where: string) => {
    if (typeof p !== 'string' || p === '') throw new TaskListError(`${path}: ${where} must be a file path`);
    const full = isAbsolute(p) ? p : resolve(base, p);
    if (!existsSync(full)) throw new TaskListError(`${path}: ${where}: ${full} does not exist`);
    return full;
  };
  const names = new Set<string>();
  return list.map((entry: unknown, i: number): TaskListEntry => {
    const where = `tasks[${i}]`;
    if (!entry || typeof entry !== 'object') throw new TaskListError(`${path}: ${where} must be an object`);
    const e = entry as Record<string, unknown>;
    const task = e.task ?? e.name;
    if (typeof task !== 'string' && (typeof task !== 'object' || task === null)) throw new TaskListError(`${path}: ${where}.task must be a task name or a task spec`);
    const name = typeof e.name === 'string' ? e.name : typeof task === 'string' ? task : '';
    if (!name) throw new TaskListError(`${path}: ${where}.name is required for a task given as a spec`);
    if (typeof task === 'object') {
      // Checked here, under the entry's name, so that an error names the task and this file.
      try {
        toTaskSpec({ ...(task as JsonlTaskSpec), name });
      } catch (error) {
        throw new TaskListError(`${path}: ${where}.task: ${(error as Error).message}`);
      }
    }
    if (names.has(name)) throw new TaskListError(`${path}: ${where}: task name '${name}' is used twice`);
    names.add(name);
    const files = (e.files ?? {}) as Record<string, unknown>;
    const weight = e.weight ?? 1;
    if (typeof weight !== 'number' || !(weight > 0)) throw new TaskListError(`${path}: ${where}.weight must be a positive number`);
    const batchSize = e.batchSize ?? defaults.batchSize;
    if (!Number.isInteger(batchSize) || (batchSize as number) < 1) throw new TaskListError(`${path}: ${where}.batchSize must be a positive integer`);
    if (e.maxLength !== undefined && (!Number.isInteger(e.maxLength) || (e.maxLength as number) < 3)) throw new TaskListError(`${path}: ${where}.maxLength must be an integer ≥ 3`);
    const isMlm = task === MLM_TASK;
    if (isMlm) {
      const corpus = Array.isArray(files.corpus) ? files.corpus : files.corpus !== undefined ? [files.corpus] : [];
      if (corpus.length === 0) throw new TaskListError(`${path}: ${where}: the mlm task needs files.corpus (text or JSONL files)`);
      return { name: MLM_TASK, task: MLM_TASK, files: { corpus: corpus.map((c, k) => at(c, `${where}.files.corpus[${k}]`)) }, weight, batchSize: batchSize as number, maxLength: e.maxLength as number | undefined };
    }
    return {
      name,
      task: task as TaskListEntry['task'],
      files: { train: at(files.train, `${where}.files.train`), dev: files.dev === undefined ? undefined : at(files.dev, `${where}.files.dev`) },
      weight,
      batchSize: batchSize as number,
      maxLength: e.maxLength as number | undefined,
    };
  });
}

export interface MultitaskConfig {
  tasks: string;
  model?: string;
  out: string;
  size: ModelSize;
  /** Fresh model only: config keys overriding the size. */
  modelConfig?: Partial<RoFormerV2Config>;
  vocabSize: number;
  steps: number;
  /** Micro-batches (each one task) per optimiser step. */
  accumulate: number;
  batchSize: number;
  lr: number;
  optimizer: 'adamw' | 'lamb' | 'adafactor';
  warmupSteps: number;
  gradientNormalization: GradientNormalization;
  noise: boolean;
  evalEvery: number;
  saveEvery: number;
  seed: number;
  device: Device;
  precision: 'fp32' | 'bf16' | 'fp16';
}

export const MULTITASK_DEFAULTS: Omit<MultitaskConfig, 'tasks' | 'out'> = {
  size: 'small',
  vocabSize: 8000,
  steps: 1000,
  accumulate: 4,
  batchSize: 32,
  lr: 5e-4,
  optimizer: 'adafactor',
  warmupSteps: 50,
  gradientNormalization: 'unit',
  noise: true,
  evalEvery: 100,
  saveEvery: 200,
  seed: 0,
  device: 'cpu',
  precision: 'fp32',
};

export interface MultitaskResults {
  tasks: Record<string, Metrics | null>;
  steps: number;
  seconds: number;
  model: string;
  interrupted: boolean;
}

/**
 * Data-parallel (hooks.distributed): every rank draws the same task for each
 * micro-batch and takes its own slice of that task's examples (MLM: its own
 * documents); rank 0 writes the run directory.
 */
export async function multitask(config: MultitaskConfig, hooks: StageHooks = {}): Promise<MultitaskResults> {
  const note = hooks.onNote ?? (() => {});
  const entries = await readTaskList(config.tasks, { batchSize: config.batchSize });
  await mkdir(config.out, { recursive: true });
  const resumeFrom = await openRunDir(config.out, Boolean(hooks.resume));

  const supervised = entries.filter((e) => e.task !== MLM_TASK);
  const mlmEntry = entries.find((e) => e.task === MLM_TASK);
  // An entry's maxLength is stored with its task (tasks.json), so that eval and predict truncate alike.
  const tasks = await Promise.all(
    supervised.map(async (e) => ({ ...(await resolveTask(e.task, e.files.train)), name: e.name, ...(e.maxLength ? { maxLength: e.maxLength } : {}) })),
  );
  const vocabFiles = [...supervised.map((e) => e.files.train!), ...(mlmEntry?.files.corpus ?? [])];
  const { model, tokenizer } = await prepareEncoder({ model: resumeFrom ?? config.model, size: config.size, config: config.modelConfig, vocabSize: config.vocabSize, seed: config.seed }, vocabFiles);
  const place = await joinRanks(hooks.distributed, config.device, config.seed);
  if (place.device !== 'cpu') model.to(place.device);
  const dist = place.dist;
  const writer = dist?.isWriter ?? true;

  const items: StageTask[] = [];
  for (const [i, entry] of supervised.entries()) {
    const task = tasks[i]!;
    const train = (await loadExamples(task, entry.files.train!, tokenizer, entry.maxLength, note, { training: true })).examples.filter((e) => isLabelled(e.example));
    if (train.length === 0) throw new TaskListError(`${entry.files.train}: task ${task.name} has no labelled training examples`);
    const dev = entry.files.dev ? (await loadExamples(task, entry.files.dev, tokenizer, entry.maxLength, note)).examples : [];
    items.push({ task, train, dev, weight: entry.weight, batchSize: entry.batchSize });
  }
  let mlm: StageMlm | null = null;
  if (mlmEntry) {
    const corpus = await Corpus.open({ paths: mlmEntry.files.corpus!, evalFraction: 0.01 });
    const pipeline = new MlmPipeline(corpus, tokenizer, {
      maxLength: mlmEntry.maxLength ?? 128,
      batchSize: mlmEntry.batchSize,
      seed: config.seed + (dist?.rank ?? 0),
      shard: dist?.shard,
    });
    mlm = { pipeline, weight: mlmEntry.weight, evalBatches: config.evalEvery > 0 ? await pipeline.evalBatches(4) : [] };
  }

  const trainer = new Trainer(model, {
    optimizer: config.optimizer,
    lr: linearWarmupDecay({ peak: config.lr, warmupSteps: Math.min(config.warmupSteps, config.steps), totalSteps: config.steps, final: config.lr }),
    precision: config.precision,
    heads: headsFor(tasks),
    gradientNormalization: config.gradientNormalization,
    distributed: dist,
  });
  if (writer) await writeRunConfig(config.out, config);
  const files = runFiles(tokenizer, tasks);
  const stage = new SupervisedStage(trainer, items, mlm, {
    seed: config.seed,
    noise: config.noise ? inputNoise(tokenizer) : null,
    evalBatchSize: 64,
    files,
    shard: dist?.shard,
  });
  try {
    const run = await runTraining(trainer, stage, {
      out: config.out,
      steps: config.steps,
      accumulate: config.accumulate,
      evalEvery: config.evalEvery,
      saveEvery: config.saveEvery,
      resumeFrom,
      signal: hooks.signal,
      onEvent: hooks.onEvent,
      reportTitle: `RoFormerV2 multi-task training (${stage.tasks.join(', ')})`,
      distributed: dist,
    });
    const results: Record<string, Metrics | null> = {};
    for (const item of items) {
      const r = item.dev.length > 0 ? await evaluateTask(trainer, item.task, item.dev) : null;
      results[item.task.name] = r && Object.keys(r.metrics).length > 0 ? r.metrics : null;
    }
    const modelDir = join(config.out, MODEL_SUBDIR);
    if (writer) await trainer.saveModel(modelDir, { files });
    const out: MultitaskResults = { tasks: results, steps: run.step, seconds: run.seconds, model: modelDir, interrupted: run.interrupted };
    if (writer) await writeFileAtomic(join(config.out, RESULTS_FILE), [JSON.stringify(out, null, 2) + '\n']);
    await leaveRanks(place, true);
    return out;
  } finally {
    stage.dispose();
    await leaveRanks(place, false);
  }
}

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
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';

import type { GradientNormalization } from '../../bindings/native.js';
import { Corpus } from '../data/corpus.js';
import { MlmPipeline } from '../data/pipeline.js';
import { MIN_SEQUENCE_LENGTH } from '../data/sequence-length.js';
import type { Tokenizer } from '../data/tokenizer.js';
import { MODEL_SUBDIR } from '../training/model-source.js';
import type { RunResult } from '../training/run-loop.js';
import { warmupThenConstant } from '../training/schedules.js';
import { runStage, type StageHooks } from '../training/stage.js';
import type { Trainer } from '../training/trainer.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { fieldList, integerAtLeast } from '../util/value-kinds.js';
import { checkMultitaskConfig, EVAL_BATCH_SIZE, MULTITASK_DEFAULTS, type MultitaskConfig } from './config.js';
import { evaluateTask, isLabelled, type Metrics } from './evaluate.js';
import { resolveTask } from './load.js';
import { taskFromJSON, toTaskSpec, type JsonlTaskSpec, type Task, type TaskSpec } from './registry.js';
import { headsFor, inputNoise, loadExamples, prepareEncoder, runFiles, TASKS_FILE } from './setup.js';
import { MLM_TASK, SupervisedStage, type StageMlm, type StageTask } from './supervised-stage.js';
import type { LoadedExample } from './types.js';

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
  /** test: evaluated once, at the end (fine-tuning's test set). */
  files: { train?: string; dev?: string; test?: string; corpus?: string[] };
  /** mlm: the JSONL field holding the text (default: the stage's --field). */
  field?: string;
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
    if (e.maxLength !== undefined && !integerAtLeast(MIN_SEQUENCE_LENGTH).accepts(e.maxLength)) throw new TaskListError(`${path}: ${where}.maxLength must be an integer >= ${MIN_SEQUENCE_LENGTH}`);
    const isMlm = task === MLM_TASK;
    if (isMlm) {
      const corpus = Array.isArray(files.corpus) ? files.corpus : files.corpus !== undefined ? [files.corpus] : [];
      if (corpus.length === 0) throw new TaskListError(`${path}: ${where}: the mlm task needs files.corpus (text or JSONL files)`);
      if (e.field !== undefined && !fieldList.accepts(e.field)) throw new TaskListError(`${path}: ${where}.field must be the name of the JSONL field holding the text, or ${fieldList.description}`);
      const field = e.field as string | undefined;
      return { name: MLM_TASK, task: MLM_TASK, files: { corpus: corpus.map((c, k) => at(c, `${where}.files.corpus[${k}]`)) }, weight, batchSize: batchSize as number, maxLength: e.maxLength as number | undefined, ...(field ? { field } : {}) };
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

export type { MultitaskConfig } from './config.js';
export { MULTITASK_DEFAULTS } from './config.js';

export interface MultitaskResults {
  tasks: Record<string, Metrics | null>;
  steps: number;
  seconds: number;
  model: string;
  interrupted: boolean;
}

/** The file a supervised run writes its results to, in its --out. */
export const RESULTS_FILE = 'results.json';

/** What trainTasks() hands a stage's results() once the run has ended. */
export interface TrainedTasks {
  run: RunResult;
  trainer: Trainer;
  /** Each supervised task with its training and dev examples, in tasks.json order. */
  items: StageTask[];
  /** Each task's test examples (files.test; none: empty). */
  tests: LoadedExample[][];
  /** Micro-batches per epoch of the first task on this rank (1 without a supervised task). */
  stepsPerEpoch: number;
  /** The final model dir (saved after results()). */
  modelDir: string;
}

/** A supervised run: multi-task training, or fine-tuning as its one-task case. */
export interface TasksRun<R> {
  config: Omit<MultitaskConfig, 'tasks' | 'steps' | 'accumulate' | 'warmupSteps' | 'gradientNormalization' | 'field'> & {
    accumulate?: number;
    gradientNormalization?: GradientNormalization;
    field?: string;
  };
  entries: readonly TaskListEntry[];
  /** run_config.json. */
  runConfig: unknown;
  /** Steps, warm-up and the evaluation/checkpoint interval, given one epoch of the first task. */
  schedule(stepsPerEpoch: number): { steps: number; warmupSteps: number; evalEvery: number; saveEvery: number };
  /** Load the starting model dir's heads when it has them (fine-tuning a fine-tuned model further). */
  continueHeads: boolean;
  reportTitle(tasks: readonly string[]): string;
  /** The stage's results (written to results.json by rank 0). */
  results(trained: TrainedTasks): Promise<R>;
}

/**
 * The supervised stage on runStage(): the encoder (a model dir, the checkpoint when
 * resuming, or a fresh model with a vocab built from the training files), each
 * task's examples, the MLM pipeline when tasks.json has one, one head per task.
 */
export async function trainTasks<R>(spec: TasksRun<R>, hooks: StageHooks = {}): Promise<R> {
  const { config, entries } = spec;
  const supervised = entries.filter((e) => e.task !== MLM_TASK);
  const mlmEntry = entries.find((e) => e.task === MLM_TASK);
  return runStage({ out: config.out, device: config.device, seed: config.seed, runConfig: spec.runConfig }, hooks, {
    async prepare(resumeFrom) {
      // A resumed run trains its tasks exactly as before (labels in head order): the checkpoint's tasks.json.
      const saved = resumeFrom ? await readTasksFile(resumeFrom) : [];
      // An entry's maxLength is stored with its task (tasks.json), so that eval and predict truncate alike.
      const tasks = await Promise.all(
        supervised.map(async (e) => {
          const resolved = await resolveTask(e.task, e.files.train);
          const name = e.name || resolved.name;
          const task = saved.find((t) => t.name === name) ?? resolved;
          return { ...task, name, ...(e.maxLength ? { maxLength: e.maxLength } : {}) };
        }),
      );
      const vocabFiles = [...supervised.map((e) => e.files.train!), ...(mlmEntry?.files.corpus ?? [])];
      const encoder = await prepareEncoder({ model: resumeFrom ?? config.model, size: config.size, config: config.modelConfig, vocabSize: config.vocabSize, seed: config.seed }, vocabFiles);
      return { ...encoder, tasks };
    },
    async plan({ tokenizer, dir, tasks }, { resumeFrom, dist, shard, writer, note }) {
      const { items, tests } = await loadTasks(supervised, tasks, tokenizer, note);
      const mlm = mlmEntry ? await mlmTask(mlmEntry, tokenizer, { seed: config.seed + shard.rank, shard: dist?.shard, field: config.field, evaluate: config.evalEvery > 0 }) : null;
      // One epoch of the first task (fine-tuning counts in these); an MLM-only list has none.
      const first = items[0];
      const stepsPerEpoch = first ? Math.ceil(first.train.length / (first.batchSize * shard.worldSize)) : 1;
      const schedule = spec.schedule(stepsPerEpoch);
      const files = runFiles(tokenizer, tasks);
      return {
        trainer: {
          optimizer: config.optimizer,
          lr: warmupThenConstant({ peak: config.lr, warmupSteps: schedule.warmupSteps }),
          precision: config.precision,
          heads: headsFor(tasks),
          ...(config.gradientNormalization ? { gradientNormalization: config.gradientNormalization } : {}),
        },
        loop: { steps: schedule.steps, accumulate: config.accumulate, evalEvery: schedule.evalEvery, saveEvery: schedule.saveEvery, reportTitle: spec.reportTitle([...tasks.map((t) => t.name), ...(mlm ? [MLM_TASK] : [])]) },
        async stage(trainer) {
          // A model dir trained on these tasks before (fine-tuned, or multi-task among others) brings their heads along.
          if (spec.continueHeads && dir && !resumeFrom) {
            for (const head of await trainer.continueHeads(dir)) {
              note(head.loaded ? `${dir}: the ${head.task} head saved there is loaded; fine-tuning continues it` : `${dir}: ${head.why}; the ${head.task} head starts fresh`);
            }
          }
          return new SupervisedStage(trainer, items, mlm, {
            seed: config.seed,
            noise: config.noise ? inputNoise(tokenizer) : null,
            evalBatchSize: EVAL_BATCH_SIZE,
            files,
            shard: dist?.shard,
          });
        },
        async finish(run, trainer) {
          const modelDir = join(config.out, MODEL_SUBDIR);
          const results = await spec.results({ run, trainer, items, tests, stepsPerEpoch, modelDir });
          if (writer) {
            await trainer.saveModel(modelDir, { files });
            await writeFileAtomic(join(config.out, RESULTS_FILE), [JSON.stringify(results, null, 2) + '\n']);
          }
          return results;
        },
      };
    },
  });
}

/** Each supervised task's training (labelled only), dev and test examples. */
async function loadTasks(
  entries: readonly TaskListEntry[],
  tasks: readonly Task[],
  tokenizer: Tokenizer,
  note: (message: string) => void,
): Promise<{ items: StageTask[]; tests: LoadedExample[][] }> {
  const items: StageTask[] = [];
  const tests: LoadedExample[][] = [];
  for (const [i, entry] of entries.entries()) {
    const task = tasks[i]!;
    const load = async (file: string | undefined, training = false) =>
      file ? (await loadExamples(task, file, tokenizer, entry.maxLength, note, { training })).examples : [];
    const train = (await load(entry.files.train, true)).filter((e) => isLabelled(e.example));
    if (train.length === 0) throw new TaskListError(`${entry.files.train}: task ${task.name} has no labelled training examples`);
    items.push({ task, train, dev: await load(entry.files.dev), weight: entry.weight, batchSize: entry.batchSize });
    tests.push(await load(entry.files.test));
  }
  return { items, tests };
}

/** MLM kept in the mix: this rank's pipeline over the entry's corpus, and held-out batches to evaluate on. */
async function mlmTask(
  entry: TaskListEntry,
  tokenizer: Tokenizer,
  options: { seed: number; shard?: { rank: number; worldSize: number }; field?: string; evaluate: boolean },
): Promise<StageMlm> {
  const corpus = await Corpus.open({ paths: entry.files.corpus!, evalFraction: 0.01, field: entry.field ?? options.field });
  const pipeline = new MlmPipeline(corpus, tokenizer, { maxLength: entry.maxLength ?? 128, batchSize: entry.batchSize, seed: options.seed, shard: options.shard });
  return { pipeline, weight: entry.weight, evalBatches: options.evaluate ? await pipeline.evalBatches(4) : [] };
}

/** The tasks a checkpoint was trained with (its tasks.json), labels in head order. */
async function readTasksFile(checkpoint: string): Promise<Task[]> {
  const path = join(checkpoint, TASKS_FILE);
  if (!existsSync(path)) return [];
  return (JSON.parse(await readFile(path, 'utf8')) as unknown[]).map((t, i) => taskFromJSON(t, `${path}[${i}]`) as Task);
}

/**
 * Data-parallel (hooks.distributed): every rank draws the same task for each
 * micro-batch and takes its own slice of that task's examples (MLM: its own
 * documents); rank 0 writes the run directory.
 */
export async function multitask(config: MultitaskConfig, hooks: StageHooks = {}): Promise<MultitaskResults> {
  config = checkMultitaskConfig({ ...MULTITASK_DEFAULTS, ...config }, hooks.settingName);
  const entries = await readTaskList(config.tasks, { batchSize: config.batchSize });
  return trainTasks(
    {
      config,
      entries,
      runConfig: config,
      schedule: () => ({ steps: config.steps, warmupSteps: Math.min(config.warmupSteps, config.steps), evalEvery: config.evalEvery, saveEvery: config.saveEvery }),
      continueHeads: false,
      reportTitle: (tasks) => `RoFormerV2 multi-task training (${tasks.join(', ')})`,
      async results({ run, trainer, items, modelDir }) {
        const tasks: Record<string, Metrics | null> = {};
        for (const item of items) {
          const r = item.dev.length > 0 ? await evaluateTask(trainer, item.task, item.dev) : null;
          tasks[item.task.name] = r && Object.keys(r.metrics).length > 0 ? r.metrics : null;
        }
        return { tasks, steps: run.step, seconds: run.seconds, model: modelDir, interrupted: run.interrupted };
      },
    },
    hooks,
  );
}

#!/usr/bin/env node
// Does the recipe work? FewCLUE test accuracy after four starts, the same model size
// and the same fine-tuning budget in each:
//
//   (a) a fresh encoder                                  → fine-tune each task
//   (b) MLM on FewCLUE's unlabeled text                  → fine-tune each task
//   (c) MLM → supervised multi-task stage over the tasks' training sets
//       (per-task gradient normalisation, input noise)   → fine-tune each task from it
//   (d) as (c) with gradient normalisation off
//
// Every stage runs through its TypeScript API (pretrain(), multitask(), finetune()).
// Resumable: <out>/state.json records each (arm, stage, task, seed) unit once done
// (recipe-ledger.ts); a killed run, started again with the same settings, skips the
// finished units and resumes a half-done one from its checkpoint. Results so far are
// rewritten after every unit: <out>/results.json and <out>/chart.svg (and --json/--svg).
//
//   npm run bench:recipe -- --out runs/fewclue-recipe [--json bench/results/fewclue-recipe.json --svg …]

import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

import { Command, InvalidArgumentError } from 'commander';

import type { RoFormerV2Config } from '../lib/model/config.js';
import { PRETRAIN_DEFAULTS } from '../lib/pretrain/config.js';
import { pretrain } from '../lib/pretrain/pretrain.js';
import { finetune, type FinetuneResults } from '../lib/tasks/finetune.js';
import { multitask, MULTITASK_DEFAULTS } from '../lib/tasks/multitask.js';
import type { StageHooks } from '../lib/training/stage.js';
import { writeFileAtomic } from '../lib/util/atomic-file.js';
import { fieldList, fieldNames } from '../lib/util/value-kinds.js';
import { groupedBarsSvg } from './chart.js';
import { FEWCLUE_TASKS, FEWCLUE_TEXT_FIELDS, FEWCLUE_UNLABELED_TASKS, fewclueFile, fewclueFiles, fewclueFinetuneConfig, headline, pct } from './fewclue-tasks.js';
import { Ledger, unitName, type UnitRecord } from './recipe-ledger.js';
import { intAtLeast, nonNegativeInt, positiveInt, positiveNum } from './flags.js';

export const ARMS = {
  a: 'fresh encoder → fine-tune',
  b: 'MLM → fine-tune',
  c: 'MLM → multi-task (grad. norm.) → fine-tune',
  d: 'MLM → multi-task (no grad. norm.) → fine-tune',
} as const;
type Arm = keyof typeof ARMS;

/**
 * The tasks fine-tuned with every seed: those whose fine-tuning unit (10 epochs, its dev and
 * test evaluation included) took ≤ 3 minutes in the run of 2026-11-30 (csldcp 4.2 and
 * iflytek 3.7 minutes take one seed; chid 2.2).
 */
export const SEEDED_TASKS = FEWCLUE_TASKS.filter((t) => t !== 'csldcp' && t !== 'iflytek');

/** Settings that only choose which units run: they may change when a run is resumed. */
const UNIT_SELECTION: Array<keyof RecipeSettings> = ['seeds', 'seededTasks'];

/** An evaluation interval no run reaches. */
const NEVER = 1_000_000_000;

/** Everything that decides the figures: a resumed run must have the same. */
export interface RecipeSettings {
  data: string;
  tasks: string[];
  arms: Arm[];
  /** Seeds per arm on `seededTasks` (the fast ones); one seed elsewhere. */
  seeds: number;
  seededTasks: string[];
  /** The fresh encoder (arm a) and the MLM stage's model. */
  modelConfig: Partial<RoFormerV2Config>;
  vocabSize: number;
  /** Tokens per sequence in every stage. */
  maxLength: number;
  corpus: string[];
  field: string;
  mlmSteps: number;
  mlmLr: number;
  multitaskSteps: number;
  multitaskLr: number;
  /** The fine-tuning budget, the same in every arm. */
  epochs: number;
  maxSteps: number;
  lr: number;
  batchSize: number;
}

/** What the ledger keeps of a unit. */
type UnitResult =
  | { kind: 'model'; model: string; steps: number; interrupted: boolean; lastEval?: unknown }
  | ({ kind: 'finetune' } & Omit<FinetuneResults, 'interrupted'> & { interrupted: boolean });

const list = <T extends string>(allowed: readonly T[]) => (text: string) => {
  const items = text.split(',').map((t) => t.trim());
  const bad = items.find((t) => !allowed.includes(t as T));
  if (bad !== undefined) throw new InvalidArgumentError(`unknown '${bad}' (expected some of ${allowed.join(',')})`);
  return items as T[];
};

function parseSettings(argv: string[]): { settings: RecipeSettings; out: string; json?: string; svg?: string; readme?: string; status?: boolean } {
  const program = new Command()
    .name('fewclue-recipe')
    .description('FewCLUE test accuracy from four starts: fresh, MLM, MLM → multi-task (grad. norm. on/off)')
    .option('--out <dir>', 'where the runs, state.json (to resume), results.json and chart.svg go', 'runs/fewclue-recipe')
    .option('--data <dir>', 'the FewCLUE datasets folder', '../shared/data/fewclue')
    .option('--tasks <names>', 'comma-separated tasks (fine-tuned, and the multi-task stage\'s)', list(FEWCLUE_TASKS), FEWCLUE_TASKS)
    .option('--arms <letters>', 'which arms, of a,b,c,d', list(Object.keys(ARMS) as Arm[]), Object.keys(ARMS) as Arm[])
    .option('--seeds <n>', 'seeds per arm on --seeded-tasks', positiveInt('--seeds'), 3)
    .option('--seeded-tasks <names>', 'the tasks fine-tuned with every seed (the fast ones); one seed elsewhere', list(FEWCLUE_TASKS), SEEDED_TASKS)
    .option('--model-config <json>', 'model config keys of the fresh encoder and of the MLM stage', '{"num_hidden_layers":2,"hidden_size":128,"num_attention_heads":2,"intermediate_size":512}')
    .option('--vocab-size <n>', 'tokens in each built vocab', intAtLeast(5, '--vocab-size'), 8000)
    .option('--max-length <n>', 'tokens per sequence, every stage', intAtLeast(8, '--max-length'), 64)
    .option('--corpus <files...>', "MLM text (default: the tasks' unlabeled.json in --data)")
    .option('--field <names>', 'the JSONL fields holding the MLM text', FEWCLUE_TEXT_FIELDS)
    .option('--mlm-steps <n>', 'MLM pre-training steps', positiveInt('--mlm-steps'), 10000)
    .option('--mlm-lr <x>', 'MLM peak learning rate', positiveNum('--mlm-lr'), 1e-3)
    .option('--multitask-steps <n>', 'multi-task steps (each of 4 micro-batches)', positiveInt('--multitask-steps'), 500)
    .option('--multitask-lr <x>', 'multi-task learning rate', positiveNum('--multitask-lr'), 1e-3)
    .option('--epochs <n>', 'fine-tuning epochs', positiveNum('--epochs'), 10)
    .option('--max-steps <n>', 'fine-tuning: cap on steps per task (0: none, every task trains its --epochs)', nonNegativeInt('--max-steps'), 0)
    .option('--lr <x>', 'fine-tuning learning rate', positiveNum('--lr'), 1e-3)
    .option('--batch-size <n>', 'batch size, every stage', positiveInt('--batch-size'), 32)
    .option('--json <file>', 'also write the results here')
    .option('--svg <file>', 'also write the chart here')
    .option('--readme <file>', `also put the table into this Markdown file, between its ${README_MARKERS.join(' and ')} lines`)
    .option('--status', 'run nothing: write the results so far (and --json/--svg/--readme) and print their table')
    .parse(argv);
  const o = program.opts<Omit<RecipeSettings, 'modelConfig' | 'corpus'> & { modelConfig: string; corpus?: string[]; out: string; json?: string; svg?: string; readme?: string; status?: boolean }>();
  if (!fieldList.accepts(o.field)) program.error(`error: option '--field <names>' must be ${fieldList.description}`);
  let modelConfig: Partial<RoFormerV2Config> = {};
  try {
    modelConfig = JSON.parse(o.modelConfig) as Partial<RoFormerV2Config>;
  } catch (error) {
    program.error(`error: option '--model-config <json>': ${(error as Error).message}`);
  }
  const data = resolve(o.data);
  const corpus = (o.corpus ?? FEWCLUE_UNLABELED_TASKS.map((task) => fewclueFile(data, task, 'unlabeled.json'))).map((p) => resolve(p));
  const { out, json, svg, readme, status, ...rest } = o;
  return { settings: { ...rest, data, modelConfig, corpus, field: fieldNames(o.field)!.join(',') }, out: resolve(out), json, svg, readme, status };
}

/**
 * The fine-tuning units in the order they run, so that an interrupted run leaves the
 * most telling table: (after the MLM stage) seed 1 of (a) and (b) task by task, then
 * seed 1 of (c) and (d) (after their multi-task stages), then the other seeds, every arm
 * task by task.
 */
function* plan(s: RecipeSettings): Generator<{ arm: Arm; task: string; seed: number }> {
  const firstSeed: Arm[][] = [['a', 'b'], ['c', 'd']];
  for (const arms of firstSeed) {
    for (const task of s.tasks) for (const arm of arms) if (s.arms.includes(arm)) yield { arm, task, seed: 1 };
  }
  for (let seed = 2; seed <= s.seeds; seed++) {
    for (const task of s.tasks) for (const arm of s.arms) if (s.seededTasks.includes(task)) yield { arm, task, seed };
  }
}

/** Progress to stderr: the unit, and a line every so often from its run. */
function hooksFor(name: string, resume: boolean, signal: AbortSignal): StageHooks {
  let last = 0;
  return {
    resume,
    signal,
    onNote: (message) => console.error(`  ${name}: ${message}`),
    onEvent: (event) => {
      const e = event as { type: string; step?: number; loss?: number };
      if (e.type === 'step' && e.step !== undefined && Date.now() - last > 30_000) {
        last = Date.now();
        console.error(`  ${name}: step ${e.step}${e.loss === undefined ? '' : `, loss ${e.loss.toFixed(3)}`}`);
      }
    },
  };
}

/** A finished unit in a line: test accuracy beside the majority class, or the stage's model. */
function outcome(result: UnitResult): string {
  if (result.kind === 'model') return `${result.steps} steps → ${result.model}`;
  return `test ${pct(headline(result.test))}% (majority class ${pct(result.majority.test)}%), dev ${pct(headline(result.dev))}%, ${result.steps} steps in ${(result.seconds / 60).toFixed(1)} min`;
}

async function runRecipe(settings: RecipeSettings, out: string, copies: { json?: string; svg?: string }, signal: AbortSignal): Promise<void> {
  const ledger = Ledger.open<RecipeSettings, UnitResult>(out, settings, UNIT_SELECTION);
  const report = async () => writeReport(settings, ledger.units, out, copies);
  const started = Date.now();
  const unit = async (arm: Arm, stage: 'pretrain' | 'multitask' | 'finetune', task: string, seed: number, work: (dir: string, hooks: StageHooks) => Promise<UnitResult>) => {
    const key = { arm, stage, task, seed };
    const name = unitName(key);
    const done = ledger.done(key);
    if (done) return done;
    console.error(`[${((Date.now() - started) / 60000).toFixed(1)} min] ${name}`);
    const result = await ledger.run(key, (dir, resume) => work(dir, hooksFor(name, resume, signal)));
    console.error(`  ${name}: ${outcome(result)}`);
    await report();
    return result;
  };
  const common = { data: settings.data, epochs: settings.epochs, maxSteps: settings.maxSteps, lr: settings.lr, maxLength: settings.maxLength, modelConfig: settings.modelConfig };

  // The shared starts, built when an arm first needs them: the MLM model (b, c, d), the multi-task models (c, d).
  const mlm = async () =>
    unit('b', 'pretrain', '-', 1, async (dir, hooks) => {
      const r = await pretrain(
        {
          ...PRETRAIN_DEFAULTS,
          corpus: settings.corpus,
          field: settings.field,
          out: dir,
          model: settings.modelConfig,
          vocabSize: settings.vocabSize,
          maxLength: settings.maxLength,
          batchSize: settings.batchSize,
          steps: settings.mlmSteps,
          lr: settings.mlmLr,
          warmupSteps: Math.min(100, Math.floor(settings.mlmSteps / 10)),
          masking: 'whole-word',
          evalEvery: Math.max(1, Math.floor(settings.mlmSteps / 5)),
          saveEvery: Math.max(1, Math.floor(settings.mlmSteps / 10)),
          seed: 1,
        },
        hooks,
      );
      r.model.dispose();
      return { kind: 'model', model: dir, steps: r.step, interrupted: r.interrupted, lastEval: r.lastEval };
    });
  const multitaskModel = async (arm: 'c' | 'd') => {
    const start = await mlm();
    return unit(arm, 'multitask', '-', 1, async (dir, hooks) => {
      // The nine training sets (no dev: fine-tuning evaluates), each micro-batch one task.
      const tasksFile = join(out, `tasks-${arm}.json`);
      const tasks = settings.tasks.map((name) => ({ name, files: { train: fewclueFiles(settings.data, name).train }, maxLength: settings.maxLength }));
      await writeFile(tasksFile, JSON.stringify({ tasks }, null, 2) + '\n');
      const r = await multitask(
        {
          ...MULTITASK_DEFAULTS,
          tasks: tasksFile,
          model: start.model,
          out: dir,
          steps: settings.multitaskSteps,
          lr: settings.multitaskLr,
          batchSize: settings.batchSize,
          gradientNormalization: arm === 'c' ? 'unit' : 'none',
          noise: true,
          evalEvery: NEVER, // no dev sets: fine-tuning evaluates
          saveEvery: Math.max(1, Math.floor(settings.multitaskSteps / 5)),
          seed: 1,
        },
        hooks,
      );
      return { kind: 'model', model: r.model, steps: r.steps, interrupted: r.interrupted };
    });
  };
  const startOf = async (arm: Arm): Promise<string | undefined> => (arm === 'a' ? undefined : arm === 'b' ? (await mlm()).model : (await multitaskModel(arm)).model);

  if (settings.arms.some((arm) => arm !== 'a')) await mlm(); // first: (b) follows (a) task by task
  for (const { arm, task, seed } of plan(settings)) {
    const model = await startOf(arm);
    await unit(arm, 'finetune', task, seed, async (dir, hooks) => {
      // Dev is evaluated once, by finetune()'s final evaluation (evalEvery past the last step): the time goes to training.
      const r = await finetune(fewclueFinetuneConfig(task, dir, { ...common, model, seed, evalEvery: NEVER }), hooks);
      return { kind: 'finetune', ...r };
    });
  }
  await report();
}

// ---------------------------------------------------------------- the report

interface ArmFigures {
  /** Test accuracy of each finished seed. */
  seeds: Record<number, number>;
  mean: number;
  min: number;
  max: number;
}

export interface RecipeResults {
  date: string;
  /** False while units are missing (an interrupted run): the table is partial. */
  complete: boolean;
  units: { done: number; total: number; finished: string[] };
  settings: RecipeSettings;
  arms: Record<string, string>;
  tasks: Array<{ task: string; majority: number | null; arms: Record<string, ArmFigures | null>; minutes: Record<string, number | null> }>;
  /** Per arm: the mean over tasks of the per-task means, on the tasks every arm with results has finished (null: an arm with none yet). */
  average: { tasks: string[]; arms: Record<string, number | null> };
  /** The shared stages' own figures (MLM held-out accuracy, multi-task steps). */
  stages: Array<Pick<UnitRecord<UnitResult>, 'arm' | 'stage' | 'seconds' | 'attempts'> & { result: UnitResult | null }>;
}

function totalUnits(s: RecipeSettings): number {
  const finetunes = [...plan(s)].length;
  const hasMlm = s.arms.some((a) => a !== 'a');
  return finetunes + (hasMlm ? 1 : 0) + s.arms.filter((a) => a === 'c' || a === 'd').length;
}

export function summarise(settings: RecipeSettings, units: Array<UnitRecord<UnitResult>>): RecipeResults {
  const finished = units.filter((u) => u.finished && u.result);
  const finetunes = finished.filter((u) => u.result!.kind === 'finetune') as Array<UnitRecord<Extract<UnitResult, { kind: 'finetune' }>>>;
  const tasks = settings.tasks.map((task) => {
    const arms: Record<string, ArmFigures | null> = {};
    const minutes: Record<string, number | null> = {};
    let majority: number | null = null;
    for (const arm of settings.arms) {
      const runs = finetunes.filter((u) => u.arm === arm && u.task === task);
      const accuracies = runs.map((u) => headline(u.result!.test));
      majority ??= runs[0]?.result!.majority.test ?? null;
      minutes[arm] = runs.length > 0 ? Math.max(...runs.map((u) => u.seconds ?? 0)) / 60 : null;
      arms[arm] =
        runs.length === 0
          ? null
          : {
              seeds: Object.fromEntries(runs.map((u, i) => [u.seed, accuracies[i]!])),
              mean: accuracies.reduce((x, y) => x + y, 0) / accuracies.length,
              min: Math.min(...accuracies),
              max: Math.max(...accuracies),
            };
    }
    return { task, majority, arms, minutes };
  });
  // Comparable averages: over the tasks that every arm with any result so far has finished (all arms, once the run is complete).
  const started = settings.arms.filter((arm) => tasks.some((t) => t.arms[arm] !== null));
  const common = tasks.filter((t) => started.length > 0 && started.every((a) => t.arms[a] !== null)).map((t) => t.task);
  const average = Object.fromEntries(
    settings.arms.map((arm) => [arm, !started.includes(arm) || common.length === 0 ? null : common.reduce((sum, task) => sum + tasks.find((t) => t.task === task)!.arms[arm]!.mean, 0) / common.length]),
  );
  const total = totalUnits(settings);
  return {
    date: new Date().toISOString(),
    complete: finished.length === total,
    units: { done: finished.length, total, finished: finished.map(unitName) },
    settings,
    arms: Object.fromEntries(settings.arms.map((a) => [a, ARMS[a]])),
    tasks,
    average: { tasks: common, arms: average },
    stages: finished.filter((u) => u.stage !== 'finetune').map((u) => ({ arm: u.arm, stage: u.stage, seconds: u.seconds, attempts: u.attempts, result: u.result })),
  };
}

export function markdownTable(r: RecipeResults): string {
  const arms = Object.keys(r.arms);
  const cell = (f: ArmFigures | null) => (f === null ? '–' : Object.keys(f.seeds).length > 1 ? `${pct(f.mean)} (${pct(f.min)}–${pct(f.max)})` : pct(f.mean));
  const lines = [
    `| task | majority class | ${arms.map((a) => `(${a}) ${r.arms[a]}`).join(' | ')} |`,
    `|---|---|${arms.map(() => '---').join('|')}|`,
    ...r.tasks.map((t) => `| ${t.task} | ${pct(t.majority)} | ${arms.map((a) => cell(t.arms[a]!)).join(' | ')} |`),
    `| **average** (${r.average.tasks.length} tasks) | ${pct(avgMajority(r))} | ${arms.map((a) => `**${pct(r.average.arms[a])}**`).join(' | ')} |`,
  ];
  return lines.join('\n');
}

function avgMajority(r: RecipeResults): number | null {
  const values = r.average.tasks.map((task) => r.tasks.find((t) => t.task === task)!.majority);
  if (values.length === 0 || values.some((v) => v === null)) return null;
  return (values as number[]).reduce((x, y) => x + y, 0) / values.length;
}

/** The lines of a Markdown file between which --readme puts the results. */
export const README_MARKERS = ['<!-- recipe-results -->', '<!-- /recipe-results -->'] as const;

/** The results as the README shows them: how far the run is, the table, each stage's own figures. */
export function readmeResults(r: RecipeResults): string {
  const when = `${r.date.slice(0, 16).replace('T', ' ')} UTC`;
  const state = r.complete ? `**Results** (${r.units.total} units, complete; ${when})` : `**Results so far: ${r.units.done} of ${r.units.total} units** (the run goes on; refreshed ${when})`;
  const stages = r.stages.map((s) => {
    const result = s.result as { steps?: number; lastEval?: { accuracy?: number } } | null;
    const mlm = result?.lastEval?.accuracy === undefined ? '' : `, held-out masked-token accuracy ${pct(result.lastEval.accuracy)}%`;
    return `${s.stage} (${s.arm}): ${result?.steps ?? '?'} steps in ${((s.seconds ?? 0) / 60).toFixed(1)} min${mlm}`;
  });
  return [
    `${state}. Test accuracy (%), the mean over seeds with min–max where there are several:`,
    '',
    markdownTable(r),
    '',
    stages.length > 0 ? `Stages: ${stages.join('; ')}.` : '',
  ].join('\n');
}

/** `text` with what lies between README_MARKERS replaced by `inner`; an error naming `file` when a marker is missing. */
export function replaceBetweenMarkers(text: string, inner: string, file: string): string {
  const [open, close] = README_MARKERS;
  const start = text.indexOf(open);
  const end = text.indexOf(close, start);
  if (start < 0 || end < 0) throw new Error(`${file}: no ${open} … ${close} lines to put the results between`);
  return `${text.slice(0, start + open.length)}\n${inner}\n${text.slice(end)}`;
}

const COLORS: Record<string, string> = { a: '#7f7f7f', b: '#1f77b4', c: '#2ca02c', d: '#ff7f0e' };

export function chartSvg(r: RecipeResults): string {
  const groups = [...r.tasks.map((t) => t.task), 'average'];
  const arms = Object.keys(r.arms);
  const percent = (x: number | null | undefined) => (x === null || x === undefined ? undefined : 100 * x);
  return groupedBarsSvg({
    title: `FewCLUE test accuracy (%) by start${r.complete ? '' : ` — partial: ${r.units.done} of ${r.units.total} units`}`,
    yLabel: 'test accuracy (%), whiskers: min–max over seeds',
    groups,
    width: 1100,
    format: (v) => v.toFixed(0),
    series: [
      { label: 'majority class', color: '#d9d9d9', values: [...r.tasks.map((t) => percent(t.majority)), percent(avgMajority(r))] },
      ...arms.map((a) => ({
        label: `(${a}) ${r.arms[a]}`,
        color: COLORS[a]!,
        values: [...r.tasks.map((t) => percent(t.arms[a]?.mean)), percent(r.average.arms[a])],
        ranges: [...r.tasks.map((t) => { const f = t.arms[a]; return f && Object.keys(f.seeds).length > 1 ? ([100 * f.min, 100 * f.max] as [number, number]) : undefined; }), undefined],
      })),
    ],
  });
}

async function writeReport(settings: RecipeSettings, units: Array<UnitRecord<UnitResult>>, out: string, copies: { json?: string; svg?: string }): Promise<RecipeResults> {
  const results = summarise(settings, units);
  const json = join(out, 'results.json');
  const svg = join(out, 'chart.svg');
  // atomically: `--status` may write them while a run does
  await writeFileAtomic(json, [JSON.stringify(results, null, 2) + '\n']);
  await writeFileAtomic(svg, [chartSvg(results)]);
  for (const [from, to] of [[json, copies.json], [svg, copies.svg]] as const) {
    if (!to) continue;
    await mkdir(dirname(resolve(to)), { recursive: true });
    await copyFile(from, to);
  }
  return results;
}

async function main(): Promise<void> {
  const { settings, out, json, svg, readme, status } = parseSettings(process.argv);
  await mkdir(out, { recursive: true });
  if (!status) {
    // Ctrl-C / kill: the current stage stops after its step with a checkpoint; running again resumes.
    const abort = new AbortController();
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => abort.abort());
    await runRecipe(settings, out, { json, svg }, abort.signal);
  }
  const results = await writeReport(settings, Ledger.open<RecipeSettings, UnitResult>(out, settings, UNIT_SELECTION).units, out, { json, svg });
  if (readme) await writeFileAtomic(readme, [replaceBetweenMarkers(await readFile(readme, 'utf8'), readmeResults(results), readme)]);
  console.log(`\n${markdownTable(results)}\n\n${results.units.done} of ${results.units.total} units; results ${join(out, 'results.json')}, chart ${join(out, 'chart.svg')}`);
}

if (existsSync(process.argv[1] ?? '') && resolve(process.argv[1]!).endsWith(join('bench', 'fewclue-recipe.js'))) {
  main().catch((error: unknown) => {
    console.error(`fewclue-recipe: ${(error as Error).message}`);
    process.exit(1);
  });
}

// FewCLUE for the benchmarks (fewclue.ts, fewclue-recipe.ts): the nine tasks, their
// files in ../shared/data/fewclue, the fine-tuning config both benchmarks run, and
// the headline figure of a result.

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import type { RoFormerV2Config } from '../lib/model/config.js';
import { FINETUNE_DEFAULTS, type FinetuneConfig, type Metrics } from '../lib/tasks/finetune.js';

export const FEWCLUE_TASKS = ['eprstmt', 'tnews', 'csldcp', 'iflytek', 'bustm', 'ocnli', 'csl', 'cluewsc', 'chid'];

/** The tasks whose FewCLUE folder has FewCLUE's unlabeled text (for MLM pre-training). */
export const FEWCLUE_UNLABELED_TASKS = ['bustm', 'chid', 'eprstmt', 'tnews'];

/** The JSONL fields holding text in those unlabeled files (tnews's `keywords` left out: a list, not prose). */
export const FEWCLUE_TEXT_FIELDS = 'sentence,sentence1,sentence2,content';

/** A file of a task's folder, which must exist. */
export function fewclueFile(data: string, task: string, name: string): string {
  const path = join(resolve(data, task), name);
  if (!existsSync(path)) throw new Error(`${path} does not exist`);
  return path;
}

/** The few-shot training set, dev, and the public test set. */
export function fewclueFiles(data: string, task: string): { train: string; dev: string; test: string } {
  return { train: fewclueFile(data, task, 'train_few_all.json'), dev: fewclueFile(data, task, 'dev_few_all.json'), test: fewclueFile(data, task, 'test_public.json') };
}

/** What both benchmarks vary in a FewCLUE fine-tuning run. */
export interface FewclueFinetuneSettings {
  data: string;
  /** Start from this model dir; absent: a fresh model of `modelConfig`. */
  model?: string;
  modelConfig: Partial<RoFormerV2Config>;
  epochs: number;
  maxSteps: number;
  lr: number;
  /** 0: the task's default. */
  maxLength: number;
  seed?: number;
  /** Evaluate on dev every n steps (0: once per epoch). */
  evalEvery?: number;
}

export function fewclueFinetuneConfig(task: string, out: string, s: FewclueFinetuneSettings): FinetuneConfig {
  return {
    ...FINETUNE_DEFAULTS,
    task,
    ...fewclueFiles(s.data, task),
    model: s.model,
    modelConfig: s.modelConfig,
    out,
    epochs: s.epochs,
    maxSteps: s.maxSteps,
    lr: s.lr,
    maxLength: s.maxLength || undefined,
    ...(s.seed === undefined ? {} : { seed: s.seed }),
    ...(s.evalEvery === undefined ? {} : { evalEvery: s.evalEvery }),
  };
}

/** A result's headline figure: accuracy (every FewCLUE task), else F1 or exact match. */
export const headline = (m: Metrics | null | undefined): number => (m ? (m.accuracy ?? m.f1 ?? m.em ?? NaN) : NaN);

/** A share as a percentage with one decimal; '–' when there is none. */
export const pct = (x: number | null | undefined): string => (x === null || x === undefined || Number.isNaN(x) ? '–' : (100 * x).toFixed(1));

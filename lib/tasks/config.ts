// The settings of the supervised stages: fine-tuning one task (finetune.ts) and
// multi-task training (multitask.ts). Their defaults and limits live here, once:
// the stages check a config against them at their entry, the CLI parses its flags
// with the same kinds and writes its help text from the same defaults.

import type { Device, GradientNormalization } from '../../bindings/native.js';
import type { ModelSize } from '../model/config.js';
import { checkEncoderConfigOverrides, type EncoderConfig } from '../model/encoder-config.js';
import { OPTIMIZERS, TRAINING_DEFAULTS, TRAINING_KINDS, type Optimizer, type Precision } from '../training/defaults.js';
import { boolean, checkSettings, existingFile, fieldList, fraction, nonNegativeInteger, oneOf, positiveNumber, text, type ValueKind } from '../util/value-kinds.js';
import type { JsonlTaskSpec, Task, TaskSpec } from './registry.js';

/** What both supervised stages share. */
interface SupervisedSettings {
  /** Model dir / checkpoint / run dir to start from; absent: a fresh model. */
  model?: string;
  out: string;
  /** Fresh model only. */
  size: ModelSize;
  /** Fresh model only: config keys overriding the size. */
  modelConfig?: Partial<EncoderConfig>;
  /** Fresh model only: tokens in the vocab built from the training files. */
  vocabSize: number;
  batchSize: number;
  lr: number;
  optimizer: Optimizer;
  /** The authors' light input noise on the training inputs. */
  noise: boolean;
  seed: number;
  device: Device;
  precision: Precision;
}

export interface FinetuneConfig extends SupervisedSettings {
  /** A task name from the registry (tnews, cluener, …), a task spec, or a JSONL spec (labels from `train`). */
  task: string | Task | TaskSpec | JsonlTaskSpec;
  train: string;
  dev?: string;
  test?: string;
  epochs: number;
  /** Stop after this many updates even if the epochs are not done (0: no cap). */
  maxSteps: number;
  /** Share of the steps spent warming the learning rate up (then constant). */
  warmupFraction: number;
  /** Tokens per sequence; default: the task's (128 for most). */
  maxLength?: number;
  /** Evaluate on dev every n steps (0: once per epoch). */
  evalEvery: number;
  /** Checkpoint every n steps (0: once per epoch). */
  saveEvery: number;
}

export interface MultitaskConfig extends SupervisedSettings {
  /** The task list (tasks.json). */
  tasks: string;
  steps: number;
  /** Micro-batches (each one task) per optimiser step. */
  accumulate: number;
  warmupSteps: number;
  gradientNormalization: GradientNormalization;
  /** The MLM entry's JSONL field holding the text (its own "field" in tasks.json overrides it). */
  field: string;
  evalEvery: number;
  saveEvery: number;
}

const SUPERVISED_DEFAULTS = { ...TRAINING_DEFAULTS, vocabSize: 8000, optimizer: 'adafactor' as Optimizer };

/** The authors' CLUE recipe: Adafactor, lr 5e-4, batch 32, 10 epochs; length: the task's. */
export const FINETUNE_DEFAULTS: Omit<FinetuneConfig, 'task' | 'train' | 'out'> = {
  ...SUPERVISED_DEFAULTS,
  epochs: 10,
  maxSteps: 0,
  warmupFraction: 0.06,
  evalEvery: 0,
  saveEvery: 0,
  noise: false,
};

export const MULTITASK_DEFAULTS: Omit<MultitaskConfig, 'tasks' | 'out'> = {
  ...SUPERVISED_DEFAULTS,
  steps: 1000,
  accumulate: 4,
  warmupSteps: 50,
  gradientNormalization: 'unit',
  field: 'text',
  noise: true,
  evalEvery: 100,
  saveEvery: 200,
};

/** Examples per forward pass when evaluating or predicting (no gradients: larger than a training batch). */
export const EVAL_BATCH_SIZE = 64;

type Kinds<C> = { readonly [K in keyof C]?: ValueKind<unknown> };

const SUPERVISED_KINDS = {
  ...TRAINING_KINDS,
  model: text,
  out: text,
  optimizer: oneOf(OPTIMIZERS, SUPERVISED_DEFAULTS.optimizer),
  noise: boolean,
};

export const FINETUNE_KINDS: Kinds<FinetuneConfig> = {
  ...SUPERVISED_KINDS,
  train: existingFile,
  dev: existingFile,
  test: existingFile,
  epochs: positiveNumber,
  maxSteps: nonNegativeInteger,
  warmupFraction: fraction,
};

export const MULTITASK_KINDS: Kinds<MultitaskConfig> = {
  ...SUPERVISED_KINDS,
  tasks: existingFile,
  gradientNormalization: oneOf(['none', 'unit', 'pareto'] as const),
  field: fieldList,
};

/**
 * Checks a config at a stage's entry. `name` turns a key into what the user wrote
 * (the CLI: its flag; a program: the key itself).
 */
function checkSupervised<C extends SupervisedSettings>(config: C, kinds: Kinds<C>, name: (key: string) => string): C {
  checkSettings(config, kinds, name);
  if (config.modelConfig !== undefined) checkEncoderConfigOverrides(config.modelConfig, config.size, name('modelConfig'));
  return config;
}

export const checkFinetuneConfig = (config: FinetuneConfig, name: (key: string) => string = (k) => k) => checkSupervised(config, FINETUNE_KINDS, name);
export const checkMultitaskConfig = (config: MultitaskConfig, name: (key: string) => string = (k) => k) => checkSupervised(config, MULTITASK_KINDS, name);

// The settings every training stage shares, their defaults and their kinds: one owner
// for each (pre-training, fine-tuning and multi-task training spread these into their
// own defaults; the CLI's help text is written from them).

import type { Device } from '../../bindings/native.js';
import { SPECIAL_TOKENS } from '../data/tokenizer.js';
import { MIN_SEQUENCE_LENGTH } from '../data/sequence-length.js';
import { MODEL_SIZES, type ModelSize } from '../model/config.js';
import { integerAtLeast, nonNegativeInteger, oneOf, positiveInteger, positiveNumber, text, type ValueKind } from '../util/value-kinds.js';

export type Optimizer = 'adamw' | 'lamb' | 'adafactor';
export type Precision = 'fp32' | 'bf16' | 'fp16';

export const OPTIMIZERS: readonly Optimizer[] = ['adamw', 'lamb', 'adafactor'];
export const PRECISIONS: readonly Precision[] = ['fp32', 'bf16', 'fp16'];

/** The defaults shared by every stage (the authors' recipes: lr 5e-4, batch 32). */
export const TRAINING_DEFAULTS: { size: ModelSize; lr: number; batchSize: number; seed: number; device: Device; precision: Precision } = {
  size: 'small',
  lr: 5e-4,
  batchSize: 32,
  seed: 0,
  device: 'cpu',
  precision: 'fp32',
};

/** The limits of the settings the stages share (the optimizer's kind is each stage's: oneOf(OPTIMIZERS, its default)),, checked at each stage's entry and by the CLI's flag parsers. */
export const TRAINING_KINDS = {
  size: oneOf(Object.keys(MODEL_SIZES) as ModelSize[]),
  // A vocab holds at least the special tokens.
  vocabSize: integerAtLeast(SPECIAL_TOKENS.length),
  maxLength: integerAtLeast(MIN_SEQUENCE_LENGTH),
  batchSize: positiveInteger,
  accumulate: positiveInteger,
  steps: positiveInteger,
  lr: positiveNumber,
  warmupSteps: nonNegativeInteger,
  evalEvery: nonNegativeInteger,
  saveEvery: nonNegativeInteger,
  seed: nonNegativeInteger,
  device: text,
  precision: oneOf(PRECISIONS),
} satisfies Record<string, ValueKind<unknown>>;

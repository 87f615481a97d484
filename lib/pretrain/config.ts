// The settings of an MLM pre-training run: defaults, a config file (JSON) and
// command-line flags merged over it, and validation that names the bad key.

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

import type { ModelSize } from '../model/config.js';
import { checkEncoderConfigOverrides, type EncoderConfig } from '../model/encoder-config.js';
import { OPTIMIZERS, TRAINING_DEFAULTS, TRAINING_KINDS, type Optimizer, type Precision } from '../training/defaults.js';
import {
  boolean,
  checkSettings,
  fieldList,
  heldOutFraction,
  nonNegativeInteger,
  nonNegativeNumber,
  oneOf,
  onOffOrDefault,
  positiveInteger,
  probability,
  SettingError,
  text,
  type ValueKind,
} from '../util/value-kinds.js';

const paths: ValueKind<string[]> = {
  description: 'an array of paths',
  accepts: (v): v is string[] => Array.isArray(v) && v.every((p) => typeof p === 'string'),
  fromText: (t) => [t],
};
const pathOrNull: ValueKind<string | null> = {
  description: 'a path or null',
  accepts: (v): v is string | null => v === null || (typeof v === 'string' && v !== ''),
  fromText: (t) => t,
};
const booleanOrNull: ValueKind<boolean | null> = {
  description: 'true, false or null (decide from the corpus)',
  accepts: (v): v is boolean | null => v === null || typeof v === 'boolean',
  fromText: (t) => (t === 'true' ? true : t === 'false' ? false : t),
};
const probabilityOrNull: ValueKind<number | null> = {
  description: 'a number between 0 and 1 (exclusive), or null (the training rate)',
  accepts: (v): v is number | null => v === null || probability.accepts(v),
  fromText: (t) => (t === 'null' ? null : probability.fromText(t)),
};
const object: ValueKind<object> = {
  description: 'an object',
  accepts: (v): v is object => typeof v === 'object' && v !== null && !Array.isArray(v),
  fromText: (t) => t,
};

export interface PretrainConfig {
  /** Corpus files or directories (plain text or JSONL). Empty with `demo`: the built-in poetry corpus. */
  corpus: string[];
  format: 'auto' | 'text' | 'jsonl';
  /**
   * JSONL: the field holding the text, or several separated by commas
   * ('sentence,sentence1,sentence2,content'): a record's present fields, joined
   * by a line break in this order, are one document (see lib/data/corpus.ts).
   */
  field: string;
  /** Plain text: one document per line, or blank-line separated. */
  documents: 'line' | 'blank-line';
  /** The run directory: checkpoints, metrics.jsonl, report.svg, vocab.txt. */
  out: string;
  size: ModelSize;
  /** Overrides of single model config keys (Hugging Face names), e.g. { "num_hidden_layers": 4 }; { "model_type": "gau_alpha" } trains GAU-α. */
  model: Partial<EncoderConfig>;
  /** A vocab.txt to use; when absent one of `vocabSize` tokens is built from the corpus. */
  vocab: string | null;
  vocabSize: number;
  maxLength: number;
  /**
   * Several documents per row (RoPE positions and attention kept to each document):
   * true, false, or null to decide (on CUDA, packing when the median document is under half
   * of maxLength; on the CPU, where it measured slower, one document per row).
   */
  pack: boolean | null;
  batchSize: number;
  /** Micro-batches per optimiser step (gradient accumulation). */
  accumulate: number;
  steps: number;
  optimizer: Optimizer;
  lr: number;
  warmupSteps: number;
  finalLr: number;
  weightDecay: number;
  maxGradNorm: number;
  /** Residual α warm-up length (0: α = 1 from the start). */
  alphaWarmupSteps: number;
  precision: Precision;
  device: string;
  /**
   * CUDA graphs of the training step (native/cuda_graph_step.h): true, false, or null for
   * the trainer's default (on for CUDA). On, batch lengths round up to a few buckets
   * (lib/data/length-buckets.ts) so that a run replays a handful of graphs.
   */
  cudaGraphs: boolean | null;
  masking: 'token' | 'whole-word';
  maskProbability: number;
  /**
   * The masking rate of the held-out batches (null: maskProbability). The reported
   * accuracy is comparable across runs only at one rate: the demo trains at a higher rate
   * (more targets per step) and reports BERT's 15%.
   */
  evalMaskProbability: number | null;
  evalEvery: number;
  evalBatches: number;
  evalFraction: number;
  saveEvery: number;
  keepLast: number;
  logEvery: number;
  seed: number;
  /** The built-in demo: the chinese-poetry corpus and demo-sized defaults. */
  demo: boolean;
}

export const PRETRAIN_DEFAULTS: PretrainConfig = {
  ...TRAINING_DEFAULTS,
  corpus: [],
  format: 'auto',
  field: 'text',
  documents: 'line',
  out: 'runs/pretrain',
  model: {},
  vocab: null,
  vocabSize: 12000,
  maxLength: 128,
  pack: null,
  accumulate: 1,
  steps: 1000,
  optimizer: 'adamw',
  warmupSteps: 100,
  finalLr: 0,
  weightDecay: 0.01,
  maxGradNorm: 1,
  alphaWarmupSteps: 0,
  cudaGraphs: null,
  masking: 'token',
  maskProbability: 0.15,
  evalMaskProbability: null,
  evalEvery: 100,
  evalBatches: 10,
  evalFraction: 0.01,
  saveEvery: 500,
  keepLast: 2,
  logEvery: 10,
  demo: false,
};

/**
 * The built-in demo: a 2-layer, 256-wide RoFormerV2 (feed-forward 512) on lines of Song
 * ci and Yuan qu from the chinese-poetry package (lib/data/demo-corpus.ts), sized so that
 * a 2-core CPU with bf16 instructions gets past 30% held-out accuracy in 3 minutes: short
 * lines (≤ 32 tokens) in large batches (256: ~20% more lines per second than 128 on such a
 * CPU), a shallow model, a high learning rate, bf16 where
 * the CPU computes it natively (demoPrecision). BERT's token masking, at 30% of the
 * characters in training (twice the targets per step for little more compute) and at
 * BERT's 15% for the held-out figure, stated here because the figure depends on it. No
 * dropout: 1,000 steps of 256 lines see the corpus's 171k training lines about 1.5
 * times, far from over-fitting, and dropout then only slows learning (and each step).
 * The variants measured against these settings: README, "Quick start".
 */
export const DEMO_OVERRIDES: Partial<PretrainConfig> = {
  out: 'runs/demo',
  model: { num_hidden_layers: 2, hidden_size: 256, num_attention_heads: 4, intermediate_size: 512, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 },
  vocabSize: 8000,
  maxLength: 32,
  batchSize: 256,
  steps: 1000,
  lr: 3e-3,
  warmupSteps: 50,
  masking: 'token',
  maskProbability: 0.3,
  evalMaskProbability: 0.15,
  evalEvery: 100,
  evalBatches: 4,
  evalFraction: 0.02,
  saveEvery: 500,
  logEvery: 10,
};

/**
 * The demo's precision: bf16 where the CPU has bf16 instructions (AVX512-BF16 or AMX on
 * x86 Linux: about 2× fp32's speed on this project's machine), fp32 elsewhere — emulated
 * bf16 would be slower than fp32, and the demo then takes longer, not worse.
 */
export function demoPrecision(cpuinfo = readCpuinfo()): Precision {
  return /\b(avx512_bf16|amx_bf16)\b/.test(cpuinfo) ? 'bf16' : 'fp32';
}
function readCpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return ''; // not Linux: fp32
  }
}

export class PretrainConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PretrainConfigError';
  }
}

/** Each key's kind: the one set of limits for the config file, the flags and pretrain()'s own check. */
export const PRETRAIN_KINDS: Record<keyof PretrainConfig, ValueKind<unknown>> = {
  ...TRAINING_KINDS,
  corpus: paths,
  format: oneOf(['auto', 'text', 'jsonl'] as const),
  field: fieldList,
  documents: oneOf(['line', 'blank-line'] as const),
  out: text,
  model: object,
  vocab: pathOrNull,
  pack: booleanOrNull,
  optimizer: oneOf(OPTIMIZERS, 'adamw'),
  finalLr: nonNegativeNumber,
  weightDecay: nonNegativeNumber,
  maxGradNorm: nonNegativeNumber,
  alphaWarmupSteps: nonNegativeInteger,
  cudaGraphs: onOffOrDefault,
  masking: oneOf(['token', 'whole-word'] as const),
  maskProbability: probability,
  evalMaskProbability: probabilityOrNull,
  evalBatches: nonNegativeInteger,
  evalFraction: heldOutFraction,
  keepLast: nonNegativeInteger,
  logEvery: positiveInteger,
  demo: boolean,
};

/** Edit distance, for "did you mean" on unknown keys. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}

/** Checks a partial config (from a file or flags): unknown keys and bad values are errors naming them. */
export function validatePretrainConfig(raw: unknown, source: string): Partial<PretrainConfig> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new PretrainConfigError(`${source}: must be a JSON object`);
  }
  const known = Object.keys(PRETRAIN_KINDS);
  for (const key of Object.keys(raw)) {
    if (!(key in PRETRAIN_KINDS)) {
      const suggestion = known.map((k) => [k, distance(key, k)] as const).sort((a, b) => a[1] - b[1])[0]!;
      const hint = suggestion[1] <= 3 ? ` (did you mean '${suggestion[0]}'?)` : '';
      throw new PretrainConfigError(`${source}: unknown option '${key}'${hint}`);
    }
  }
  try {
    return checkSettings(raw as Partial<PretrainConfig>, PRETRAIN_KINDS, (key) => `${source}: ${key}`);
  } catch (error) {
    throw error instanceof SettingError ? new PretrainConfigError(error.message) : error;
  }
}

/** Defaults ← demo defaults (with --demo) ← config file ← flags, checked as a whole. */
export async function resolvePretrainConfig(options: { file?: string; flags?: Partial<PretrainConfig> }): Promise<PretrainConfig> {
  let fromFile: Partial<PretrainConfig> = {};
  if (options.file) {
    let text: string;
    try {
      text = await readFile(options.file, 'utf8');
    } catch (error) {
      throw new PretrainConfigError(`${options.file}: cannot read the config file (${(error as Error).message})`);
    }
    try {
      fromFile = validatePretrainConfig(JSON.parse(text), options.file);
    } catch (error) {
      if (error instanceof PretrainConfigError) throw error;
      throw new PretrainConfigError(`${options.file}: invalid JSON (${(error as Error).message})`);
    }
  }
  const flags = validatePretrainConfig(options.flags ?? {}, 'command line');
  const demo = flags.demo ?? fromFile.demo ?? false;
  const demoDefaults = demo ? { ...DEMO_OVERRIDES, precision: demoPrecision() } : {};
  // The flags' model keys (--arch, --attention-normalization) add to the file's rather than replace them.
  const model = fromFile.model && flags.model ? ({ ...fromFile.model, ...flags.model } as Partial<EncoderConfig>) : undefined;
  return checkPretrainConfig({ ...PRETRAIN_DEFAULTS, ...demoDefaults, ...fromFile, ...flags, ...(model ? { model } : {}), demo });
}

/** A whole config, checked (pretrain() does this at its entry; resolvePretrainConfig() too). */
export function checkPretrainConfig(config: PretrainConfig, source = 'config'): PretrainConfig {
  validatePretrainConfig(config, source);
  if (config.corpus.length === 0 && !config.demo) {
    throw new PretrainConfigError('no corpus: pass --corpus <files or dirs> (or --demo for the built-in poetry corpus)');
  }
  // The trainer would refuse too, but only once the vocab is built: said here, before any work.
  if (config.cudaGraphs === true && !config.device.startsWith('cuda')) {
    throw new PretrainConfigError(`${source}: cudaGraphs (--cuda-graphs) is on, but the device is ${config.device}: CUDA graphs need a CUDA device`);
  }
  try {
    checkEncoderConfigOverrides(config.model, config.size, `${source}: model`);
  } catch (error) {
    throw new PretrainConfigError((error as Error).message);
  }
  return config;
}

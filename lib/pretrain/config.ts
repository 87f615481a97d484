// The settings of an MLM pre-training run: defaults, a config file (JSON) and
// command-line flags merged over it, and validation that names the bad key.

import { readFile } from 'node:fs/promises';

import type { ModelSize, RoFormerV2Config } from '../model/config.js';
import { MODEL_SIZES } from '../model/config.js';

export interface PretrainConfig {
  /** Corpus files or directories (plain text or JSONL). Empty with `demo`: the built-in poetry corpus. */
  corpus: string[];
  format: 'auto' | 'text' | 'jsonl';
  /** JSONL: the field holding the text. */
  field: string;
  /** Plain text: one document per line, or blank-line separated. */
  documents: 'line' | 'blank-line';
  /** The run directory: checkpoints, metrics.jsonl, report.svg, vocab.txt. */
  out: string;
  size: ModelSize;
  /** Overrides of single model config keys (Hugging Face names), e.g. { "num_hidden_layers": 4 }. */
  model: Partial<RoFormerV2Config>;
  /** A vocab.txt to use; when absent one of `vocabSize` tokens is built from the corpus. */
  vocab: string | null;
  vocabSize: number;
  maxLength: number;
  batchSize: number;
  /** Micro-batches per optimiser step (gradient accumulation). */
  accumulate: number;
  steps: number;
  optimizer: 'adamw' | 'lamb' | 'adafactor';
  lr: number;
  warmupSteps: number;
  finalLr: number;
  weightDecay: number;
  maxGradNorm: number;
  /** Residual α warm-up length (0: α = 1 from the start). */
  alphaWarmupSteps: number;
  precision: 'fp32' | 'bf16' | 'fp16';
  device: string;
  masking: 'token' | 'whole-word';
  maskProbability: number;
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
  corpus: [],
  format: 'auto',
  field: 'text',
  documents: 'line',
  out: 'runs/pretrain',
  size: 'small',
  model: {},
  vocab: null,
  vocabSize: 12000,
  maxLength: 128,
  batchSize: 32,
  accumulate: 1,
  steps: 1000,
  optimizer: 'adamw',
  lr: 5e-4,
  warmupSteps: 100,
  finalLr: 0,
  weightDecay: 0.01,
  maxGradNorm: 1,
  alphaWarmupSteps: 0,
  precision: 'fp32',
  device: 'cpu',
  masking: 'token',
  maskProbability: 0.15,
  evalEvery: 100,
  evalBatches: 10,
  evalFraction: 0.01,
  saveEvery: 500,
  keepLast: 2,
  logEvery: 10,
  seed: 0,
  demo: false,
};

/**
 * The built-in demo: a 4-layer, 256-wide RoFormerV2 on Song ci from the
 * chinese-poetry package, sized to show the loss falling on a 2-core CPU in a
 * few minutes.
 */
export const DEMO_OVERRIDES: Partial<PretrainConfig> = {
  out: 'runs/demo',
  model: { num_hidden_layers: 4, hidden_size: 256, num_attention_heads: 4, intermediate_size: 1024 },
  vocabSize: 8000,
  maxLength: 64,
  batchSize: 32,
  steps: 400,
  lr: 1e-3,
  warmupSteps: 40,
  evalEvery: 50,
  evalBatches: 8,
  evalFraction: 0.02,
  saveEvery: 100,
  logEvery: 10,
};

export class PretrainConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PretrainConfigError';
  }
}

type Kind = 'string' | 'number' | 'integer' | 'boolean' | 'string[]' | 'object' | 'string|null' | readonly string[];

const KINDS: Record<keyof PretrainConfig, Kind> = {
  corpus: 'string[]',
  format: ['auto', 'text', 'jsonl'],
  field: 'string',
  documents: ['line', 'blank-line'],
  out: 'string',
  size: Object.keys(MODEL_SIZES),
  model: 'object',
  vocab: 'string|null',
  vocabSize: 'integer',
  maxLength: 'integer',
  batchSize: 'integer',
  accumulate: 'integer',
  steps: 'integer',
  optimizer: ['adamw', 'lamb', 'adafactor'],
  lr: 'number',
  warmupSteps: 'integer',
  finalLr: 'number',
  weightDecay: 'number',
  maxGradNorm: 'number',
  alphaWarmupSteps: 'integer',
  precision: ['fp32', 'bf16', 'fp16'],
  device: 'string',
  masking: ['token', 'whole-word'],
  maskProbability: 'number',
  evalEvery: 'integer',
  evalBatches: 'integer',
  evalFraction: 'number',
  saveEvery: 'integer',
  keepLast: 'integer',
  logEvery: 'integer',
  seed: 'integer',
  demo: 'boolean',
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

function checkValue(key: keyof PretrainConfig, value: unknown, source: string): void {
  const kind = KINDS[key];
  const fail = (expected: string): never => {
    throw new PretrainConfigError(`${source}: ${key} must be ${expected}, got ${JSON.stringify(value)}`);
  };
  if (Array.isArray(kind)) {
    if (!kind.includes(value as string)) fail(`one of ${kind.join(', ')}`);
  } else if (kind === 'string') {
    if (typeof value !== 'string' || value === '') fail('a non-empty string');
  } else if (kind === 'string|null') {
    if (value !== null && (typeof value !== 'string' || value === '')) fail('a path or null');
  } else if (kind === 'number') {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) fail('a non-negative number');
  } else if (kind === 'integer') {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) fail('a non-negative integer');
  } else if (kind === 'boolean') {
    if (typeof value !== 'boolean') fail('true or false');
  } else if (kind === 'string[]') {
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) fail('an array of paths');
  } else if (kind === 'object') {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('an object');
  }
}

/** Checks a partial config (from a file or flags): unknown keys and bad values are errors naming them. */
export function validatePretrainConfig(raw: unknown, source: string): Partial<PretrainConfig> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new PretrainConfigError(`${source}: must be a JSON object`);
  }
  const known = Object.keys(KINDS);
  for (const [key, value] of Object.entries(raw)) {
    if (!(key in KINDS)) {
      const suggestion = known.map((k) => [k, distance(key, k)] as const).sort((a, b) => a[1] - b[1])[0]!;
      const hint = suggestion[1] <= 3 ? ` (did you mean '${suggestion[0]}'?)` : '';
      throw new PretrainConfigError(`${source}: unknown option '${key}'${hint}`);
    }
    checkValue(key as keyof PretrainConfig, value, source);
  }
  return raw as Partial<PretrainConfig>;
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
  const config: PretrainConfig = { ...PRETRAIN_DEFAULTS, ...(demo ? DEMO_OVERRIDES : {}), ...fromFile, ...flags, demo };
  if (config.corpus.length === 0 && !config.demo) {
    throw new PretrainConfigError('no corpus: pass --corpus <files or dirs> (or --demo for the built-in poetry corpus)');
  }
  if (config.maxLength < 3) throw new PretrainConfigError('maxLength must be at least 3');
  for (const key of ['batchSize', 'accumulate', 'steps', 'vocabSize'] as const) {
    if (config[key] < 1) throw new PretrainConfigError(`${key} must be at least 1`);
  }
  if (config.maskProbability <= 0 || config.maskProbability >= 1) throw new PretrainConfigError('maskProbability must be in (0, 1)');
  if (config.evalFraction >= 1) throw new PretrainConfigError('evalFraction must be below 1');
  return config;
}

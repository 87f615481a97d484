// The model configuration: Hugging Face config.json keys, the named sizes of the
// spec's table, and validation with messages that name the file and the key.

import type { NativeModelConfig } from '../../bindings/native.js';

export type ModelSize = 'small' | 'base' | 'large';

/**
 * How attention weights are normalised (config.json `normalization`, both architectures):
 * softmax; softmax_plus, softmax(a · log n / log 512) with n the real tokens of the row,
 * which keeps attention as sharp past the trained length; squared_relu, relu(a)² / n.
 */
export type AttentionNormalization = 'softmax' | 'softmax_plus' | 'squared_relu';
export const ATTENTION_NORMALIZATIONS: readonly AttentionNormalization[] = ['softmax', 'softmax_plus', 'squared_relu'];

/** Where RoFormerV2's blocks normalise: after each residual sum (as released) or before each sublayer. */
export type NormPosition = 'post' | 'pre';
export const NORM_POSITIONS: readonly NormPosition[] = ['post', 'pre'];

/** A RoFormerV2 config.json, as the released Hugging Face model dirs write it. */
export interface RoFormerV2Config extends NativeModelConfig {
  model_type: 'roformer';
  /**
   * The residual scale α the weights were trained with (RoFormerV2's warm-up from 0
   * to 1). Saved so a checkpoint taken mid-warm-up loads as the same function.
   */
  residual_scale: number;
  hidden_act: 'relu';
  norm_type: 'rms_norm';
  use_bias: false;
  normalization: AttentionNormalization;
  norm_position: NormPosition;
}

/** The spec's table (§1): head size 64 throughout, ReLU FFN, vocab 12000, 2 segment types. */
export const MODEL_SIZES: Record<ModelSize, Pick<RoFormerV2Config, 'num_hidden_layers' | 'hidden_size' | 'num_attention_heads' | 'intermediate_size'>> = {
  small: { num_hidden_layers: 6, hidden_size: 384, num_attention_heads: 6, intermediate_size: 1536 },
  base: { num_hidden_layers: 12, hidden_size: 768, num_attention_heads: 12, intermediate_size: 3072 },
  large: { num_hidden_layers: 24, hidden_size: 1024, num_attention_heads: 16, intermediate_size: 4096 },
};

/** The defaults RoFormerV2 and GAU-α share (the released models' values). */
export const SHARED_DEFAULTS = {
  vocab_size: 12000,
  type_vocab_size: 2,
  max_position_embeddings: 512,
  pad_token_id: 0,
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  layer_norm_eps: 1e-12,
  rope_theta: 10000,
  rope_interpolation_factor: 1,
  residual_scale: 1,
};

const DEFAULTS: RoFormerV2Config = {
  model_type: 'roformer',
  ...SHARED_DEFAULTS,
  ...MODEL_SIZES.base,
  hidden_act: 'relu',
  norm_type: 'rms_norm',
  use_bias: false,
  normalization: 'softmax',
  norm_position: 'post',
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export const INTEGER_KEYS = [
  'vocab_size',
  'hidden_size',
  'num_hidden_layers',
  'num_attention_heads',
  'intermediate_size',
  'type_vocab_size',
  'max_position_embeddings',
  'pad_token_id',
] as const;
export const NUMBER_KEYS = [
  'residual_scale',
  'hidden_dropout_prob',
  'attention_probs_dropout_prob',
  'layer_norm_eps',
  'rope_theta',
  'rope_interpolation_factor',
] as const;

/**
 * A complete config from a named size and/or overrides:
 *   resolveConfig('small'), resolveConfig({ size: 'small', vocab_size: 8000 })
 */
export function resolveConfig(
  input: ModelSize | (Partial<RoFormerV2Config> & { size?: ModelSize }) = 'base',
): RoFormerV2Config {
  const { size, ...overrides } = typeof input === 'string' ? { size: input } : input;
  if (size !== undefined && !(size in MODEL_SIZES)) {
    throw new ConfigError(`unknown model size '${size}': use small, base or large`);
  }
  return validateConfig({ ...DEFAULTS, ...(size ? MODEL_SIZES[size] : {}), ...overrides });
}

/**
 * Checks a config object (e.g. parsed config.json) and fills in defaults.
 * Keys that Hugging Face writes but that change nothing here (architectures,
 * initializer_range, use_cache, ...) are accepted; keys whose value would change
 * the architecture must have the RoFormerV2 value.
 */
export function validateConfig(raw: unknown, source = 'config'): RoFormerV2Config {
  const fail = (problem: string): never => {
    throw new ConfigError(`${source}: ${problem}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('must be a JSON object');
  const given = raw as Record<string, unknown>;
  if (given.model_type !== undefined && given.model_type !== 'roformer') {
    fail(`model_type is ${JSON.stringify(given.model_type)}, but this reads RoFormerV2 configs ("roformer"; "gau_alpha" is read by validateEncoderConfig)`);
  }
  const config = copyKnownKeys(given, { ...DEFAULTS }, fail, {
    integers: INTEGER_KEYS,
    numbers: NUMBER_KEYS,
    choices: { normalization: ATTENTION_NORMALIZATIONS, norm_position: NORM_POSITIONS },
  });
  const mustBe = (key: string, expected: unknown, why: string) => {
    if (given[key] !== undefined && given[key] !== expected) {
      fail(`${key} is ${JSON.stringify(given[key])}, but RoFormerV2 ${why} (expected ${JSON.stringify(expected)})`);
    }
  };
  mustBe('hidden_act', 'relu', 'uses a ReLU feed-forward');
  mustBe('norm_type', 'rms_norm', 'uses RMS norm without gain');
  mustBe('use_bias', false, 'has no biases');
  mustBe('rotary_value', false, 'does not rotate the values');
  if (given.embedding_size !== undefined && given.embedding_size !== config.hidden_size) {
    fail(`embedding_size (${JSON.stringify(given.embedding_size)}) must equal hidden_size (${config.hidden_size})`);
  }

  const c = config as unknown as RoFormerV2Config;
  checkSharedRanges(c, fail, ['num_attention_heads', 'intermediate_size']);
  if (c.hidden_size % c.num_attention_heads !== 0) {
    fail(`hidden_size (${c.hidden_size}) must be divisible by num_attention_heads (${c.num_attention_heads})`);
  }
  if ((c.hidden_size / c.num_attention_heads) % 2 !== 0) {
    fail(`the head size hidden_size / num_attention_heads = ${c.hidden_size / c.num_attention_heads} must be even for rotary embeddings`);
  }
  if (c.residual_scale < 0 || c.residual_scale > 1) fail(`residual_scale must be in [0, 1], got ${c.residual_scale}`);
  return c;
}

/**
 * The limits both architectures' configs share: sizes (and `positiveKeys`) positive,
 * pad_token_id inside the vocab, dropout probabilities in [0, 1), eps and the
 * interpolation factor positive.
 */
export function checkSharedRanges(c: NativeModelConfig, fail: (problem: string) => never, positiveKeys: ReadonlyArray<keyof NativeModelConfig | string>): void {
  const values = c as unknown as Record<string, number>;
  for (const key of ['vocab_size', 'hidden_size', 'num_hidden_layers', ...positiveKeys, 'type_vocab_size', 'max_position_embeddings']) {
    if (values[key]! <= 0) fail(`${key} must be positive, got ${values[key]}`);
  }
  if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size) {
    fail(`pad_token_id (${c.pad_token_id}) must be in [0, vocab_size = ${c.vocab_size})`);
  }
  for (const key of ['hidden_dropout_prob', 'attention_probs_dropout_prob'] as const) {
    if (c[key] < 0 || c[key] >= 1) fail(`${key} must be in [0, 1), got ${c[key]}`);
  }
  if (c.layer_norm_eps <= 0) fail(`layer_norm_eps must be positive, got ${c.layer_norm_eps}`);
  if (c.rope_interpolation_factor <= 0) fail(`rope_interpolation_factor must be positive`);
}

/**
 * Copies the keys of `given` that a config knows into `config`, each checked:
 * integers, finite numbers, booleans, and strings out of a fixed set of choices.
 */
export function copyKnownKeys(
  given: Record<string, unknown>,
  config: Record<string, unknown>,
  fail: (problem: string) => never,
  keys: { integers?: readonly string[]; numbers?: readonly string[]; booleans?: readonly string[]; choices?: Record<string, readonly string[]> },
): Record<string, unknown> {
  for (const key of keys.integers ?? []) {
    const value = given[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isInteger(value)) fail(`${key} must be an integer, got ${JSON.stringify(value)}`);
    config[key] = value;
  }
  for (const key of keys.numbers ?? []) {
    const value = given[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value)) fail(`${key} must be a number, got ${JSON.stringify(value)}`);
    config[key] = value;
  }
  for (const key of keys.booleans ?? []) {
    const value = given[key];
    if (value === undefined) continue;
    if (typeof value !== 'boolean') fail(`${key} must be true or false, got ${JSON.stringify(value)}`);
    config[key] = value;
  }
  for (const [key, allowed] of Object.entries(keys.choices ?? {})) {
    const value = given[key];
    if (value === undefined) continue;
    if (typeof value !== 'string' || !allowed.includes(value)) fail(`${key} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
    config[key] = value;
  }
  return config;
}

/** Position interpolation: the factor that maps `newLength` positions into the trained range. */
export function interpolationFactor(trainedLength: number, newLength: number): number {
  if (!(trainedLength > 0 && newLength > 0)) throw new RangeError('lengths must be positive');
  return Math.min(1, trainedLength / newLength);
}

/** The config.json a model dir gets (Hugging Face keys). */
export function configToJson(config: RoFormerV2Config): Record<string, unknown> {
  return {
    architectures: ['RoFormerForMaskedLM'],
    ...config,
    embedding_size: config.hidden_size,
    rotary_value: false,
  };
}

/**
 * Checks overrides of a fresh model's config (--model-config, a stage's modelConfig)
 * against the size they override: a bad type or value names the key and `source`.
 */
export function checkConfigOverrides(overrides: unknown, size: ModelSize, source: string): Partial<RoFormerV2Config> {
  if (typeof overrides !== 'object' || overrides === null || Array.isArray(overrides)) {
    throw new ConfigError(`${source} must be a JSON object of config.json keys, e.g. {"num_hidden_layers": 2}`);
  }
  validateConfig({ ...MODEL_SIZES[size], ...overrides }, source);
  return overrides as Partial<RoFormerV2Config>;
}

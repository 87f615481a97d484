// GAU-α's config.json, as the PyTorch port (JunnYu/GAU-alpha-pytorch) writes it:
// `model_type: "gau_alpha"`, one attention head of key size `attention_key_size`,
// `intermediate_size` e (u and v each e wide), swish, no biases, softmax_plus.

import type { NativeModelConfig } from '../../bindings/native.js';
import { ATTENTION_NORMALIZATIONS, checkSharedRanges, ConfigError, copyKnownKeys, SHARED_DEFAULTS, INTEGER_KEYS, NUMBER_KEYS, type AttentionNormalization, type ModelSize } from './config.js';

export interface GauAlphaConfig extends NativeModelConfig {
  model_type: 'gau_alpha';
  /** s: the width of the shared q/k base z (RoPE rotates over these dimensions). */
  attention_key_size: number;
  /** Divide the logits by √s. */
  attention_scale: boolean;
  normalization: AttentionNormalization;
  hidden_act: 'swish';
  /** Biases on the two dense layers and offsets on q and k (the released model: none). */
  use_bias: boolean;
  /** σ of the port's normal initialisation of every dense and embedding weight. */
  initializer_range: number;
  /** GAU-α has no residual scale: always 1 (kept so every config carries one). */
  residual_scale: number;
}

/**
 * Sizes by analogy with RoFormerV2's: the same widths, e = 2 · hidden, s = 128, and
 * twice the layers (the authors compare 24 GAU layers with 12 transformer layers:
 * a GAU layer has about half a transformer block's weights). `base` is the released
 * chinese_GAU-alpha-char_L-24_H-768.
 */
export const GAU_ALPHA_SIZES: Record<ModelSize, Pick<GauAlphaConfig, 'num_hidden_layers' | 'hidden_size' | 'intermediate_size' | 'attention_key_size'>> = {
  small: { num_hidden_layers: 12, hidden_size: 384, intermediate_size: 768, attention_key_size: 128 },
  base: { num_hidden_layers: 24, hidden_size: 768, intermediate_size: 1536, attention_key_size: 128 },
  large: { num_hidden_layers: 48, hidden_size: 1024, intermediate_size: 2048, attention_key_size: 128 },
};

export const GAU_ALPHA_DEFAULTS: GauAlphaConfig = {
  model_type: 'gau_alpha',
  ...SHARED_DEFAULTS,
  ...GAU_ALPHA_SIZES.base,
  num_attention_heads: 1,
  attention_scale: true,
  normalization: 'softmax_plus',
  hidden_act: 'swish',
  use_bias: false,
  initializer_range: 0.02,
};

/** Checks a GAU-α config object (e.g. the port's config.json) and fills in defaults; errors name `source` and the key. */
export function validateGauAlphaConfig(raw: unknown, source = 'config'): GauAlphaConfig {
  const fail = (problem: string): never => {
    throw new ConfigError(`${source}: ${problem}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('must be a JSON object');
  const given = raw as Record<string, unknown>;
  if (given.model_type !== undefined && given.model_type !== 'gau_alpha') fail(`model_type is ${JSON.stringify(given.model_type)}, expected "gau_alpha"`);
  const c = copyKnownKeys(given, { ...GAU_ALPHA_DEFAULTS }, fail, {
    integers: [...INTEGER_KEYS, 'attention_key_size'],
    numbers: [...NUMBER_KEYS, 'initializer_range'],
    booleans: ['attention_scale', 'use_bias'],
    choices: { normalization: ATTENTION_NORMALIZATIONS },
  }) as unknown as GauAlphaConfig;
  // swish is what the port calls x · sigmoid(x); silu is the same function.
  if (given.hidden_act !== undefined && given.hidden_act !== 'swish' && given.hidden_act !== 'silu') {
    fail(`hidden_act is ${JSON.stringify(given.hidden_act)}, but GAU-α uses swish`);
  }
  if (c.num_attention_heads !== 1) fail(`num_attention_heads is ${c.num_attention_heads}, but a gated attention unit has a single head`);
  if (given.embedding_size !== undefined && given.embedding_size !== c.hidden_size) {
    fail(`embedding_size (${JSON.stringify(given.embedding_size)}) must equal hidden_size (${c.hidden_size})`);
  }
  if (given.norm_position !== undefined && given.norm_position !== 'post') fail(`norm_position is ${JSON.stringify(given.norm_position)}, but GAU-α is post-norm`);
  checkSharedRanges(c, fail, ['intermediate_size', 'attention_key_size']);
  if (c.attention_key_size % 2 !== 0) fail(`attention_key_size (${c.attention_key_size}) must be even for rotary embeddings`);
  if (c.initializer_range <= 0) fail(`initializer_range must be positive, got ${c.initializer_range}`);
  c.residual_scale = 1;
  return c;
}

/** The config.json a GAU-α model dir gets: the port's keys. */
export function gauAlphaConfigToJson(config: GauAlphaConfig): Record<string, unknown> {
  const { num_attention_heads: _single, residual_scale: _none, ...keys } = config;
  return { architectures: ['GAUAlphaForMaskedLM'], ...keys, embedding_size: config.hidden_size };
}

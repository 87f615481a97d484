// The config of either architecture, told apart by config.json's `model_type` (as
// Hugging Face does): "roformer" → RoFormerV2, "gau_alpha" → GAU-α. The CLI's
// `--arch` names (roformer-v2, gau-alpha) are the native architectures.

import type { Architecture } from '../../bindings/native.js';
import { configToJson, ConfigError, MODEL_SIZES, resolveConfig, validateConfig, type ModelSize, type RoFormerV2Config } from './config.js';
import { GAU_ALPHA_SIZES, gauAlphaConfigToJson, validateGauAlphaConfig, type GauAlphaConfig } from './gau-alpha-config.js';

export type EncoderConfig = RoFormerV2Config | GauAlphaConfig;
export type ModelType = EncoderConfig['model_type'];

/** The architectures a stage can train, by their --arch name. */
export type TrainableArchitecture = Extract<Architecture, 'roformer-v2' | 'gau-alpha'>;
export const TRAINABLE_ARCHITECTURES: readonly TrainableArchitecture[] = ['roformer-v2', 'gau-alpha'];

const MODEL_TYPE_OF: Record<TrainableArchitecture, ModelType> = { 'roformer-v2': 'roformer', 'gau-alpha': 'gau_alpha' };

export function modelTypeOf(architecture: TrainableArchitecture): ModelType {
  return MODEL_TYPE_OF[architecture];
}

export function architectureOf(config: Pick<EncoderConfig, 'model_type'>): TrainableArchitecture {
  return config.model_type === 'gau_alpha' ? 'gau-alpha' : 'roformer-v2';
}

/** The named sizes of an architecture. */
export function sizesOf(modelType: ModelType | undefined): Record<ModelSize, Partial<EncoderConfig>> {
  return modelType === 'gau_alpha' ? GAU_ALPHA_SIZES : MODEL_SIZES;
}

/** Checks a config object of either architecture (model_type absent: RoFormerV2). */
export function validateEncoderConfig(raw: unknown, source = 'config'): EncoderConfig {
  const modelType = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>).model_type : undefined;
  if (modelType === 'gau_alpha') return validateGauAlphaConfig(raw, source);
  if (modelType === undefined || modelType === 'roformer') return validateConfig(raw, source);
  throw new ConfigError(`${source}: model_type is ${JSON.stringify(modelType)}: use "roformer" (RoFormerV2) or "gau_alpha" (GAU-α)`);
}

/** A complete config of either architecture from a named size and overrides (model_type picks the architecture). */
export function resolveEncoderConfig(input: { size?: ModelSize } & Partial<EncoderConfig> = {}): EncoderConfig {
  const { size, ...overrides } = input;
  if (overrides.model_type !== 'gau_alpha') return resolveConfig(input as Partial<RoFormerV2Config> & { size?: ModelSize });
  if (size !== undefined && !(size in GAU_ALPHA_SIZES)) throw new ConfigError(`unknown model size '${size}': use small, base or large`);
  return validateGauAlphaConfig({ ...(size ? GAU_ALPHA_SIZES[size] : {}), ...overrides });
}

/** The config.json a model dir of either architecture gets. */
export function encoderConfigToJson(config: EncoderConfig): Record<string, unknown> {
  return config.model_type === 'gau_alpha' ? gauAlphaConfigToJson(config) : configToJson(config);
}

/**
 * Checks overrides of a fresh model's config (--model-config, a stage's modelConfig,
 * --arch's model_type) against the size they override: a bad key or value names `source`.
 */
export function checkEncoderConfigOverrides(overrides: unknown, size: ModelSize, source: string): Partial<EncoderConfig> {
  if (typeof overrides !== 'object' || overrides === null || Array.isArray(overrides)) {
    throw new ConfigError(`${source} must be a JSON object of config.json keys, e.g. {"num_hidden_layers": 2}`);
  }
  const modelType = (overrides as Record<string, unknown>).model_type as ModelType | undefined;
  validateEncoderConfig({ ...sizesOf(modelType)[size], ...overrides }, source);
  return overrides as Partial<EncoderConfig>;
}

// The flags that choose a fresh model's architecture: --arch (RoFormerV2 or GAU-α),
// --attention-normalization and --norm-position. They are config.json keys
// (model_type, normalization, norm_position) merged into the stage's model overrides,
// so a resumed run and a saved model dir carry them like any other key.

import type { Command } from 'commander';

import { ATTENTION_NORMALIZATIONS, NORM_POSITIONS, type AttentionNormalization, type NormPosition } from '../model/config.js';
import { modelTypeOf, TRAINABLE_ARCHITECTURES, type EncoderConfig, type TrainableArchitecture } from '../model/encoder-config.js';
import { oneOf } from '../util/value-kinds.js';
import { parse } from './options.js';

export interface ArchitectureFlags {
  arch?: TrainableArchitecture;
  attentionNormalization?: AttentionNormalization;
  normPosition?: NormPosition;
}

export function addArchitectureFlags(command: Command): Command {
  return command
    .option('--arch <name>', `fresh model: ${TRAINABLE_ARCHITECTURES.join(' or ')} (default roformer-v2; sizes by analogy: GAU-α has twice the layers)`, parse(oneOf(TRAINABLE_ARCHITECTURES), 'arch'))
    .option(
      '--attention-normalization <name>',
      'fresh model: softmax (RoFormerV2 default), softmax_plus (logits × log n / log 512; GAU-α default) or squared_relu',
      parse(oneOf(ATTENTION_NORMALIZATIONS), 'attention-normalization'),
    )
    .option('--norm-position <where>', 'fresh RoFormerV2: post (as released) or pre (pre-norm blocks)', parse(oneOf(NORM_POSITIONS), 'norm-position'));
}

/**
 * The flags without the architecture ones, and those as config overrides merged over
 * `overrides` (undefined when neither gives a key).
 */
export function splitArchitectureFlags<F extends ArchitectureFlags>(
  flags: F,
  overrides?: Partial<EncoderConfig>,
): { rest: Omit<F, keyof ArchitectureFlags>; model: Partial<EncoderConfig> | undefined } {
  const { arch, attentionNormalization, normPosition, ...rest } = flags;
  if (arch === 'gau-alpha' && normPosition !== undefined) throw new Error('--norm-position is for RoFormerV2: GAU-α layers are post-norm');
  const chosen = {
    ...(arch ? { model_type: modelTypeOf(arch) } : {}),
    ...(attentionNormalization ? { normalization: attentionNormalization } : {}),
    ...(normPosition ? { norm_position: normPosition } : {}),
  };
  const model = Object.keys(chosen).length > 0 ? ({ ...overrides, ...chosen } as Partial<EncoderConfig>) : overrides;
  return { rest, model };
}

// GAU-α's building blocks on their own (native/gau_alpha.h), and the attention
// normalisation both architectures share (native/attention_normalization.h), for
// the tests that check each against reference math and for users assembling models.

import type { Tensor } from '../../bindings/native.js';
import type { AttentionNormalization } from './config.js';
import type { GauAlphaConfig } from './gau-alpha-config.js';
import { Layer } from './layers.js';

/**
 * A = normalise(q kᵀ / √d) applied to v, padded keys masked; no parameters.
 * q, k (batch, heads, seq, d), v (batch, heads, seq, dv).
 */
export class NormalizedAttention extends Layer {
  constructor(options: { normalization: AttentionNormalization; scaled?: boolean }) {
    super('normalized_attention', { normalization: options.normalization, scaled: options.scaled ?? true });
  }
  forward(q: Tensor, k: Tensor, v: Tensor, attentionMask?: Tensor): Tensor {
    return this.native.call([q, k, v, attentionMask ?? null]);
  }
}

export type GauOptions = Partial<
  Pick<
    GauAlphaConfig,
    | 'hidden_size'
    | 'intermediate_size'
    | 'attention_key_size'
    | 'attention_scale'
    | 'normalization'
    | 'use_bias'
    | 'hidden_dropout_prob'
    | 'attention_probs_dropout_prob'
    | 'layer_norm_eps'
    | 'rope_theta'
  >
> & { seed?: number };

/** The gated attention unit: O = (u ⊙ (A v)) W_o, u, v, z from swish(x W_i), q/k = RoPE(z ⊙ γ). */
export class GatedAttentionUnit extends Layer {
  constructor(options: GauOptions = {}) {
    const { seed, ...rest } = options;
    super('gated_attention_unit', { normalization: 'softmax_plus', ...rest, num_attention_heads: 1 }, seed);
  }
  /** x (batch, seq, hidden); attentionMask (batch, seq), non-zero at real tokens. */
  forward(x: Tensor, attentionMask?: Tensor): Tensor {
    return this.native.call([x, attentionMask ?? null]);
  }
}

/** One GAU-α layer: x ← Norm(x + Dropout(GAU(x))). */
export class GauLayer extends Layer {
  constructor(options: GauOptions = {}) {
    const { seed, ...rest } = options;
    super('gau_layer', { normalization: 'softmax_plus', ...rest, num_attention_heads: 1 }, seed);
  }
  forward(x: Tensor, attentionMask?: Tensor): Tensor {
    return this.native.call([x, attentionMask ?? null]);
  }
}

// RoFormerV2's building blocks on their own, for users who assemble their own
// models and for the tests that check each against reference math.

import { loadNative } from '../../bindings/load.js';
import type { Device, DType, LayerKind, NativeModule, Tensor, VjpResult } from '../../bindings/native.js';
import type { AttentionNormalization, RoFormerV2Config } from './config.js';

/** What every building block offers besides its forward pass. */
export abstract class Layer {
  protected readonly native: NativeModule;

  protected constructor(kind: LayerKind, options: Record<string, unknown>, seed?: number) {
    this.native = loadNative().createLayer(kind, options, seed);
  }

  namedParameters(): Record<string, Tensor> {
    return this.native.namedParameters();
  }
  loadStateDict(state: Record<string, Tensor>): void {
    this.native.loadStateDict(state);
  }
  to(device: Device | string, dtype?: DType): this {
    this.native.to(device, dtype);
    return this;
  }
  train(on = true): this {
    this.native.train(on);
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  /**
   * Forward pass plus the gradients of ⟨output, gradOutput⟩ with respect to the
   * floating-point inputs and every parameter (what a gradient check needs).
   */
  vjp(inputs: Array<Tensor | null>, gradOutput: Tensor): VjpResult {
    return this.native.vjp(inputs, gradOutput);
  }
}

/**
 * Rotary position embedding, interleaved pairs, θ_i = base^(−2i/d); any length.
 * `interpolationFactor` < 1 scales positions (trained_length / new_length) so a
 * model trained on short inputs can read longer ones.
 */
export class RotaryEmbedding extends Layer {
  constructor(options: { headDim: number; base?: number; interpolationFactor?: number }) {
    super('rotary', {
      head_dim: options.headDim,
      base: options.base,
      interpolation_factor: options.interpolationFactor,
    });
  }
  /** Rotates x (..., seq, headDim): row p of the seq dimension by position p. */
  apply(x: Tensor): Tensor {
    return this.native.call([x]);
  }
}

/** y = x / sqrt(mean(x²) + eps) over the last dimension; no gain. */
export class RMSNorm extends Layer {
  constructor(options: { eps?: number } = {}) {
    super('rms_norm', { eps: options.eps });
  }
  forward(x: Tensor): Tensor {
    return this.native.call([x]);
  }
}

export interface SelfAttentionOptions {
  hiddenSize: number;
  numHeads: number;
  /** Attention-weight dropout (training mode only). Default 0. */
  dropout?: number;
  /** Biases on q/k/v/output (RoFormerV2: none; the baseline: all). Default false. */
  bias?: boolean;
  /** RoPE on q and k. Default true. */
  rotary?: boolean;
  ropeTheta?: number;
  /** How the attention weights are normalised (default softmax). */
  normalization?: AttentionNormalization;
  seed?: number;
}

/** Multi-head self-attention with RoPE on q and k and a key padding mask. */
export class SelfAttention extends Layer {
  constructor(options: SelfAttentionOptions) {
    super(
      'self_attention',
      {
        hidden_size: options.hiddenSize,
        num_attention_heads: options.numHeads,
        attention_probs_dropout_prob: options.dropout ?? 0,
        bias: options.bias ?? false,
        rotary: options.rotary ?? true,
        rope_theta: options.ropeTheta,
        normalization: options.normalization,
      },
      options.seed,
    );
  }
  /** x (batch, seq, hidden); attentionMask (batch, seq), non-zero at real tokens. */
  forward(x: Tensor, attentionMask?: Tensor): Tensor {
    return this.native.call([x, attentionMask ?? null]);
  }
}

export type EncoderBlockOptions = Partial<
  Pick<
    RoFormerV2Config,
    | 'hidden_size'
    | 'num_attention_heads'
    | 'intermediate_size'
    | 'hidden_dropout_prob'
    | 'attention_probs_dropout_prob'
    | 'layer_norm_eps'
    | 'rope_theta'
    | 'normalization'
    | 'norm_position'
  >
> & { alpha?: number; seed?: number };

/** A post-norm block: x = Norm(x + α·Attn(x)); x = Norm(x + α·FFN(x)); bias-free ReLU FFN. */
export class EncoderBlock extends Layer {
  constructor(options: EncoderBlockOptions = {}) {
    const { seed, ...rest } = options;
    super('encoder_block', rest, seed);
  }
  forward(x: Tensor, attentionMask?: Tensor): Tensor {
    return this.native.call([x, attentionMask ?? null]);
  }
}

// RoFormerV2 with its MLM head as an ONNX graph (opset 17): the same forward as
// native/modules.cpp, written with standard ops so any ONNX runtime can run it.
//
//   x = RMS(E_tok[input_ids] + E_seg[token_type_ids])
//   per layer:  x = RMS(x + α·Attention(x)),  x = RMS(x + α·W2 relu(W1 x))
//   logits = x E_tokᵀ                                 (tied decoder; the MLM model)
//   logits = x[:, 0] Wᵀ                               (a classification or multilabel head)
//
// RMS(x) = x / sqrt(mean(x²) + eps), with no gain. RoPE rotates adjacent pairs
// (x_2i, x_2i+1) of q and k by p·θ_i; its cos/sin tables are initializers of
// max_position_embeddings rows, sliced to the input's length. Batch and sequence
// axes are dynamic.

import { toHuggingFaceName } from '../model/checkpoint-names.js';
import type { RoFormerV2Config } from '../model/config.js';
import { GraphBuilder, int, ints } from './onnx-graph.js';
import { IR_VERSION, ONNX_BOOL, ONNX_FLOAT, ONNX_INT64, OPSET_VERSION, type OnnxModel } from './onnx-proto.js';

/** The graph's inputs (int64, [batch, sequence]) and output, by the names Hugging Face exports use. */
export const ONNX_INPUTS = ['input_ids', 'attention_mask', 'token_type_ids'] as const;
export const ONNX_OUTPUT = 'logits';

/** A task head read at [CLS] by one Linear without bias (native/heads.cpp: classification, multilabel). */
export interface ClassifierHead {
  /** The checkpoint name of its weight (`heads.<task>.classifier.weight`). */
  name: string;
  numLabels: number;
  /** (numLabels, hidden), as the Linear stores it. */
  weight: Float32Array;
}

export interface RoformerGraphSource {
  config: RoFormerV2Config;
  /** α, applied to each residual branch (1 once warm-up is over). */
  residualScale: number;
  /** A weight as float32 by native parameter name (`layer.0.attention.query.weight`, …). */
  weight(nativeName: string): Float32Array;
}

/**
 * RoPE tables, (max_position_embeddings, 1, head size): cos, and sin with the sign of
 * each element's partner in the rotation (−sin on even, +sin on odd elements), so that
 * rope(x) = x·cos + swap_pairs(x)·signed_sin. Computed in float32 steps as libtorch
 * computes them, so long positions round the same way.
 */
export function ropeTables(config: RoFormerV2Config): { cos: Float32Array; signedSin: Float32Array } {
  const d = config.hidden_size / config.num_attention_heads;
  const f = Math.fround;
  const rows = config.max_position_embeddings;
  const cos = new Float32Array(rows * d);
  const signedSin = new Float32Array(rows * d);
  for (let i = 0; i < d / 2; i++) {
    const theta = f(Math.pow(config.rope_theta, f(f(-2 * i) / d)));
    for (let p = 0; p < rows; p++) {
      const angle = f(f(p * f(config.rope_interpolation_factor)) * theta);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[p * d + 2 * i] = c;
      cos[p * d + 2 * i + 1] = c;
      signedSin[p * d + 2 * i] = -s;
      signedSin[p * d + 2 * i + 1] = s;
    }
  }
  return { cos, signedSin };
}

/**
 * The ONNX model (a ModelProto object) of RoFormerV2 with its MLM head, or with `head`:
 * logits (batch, numLabels) from the hidden state at [CLS].
 */
export function roformerOnnxModel(source: RoformerGraphSource, producerVersion: string, head?: ClassifierHead): OnnxModel {
  const { config } = source;
  const d = config.hidden_size;
  const heads = config.num_attention_heads;
  const headSize = d / heads;
  const g = new GraphBuilder();
  const [inputIds, attentionMask, tokenTypeIds] = ONNX_INPUTS.map((name) => g.input(name, ONNX_INT64, ['batch', 'sequence']));

  const weight = (nativeName: string, dims: number[]) => g.floats(toHuggingFaceName(nativeName), source.weight(nativeName), dims);
  const scalar = (name: string, value: number) => g.floats(name, Float32Array.of(value), []);
  const eps = scalar('layer_norm_eps', config.layer_norm_eps);
  const alpha = source.residualScale === 1 ? undefined : scalar('residual_scale', source.residualScale);
  const zero = g.int64s('zero', [0]);
  const one = g.int64s('one', [1]);
  const end = g.int64s('end', [Number.MAX_SAFE_INTEGER]);

  const rmsNorm = (x: string, name: string): string => {
    const square = g.node('Mul', [x, x], `${name}.square`);
    const meanSquare = g.node('ReduceMean', [square], `${name}.mean_square`, { axes: ints([-1]), keepdims: int(1) });
    const rms = g.node('Sqrt', [g.node('Add', [meanSquare, eps], `${name}.mean_square_eps`)], `${name}.rms`);
    return g.node('Div', [x, rms], name);
  };
  /** x·Wᵀ for a Linear weight stored (out, in), as libtorch and the checkpoint keep it. */
  const linear = (x: string, nativeName: string, dims: [out: number, inFeatures: number], name: string): string => {
    const transposed = g.node('Transpose', [weight(nativeName, dims)], `${toHuggingFaceName(nativeName)}.T`, { perm: ints([1, 0]) });
    return g.node('MatMul', [x, transposed], name);
  };
  const residual = (x: string, branch: string, name: string): string => {
    const scaled = alpha === undefined ? branch : g.node('Mul', [branch, alpha], `${name}.scaled_branch`);
    return rmsNorm(g.node('Add', [x, scaled], `${name}.sum`), name);
  };

  // Embeddings (no position embedding: positions enter through RoPE only).
  const wordEmbeddings = weight('word_embeddings.weight', [config.vocab_size, d]);
  const tokens = g.node('Gather', [wordEmbeddings, inputIds], 'embeddings.tokens', { axis: int(0) });
  const segments = g.node('Gather', [weight('token_type_embeddings.weight', [config.type_vocab_size, d]), tokenTypeIds], 'embeddings.segments', {
    axis: int(0),
  });
  let x = rmsNorm(g.node('Add', [tokens, segments], 'embeddings.sum'), 'embeddings');

  // The input's length, as a 1-element tensor, to slice the RoPE tables with.
  const inputShape = g.node('Shape', [inputIds], 'input_shape');
  const sequenceLength = g.node('Gather', [inputShape, one], 'sequence_length', { axis: int(0) });
  const tables = ropeTables(config);
  const ropeTable = (name: string, data: Float32Array) =>
    g.node('Slice', [g.floats(name, data, [config.max_position_embeddings, 1, headSize]), zero, sequenceLength, zero], `${name}.sliced`);
  const cos = ropeTable('rope.cos', tables.cos);
  const signedSin = ropeTable('rope.signed_sin', tables.signedSin);
  // Element j's partner in its pair: 1, 0, 3, 2, …
  const pairSwap = g.int64s('rope.pair_swap', Array.from({ length: headSize }, (_, j) => j ^ 1));
  const rope = (t: string, name: string): string => {
    const swapped = g.node('Gather', [t, pairSwap], `${name}.pairs_swapped`, { axis: int(-1) });
    const rotated = g.node('Mul', [swapped, signedSin], `${name}.sin_part`);
    return g.node('Add', [g.node('Mul', [t, cos], `${name}.cos_part`), rotated], name);
  };

  // Keys that may be attended, (batch, 1, 1, sequence): attention_mask != 0, and in a row
  // with none, its first key (as native key_padding_mask does, so softmax never sees only −inf).
  const keep = g.node('Cast', [g.node('Not', [g.node('Equal', [attentionMask, g.int64s('mask_zero', [0], [])], 'mask.is_zero')], 'mask.keep_bool')], 'mask.keep', {
    to: int(ONNX_FLOAT),
  });
  const rowHasKey = g.node('ReduceMax', [keep], 'mask.row_has_key', { axes: ints([1]), keepdims: int(1) });
  const firstKey = g.node('Max', [
    g.node('Slice', [keep, zero, one, one], 'mask.first_key'),
    g.node('Sub', [scalar('one_float', 1), rowHasKey], 'mask.row_is_empty'),
  ], 'mask.first_key_kept');
  const keys = g.node('Concat', [firstKey, g.node('Slice', [keep, one, end, one], 'mask.other_keys')], 'mask.keys', { axis: int(1) });
  const keepKeys = g.node('Unsqueeze', [g.node('Cast', [keys], 'mask.keys_bool', { to: int(ONNX_BOOL) }), g.int64s('mask.axes', [1, 2])], 'mask.keep_keys');
  const negativeInfinity = scalar('negative_infinity', -Infinity);
  const scoreScale = scalar('attention.sqrt_head_size', Math.sqrt(headSize));

  const headShape = g.int64s('head_shape', [0, 0, heads, headSize]);
  const hiddenShape = g.int64s('hidden_shape', [0, 0, d]);
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const p = `layer.${i}`;
    const split = (t: string, name: string) => g.node('Reshape', [t, headShape], name);
    // (batch, seq, heads, head) for RoPE, then (batch, heads, seq, head) for attention
    const q = rope(split(linear(x, `${p}.attention.query.weight`, [d, d], `${p}.query`), `${p}.query.heads`), `${p}.query.rotated`);
    const k = rope(split(linear(x, `${p}.attention.key.weight`, [d, d], `${p}.key`), `${p}.key.heads`), `${p}.key.rotated`);
    const v = split(linear(x, `${p}.attention.value.weight`, [d, d], `${p}.value`), `${p}.value.heads`);
    const qT = g.node('Transpose', [q], `${p}.query.by_head`, { perm: ints([0, 2, 1, 3]) });
    const kT = g.node('Transpose', [k], `${p}.key.by_head_transposed`, { perm: ints([0, 2, 3, 1]) });
    const vT = g.node('Transpose', [v], `${p}.value.by_head`, { perm: ints([0, 2, 1, 3]) });
    const scores = g.node('Div', [g.node('MatMul', [qT, kT], `${p}.scores_unscaled`), scoreScale], `${p}.scores`);
    const masked = g.node('Where', [keepKeys, scores, negativeInfinity], `${p}.scores_masked`);
    const probabilities = g.node('Softmax', [masked], `${p}.attention_probabilities`, { axis: int(-1) });
    const attended = g.node('MatMul', [probabilities, vT], `${p}.attended`);
    const merged = g.node('Reshape', [g.node('Transpose', [attended], `${p}.attended.by_position`, { perm: ints([0, 2, 1, 3]) }), hiddenShape], `${p}.attended.merged`);
    x = residual(x, linear(merged, `${p}.attention.output.weight`, [d, d], `${p}.attention_output`), `${p}.attention_norm`);

    const inner = g.node('Relu', [linear(x, `${p}.intermediate.weight`, [config.intermediate_size, d], `${p}.intermediate`)], `${p}.intermediate.relu`);
    x = residual(x, linear(inner, `${p}.output.weight`, [d, config.intermediate_size], `${p}.ffn_output`), `${p}.ffn_norm`);
  }

  if (head) {
    const cls = g.node('Gather', [x, g.int64s('cls_position', [0], [])], 'cls_state', { axis: int(1) });
    const classifier = g.node('Transpose', [g.floats(head.name, head.weight, [head.numLabels, d])], `${head.name}.T`, { perm: ints([1, 0]) });
    g.node('MatMul', [cls, classifier], ONNX_OUTPUT);
    g.output(ONNX_OUTPUT, ONNX_FLOAT, ['batch', head.numLabels]);
  } else {
    // The MLM head: tied to the word embeddings, no dense, no norm, no bias.
    const decoder = g.node('Transpose', [wordEmbeddings], 'mlm.decoder', { perm: ints([1, 0]) });
    g.node('MatMul', [x, decoder], ONNX_OUTPUT);
    g.output(ONNX_OUTPUT, ONNX_FLOAT, ['batch', 'sequence', config.vocab_size]);
  }

  return {
    ir_version: IR_VERSION,
    producer_name: 'roformer-v2',
    producer_version: producerVersion,
    doc_string: head ? `RoFormerV2 encoder with the task head ${head.name}` : 'RoFormerV2 encoder with its tied MLM head',
    opset_import: [{ domain: '', version: OPSET_VERSION }],
    graph: g.build(head ? 'roformer_v2_classifier' : 'roformer_v2_mlm'),
  };
}

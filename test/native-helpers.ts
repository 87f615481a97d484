// Moving data between native Tensors and the float64 reference's matrices.

import { tensor, type Tensor } from '../lib/index.js';
import { mat, type BlockWeights, type Mat } from './reference.js';

/** A tiny RoFormerV2 config without dropout, for exact comparisons. */
export const TINY_CONFIG = {
  vocab_size: 50,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 32,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
};

/** A tensor's values as float64 numbers. */
export function values(t: Tensor): Float64Array {
  return Float64Array.from(t.to(undefined, 'float64').toArray() as Float64Array);
}

/** A 2-D tensor as a reference matrix. */
export function toMat(t: Tensor): Mat {
  if (t.shape.length !== 2) throw new Error(`toMat: expected 2-D, got [${t.shape}]`);
  return mat(t.shape[0]!, t.shape[1]!, values(t));
}

/** Row block `index` of a (batch, rows, cols) tensor as a matrix. */
export function sampleMat(t: Tensor, index: number): Mat {
  const [, rows, cols] = t.shape as [number, number, number];
  const all = values(t);
  return mat(rows, cols, all.subarray(index * rows * cols, (index + 1) * rows * cols));
}

/** A float64 tensor from reference matrices stacked on a batch dimension. */
export function fromMats(mats: Mat[]): Tensor {
  const { rows, cols } = mats[0]!;
  const data = new Float64Array(mats.length * rows * cols);
  mats.forEach((m, i) => data.set(m.data, i * rows * cols));
  return tensor(data, [mats.length, rows, cols]);
}

/** The weights of one RoFormerV2 block from native parameters under `prefix`. */
export function blockWeights(params: Record<string, Tensor>, prefix = ''): BlockWeights {
  const w = (name: string) => {
    const t = params[prefix + name];
    if (!t) throw new Error(`no parameter ${prefix + name}`);
    return toMat(t);
  };
  return {
    query: w('attention.query.weight'),
    key: w('attention.key.weight'),
    value: w('attention.value.weight'),
    output: w('attention.output.weight'),
    intermediate: w('intermediate.weight'),
    ffnOutput: w('output.weight'),
  };
}

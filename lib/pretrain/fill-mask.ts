// Fill-mask: the most likely tokens at each [MASK] of a text, with probabilities.

import type { Tokenizer } from '../data/tokenizer.js';
import type { TrainableEncoder } from '../model/model.js';
import { tensor } from '../model/tensor.js';
import { loadEncoder } from '../training/model-source.js';

export interface MaskPrediction {
  /** Index of the [MASK] among the text's masks. */
  mask: number;
  candidates: Array<{ token: string; id: number; probability: number }>;
}

/** A model dir, a checkpoint dir, or a run dir (its latest checkpoint) → model + tokenizer. */
export async function loadForInference(path: string): Promise<{ model: TrainableEncoder; tokenizer: Tokenizer; dir: string }> {
  return loadEncoder(path, 'its text cannot be tokenized without the vocab the model was trained with');
}

export async function fillMask(model: TrainableEncoder, tokenizer: Tokenizer, text: string, topK = 5): Promise<MaskPrediction[]> {
  const ids = tokenizer.encode(text, model.config.max_position_embeddings);
  const positions = ids.flatMap((id, i) => (id === tokenizer.maskId ? [i] : []));
  if (positions.length === 0) throw new Error(`the text has no [MASK] token to fill: "${text}"`);
  const inputIds = tensor(Int32Array.from(ids), [1, ids.length], 'int64');
  const hidden = await model.forward(inputIds);
  const maskPositions = tensor(Int32Array.from(positions), [positions.length], 'int64');
  const logits = await model.mlmLogits(hidden, maskPositions);
  const scores = logits.toArray() as Float32Array;
  [inputIds, hidden, maskPositions, logits].forEach((t) => t.dispose());

  const vocab = tokenizer.size;
  return positions.map((_, m) => {
    const row = scores.subarray(m * vocab, (m + 1) * vocab);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    const special = new Set([tokenizer.padId, tokenizer.clsId, tokenizer.sepId, tokenizer.maskId]);
    const best = Array.from(row.keys())
      .filter((id) => !special.has(id))
      .sort((a, b) => row[b]! - row[a]!)
      .slice(0, topK);
    return { mask: m, candidates: best.map((id) => ({ token: tokenizer.idToToken(id), id, probability: Math.exp(row[id]! - max) / sum })) };
  });
}

// Sentence embeddings: a model and its tokenizer turn texts into one vector each.
//
//   const encoder = await SentenceEncoder.fromPretrained('runs/demo');
//   const rows = await encoder.embed(['今天天气不错', '天气很好'], { pooling: 'mean' });
//   // rows: Float32Array[], one of length encoder.dimension per text
//
// Poolings (the ones BERT-whitening's author compares, kexue.fm/archives/8069):
//   cls             the last layer's hidden state at [CLS];
//   mean            the last layer's hidden states averaged over the text's tokens
//                   ([CLS] and [SEP] included, padding excluded);
//   first-last-avg  the same average taken over (first layer + last layer) / 2, where
//                   "first layer" is the output of the first transformer block (as in
//                   the author's code: Transformer-0-FeedForward-Norm), not the
//                   embedding output.
//
// The native forward returns only the last layer. The first block's output comes from
// a one-block twin of the model holding copies of the embeddings and block 0: the
// native forward is embeddings → norm → blocks in turn, so the twin's output is exactly
// the full model's state after block 0 (test/embed.test.ts checks it against the
// building blocks of lib/model/layers.ts). It costs one extra block per batch.

import type { Tokenizer } from '../data/tokenizer.js';
import { createEncoder, type TrainableEncoder } from '../model/model.js';
import { tensor, type Tensor } from '../model/tensor.js';
import { loadEncoder } from '../training/model-source.js';

export const POOLINGS = ['mean', 'cls', 'first-last-avg'] as const;
export type Pooling = (typeof POOLINGS)[number];

export interface EmbedOptions {
  /** How token states become one vector (default 'mean'). */
  pooling?: Pooling;
  /** Texts per forward pass (default 32). */
  batchSize?: number;
  /** Tokens per text, [CLS] and [SEP] included; longer texts are cut (default 512, at most max_position_embeddings). */
  maxLength?: number;
  /** Called after each batch: texts embedded so far, of how many, and how many were cut. */
  onProgress?: (progress: { done: number; total: number; truncated: number }) => void;
}

export const EMBED_DEFAULTS = { pooling: 'mean' as Pooling, batchSize: 32, maxLength: 512 };

export class SentenceEncoder {
  private firstLayer: TrainableEncoder | null = null;

  constructor(
    readonly model: TrainableEncoder,
    readonly tokenizer: Tokenizer,
  ) {}

  /** Anything `roformer fill-mask --model` accepts: a model dir, checkpoint or run dir. */
  static async fromPretrained(path: string): Promise<SentenceEncoder> {
    const { model, tokenizer } = await loadEncoder(path, 'sentences cannot be tokenized without the vocab the model was trained with');
    return new SentenceEncoder(model, tokenizer);
  }

  /** Length of each embedding: the model's hidden size. */
  get dimension(): number {
    return this.model.config.hidden_size;
  }

  /** One vector per text, in the order given. */
  async embed(texts: readonly string[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    const pooling = options.pooling ?? EMBED_DEFAULTS.pooling;
    const batchSize = options.batchSize ?? EMBED_DEFAULTS.batchSize;
    const maxLength = Math.min(options.maxLength ?? EMBED_DEFAULTS.maxLength, this.model.config.max_position_embeddings);
    if (!POOLINGS.includes(pooling)) throw new RangeError(`pooling must be one of ${POOLINGS.join(', ')}, got ${JSON.stringify(pooling)}`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be an integer >= 1, got ${batchSize}`);
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new RangeError(`maxLength must be an integer >= 2, got ${maxLength}`);

    let truncated = 0;
    const { clsId, sepId } = this.tokenizer;
    const ids = texts.map((text, i) => {
      if (typeof text !== 'string') throw new TypeError(`texts[${i}] is ${typeof text}, not a string`);
      const tokens = this.tokenizer.encodeText(text);
      if (tokens.length > maxLength - 2) truncated++;
      return [clsId, ...tokens.slice(0, maxLength - 2), sepId];
    });

    // Texts of similar length share a batch, so little time goes into padding.
    const order = Array.from(ids.keys()).sort((a, b) => ids[a]!.length - ids[b]!.length);
    const rows = new Array<Float32Array>(texts.length);
    for (let start = 0; start < order.length; start += batchSize) {
      const batch = order.slice(start, start + batchSize);
      const pooled = await this.embedBatch(batch.map((i) => ids[i]!), pooling);
      batch.forEach((i, b) => (rows[i] = pooled[b]!));
      options.onProgress?.({ done: Math.min(start + batchSize, order.length), total: order.length, truncated });
    }
    return rows;
  }

  /** Frees the native memory of the model (and of the first-layer twin, if made). */
  dispose(): void {
    this.firstLayer?.dispose();
    this.model.dispose();
  }

  private async embedBatch(batch: number[][], pooling: Pooling): Promise<Float32Array[]> {
    const seq = Math.max(...batch.map((ids) => ids.length));
    const inputIds = new Int32Array(batch.length * seq).fill(this.tokenizer.padId);
    const mask = new Int32Array(batch.length * seq);
    batch.forEach((ids, b) => {
      inputIds.set(ids, b * seq);
      mask.fill(1, b * seq, b * seq + ids.length);
    });
    const idsTensor = tensor(inputIds, [batch.length, seq], 'int64');
    const maskTensor = tensor(mask, [batch.length, seq], 'int64');
    try {
      const last = await hiddenStates(this.model, idsTensor, maskTensor);
      if (pooling === 'cls') return batch.map((_, b) => last.slice(b * seq * this.dimension, (b * seq + 1) * this.dimension));
      if (pooling === 'mean') return batch.map((ids, b) => meanOverTokens([last], b, seq, ids.length, this.dimension));
      const first = await hiddenStates(this.firstLayerModel(), idsTensor, maskTensor);
      return batch.map((ids, b) => meanOverTokens([first, last], b, seq, ids.length, this.dimension));
    } finally {
      idsTensor.dispose();
      maskTensor.dispose();
    }
  }

  /** The one-block twin (see the top of this file), made on first use. */
  private firstLayerModel(): TrainableEncoder {
    if (this.firstLayer) return this.firstLayer;
    const parameters = this.model.namedParameters();
    // On the model's device and in its dtype, so both layers are computed alike.
    const twin = createEncoder({ config: { ...this.model.config, num_hidden_layers: 1 } });
    try {
      twin.to(this.model.device, parameters['word_embeddings.weight']!.dtype);
      const kept = Object.entries(parameters).filter(([name]) => !name.startsWith('layer.') || name.startsWith('layer.0.'));
      twin.loadStateDict(Object.fromEntries(kept));
    } finally {
      for (const t of Object.values(parameters)) t.dispose();
    }
    twin.setResidualScale(this.model.residualScale);
    this.firstLayer = twin.eval();
    return twin;
  }
}

/** The model's output (batch, seq, hidden) as float32 values, the tensor freed. */
async function hiddenStates(model: TrainableEncoder, inputIds: Tensor, attentionMask: Tensor): Promise<Float32Array> {
  const hidden = await model.forward(inputIds, { attentionMask });
  // toArray() reads float16/bfloat16 back as float32; float64 models are narrowed here.
  const values = hidden.toArray();
  hidden.dispose();
  return values instanceof Float32Array ? values : Float32Array.from(values as Float64Array);
}

/**
 * Text b's first `length` token states averaged, each token's state itself the
 * average over `layers` (one layer: mean pooling; two: first-last-avg). Sums in float64.
 */
function meanOverTokens(layers: Float32Array[], b: number, seq: number, length: number, hidden: number): Float32Array {
  const sum = new Float64Array(hidden);
  for (const states of layers) {
    for (let t = 0; t < length; t++) {
      const offset = (b * seq + t) * hidden;
      for (let h = 0; h < hidden; h++) sum[h] += states[offset + h]!;
    }
  }
  const scale = 1 / (length * layers.length);
  return Float32Array.from(sum, (v) => v * scale);
}

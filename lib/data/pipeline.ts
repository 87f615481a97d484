// The MLM data pipeline: documents → token ids → length-grouped batches →
// dynamic masking → tensors, with a position that resumes it exactly.
//
// Samples are read into a buffer of `bufferBatches` batches, sorted by length (so
// each batch needs little padding), cut into batches whose order is shuffled, and
// masked as each batch is emitted. A batch's `resume` position records where its
// buffer started (corpus position and random state) and how many of the buffer's
// batches have been used: replaying from there reproduces the very same batches.

import type { MicroBatch } from '../../bindings/native.js';
import type { Corpus, CorpusPosition } from './corpus.js';
import { maskSample, Random, type MaskingOptions, type MaskingVocab } from './masking.js';
import { tensor } from '../model/tensor.js';
import type { Tokenizer } from './tokenizer.js';
import { MIN_SEQUENCE_LENGTH } from './sequence-length.js';

export interface PipelineOptions {
  /** Tokens per sample including [CLS] and [SEP] (longer documents are truncated). Default 128. */
  maxLength?: number;
  /** Samples per batch. Default 32. */
  batchSize?: number;
  /** Batches per length-grouping buffer. Default 50. */
  bufferBatches?: number;
  masking?: MaskingOptions;
  seed?: number;
  /** Data-parallel: this rank's documents only, those with (file index + line) mod worldSize = rank. */
  shard?: { rank: number; worldSize: number };
}

/** The documents of one rank's shard; stateless, so a corpus position resumes it exactly. */
async function* shardOf<D extends { line: number; position: CorpusPosition }>(
  documents: AsyncGenerator<D>,
  shard: { rank: number; worldSize: number },
): AsyncGenerator<D> {
  let lastEpoch: number | null = null;
  for await (const doc of documents) {
    if ((doc.position.file + doc.line) % shard.worldSize === shard.rank) {
      lastEpoch = doc.position.epoch;
      yield doc;
    } else if (doc.position.epoch > (lastEpoch ?? doc.position.epoch - 1) + 1) {
      throw new Error(`rank ${shard.rank}'s shard of the corpus is empty: fewer training documents than the ${shard.worldSize} ranks?`);
    }
  }
}

export interface PipelinePosition {
  corpus: CorpusPosition | null;
  random: number;
  skip: number;
}

export interface MlmBatch {
  microBatch: MicroBatch;
  samples: number;
  /** Real (non-padding) tokens. */
  tokens: number;
  targets: number;
  /** Where to resume to get the batch after this one. */
  resume: PipelinePosition;
  dispose(): void;
}

/** Splits text into words for whole-word masking (a Chinese segmenter). */
export type Segmenter = (text: string) => string[];

let jieba: Segmenter | undefined;

/** jieba (via @node-rs/jieba, a prebuilt native module from npm), loaded on first use. */
export async function jiebaSegmenter(): Promise<Segmenter> {
  if (!jieba) {
    const { Jieba } = await import('@node-rs/jieba');
    const { dict } = await import('@node-rs/jieba/dict.js');
    const instance = Jieba.withDict(dict);
    jieba = (text) => instance.cut(text, false);
  }
  return jieba;
}

interface Sample {
  ids: number[];
  wordStarts?: boolean[];
}

export class MlmPipeline {
  readonly maxLength: number;
  readonly batchSize: number;
  readonly bufferBatches: number;
  private readonly vocab: MaskingVocab;

  constructor(
    private readonly corpus: Corpus,
    private readonly tokenizer: Tokenizer,
    private readonly options: PipelineOptions = {},
    private readonly segmenter?: Segmenter,
  ) {
    this.maxLength = options.maxLength ?? 128;
    this.batchSize = options.batchSize ?? 32;
    this.bufferBatches = options.bufferBatches ?? 50;
    if (this.maxLength < MIN_SEQUENCE_LENGTH) throw new RangeError(`maxLength must be at least ${MIN_SEQUENCE_LENGTH}`);
    if (this.batchSize < 1 || this.bufferBatches < 1) throw new RangeError('batchSize and bufferBatches must be positive');
    if (options.masking?.scheme === 'whole-word' && !segmenter) throw new Error('whole-word masking needs a segmenter');
    this.vocab = {
      maskId: tokenizer.maskId,
      size: tokenizer.size,
      specialIds: new Set([tokenizer.padId, tokenizer.unkId, tokenizer.clsId, tokenizer.sepId, tokenizer.maskId]),
    };
  }

  /** [CLS] tokens [SEP], truncated; with word starts for whole-word masking. */
  private sample(text: string): Sample {
    const limit = this.maxLength - 2;
    if (!this.segmenter) {
      const ids = [this.tokenizer.clsId];
      this.tokenizer.encodeText(text, ids);
      if (ids.length > limit + 1) ids.length = limit + 1;
      ids.push(this.tokenizer.sepId);
      return { ids };
    }
    const ids = [this.tokenizer.clsId];
    const wordStarts = [false];
    for (const word of this.segmenter(text)) {
      const before = ids.length;
      this.tokenizer.encodeText(word, ids);
      for (let i = before; i < ids.length; i++) wordStarts.push(i === before);
      if (ids.length > limit + 1) break;
    }
    ids.length = Math.min(ids.length, limit + 1);
    wordStarts.length = ids.length;
    ids.push(this.tokenizer.sepId);
    wordStarts.push(false);
    return { ids, wordStarts };
  }

  private build(samples: Sample[], random: Random): MlmBatch {
    const masked = samples.map((s) => maskSample(s.ids, this.vocab, random, this.options.masking, s.wordStarts));
    const seq = Math.max(...masked.map((m) => m.inputIds.length));
    const ids = new Int32Array(samples.length * seq); // [PAD] = 0
    const positions: number[] = [];
    const labels: number[] = [];
    let tokens = 0;
    masked.forEach((m, b) => {
      ids.set(m.inputIds, b * seq);
      tokens += m.inputIds.length;
      m.positions.forEach((p, k) => {
        positions.push(b * seq + p);
        labels.push(m.labels[k]!);
      });
    });
    const microBatch: MicroBatch = {
      inputIds: tensor(ids, [samples.length, seq], 'int64'),
      targetPositions: tensor(Int32Array.from(positions), [positions.length], 'int64'),
      targetIds: tensor(Int32Array.from(labels), [labels.length], 'int64'),
    };
    return {
      microBatch,
      samples: samples.length,
      tokens,
      targets: positions.length,
      resume: { corpus: null, random: 0, skip: 0 },
      dispose: () => {
        microBatch.inputIds.dispose();
        microBatch.targetPositions.dispose();
        microBatch.targetIds.dispose();
      },
    };
  }

  /** Training batches, forever (epoch after epoch), from `from` or the start. */
  async *batches(from?: PipelinePosition): AsyncGenerator<MlmBatch> {
    let bufferStart: CorpusPosition | null = from?.corpus ?? null;
    const random = new Random(from?.random ?? this.options.seed ?? 0);
    let skip = from?.skip ?? 0;
    const all = this.corpus.train(bufferStart ?? undefined);
    const shard = this.options.shard;
    const documents = shard && shard.worldSize > 1 ? shardOf(all, shard) : all;

    for (;;) {
      const startRandom = random.state;
      const buffer: Sample[] = [];
      let last: CorpusPosition | null = bufferStart;
      while (buffer.length < this.batchSize * this.bufferBatches) {
        const next = await documents.next();
        if (next.done) break;
        buffer.push(this.sample(next.value.text));
        last = next.value.position;
      }
      if (buffer.length === 0) return;

      // Length grouping: similar lengths share a batch; the batch order is shuffled.
      const order = buffer.map((s, i) => i).sort((a, b) => buffer[a]!.ids.length - buffer[b]!.ids.length || a - b);
      const groups: Sample[][] = [];
      for (let i = 0; i < order.length; i += this.batchSize) groups.push(order.slice(i, i + this.batchSize).map((j) => buffer[j]!));
      for (let i = groups.length - 1; i > 0; i--) {
        const j = random.int(i + 1);
        [groups[i], groups[j]] = [groups[j]!, groups[i]!];
      }

      for (let k = 0; k < groups.length; k++) {
        if (k < skip) {
          // Replay the masks drawn for batches already used, so the random state matches.
          for (const s of groups[k]!) maskSample(s.ids, this.vocab, random, this.options.masking, s.wordStarts);
          continue;
        }
        const batch = this.build(groups[k]!, random);
        batch.resume = { corpus: bufferStart, random: startRandom, skip: k + 1 };
        yield batch;
      }
      skip = 0;
      bufferStart = last;
    }
  }

  /**
   * Held-out batches with fixed masks (the same every time), so evaluations
   * across training are comparable. Up to `maxBatches`.
   */
  async evalBatches(maxBatches: number, seed = 12345): Promise<MlmBatch[]> {
    const random = new Random(seed);
    const batches: MlmBatch[] = [];
    let pending: Sample[] = [];
    for await (const doc of this.corpus.heldOut()) {
      pending.push(this.sample(doc.text));
      if (pending.length === this.batchSize) {
        batches.push(this.build(pending, random));
        pending = [];
        if (batches.length >= maxBatches) return batches;
      }
    }
    if (pending.length > 0) batches.push(this.build(pending, random));
    return batches;
  }
}

// The MLM data pipeline: documents → token ids → rows (one document each, length-
// grouped; or several short documents packed into one row) → dynamic masking →
// tensors, with a position that resumes it exactly.
//
// Samples are read into a buffer of `bufferBatches` batches and arranged into rows:
// either sorted by length (so each batch needs little padding), one sample a row, or
// packed (`pack`), first-fit decreasing, several samples a row up to maxLength. The
// rows are cut into batches whose order is shuffled, and masked as each batch is
// emitted. A packed batch's attentionMask numbers the documents of each row (1, 2, …;
// 0 = padding), so the model keeps each document's attention and RoPE positions to
// itself (native/encoder_model.h): a document trains as it would alone.
//
// MLM targets come in a fixed number of slots per batch (⌈p·rows·seq⌉ rounded up to a
// multiple of 8, p the masking rate; more only when the draw exceeds it), unused slots
// with the target id IGNORED_TARGET, so the MLM head's shapes stay the same from step
// to step (packed batches always have seq = maxLength). On CUDA the lengths round up to a few
// buckets (`lengthBuckets`, lib/data/length-buckets.ts), so that a run has few step shapes.
//
// A batch's `resume` position records where its buffer started (corpus position and
// random state) and how many of the buffer's batches have been used: replaying from
// there reproduces the very same batches.

import type { MicroBatch } from '../../bindings/native.js';
import type { Corpus, CorpusPosition } from './corpus.js';
import { maskSample, Random, type MaskingOptions, type MaskingVocab } from './masking.js';
import { tensor } from '../model/tensor.js';
import type { Tokenizer } from './tokenizer.js';
import { bucketedLength } from './length-buckets.js';
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
  /** Several documents per row (training batches; held-out batches keep one per row). Default false. */
  pack?: boolean;
  /**
   * Each batch's length rounded up to a multiple of LENGTH_BUCKET (at most maxLength), the
   * extra columns padding, so that a run has few step shapes (each its own CUDA graph). Default false.
   */
  lengthBuckets?: boolean;
}

/** The target id of an unused MLM target slot (native kIgnoredTarget, PyTorch's ignore_index). */
export const IGNORED_TARGET = -100;

/** Target slots are allotted in multiples of this. */
const TARGET_SLOT_MULTIPLE = 8;

/**
 * Target slots for a batch of `rows` × `seq` holding `targets` targets masked at `rate` (see the
 * file comment): the same for every batch of a shape unless a draw exceeds ⌈rate·rows·seq⌉.
 */
export function targetSlotCount(rows: number, seq: number, targets: number, rate: number): number {
  const slots = Math.max(Math.ceil(rate * rows * seq), targets);
  return Math.max(TARGET_SLOT_MULTIPLE, Math.ceil(slots / TARGET_SLOT_MULTIPLE) * TARGET_SLOT_MULTIPLE);
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
  /** Documents in the batch (more than its rows when packed). */
  samples: number;
  /** Real (non-padding) tokens. */
  tokens: number;
  /** MLM targets (the target slots not IGNORED_TARGET). */
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

/** One row of a batch: its documents, one after the other. */
type Row = Sample[];

const rowLength = (row: Row) => row.reduce((n, s) => n + s.ids.length, 0);

/** Rows of one sample each, sorted by length (ties in reading order): little padding per batch. */
function lengthGroupedRows(samples: Sample[]): Row[] {
  const order = samples.map((s, i) => i).sort((a, b) => samples[a]!.ids.length - samples[b]!.ids.length || a - b);
  return order.map((i) => [samples[i]!]);
}

/**
 * Rows of up to `maxLength` tokens holding several samples each: first-fit decreasing
 * (longest first, each into the first row with room), which leaves little padding.
 */
export function packedRows(samples: Sample[], maxLength: number): Row[] {
  const order = samples.map((s, i) => i).sort((a, b) => samples[b]!.ids.length - samples[a]!.ids.length || a - b);
  const rows: Row[] = [];
  const free: number[] = [];
  for (const i of order) {
    const sample = samples[i]!;
    const r = free.findIndex((room) => room >= sample.ids.length);
    if (r >= 0) {
      rows[r]!.push(sample);
      free[r]! -= sample.ids.length;
    } else {
      rows.push([sample]);
      free.push(maxLength - sample.ids.length);
    }
  }
  return rows;
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

  private build(rows: Row[], random: Random, masking = this.options.masking): MlmBatch {
    const masked = rows.map((row) => row.map((s) => maskSample(s.ids, this.vocab, random, masking, s.wordStarts)));
    const packed = rows.some((row) => row.length > 1);
    const longest = Math.max(...rows.map(rowLength));
    const seq = this.options.lengthBuckets ? bucketedLength(longest, this.maxLength) : longest;
    const ids = new Int32Array(rows.length * seq); // [PAD] = 0
    const documents = packed ? new Int32Array(rows.length * seq) : undefined; // document numbers, 0 = padding
    const positions: number[] = [];
    const labels: number[] = [];
    let tokens = 0;
    let samples = 0;
    masked.forEach((row, b) => {
      let offset = b * seq;
      row.forEach((m, d) => {
        ids.set(m.inputIds, offset);
        documents?.fill(d + 1, offset, offset + m.inputIds.length);
        m.positions.forEach((p, k) => {
          positions.push(offset + p);
          labels.push(m.labels[k]!);
        });
        offset += m.inputIds.length;
        tokens += m.inputIds.length;
        samples++;
      });
    });
    const targets = positions.length;
    const slots = targetSlotCount(rows.length, seq, targets, masking?.probability ?? 0.15);
    // Unused slots point at the first target (any real position would do): the loss ignores them.
    const targetPositions = new Int32Array(slots).fill(positions[0] ?? 0);
    const targetIds = new Int32Array(slots).fill(IGNORED_TARGET);
    targetPositions.set(positions);
    targetIds.set(labels);
    const microBatch: MicroBatch = {
      inputIds: tensor(ids, [rows.length, seq], 'int64'),
      ...(documents ? { attentionMask: tensor(documents, [rows.length, seq], 'int64') } : {}),
      targetPositions: tensor(targetPositions, [slots], 'int64'),
      targetIds: tensor(targetIds, [slots], 'int64'),
    };
    return {
      microBatch,
      samples,
      tokens,
      targets,
      resume: { corpus: null, random: 0, skip: 0 },
      dispose: () => {
        microBatch.inputIds.dispose();
        microBatch.attentionMask?.dispose();
        microBatch.targetPositions.dispose();
        microBatch.targetIds.dispose();
      },
    };
  }

  /** The median length in tokens ([CLS] and [SEP] included, truncated) of the first `documents` training documents. */
  async medianLength(documents = 2000): Promise<number> {
    const lengths: number[] = [];
    for await (const doc of this.corpus.train()) {
      if (doc.position.epoch > 0 || lengths.length >= documents) break;
      lengths.push(this.sample(doc.text).ids.length);
    }
    lengths.sort((a, b) => a - b);
    return lengths.length === 0 ? 0 : lengths[Math.floor((lengths.length - 1) / 2)]!;
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

      // Rows (packed, or length-grouped: similar lengths share a batch); the batch order is shuffled.
      const rows = this.options.pack ? packedRows(buffer, this.maxLength) : lengthGroupedRows(buffer);
      const groups: Row[][] = [];
      for (let i = 0; i < rows.length; i += this.batchSize) groups.push(rows.slice(i, i + this.batchSize));
      for (let i = groups.length - 1; i > 0; i--) {
        const j = random.int(i + 1);
        [groups[i], groups[j]] = [groups[j]!, groups[i]!];
      }

      for (let k = 0; k < groups.length; k++) {
        if (k < skip) {
          // Replay the masks drawn for batches already used, so the random state matches.
          for (const s of groups[k]!.flat()) maskSample(s.ids, this.vocab, random, this.options.masking, s.wordStarts);
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
   * across training are comparable. Up to `maxBatches`; masked at `probability`
   * (default: the training rate).
   */
  async evalBatches(maxBatches: number, seed = 12345, probability?: number): Promise<MlmBatch[]> {
    const masking = probability === undefined ? this.options.masking : { ...this.options.masking, probability };
    const random = new Random(seed);
    const batches: MlmBatch[] = [];
    let pending: Row[] = [];
    for await (const doc of this.corpus.heldOut()) {
      pending.push([this.sample(doc.text)]);
      if (pending.length === this.batchSize) {
        batches.push(this.build(pending, random, masking));
        pending = [];
        if (batches.length >= maxBatches) return batches;
      }
    }
    if (pending.length > 0) batches.push(this.build(pending, random, masking));
    return batches;
  }
}

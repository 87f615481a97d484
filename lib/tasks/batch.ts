// Examples → native micro-batches, and the light input noise of supervised training.
//
//   const batch = collate(examples, { task: 'tnews' });        // padded to the longest example
//   const { tasks } = await trainer.step([batch]);
//   disposeBatch(batch);
//
// Field names and shapes per kind are those of TaskMicroBatch (bindings/native.ts).

import type { TaskMicroBatch, Tensor } from '../../bindings/native.js';
import { Random } from '../data/masking.js';
import { tensor } from '../model/tensor.js';
import type { EncodedText, Example, HeadKind } from './types.js';

export class BatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BatchError';
  }
}

export interface CollateOptions {
  /** The head's task name (TaskMicroBatch.task). */
  task: string;
  /** multilabel: the number of labels (the width of the dense targets). */
  numLabels?: number;
  /** The padding id (default 0, [PAD]). */
  padId?: number;
  /** Light input noise on the token ids (see addInputNoise); off when absent. */
  noise?: InputNoiseOptions & { random: Random };
}

/** The authors' light noise for supervised inputs. */
export interface InputNoiseOptions {
  /** Fraction of ordinary tokens corrupted (default 0.15). */
  rate?: number;
  /** The [MASK] id. */
  maskId: number;
  /** Random replacements are drawn from [0, vocabSize) minus `specialIds`. */
  vocabSize: number;
  /** Ids never corrupted nor drawn ([PAD], [UNK], [CLS], [SEP], [MASK]). */
  specialIds: Iterable<number>;
  /** Of the corrupted tokens: this fraction becomes [MASK] (default 0.8)… */
  maskFraction?: number;
  /** …this fraction a random ordinary token (default 0.1); the rest stay as they are. */
  randomFraction?: number;
}

/**
 * Corrupts ≈`rate` of the ordinary (non-special) tokens in adjacent pairs: walking
 * the sequence, a pair starts at an ordinary token with probability q = rate / (2 − rate),
 * which makes the expected corrupted fraction 2q / (1 + q) = rate. A corrupted token is
 * mostly [MASK]. Returns new ids; labels are untouched (no loss on the noise).
 */
export function addInputNoise(ids: readonly number[], random: Random, options: InputNoiseOptions): number[] {
  const rate = options.rate ?? 0.15;
  if (!(rate >= 0 && rate < 1)) throw new BatchError(`input noise rate must be in [0, 1), got ${rate}`);
  const maskFraction = options.maskFraction ?? 0.8;
  const randomFraction = options.randomFraction ?? 0.1;
  const special = new Set(options.specialIds);
  const ordinary = (id: number | undefined) => id !== undefined && !special.has(id);
  const out = [...ids];
  const start = rate / (2 - rate);
  const corrupt = (i: number) => {
    const u = random.next();
    if (u < maskFraction) out[i] = options.maskId;
    else if (u < maskFraction + randomFraction) {
      let id: number;
      do id = random.int(options.vocabSize);
      while (special.has(id));
      out[i] = id;
    }
  };
  for (let i = 0; i < ids.length; i++) {
    if (!ordinary(ids[i]) || random.next() >= start) continue;
    corrupt(i);
    if (ordinary(ids[i + 1])) {
      corrupt(i + 1);
      i++;
    }
  }
  return out;
}

/** An example with input noise on its ids (every option's, for multiple choice). */
export function noisyExample(example: Example, random: Random, options: InputNoiseOptions): Example {
  if (example.kind === 'multiple-choice') {
    return { ...example, choices: example.choices.map((c) => ({ ...c, ids: addInputNoise(c.ids, random, options) })) };
  }
  return { ...example, ids: addInputNoise(example.ids, random, options) };
}

/** Rows of ids padded to one length: inputIds, tokenTypeIds, attentionMask as int64 (rows, seq). */
function padRows(rows: readonly EncodedText[], padId: number): Pick<TaskMicroBatch, 'inputIds' | 'tokenTypeIds' | 'attentionMask'> {
  const seq = Math.max(1, ...rows.map((r) => r.ids.length));
  const ids = new BigInt64Array(rows.length * seq).fill(BigInt(padId));
  const types = new BigInt64Array(rows.length * seq);
  const mask = new BigInt64Array(rows.length * seq);
  rows.forEach((row, r) => {
    if (row.typeIds.length !== row.ids.length) throw new BatchError(`an example has ${row.ids.length} ids but ${row.typeIds.length} typeIds`);
    for (let s = 0; s < row.ids.length; s++) {
      ids[r * seq + s] = BigInt(row.ids[s]!);
      types[r * seq + s] = BigInt(row.typeIds[s]!);
      mask[r * seq + s] = 1n;
    }
  });
  const shape = [rows.length, seq];
  return { inputIds: tensor(ids, shape, 'int64'), tokenTypeIds: tensor(types, shape, 'int64'), attentionMask: tensor(mask, shape, 'int64') };
}

/**
 * One native micro-batch from examples of one kind: sequences padded to the longest,
 * an attention mask, and the labels in the kind's layout (TaskMicroBatch). Multiple
 * choice: each example's options are consecutive rows, padded to the most options
 * with empty rows that `choiceMask` marks 0. Spans: a sparse (n, 4) index list, ends
 * inclusive as in types.ts.
 */
export function collate(examples: readonly Example[], options: CollateOptions): TaskMicroBatch {
  if (examples.length === 0) throw new BatchError('collate: no examples');
  const kind: HeadKind = examples[0]!.kind;
  const mixed = examples.find((e) => e.kind !== kind);
  if (mixed) throw new BatchError(`collate: one micro-batch holds one kind of example, got ${kind} and ${mixed.kind}`);
  const noise = options.noise;
  const list = noise ? examples.map((e) => noisyExample(e, noise.random, noise)) : examples;
  const padId = options.padId ?? 0;
  const task = options.task;

  switch (kind) {
    case 'classification': {
      const items = list as Array<Extract<Example, { kind: 'classification' }>>;
      items.forEach((e, i) => {
        if (!Number.isInteger(e.label) || e.label < 0) throw new BatchError(`collate: example ${i} has label ${e.label}, not a class index`);
      });
      return { task, ...padRows(items, padId), labels: tensor(BigInt64Array.from(items, (e) => BigInt(e.label)), [items.length], 'int64') };
    }
    case 'multilabel': {
      const items = list as Array<Extract<Example, { kind: 'multilabel' }>>;
      const numLabels = options.numLabels;
      if (!Number.isInteger(numLabels) || numLabels! < 1) throw new BatchError('collate: multilabel examples need options.numLabels');
      const targets = new Float32Array(items.length * numLabels!);
      items.forEach((e, i) => {
        for (const l of e.labels) {
          if (!Number.isInteger(l) || l < 0 || l >= numLabels!) throw new BatchError(`collate: example ${i} has label ${l}, outside [0, ${numLabels})`);
          targets[i * numLabels! + l] = 1;
        }
      });
      return { task, ...padRows(items, padId), labels: tensor(targets, [items.length, numLabels!], 'float32') };
    }
    case 'multiple-choice': {
      const items = list as Array<Extract<Example, { kind: 'multiple-choice' }>>;
      const options = Math.max(...items.map((e) => e.choices.length));
      if (options < 1) throw new BatchError('collate: a multiple-choice example has no options');
      const empty: EncodedText = { ids: [], typeIds: [] };
      const rows: EncodedText[] = [];
      const choiceMask = new BigInt64Array(items.length * options);
      items.forEach((e, i) => {
        if (!Number.isInteger(e.label) || e.label < 0 || e.label >= e.choices.length) {
          throw new BatchError(`collate: example ${i} has label ${e.label} but ${e.choices.length} options`);
        }
        for (let c = 0; c < options; c++) {
          rows.push(e.choices[c] ?? empty);
          if (c < e.choices.length) choiceMask[i * options + c] = 1n;
        }
      });
      return {
        task,
        ...padRows(rows, padId),
        choiceMask: tensor(choiceMask, [items.length, options], 'int64'),
        labels: tensor(BigInt64Array.from(items, (e) => BigInt(e.label)), [items.length], 'int64'),
      };
    }
    case 'span': {
      const items = list as Array<Extract<Example, { kind: 'span' }>>;
      const rows: bigint[] = [];
      items.forEach((e, i) => {
        for (const s of e.spans) {
          if (!(Number.isInteger(s.start) && Number.isInteger(s.end) && 0 <= s.start && s.start <= s.end && s.end < e.ids.length)) {
            throw new BatchError(`collate: example ${i} has span [${s.start}, ${s.end}] (end inclusive) outside its ${e.ids.length} tokens`);
          }
          rows.push(BigInt(i), BigInt(s.label), BigInt(s.start), BigInt(s.end));
        }
      });
      return { task, ...padRows(items, padId), spanLabels: tensor(BigInt64Array.from(rows), [rows.length / 4, 4], 'int64') };
    }
  }
}

/** Frees every tensor of a micro-batch. */
export function disposeBatch(batch: { [key: string]: unknown }): void {
  for (const value of Object.values(batch)) {
    if (value && typeof value === 'object' && 'dispose' in value && typeof (value as Tensor).dispose === 'function') (value as Tensor).dispose();
  }
}

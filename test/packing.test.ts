// Packed sequences: several documents in one row, the attentionMask numbering them.
// Each document must see exactly what it sees alone in a row of its own: the same
// hidden states, the same MLM loss, the same training step. And the fixed MLM target
// slots: unused slots (target id -100) change neither the loss nor the update.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { buildVocab, Corpus, GauAlpha, MlmPipeline, RobertaBaseline, RoFormerV2, tensor, Tokenizer, Trainer, type Tensor } from '../lib/index.js';
import { IGNORED_TARGET, packedRows } from '../lib/data/pipeline.js';
import { maxAbsDiff } from './reference.js';
import { TINY_CONFIG as tiny, values } from './native-helpers.js';

// Three documents ([CLS] … [SEP] = 2 … 3) of 5, 7 and 4 tokens.
const documents = [
  [2, 7, 9, 11, 3],
  [2, 5, 13, 17, 19, 23, 3],
  [2, 29, 31, 3],
];

/** Rows of documents → ids, and the attention mask numbering each row's documents (0 = padding). */
function layout(rows: number[][][]) {
  const seq = Math.max(...rows.map((row) => row.reduce((n, d) => n + d.length, 0)));
  const ids: number[][] = [];
  const mask: number[][] = [];
  const starts: Array<{ row: number; offset: number }> = []; // where each document begins, in order
  rows.forEach((row, r) => {
    const rowIds = new Array<number>(seq).fill(0);
    const rowMask = new Array<number>(seq).fill(0);
    let offset = 0;
    row.forEach((doc, d) => {
      starts.push({ row: r, offset });
      doc.forEach((id, i) => {
        rowIds[offset + i] = id;
        rowMask[offset + i] = d + 1;
      });
      offset += doc.length;
    });
    ids.push(rowIds);
    mask.push(rowMask);
  });
  return { seq, ids: tensor(ids, undefined, 'int64'), mask: tensor(mask, undefined, 'int64'), starts };
}

const packed = layout([[documents[0]!, documents[1]!], [documents[2]!]]);
const alone = layout(documents.map((d) => [d]));

/** Each document's hidden states (its tokens' rows), in document order. */
function perDocument(hidden: Tensor, seq: number, starts: Array<{ row: number; offset: number }>): Float64Array[] {
  const all = values(hidden);
  const width = hidden.shape[2]!;
  return starts.map(({ row, offset }, d) => all.slice((row * seq + offset) * width, (row * seq + offset + documents[d]!.length) * width));
}

/** Flat positions (into batch·seq) of the same targets (document, token index) in a layout. */
const targets: Array<[number, number]> = [[0, 2], [0, 3], [1, 1], [1, 5], [2, 1]];
const flat = (l: typeof packed) => targets.map(([d, i]) => l.starts[d]!.row * l.seq + l.starts[d]!.offset + i);
const targetIds = targets.map(([d, i]) => documents[d]![i]!);

function crossEntropySum(logits: Tensor, labels: number[]): number {
  const v = values(logits);
  const vocab = logits.shape[1]!;
  let sum = 0;
  labels.forEach((label, r) => {
    const row = v.subarray(r * vocab, (r + 1) * vocab);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    sum += lse - row[label]!;
  });
  return sum;
}

describe('packed sequences', () => {
  for (const [name, create] of [
    ['RoFormerV2', (seed: number) => RoFormerV2.create({ config: tiny, seed })],
    ['the baseline', (seed: number) => RobertaBaseline.create({ config: tiny, seed })],
    // GAU-α with its default softmax_plus: n (the keys a query may see) is its own document's length.
    ['GAU-α', (seed: number) => GauAlpha.create({ config: { ...tiny, num_attention_heads: 1, attention_key_size: 8 }, seed })],
  ] as const) {
    it(`${name}: a packed row gives each document the hidden states and MLM loss it has alone (float64)`, async () => {
      const model = create(1).to('cpu', 'float64').eval();
      const hiddenPacked = await model.forward(packed.ids, { attentionMask: packed.mask });
      const hiddenAlone = await model.forward(alone.ids, { attentionMask: alone.mask });
      const a = perDocument(hiddenPacked, packed.seq, packed.starts);
      const b = perDocument(hiddenAlone, alone.seq, alone.starts);
      for (let d = 0; d < documents.length; d++) expect(maxAbsDiff(a[d]!, b[d]!)).toBeLessThan(1e-12);

      const lossPacked = crossEntropySum(await model.mlmLogits(hiddenPacked, tensor(flat(packed), undefined, 'int64')), targetIds);
      const lossAlone = crossEntropySum(await model.mlmLogits(hiddenAlone, tensor(flat(alone), undefined, 'int64')), targetIds);
      expect(Math.abs(lossPacked - lossAlone)).toBeLessThan(1e-12);

      // Without the document numbers (a plain 0/1 mask) the documents would see each other.
      const binary = tensor(Array.from(packed.mask.toArray() as BigInt64Array, (x) => (x > 0n ? 1 : 0)), [2, packed.seq], 'int64');
      const leaked = perDocument(await model.forward(packed.ids, { attentionMask: binary }), packed.seq, packed.starts);
      expect(maxAbsDiff(leaked[1]!, b[1]!)).toBeGreaterThan(1e-6);
    });
  }

  it('trains the same: a packed batch gives the step loss and weights of the same documents unpacked', async () => {
    const run = async (l: typeof packed) => {
      const model = RoFormerV2.create({ config: tiny, seed: 2 });
      const trainer = new Trainer(model, { lr: 1e-2 });
      const batch = { inputIds: l.ids, attentionMask: l.mask, targetPositions: tensor(flat(l), undefined, 'int64'), targetIds: tensor(targetIds, undefined, 'int64') };
      const losses = [];
      for (let step = 0; step < 3; step++) losses.push((await trainer.step(batch)).loss);
      return { losses, weights: values(model.namedParameters()['layer.0.attention.query.weight']!) };
    };
    const p = await run(packed);
    const u = await run(alone);
    for (let i = 0; i < 3; i++) expect(Math.abs(p.losses[i]! - u.losses[i]!)).toBeLessThan(1e-5);
    expect(maxAbsDiff(p.weights, u.weights)).toBeLessThan(1e-5);
  });
});

describe('fixed MLM target slots', () => {
  it('unused slots (target id -100) change neither the loss, the evaluation nor the update', async () => {
    const ids = tensor([[2, 7, 9, 11, 3, 0], [2, 5, 13, 17, 19, 3]], undefined, 'int64');
    const exact = { positions: [2, 3, 8, 10], ids: [9, 11, 13, 19] };
    const slots = { positions: [...exact.positions, 2, 2, 2, 2], ids: [...exact.ids, IGNORED_TARGET, IGNORED_TARGET, IGNORED_TARGET, IGNORED_TARGET] };
    const run = async (t: typeof exact) => {
      const model = RoFormerV2.create({ config: tiny, seed: 3 });
      const trainer = new Trainer(model, { lr: 1e-2 });
      const batch = { inputIds: ids, targetPositions: tensor(t.positions, undefined, 'int64'), targetIds: tensor(t.ids, undefined, 'int64') };
      const steps = [];
      for (let step = 0; step < 3; step++) steps.push(await trainer.step(batch));
      const evaluation = await trainer.evaluate(batch);
      return { steps, evaluation, weights: values(model.namedParameters()['word_embeddings.weight']!) };
    };
    const a = await run(exact);
    const b = await run(slots);
    for (let i = 0; i < 3; i++) {
      expect(b.steps[i]!.targets).toBe(4);
      expect(Math.abs(a.steps[i]!.loss - b.steps[i]!.loss)).toBeLessThan(1e-6);
      expect(Math.abs(a.steps[i]!.gradNorm - b.steps[i]!.gradNorm)).toBeLessThan(1e-6);
    }
    expect(b.evaluation.targets).toBe(4);
    expect(b.evaluation.correct).toBe(a.evaluation.correct);
    expect(Math.abs(a.evaluation.lossSum - b.evaluation.lossSum)).toBeLessThan(1e-5);
    expect(maxAbsDiff(a.weights, b.weights)).toBeLessThan(1e-6);
  });

  it('a batch of unused slots only is refused', async () => {
    const trainer = new Trainer(RoFormerV2.create({ config: tiny, seed: 4 }));
    const batch = { inputIds: tensor([[2, 7, 3]], undefined, 'int64'), targetPositions: tensor([1], undefined, 'int64'), targetIds: tensor([IGNORED_TARGET], undefined, 'int64') };
    await expect(trainer.step(batch)).rejects.toThrow(/no MLM targets/);
  });
});

describe('packing pipeline', () => {
  it('first-fit decreasing packs every sample once, no row over maxLength', () => {
    const lengths = [30, 5, 12, 40, 7, 7, 20, 3, 33, 9];
    const samples = lengths.map((n, i) => ({ ids: new Array<number>(n).fill(i) }));
    const rows = packedRows(samples, 40);
    expect(rows.flat().map((s) => s.ids[0]).sort((x, y) => x! - y!)).toEqual(lengths.map((_, i) => i));
    for (const row of rows) expect(row.reduce((n, s) => n + s.ids.length, 0)).toBeLessThanOrEqual(40);
    expect(rows.length).toBe(Math.ceil(lengths.reduce((a, b) => a + b) / 40)); // 166 tokens: 5 rows, as few as possible
  });

  it('packed batches: documents numbered per row, full rows, fixed target slots, exact resume', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'roformer-pack-'));
    const lines = Array.from({ length: 400 }, (_, i) => '春眠不觉晓处处闻啼鸟夜来风雨声花落知多少'.slice(0, 4 + (i % 13)));
    const file = join(dir, 'short.txt');
    writeFileSync(file, lines.join('\n') + '\n');
    const corpus = await Corpus.open({ paths: [file], evalFraction: 0 });
    const tokenizer = Tokenizer.fromTokens(await buildVocab(lines, { size: 200 }));
    const options = { maxLength: 32, batchSize: 4, bufferBatches: 3, seed: 5 };
    const pipeline = new MlmPipeline(corpus, tokenizer, { ...options, pack: true });
    expect(await pipeline.medianLength()).toBeLessThan(16);

    const seen: Array<{ ids: number[]; mask: number[]; targets: number[] }> = [];
    let resumeAfter2 = null;
    for await (const batch of pipeline.batches()) {
      const mb = batch.microBatch;
      const [rows, seq] = mb.inputIds.shape as [number, number];
      const ids = Array.from(mb.inputIds.toArray() as BigInt64Array, Number);
      const mask = Array.from(mb.attentionMask!.toArray() as BigInt64Array, Number);
      const targetIds = Array.from(mb.targetIds.toArray() as BigInt64Array, Number);
      expect(seq).toBeLessThanOrEqual(32);
      expect(batch.samples).toBeGreaterThan(rows); // several documents per row
      // each document starts with [CLS] and is numbered from 1 up, padding 0
      for (let r = 0; r < rows; r++) {
        let previous = 0;
        for (let t = 0; t < seq; t++) {
          const d = mask[r * seq + t]!;
          if (d !== previous && d !== 0) {
            expect(d).toBe(previous + 1);
            expect(ids[r * seq + t]).toBe(tokenizer.clsId);
          }
          if (d === 0) expect(ids[r * seq + t]).toBe(tokenizer.padId);
          previous = d;
        }
      }
      expect(batch.tokens).toBe(mask.filter((d) => d > 0).length);
      // ⌈0.15 · rows · seq⌉ (or the targets drawn, if more) rounded up to a multiple of 8
      expect(targetIds.length % 8).toBe(0);
      expect(targetIds.length).toBeGreaterThanOrEqual(Math.ceil(0.15 * rows * seq));
      expect(targetIds.filter((t) => t !== IGNORED_TARGET).length).toBe(batch.targets);
      seen.push({ ids, mask, targets: targetIds });
      if (seen.length === 3) resumeAfter2 = batch.resume;
      batch.dispose();
      if (seen.length === 8) break;
    }
    let j = 3;
    for await (const batch of pipeline.batches(resumeAfter2!)) {
      expect(Array.from(batch.microBatch.inputIds.toArray() as BigInt64Array, Number)).toEqual(seen[j]!.ids);
      expect(Array.from(batch.microBatch.attentionMask!.toArray() as BigInt64Array, Number)).toEqual(seen[j]!.mask);
      expect(Array.from(batch.microBatch.targetIds.toArray() as BigInt64Array, Number)).toEqual(seen[j]!.targets);
      batch.dispose();
      if (++j === 8) break;
    }
    expect(j).toBe(8);
  });
});

// Task heads against float64 references written here: each loss and its gradient
// (finite differences in float64), the ZLPR edge cases (sparse = dense, x = 0, −inf
// masks, fp16), GlobalPointer's RoPE pairing, the span loss as a batch mean, and the
// batching of examples (collate, input noise, decoding).

import { describe, expect, it } from 'vitest';

import {
  RoFormerV2,
  RotaryEmbedding,
  Trainer,
  addInputNoise,
  collate,
  decodePredictions,
  loadNative,
  tensor,
  type Example,
  type TaskMicroBatch,
} from '../lib/index.js';
import { Random } from '../lib/data/masking.js';
import { seededRandom } from './reference.js';
import { values } from './native-helpers.js';

const tiny = { vocab_size: 60, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32 };
const noDropout = { ...tiny, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
const HIDDEN = 16;

// ---------------------------------------------------------------------------
// float64 references
// ---------------------------------------------------------------------------

/** log(1 + Σ e^x), skipping −inf. */
function log1pSumExp(xs: number[]): number {
  const all = [0, ...xs.filter((x) => x !== -Infinity)];
  const m = Math.max(...all);
  return m + Math.log(all.reduce((acc, x) => acc + Math.exp(x - m), 0));
}

/** ZLPR: log(1 + Σ t e^{−s}) + log(1 + Σ (1−t) e^{s}) over the valid, finite entries. */
function zlpr(s: ArrayLike<number>, t: ArrayLike<number>, valid?: (i: number) => boolean): number {
  const pos: number[] = [];
  const neg: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if ((valid && !valid(i)) || s[i] === -Infinity) continue;
    if (t[i]! > 0) pos.push(-s[i]! + Math.log(t[i]!));
    if (t[i]! < 1) neg.push(s[i]! + Math.log(1 - t[i]!));
  }
  return log1pSumExp(pos) + log1pSumExp(neg);
}

function crossEntropy(logits: number[], label: number): number {
  const m = Math.max(...logits);
  return m + Math.log(logits.reduce((acc, x) => acc + Math.exp(x - m), 0)) - logits[label]!;
}

/** Central differences of f at w (float64). */
function numericGradient(f: (w: Float64Array) => number, w: Float64Array, h = 1e-6): Float64Array {
  const grad = new Float64Array(w.length);
  const x = Float64Array.from(w);
  for (let i = 0; i < w.length; i++) {
    x[i] = w[i]! + h;
    const up = f(x);
    x[i] = w[i]! - h;
    const down = f(x);
    x[i] = w[i]!;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

/** row · W[r] for W stored (out, in). */
function dotRow(w: ArrayLike<number>, r: number, x: ArrayLike<number>, xOffset: number, n = HIDDEN): number {
  let acc = 0;
  for (let k = 0; k < n; k++) acc += w[r * n + k]! * x[xOffset + k]!;
  return acc;
}

/** Interleaved RoPE of one vector at position p (spec §1). */
function rope(x: number[], p: number, base = 10000): number[] {
  const d = x.length;
  const out = [...x];
  for (let i = 0; i < d / 2; i++) {
    const angle = p * Math.pow(base, (-2 * i) / d);
    out[2 * i] = x[2 * i]! * Math.cos(angle) - x[2 * i + 1]! * Math.sin(angle);
    out[2 * i + 1] = x[2 * i]! * Math.sin(angle) + x[2 * i + 1]! * Math.cos(angle);
  }
  return out;
}

/** GlobalPointer scores (batch, labels, seq, seq) in float64 from hidden states and the q/k weight. */
function globalPointerScores(h: Float64Array, w: Float64Array, lengths: number[], seq: number, labels: number, d: number): Float64Array {
  const out = new Float64Array(lengths.length * labels * seq * seq).fill(-Infinity);
  for (let b = 0; b < lengths.length; b++) {
    for (let n = 0; n < labels; n++) {
      const project = (offset: number, i: number) =>
        rope(Array.from({ length: d }, (_, c) => dotRow(w, n * 2 * d + offset + c, h, (b * seq + i) * HIDDEN)), i);
      const q = Array.from({ length: seq }, (_, i) => project(0, i));
      const k = Array.from({ length: seq }, (_, i) => project(d, i));
      for (let i = 0; i < lengths[b]!; i++) {
        for (let j = i; j < lengths[b]!; j++) {
          out[((b * labels + n) * seq + i) * seq + j] = q[i]!.reduce((acc, v, c) => acc + v * k[j]![c]!, 0) / Math.sqrt(d);
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

function randomIds(rand: () => number, lengths: number[], seq: number): number[][] {
  return lengths.map((len) => Array.from({ length: seq }, (_, s) => (s === 0 ? 2 : s === len - 1 ? 3 : s >= len ? 0 : 5 + Math.floor(rand() * 55))));
}

async function hiddenStates(model: RoFormerV2, batch: TaskMicroBatch): Promise<Float64Array> {
  const h = await model.forward(batch.inputIds, { attentionMask: batch.attentionMask ?? undefined });
  const v = values(h);
  h.dispose();
  return v;
}

function headWeight(trainer: Trainer, name: string): Float64Array {
  const params = trainer.headParameters();
  const v = values(params[name]!);
  for (const t of Object.values(params)) t.dispose();
  return v;
}

async function gradientOf(trainer: Trainer, batch: TaskMicroBatch, name: string): Promise<{ grad: Float64Array; loss: number }> {
  const { gradients, tasks } = await trainer.gradients([batch], 'none');
  const grad = values(gradients[name]!);
  for (const t of Object.values(gradients)) t.dispose();
  return { grad, loss: tasks[0]!.loss };
}

const close = (actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number) => {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / (1e-3 + Math.abs(expected[i]!)));
  expect(worst).toBeLessThan(tolerance);
};

// ---------------------------------------------------------------------------

describe('classification, multilabel and multiple-choice heads', () => {
  it('classification: softmax cross-entropy at [CLS] (mean over the batch) and its gradient', async () => {
    const model = RoFormerV2.create({ config: noDropout, seed: 3 });
    const trainer = new Trainer(model, { heads: { topic: { kind: 'classification', numLabels: 4 } } });
    const rand = seededRandom(1);
    const lengths = [6, 4, 5];
    const examples: Example[] = randomIds(rand, lengths, 6).map((ids, b) => ({ kind: 'classification', ids: ids.slice(0, lengths[b]), typeIds: ids.slice(0, lengths[b]).map(() => 0), label: b % 4 }));
    const batch = collate(examples, { task: 'topic' });
    const h = await hiddenStates(model, batch);
    const w = headWeight(trainer, 'heads.topic.classifier.weight');
    const seq = 6;
    const reference = (weights: Float64Array) =>
      examples.reduce((acc, e, b) => acc + crossEntropy([0, 1, 2, 3].map((c) => dotRow(weights, c, h, b * seq * HIDDEN)), (e as { label: number }).label), 0) / examples.length;
    const { grad, loss } = await gradientOf(trainer, batch, 'heads.topic.classifier.weight');
    expect(loss).toBeCloseTo(reference(w), 5);
    close(grad, numericGradient(reference, w), 1e-3);
    const out = await trainer.predict(batch);
    expect(out.kind).toBe('classification');
    expect(out.scores.shape).toEqual([3, 4]);
    expect(out.loss).toBeCloseTo(reference(w), 5);
    close(values(out.scores), examples.flatMap((_, b) => [0, 1, 2, 3].map((c) => dotRow(w, c, h, b * seq * HIDDEN))), 1e-4);
  });

  it('multilabel: ZLPR with hard and soft targets, and its gradient', async () => {
    const model = RoFormerV2.create({ config: noDropout, seed: 4 });
    const trainer = new Trainer(model, { heads: { tags: { kind: 'multilabel', numLabels: 5 } } });
    const rand = seededRandom(2);
    const ids = randomIds(rand, [5, 5], 5);
    for (const targets of [
      [1, 0, 0, 1, 0, 0, 0, 0, 0, 0], // hard, the second example without any positive
      [0.9, 0.1, 0, 1, 0.5, 0.3, 0, 0.7, 1, 0.2], // soft
    ]) {
      const batch: TaskMicroBatch = { task: 'tags', inputIds: tensor(ids, undefined, 'int64'), labels: tensor(targets, [2, 5], 'float32') };
      const h = await hiddenStates(model, batch);
      const w = headWeight(trainer, 'heads.tags.classifier.weight');
      const reference = (weights: Float64Array) =>
        [0, 1].reduce((acc, b) => acc + zlpr([0, 1, 2, 3, 4].map((c) => dotRow(weights, c, h, b * 5 * HIDDEN)), targets.slice(b * 5, b * 5 + 5)), 0) / 2;
      const { grad, loss } = await gradientOf(trainer, batch, 'heads.tags.classifier.weight');
      expect(loss).toBeCloseTo(reference(w), 5);
      close(grad, numericGradient(reference, w), 1e-3);
    }
  });

  it('multiple choice: softmax across each example’s options, padded options masked', async () => {
    const model = RoFormerV2.create({ config: noDropout, seed: 5 });
    const trainer = new Trainer(model, { heads: { choice: { kind: 'multiple-choice', numLabels: 1 } } });
    const rand = seededRandom(3);
    const option = (len: number) => {
      const ids = randomIds(rand, [len], len)[0]!;
      return { ids, typeIds: ids.map(() => 0) };
    };
    const examples: Example[] = [
      { kind: 'multiple-choice', choices: [option(5), option(4), option(5)], label: 2 },
      { kind: 'multiple-choice', choices: [option(3), option(5)], label: 0 },
    ];
    const batch = collate(examples, { task: 'choice' });
    expect(batch.inputIds.shape).toEqual([6, 5]);
    expect(Array.from(values(batch.choiceMask!))).toEqual([1, 1, 1, 1, 1, 0]);
    const h = await hiddenStates(model, batch);
    const w = headWeight(trainer, 'heads.choice.scorer.weight');
    const score = (weights: Float64Array, row: number) => dotRow(weights, 0, h, row * 5 * HIDDEN);
    const reference = (weights: Float64Array) =>
      (crossEntropy([0, 1, 2].map((c) => score(weights, c)), 2) + crossEntropy([3, 4].map((c) => score(weights, c)), 0)) / 2;
    const { grad, loss } = await gradientOf(trainer, batch, 'heads.choice.scorer.weight');
    expect(loss).toBeCloseTo(reference(w), 5);
    close(grad, numericGradient(reference, w), 1e-3);
    const out = await trainer.predict(batch);
    expect(out.scores.shape).toEqual([2, 3]);
    expect(values(out.scores)[5]).toBe(-Infinity);
    const predictions = decodePredictions(out, examples);
    expect(predictions[1]).toMatchObject({ kind: 'multiple-choice' });
    expect((predictions[1] as { scores: number[] }).scores).toHaveLength(2);
  });
});

describe('GlobalPointer span head', () => {
  const seq = 6;
  const lengths = [6, 4];
  const setup = async (seed: number) => {
    const model = RoFormerV2.create({ config: noDropout, seed });
    const trainer = new Trainer(model, { heads: { ner: { kind: 'span', numLabels: 2, headSize: 8 } } });
    const ids = randomIds(seededRandom(seed), lengths, seq);
    const mask = lengths.map((len) => Array.from({ length: seq }, (_, s) => (s < len ? 1 : 0)));
    const spans = [
      [0, 0, 1, 2],
      [0, 0, 4, 4],
      [0, 1, 2, 3],
      [1, 1, 1, 2],
    ];
    const batch: TaskMicroBatch = {
      task: 'ner',
      inputIds: tensor(ids, undefined, 'int64'),
      attentionMask: tensor(mask, undefined, 'int64'),
      spanLabels: tensor(spans, undefined, 'int64'),
    };
    const dense = new Float32Array(2 * 2 * seq * seq);
    for (const [b, n, i, j] of spans) dense[((b! * 2 + n!) * seq + i!) * seq + j!] = 1;
    return { model, trainer, batch, spans, dense, ids, mask };
  };

  it('scores equal (R_i q_i)·(R_j k_j)/sqrt(d) for i ≤ j on real tokens, −inf elsewhere; loss and gradient match float64', async () => {
    const { model, trainer, batch, dense } = await setup(6);
    const h = await hiddenStates(model, batch);
    const w = headWeight(trainer, 'heads.ner.query_key.weight');
    const out = await trainer.predict(batch);
    expect(out.scores.shape).toEqual([2, 2, seq, seq]);
    const expected = globalPointerScores(h, w, lengths, seq, 2, 8);
    const got = values(out.scores);
    for (let i = 0; i < got.length; i++) {
      if (expected[i] === -Infinity) expect(got[i]).toBe(-Infinity);
      else expect(Math.abs(got[i]! - expected[i]!)).toBeLessThan(1e-4);
    }
    const reference = (weights: Float64Array) => {
      const s = globalPointerScores(h, weights, lengths, seq, 2, 8);
      let total = 0;
      for (let r = 0; r < 4; r++) total += zlpr(s.subarray(r * seq * seq, (r + 1) * seq * seq), dense.subarray(r * seq * seq, (r + 1) * seq * seq));
      return total / 4; // mean over (example, label)
    };
    const { grad, loss } = await gradientOf(trainer, batch, 'heads.ner.query_key.weight');
    expect(loss).toBeCloseTo(reference(w), 4);
    close(grad, numericGradient(reference, w), 2e-3);
    // The positive entries come back sparse, for decoding.
    const positives = Array.from(got).filter((v) => v > 0).length;
    expect(out.spans!.shape).toEqual([positives, 4]);
  });

  it("rotates q and k exactly as the encoder's rotary layer (interleaved pairs, not `repeat`)", async () => {
    const { model, trainer, batch } = await setup(7);
    const h = await hiddenStates(model, batch);
    const w = headWeight(trainer, 'heads.ner.query_key.weight');
    const out = await trainer.predict(batch);
    const got = values(out.scores);
    const rotary = new RotaryEmbedding({ headDim: 8 });
    // Example 0, label 1: q and k by hand, rotated by the encoder's own layer.
    const project = (offset: number) =>
      tensor(Float64Array.from({ length: seq * 8 }, (_, x) => dotRow(w, 16 + offset + (x % 8), h, Math.floor(x / 8) * HIDDEN)), [seq, 8], 'float64');
    const q = values(rotary.apply(project(0)));
    const k = values(rotary.apply(project(8)));
    // What a port that paired dimension i with i + d/2 (`repeat` for `repeat_interleave`) would compute.
    const halfRotate = (x: Float64Array) => {
      const out = Float64Array.from(x);
      for (let p = 0; p < seq; p++) {
        for (let i = 0; i < 4; i++) {
          const angle = p * Math.pow(10000, (-2 * i) / 8);
          const a = x[p * 8 + i]!, b = x[p * 8 + i + 4]!;
          out[p * 8 + i] = a * Math.cos(angle) - b * Math.sin(angle);
          out[p * 8 + i + 4] = a * Math.sin(angle) + b * Math.cos(angle);
        }
      }
      return out;
    };
    const qRaw = values(project(0)), kRaw = values(project(8));
    const qHalf = halfRotate(qRaw), kHalf = halfRotate(kRaw);
    let worstEncoder = 0, worstHalf = 0;
    for (let i = 0; i < seq; i++) {
      for (let j = i; j < seq; j++) {
        let sEnc = 0, sHalf = 0;
        for (let c = 0; c < 8; c++) {
          sEnc += q[i * 8 + c]! * k[j * 8 + c]!;
          sHalf += qHalf[i * 8 + c]! * kHalf[j * 8 + c]!;
        }
        const native = got[((0 * 2 + 1) * seq + i) * seq + j]!;
        worstEncoder = Math.max(worstEncoder, Math.abs(native - sEnc / Math.sqrt(8)));
        worstHalf = Math.max(worstHalf, Math.abs(native - sHalf / Math.sqrt(8)));
      }
    }
    expect(worstEncoder).toBeLessThan(1e-4);
    expect(worstHalf).toBeGreaterThan(1e-3); // the check can tell the two pairings apart
  });

  it('sparse hard labels give the loss and gradient of the dense form', async () => {
    const { trainer, batch, dense } = await setup(8);
    const sparse = await trainer.gradients([batch], 'none');
    const denseBatch: TaskMicroBatch = { ...batch, spanLabels: null, spanTargets: tensor(dense, [2, 2, seq, seq], 'float32') };
    const viaDense = await trainer.gradients([denseBatch], 'none');
    expect(sparse.tasks[0]!.loss).toBeCloseTo(viaDense.tasks[0]!.loss, 5);
    close(values(sparse.gradients['heads.ner.query_key.weight']!), values(viaDense.gradients['heads.ner.query_key.weight']!), 1e-3);
  });

  it('the span loss is a mean over the batch: the batch doubled by a copy gives the same loss and gradient', async () => {
    const { trainer, batch, ids, mask, spans } = await setup(9);
    const doubled: TaskMicroBatch = {
      task: 'ner',
      inputIds: tensor([...ids, ...ids], undefined, 'int64'),
      attentionMask: tensor([...mask, ...mask], undefined, 'int64'),
      spanLabels: tensor([...spans, ...spans.map(([b, n, i, j]) => [b! + 2, n!, i!, j!])], undefined, 'int64'),
    };
    const once = await trainer.gradients([batch], 'none');
    const twice = await trainer.gradients([doubled], 'none');
    expect(twice.tasks[0]!.loss).toBeCloseTo(once.tasks[0]!.loss, 5);
    close(values(twice.gradients['heads.ner.query_key.weight']!), values(once.gradients['heads.ner.query_key.weight']!), 1e-3);
  });

  it('decodes positive entries to token and character spans (ends inclusive)', () => {
    const text = '北京欢迎你';
    const example: Example = {
      kind: 'span',
      ids: [2, 10, 11, 12, 13, 14, 3],
      typeIds: [0, 0, 0, 0, 0, 0, 0],
      spans: [],
      offsets: [[0, 0], [0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [0, 0]],
      text,
    };
    const predictions = decodePredictions(
      {
        task: 'ner',
        kind: 'span',
        scores: tensor([0], [1, 1, 1, 1], 'float32'),
        loss: null,
        spans: tensor([[0, 1, 1, 2], [0, 0, 5, 5]], undefined, 'int64'),
        spanScores: tensor([3.5, 1.25], [2], 'float32'),
      },
      [example],
    );
    expect(predictions[0]).toEqual({
      kind: 'span',
      spans: [
        { label: 1, start: 1, end: 2, score: 3.5, charStart: 0, charEnd: 2, text: '北京' },
        { label: 0, start: 5, end: 5, score: 1.25, charStart: 4, charEnd: 5, text: '你' },
      ],
    });
  });
});

describe('ZLPR (native) against float64', () => {
  const native = () => loadNative();
  const rows = 3, n = 7;
  const rand = seededRandom(11);
  const scores = Float64Array.from({ length: rows * n }, () => 4 * rand() - 2);
  const targets = Float64Array.from({ length: rows * n }, (_, i) => (i % 3 === 0 ? 1 : 0));
  targets.fill(0, n, 2 * n); // a row without positives
  const positives = [
    [0, 3, 6],
    [-1, -1, -1],
    [0, 3, -1],
  ];

  it('dense hard/soft losses and gradients equal the reference; the sparse form equals the dense one', () => {
    const soft = Float64Array.from({ length: rows * n }, () => rand());
    for (const t of [targets, soft]) {
      const { loss, grad } = native().zlprLoss(tensor(scores, [rows, n], 'float64'), { targets: tensor(t, [rows, n], 'float64') });
      for (let r = 0; r < rows; r++) {
        const f = (s: Float64Array) => zlpr(s, t.subarray(r * n, (r + 1) * n));
        const row = scores.subarray(r * n, (r + 1) * n);
        expect(values(loss)[r]).toBeCloseTo(f(row), 10);
        close(values(grad).subarray(r * n, (r + 1) * n), numericGradient(f, row), 1e-6);
      }
    }
    const hard = new Float64Array(rows * n);
    positives.forEach((list, r) => list.filter((i) => i >= 0).forEach((i) => (hard[r * n + i] = 1)));
    const dense = native().zlprLoss(tensor(scores, [rows, n], 'float64'), { targets: tensor(hard, [rows, n], 'float64') });
    const sparse = native().zlprLoss(tensor(scores, [rows, n], 'float64'), { positives: tensor(positives, undefined, 'int64') });
    close(values(sparse.loss), values(dense.loss), 1e-9);
    close(values(sparse.grad), values(dense.grad), 1e-7);
  });

  it('the sparse form stays finite when the positives carry all the mass (log(1 − e^x) clamped at x → 0)', () => {
    for (const dtype of ['float64', 'float32'] as const) {
      // Row 0: x = lse(pos) − log(1 + Σ e^s) rounds to 0 exactly; unclamped, log(1 − e^0) = −inf and the gradient NaN.
      const s = tensor([[200, -Infinity, -Infinity, -30], [90, 95, -Infinity, -Infinity], [3, -1, 0.5, -Infinity]], undefined, dtype);
      const { loss, grad } = native().zlprLoss(s, { positives: tensor([[0, -1], [0, 1], [0, -1]], undefined, 'int64') });
      for (const v of [...values(loss), ...values(grad)]) expect(Number.isFinite(v)).toBe(true);
      // Away from the clamp it is the exact loss.
      expect(values(loss)[2]).toBeCloseTo(zlpr([3, -1, 0.5], [1, 0, 0]), 5);
    }
  });

  it('masked (−inf) entries count on neither side and get a zero gradient, never NaN (float64, float32, float16)', () => {
    const row = [1.5, -Infinity, -0.5, -Infinity, 2];
    const t = [1, 1, 0, 0, 0.5]; // a target on a masked entry is ignored too
    const expected = zlpr(row, t);
    for (const dtype of ['float64', 'float32', 'float16'] as const) {
      const { loss, grad } = native().zlprLoss(tensor([row], undefined, dtype), { targets: tensor([t], undefined, dtype) });
      expect(values(loss)[0]).toBeCloseTo(expected, dtype === 'float16' ? 2 : 5);
      const g = values(grad);
      expect(g[1]).toBe(0);
      expect(g[3]).toBe(0);
      for (const v of g) expect(Number.isNaN(v)).toBe(false);
    }
    // The same through `valid` instead of −inf scores.
    const { loss } = native().zlprLoss(tensor([[1.5, 7, -0.5, 9, 2]], undefined, 'float64'), {
      targets: tensor([t], undefined, 'float64'),
      valid: tensor([[1, 0, 1, 0, 1]], undefined, 'bool'),
    });
    expect(values(loss)[0]).toBeCloseTo(expected, 10);
  });
});

describe('collate and input noise', () => {
  it('builds each kind’s fields: padding, mask, labels, sparse span rows', () => {
    const e = (ids: number[]) => ({ ids, typeIds: ids.map(() => 0) });
    const cls = collate(
      [
        { kind: 'classification', ...e([2, 7, 3]), label: 1 },
        { kind: 'classification', ...e([2, 7, 8, 9, 3]), label: 0 },
      ],
      { task: 't' },
    );
    expect(cls.inputIds.shape).toEqual([2, 5]);
    expect(Array.from(values(cls.attentionMask!))).toEqual([1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
    expect(Array.from(values(cls.labels!))).toEqual([1, 0]);
    const ml = collate([{ kind: 'multilabel', ...e([2, 3]), labels: [0, 2] }], { task: 'm', numLabels: 3 });
    expect(Array.from(values(ml.labels!))).toEqual([1, 0, 1]);
    expect(() => collate([{ kind: 'multilabel', ...e([2, 3]), labels: [0] }], { task: 'm' })).toThrow(/numLabels/);
    const span = collate(
      [
        { kind: 'span', ...e([2, 7, 8, 3]), spans: [{ label: 1, start: 1, end: 2 }], offsets: [], text: '' },
        { kind: 'span', ...e([2, 3]), spans: [], offsets: [], text: '' },
      ],
      { task: 's' },
    );
    expect(span.spanLabels!.shape).toEqual([1, 4]);
    expect(Array.from(values(span.spanLabels!))).toEqual([0, 1, 1, 2]);
    const empty = collate([{ kind: 'span', ...e([2, 3]), spans: [], offsets: [], text: '' }], { task: 's' });
    expect(empty.spanLabels!.shape).toEqual([0, 4]);
    expect(() => collate([{ kind: 'span', ...e([2, 3]), spans: [{ label: 0, start: 1, end: 2 }], offsets: [], text: '' }], { task: 's' })).toThrow(/end inclusive/);
  });

  it('addInputNoise corrupts ≈15% of ordinary tokens in adjacent pairs, mostly [MASK], never specials; seeded', () => {
    const MASK = 4;
    const options = { maskId: MASK, vocabSize: 1000, specialIds: [0, 1, 2, 3, 4] };
    const ids = [2, ...Array.from({ length: 20000 }, (_, i) => 5 + (i % 900)), 3];
    const noisy = addInputNoise(ids, new Random(7), options);
    expect(addInputNoise(ids, new Random(7), options)).toEqual(noisy);
    expect(noisy[0]).toBe(2);
    expect(noisy.at(-1)).toBe(3);
    const changed = noisy.map((id, i) => id !== ids[i]);
    const masked = noisy.filter((id) => id === MASK).length;
    const fractionChanged = changed.filter(Boolean).length / 20000;
    // 80% [MASK] + 10% random (rarely equal to the original) of 15%: ≈ 13.5% visibly changed.
    expect(fractionChanged).toBeGreaterThan(0.12);
    expect(fractionChanged).toBeLessThan(0.15);
    expect(masked / 20000).toBeGreaterThan(0.105);
    expect(masked / 20000).toBeLessThan(0.135);
    // Pairs: a [MASK] mostly has a corrupted neighbour.
    let paired = 0;
    noisy.forEach((id, i) => {
      if (id === MASK && (noisy[i - 1] !== ids[i - 1] || noisy[i + 1] !== ids[i + 1])) paired++;
    });
    expect(paired / masked).toBeGreaterThan(0.8);
  });
});


// The multi-task step: per-task results, gradient normalisation ('unit' and 'pareto'
// checked against per-task gradients computed separately), heads outside a step left
// alone, bf16 autocast with a span head, exact resume with heads, fine-tuned model dirs,
// and clear errors for bad batches.

import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { RoFormerV2, Trainer, collate, readHeads, tensor, type AnyMicroBatch, type Example, type MicroBatch, type TaskMicroBatch, type Tensor } from '../lib/index.js';
import { seededRandom } from './reference.js';
import { values } from './native-helpers.js';

const tiny = { vocab_size: 60, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32 };
const noDropout = { ...tiny, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
const MASK = 4;
const heads = {
  topic: { kind: 'classification' as const, numLabels: 4 },
  ner: { kind: 'span' as const, numLabels: 2, headSize: 8 },
};
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-${name}-`));

function randomRow(rand: () => number, length: number, seq: number): number[] {
  return Array.from({ length: seq }, (_, s) => (s === 0 ? 2 : s === length - 1 ? 3 : s >= length ? 0 : 5 + Math.floor(rand() * 55)));
}

function mlmBatch(seed: number, batch = 2, seq = 8): MicroBatch {
  const rand = seededRandom(seed);
  const ids: number[][] = [];
  const positions: number[] = [];
  const targets: number[] = [];
  for (let b = 0; b < batch; b++) {
    const row = randomRow(rand, seq, seq);
    for (let s = 1; s < seq - 1; s += 3) {
      positions.push(b * seq + s);
      targets.push(row[s]!);
      row[s] = MASK;
    }
    ids.push(row);
  }
  return { inputIds: tensor(ids, undefined, 'int64'), targetPositions: tensor(positions, undefined, 'int64'), targetIds: tensor(targets, undefined, 'int64') };
}

function topicExamples(seed: number, n = 3): Example[] {
  const rand = seededRandom(seed);
  return Array.from({ length: n }, (_, i) => {
    const ids = randomRow(rand, 4 + (i % 3), 4 + (i % 3));
    return { kind: 'classification', ids, typeIds: ids.map(() => 0), label: Math.floor(rand() * 4) };
  });
}

function nerExamples(seed: number): Example[] {
  const rand = seededRandom(seed);
  return [7, 5].map((len, i) => {
    const ids = randomRow(rand, len, len);
    return { kind: 'span', ids, typeIds: ids.map(() => 0), spans: [{ label: i, start: 1, end: 2 }, { label: 0, start: 3, end: 3 }], offsets: ids.map(() => [0, 0] as [number, number]), text: '' };
  });
}

/** Gradients as flat float64 arrays, with zeros for parameters a set does not have. */
function flat(gradients: Record<string, Tensor>): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const [name, t] of Object.entries(gradients)) {
    out.set(name, values(t));
    t.dispose();
  }
  return out;
}
const names = (...sets: Array<Map<string, Float64Array>>) => [...new Set(sets.flatMap((s) => [...s.keys()]))].sort();
function combine(terms: Array<[number, Map<string, Float64Array>]>, like: Map<string, Float64Array>): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const name of names(...terms.map(([, g]) => g), like)) {
    const size = (like.get(name) ?? terms.find(([, g]) => g.has(name))![1].get(name)!).length;
    const acc = new Float64Array(size);
    for (const [w, g] of terms) g.get(name)?.forEach((v, i) => (acc[i] += w * v));
    out.set(name, acc);
  }
  return out;
}
const norm = (g: Map<string, Float64Array>) => Math.sqrt([...g.values()].reduce((acc, a) => acc + a.reduce((s, v) => s + v * v, 0), 0));
function maxDiff(a: Map<string, Float64Array>, b: Map<string, Float64Array>): number {
  let worst = 0;
  for (const name of names(a, b)) {
    const x = a.get(name), y = b.get(name);
    const n = (x ?? y)!.length;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs((x?.[i] ?? 0) - (y?.[i] ?? 0)));
  }
  return worst;
}

describe('gradient normalisation', () => {
  it("'unit': each task's contribution to the summed gradient has norm 1", async () => {
    const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 1 }), { heads, gradientNormalization: 'unit' });
    const a = collate(topicExamples(1), { task: 'topic' });
    const b = mlmBatch(2);
    const ga = flat((await trainer.gradients([a], 'none')).gradients);
    const gb = flat((await trainer.gradients([b], 'none')).gradients);
    const { gradients, tasks } = await trainer.gradients([a, b]);
    const combined = flat(gradients);
    expect(tasks.map((t) => t.task)).toEqual(['topic', 'mlm']);
    expect(tasks[0]!.gradNorm).toBeCloseTo(norm(ga), 4);
    expect(tasks[1]!.gradNorm).toBeCloseTo(norm(gb), 4);
    const expected = combine([[1 / norm(ga), ga], [1 / norm(gb), gb]], combined);
    expect(maxDiff(combined, expected)).toBeLessThan(1e-5);
    // each contribution, weight × own gradient, has unit norm
    expect(norm(combine([[tasks[0]!.weight, ga]], ga))).toBeCloseTo(1, 5);
    expect(norm(combine([[tasks[1]!.weight, gb]], gb))).toBeCloseTo(1, 5);
  });

  it("'pareto': weights on the simplex minimising ‖Σ α g‖ (a fine grid for 2 tasks, a grid on the triangle for 3)", async () => {
    const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 2 }), { heads, gradientNormalization: 'pareto' });
    const a = collate(topicExamples(3), { task: 'topic' });
    const b = mlmBatch(4);
    const c = collate(nerExamples(5), { task: 'ner' });
    const ga = flat((await trainer.gradients([a], 'none')).gradients);
    const gb = flat((await trainer.gradients([b], 'none')).gradients);
    const gc = flat((await trainer.gradients([c], 'none')).gradients);

    const two = await trainer.gradients([a, b]);
    const combined = flat(two.gradients);
    const [wa, wb] = two.tasks.map((t) => t.weight) as [number, number];
    expect(wa).toBeGreaterThanOrEqual(0);
    expect(wb).toBeGreaterThanOrEqual(0);
    expect(wa + wb).toBeCloseTo(1, 10);
    expect(maxDiff(combined, combine([[wa, ga], [wb, gb]], combined))).toBeLessThan(1e-5);
    let gridBest = Infinity;
    for (let i = 0; i <= 1000; i++) gridBest = Math.min(gridBest, norm(combine([[i / 1000, ga], [1 - i / 1000, gb]], ga)));
    expect(norm(combined)).toBeLessThanOrEqual(gridBest + 1e-6);

    const three = await trainer.gradients([a, b, c]);
    const w3 = three.tasks.map((t) => t.weight);
    for (const w of w3) expect(w).toBeGreaterThanOrEqual(0);
    expect(w3.reduce((s, w) => s + w, 0)).toBeCloseTo(1, 10);
    let best3 = Infinity;
    for (let i = 0; i <= 100; i++) {
      for (let j = 0; i + j <= 100; j++) best3 = Math.min(best3, norm(combine([[i / 100, ga], [j / 100, gb], [(100 - i - j) / 100, gc]], ga)));
    }
    expect(norm(flat(three.gradients))).toBeLessThanOrEqual(best3 + 1e-6);
  });
});

describe('the multi-task step', () => {
  it('reports per-task losses; micro-batches of one task accumulate as one batch', async () => {
    const examples = topicExamples(6, 4);
    const make = () => new Trainer(RoFormerV2.create({ config: noDropout, seed: 3 }), { heads, optimizer: 'adamw', lr: 1e-2, eps: 1e3 });
    const whole = make();
    const halves = make();
    const mlm = mlmBatch(7);
    const r1 = await whole.step([collate(examples, { task: 'topic' }), mlm]);
    const r2 = await halves.step([collate(examples.slice(0, 1), { task: 'topic' }), mlm, collate(examples.slice(1), { task: 'topic' })]);
    expect(r1.tasks.map((t) => t.task)).toEqual(['topic', 'mlm']);
    expect(r1.tasks[0]!.examples).toBe(4);
    expect(r1.loss).toBeCloseTo(r1.tasks[0]!.loss + r1.tasks[1]!.loss, 5);
    expect(Number.isNaN(r1.tasks[0]!.gradNorm)).toBe(true); // only measured when normalising
    expect(r2.tasks[0]!.loss).toBeCloseTo(r1.tasks[0]!.loss, 5);
    expect(r2.gradNorm).toBeCloseTo(r1.gradNorm, 4);
  });

  it('leaves the heads of tasks outside the step untouched (no gradient, no decay, no momentum)', async () => {
    const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 4 }), { heads, lr: 1e-2, weightDecay: 0.1 });
    await trainer.step([collate(topicExamples(8), { task: 'topic' })]); // momentum for the topic head
    const before = trainer.headParameters();
    const snapshot = Object.fromEntries(Object.entries(before).map(([k, t]) => [k, values(t)]));
    await trainer.step([mlmBatch(9)]);
    const after = trainer.headParameters();
    for (const [name, t] of Object.entries(after)) expect(Array.from(values(t))).toEqual(Array.from(snapshot[name]!));
  });

  it('trains a span head in bf16 autocast: finite, never skipped; masked scores stay −inf, no NaN', async () => {
    const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 5 }), { heads, precision: 'bf16', lr: 1e-2, gradientNormalization: 'unit' });
    const span = collate(nerExamples(10), { task: 'ner' });
    let last;
    for (let i = 0; i < 3; i++) last = await trainer.step([span, mlmBatch(11)]);
    expect(last!.skipped).toBe(false);
    expect(Number.isFinite(last!.tasks[0]!.loss)).toBe(true);
    const out = await trainer.predict(span);
    const scores = values(out.scores);
    expect(scores.some(Number.isNaN)).toBe(false);
    expect(scores[6 * 7 + 0]).toBe(-Infinity); // example 0, label 0, i = 6 > j = 0
    expect(Number.isFinite(out.loss!)).toBe(true);
  });
});

describe('checkpoints and model dirs with heads', () => {
  const steps = (seed: number): AnyMicroBatch[][] =>
    [0, 1, 2, 3].map((i) => [collate(topicExamples(seed + i), { task: 'topic' }), mlmBatch(seed + 10 + i), collate(nerExamples(seed + 20 + i), { task: 'ner' })]);
  const snapshot = (trainer: Trainer) => {
    const all = { ...trainer.model.namedParameters(), ...trainer.headParameters() };
    return Object.fromEntries(Object.entries(all).map(([k, t]) => [k, Array.from(values(t))]));
  };
  const options = { heads, optimizer: 'adamw' as const, lr: 3e-3, gradientNormalization: 'unit' as const };

  it('resume is exact: N steps straight = N/2, save, load into a fresh trainer, N/2 (with dropout)', async () => {
    const batches = steps(30);
    const straight = new Trainer(RoFormerV2.create({ config: tiny, seed: 6 }), options);
    for (const b of batches) await straight.step(b);

    const first = new Trainer(RoFormerV2.create({ config: tiny, seed: 6 }), options);
    for (const b of batches.slice(0, 2)) await first.step(b);
    const dir = tmp('heads-resume');
    const saved = await first.save(dir);
    expect(existsSync(join(saved, 'heads.json'))).toBe(true);
    expect(existsSync(join(saved, 'heads.safetensors'))).toBe(true);
    for (const b of batches.slice(0, 2)) await first.step(b); // move the global generator on: load must restore it

    const resumed = new Trainer(RoFormerV2.create({ config: tiny, seed: 99 }), options);
    expect((await resumed.load(dir)).step).toBe(2);
    for (const b of batches.slice(2)) await resumed.step(b);
    expect(snapshot(resumed)).toEqual(snapshot(straight));

    const other = new Trainer(RoFormerV2.create({ config: tiny, seed: 6 }), { ...options, heads: { topic: { kind: 'classification', numLabels: 5 } } });
    await expect(other.load(dir)).rejects.toThrow(/head topic: numLabels 4 in the checkpoint, 5 here/);
  });

  it('a fine-tuned dir is a model dir (fromPretrained loads the encoder) plus heads that load back', async () => {
    const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 7 }), { heads, lr: 1e-2 });
    await trainer.step([collate(topicExamples(40), { task: 'topic' })]);
    const dir = tmp('finetuned');
    await trainer.saveModel(dir);
    const encoder = await RoFormerV2.fromPretrained(dir);
    const saved = await readHeads(dir);
    expect(saved!.specs).toEqual({ topic: { kind: 'classification', numLabels: 4 }, ner: { kind: 'span', numLabels: 2, headSize: 8 } });
    for (const t of Object.values(saved!.state)) t.dispose();
    const reloaded = new Trainer(encoder, { heads: saved!.specs });
    await reloaded.loadHeads(dir);
    const batch = collate(topicExamples(41), { task: 'topic' });
    const a = await trainer.predict(batch);
    const b = await reloaded.predict(batch);
    expect(Array.from(values(b.scores))).toEqual(Array.from(values(a.scores)));
  });
});

describe('bad batches and options', () => {
  it('give clear errors naming the field, and leave the trainer usable', async () => {
    const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 8 }), {
      heads: { ...heads, choice: { kind: 'multiple-choice', numLabels: 1 }, tags: { kind: 'multilabel', numLabels: 3 } },
    });
    const ids = tensor([[2, 7, 8, 3], [2, 9, 3, 0]], undefined, 'int64');
    const bad: Array<[TaskMicroBatch, RegExp]> = [
      [{ task: 'topic', inputIds: ids }, /microBatches\[0\] \(task 'topic'\): a classification micro-batch needs labels/],
      [{ task: 'topic', inputIds: ids, labels: tensor([1, 4], undefined, 'int64') }, /labels must be in \[0, 4\), got 4/],
      [{ task: 'topic', inputIds: ids, labels: tensor([1], undefined, 'int64') }, /labels must have shape \[2\]/],
      [{ task: 'nope', inputIds: ids, labels: tensor([1, 0], undefined, 'int64') }, /unknown task 'nope'; this trainer has mlm, topic, ner/],
      [{ task: 'ner', inputIds: ids }, /needs spanLabels/],
      [{ task: 'ner', inputIds: ids, spanLabels: tensor([[0, 2, 1, 1]], undefined, 'int64') }, /spanLabels: label \(column 1\) must be in \[0, 2\)/],
      [{ task: 'ner', inputIds: ids, spanLabels: tensor([[0, 0, 2, 1]], undefined, 'int64') }, /spanLabels: a span's start is after its end/],
      [{ task: 'ner', inputIds: ids, spanLabels: tensor([[1, 0, 1, 3]], undefined, 'int64') }, /spanLabels: a span starts or ends on padding/],
      [{ task: 'choice', inputIds: ids, labels: tensor([0], undefined, 'int64') }, /needs choiceMask/],
      [{ task: 'choice', inputIds: ids, choiceMask: tensor([[1, 0]], undefined, 'int64'), labels: tensor([1], undefined, 'int64') }, /answer is a padded option/],
      [{ task: 'tags', inputIds: ids, labels: tensor([[1, 0], [0, 1]], undefined, 'float32') }, /labels must have shape \[2, 3\]/],
      [{ task: 'tags', inputIds: ids, labels: tensor([[1, 0, 2], [0, 1, 0]], undefined, 'float32') }, /labels must hold targets in \[0, 1\]/],
    ];
    for (const [batch, message] of bad) await expect(trainer.step([batch])).rejects.toThrow(message);
    await expect(trainer.predict(mlmBatch(1) as unknown as TaskMicroBatch)).rejects.toThrow(/predict\(\) is for task heads/);
    const ok = await trainer.step([{ task: 'topic', inputIds: ids, labels: tensor([1, 3], undefined, 'int64') }]);
    expect(ok.skipped).toBe(false);
    expect(trainer.globalStep).toBe(1);

    const model = RoFormerV2.create({ config: noDropout, seed: 9 });
    expect(() => new Trainer(model, { gradientNormalization: 'sum' as 'unit' })).toThrow(/unknown gradientNormalization 'sum'/);
    expect(() => new Trainer(model, { heads: { x: { kind: 'regression' as 'span', numLabels: 1 } } })).toThrow(/heads.x.kind must be one of/);
    expect(() => new Trainer(model, { heads: { x: { kind: 'span', numLabels: 2, headSize: 7 } } })).toThrow(/headSize must be an even integer/);
  });
});

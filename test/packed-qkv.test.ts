// q, k and v as one packed projection (native/packed_qkv.h): one matrix product inside,
// three tensors under their own names outside. Checked against float64 references written
// here (the loss, finite-difference gradients, each optimiser's update per tensor), against
// a checkpoint written before the packing, and with bf16 casts kept for a whole step.

import { cpSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { readSafetensors, RobertaBaseline, RoFormerV2, tensor, Trainer, writeSafetensorsAtomic, type MicroBatch, type Tensor } from '../lib/index.js';
import { roformerModel, type Mat } from './reference.js';
import { blockWeights, toMat, values } from './native-helpers.js';
// A plain .mjs module, shared with the script that wrote the fixture checkpoint.
import { batchArrays, CONFIG, TRAINER_OPTIONS } from './fixtures/pre-packed-qkv/batches.mjs';

const FIXTURE = 'test/fixtures/pre-packed-qkv';
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-${name}-`));
const config = CONFIG as typeof CONFIG & { hidden_size: number; num_hidden_layers: number };
const PARTS = ['query', 'key', 'value'] as const;
const LAYERS = [0, 1];
const qkvNames = LAYERS.flatMap((i) => PARTS.map((part) => `layer.${i}.attention.${part}.weight`));

interface Arrays { ids: number[][]; positions: number[]; targets: number[] }
const arrays = (index: number): Arrays => batchArrays(index) as Arrays;
function microBatch(a: Arrays): MicroBatch {
  return { inputIds: tensor(a.ids, undefined, 'int64'), targetPositions: tensor(a.positions, undefined, 'int64'), targetIds: tensor(a.targets, undefined, 'int64') };
}

type Weights = Record<string, Float64Array>;
const snapshot = (parameters: Record<string, Tensor>): Weights => Object.fromEntries(Object.entries(parameters).map(([k, t]) => [k, values(t)]));
const matOf = (w: Weights, name: string, rows: number, cols: number): Mat => ({ rows, cols, data: w[name]! });

/** The mean MLM cross-entropy of micro-batches, in float64, from the weights by their (unpacked) names. */
function referenceLoss(w: Weights, batches: Arrays[]): number {
  const d = config.hidden_size;
  const square = (name: string) => matOf(w, name, d, d);
  const model = {
    wordEmbeddings: matOf(w, 'word_embeddings.weight', config.vocab_size, d),
    tokenTypeEmbeddings: matOf(w, 'token_type_embeddings.weight', 2, d),
    layers: LAYERS.map((i) => ({
      query: square(`layer.${i}.attention.query.weight`),
      key: square(`layer.${i}.attention.key.weight`),
      value: square(`layer.${i}.attention.value.weight`),
      output: square(`layer.${i}.attention.output.weight`),
      intermediate: matOf(w, `layer.${i}.intermediate.weight`, config.intermediate_size, d),
      ffnOutput: matOf(w, `layer.${i}.output.weight`, d, config.intermediate_size),
    })),
  };
  let sum = 0;
  let count = 0;
  for (const batch of batches) {
    const seq = batch.ids[0]!.length;
    const logits = batch.ids.map((row) => roformerModel(row, undefined, model, { numHeads: config.num_attention_heads, alpha: 1, eps: 1e-12 }).logits);
    batch.positions.forEach((position, t) => {
      const row = logits[Math.floor(position / seq)]!;
      const at = (position % seq) * row.cols;
      const scores = row.data.subarray(at, at + row.cols);
      const max = Math.max(...scores);
      const logSum = Math.log(scores.reduce((s, x) => s + Math.exp(x - max), 0)) + max;
      sum += logSum - scores[batch.targets[t]!]!;
      count++;
    });
  }
  return sum / count;
}

const norm = (x: ArrayLike<number>) => Math.sqrt(Array.from(x).reduce((s, v) => s + v * v, 0));
const rms = (x: ArrayLike<number>) => norm(x) / Math.sqrt(x.length);
const maxAbs = (x: ArrayLike<number>) => Array.from(x).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

/**
 * One optimiser's update of one (rows × cols) weight, as the three algorithms are defined
 * (AdamW with decoupled decay, LAMB's per-tensor trust ratio, Adafactor's factored second
 * moment, each with the trainer's defaults), keeping its own state per tensor name.
 */
class ReferenceOptimizer {
  private readonly state = new Map<string, Record<string, Float64Array>>();
  constructor(readonly kind: 'adamw' | 'lamb' | 'adafactor', readonly lr: number) {}

  update(name: string, p: Float64Array, g: Float64Array, rows: number, t: number): Float64Array {
    const cols = p.length / rows;
    const [beta1, beta2, eps, decay] = [0.9, 0.999, this.kind === 'lamb' ? 1e-6 : 1e-8, 0.01];
    const s = this.state.get(name) ?? { m: new Float64Array(p.length), v: new Float64Array(p.length), row: new Float64Array(rows), col: new Float64Array(cols) };
    this.state.set(name, s);
    if (this.kind !== 'adafactor') {
      const bias1 = 1 - beta1 ** t;
      const bias2 = 1 - beta2 ** t;
      const direction = new Float64Array(p.length);
      for (let i = 0; i < p.length; i++) {
        s.m![i] = beta1 * s.m![i]! + (1 - beta1) * g[i]!;
        s.v![i] = beta2 * s.v![i]! + (1 - beta2) * g[i]! * g[i]!;
        direction[i] = s.m![i]! / bias1 / (Math.sqrt(s.v![i]! / bias2) + eps);
      }
      if (this.kind === 'adamw') return p.map((x, i) => x * (1 - this.lr * decay) - this.lr * direction[i]!);
      direction.forEach((x, i) => (direction[i] = x + decay * p[i]!));
      const trust = norm(p) > 0 && norm(direction) > 0 ? norm(p) / norm(direction) : 1;
      return p.map((x, i) => x - this.lr * trust * direction[i]!);
    }
    const beta2t = 1 - t ** -0.8;
    const squared = g.map((x) => x * x + 1e-30);
    for (let r = 0; r < rows; r++) {
      let mean = 0;
      for (let c = 0; c < cols; c++) mean += squared[r * cols + c]! / cols;
      s.row![r] = beta2t * s.row![r]! + (1 - beta2t) * mean;
    }
    for (let c = 0; c < cols; c++) {
      let mean = 0;
      for (let r = 0; r < rows; r++) mean += squared[r * cols + c]! / rows;
      s.col![c] = beta2t * s.col![c]! + (1 - beta2t) * mean;
    }
    const rowMean = s.row!.reduce((a, x) => a + x, 0) / rows;
    const u = g.map((x, i) => x / Math.sqrt(s.row![Math.floor(i / cols)]! / rowMean) / Math.sqrt(s.col![i % cols]!));
    const clip = Math.max(rms(u) / 1.0, 1);
    const stepSize = Math.max(rms(p), 1e-3) * this.lr;
    return p.map((x, i) => x - x * stepSize * decay - (u[i]! / clip) * stepSize);
  }
}

describe('packed QKV: one product inside, three tensors outside', () => {
  it('namedParameters shows query, key and value apart (and the baseline their biases); none is packed', () => {
    const model = RoFormerV2.create({ config, seed: 3 });
    const names = Object.keys(model.namedParameters());
    for (const name of qkvNames) expect(model.namedParameters()[name]!.shape).toEqual([16, 16]);
    expect(names.some((n) => n.includes('qkv'))).toBe(false);
    const baseline = RobertaBaseline.create({ config: { ...config, max_position_embeddings: 16 }, seed: 3 }).namedParameters();
    for (const part of PARTS) {
      expect(baseline[`layer.0.attention.${part}.weight`]!.shape).toEqual([16, 16]);
      expect(baseline[`layer.0.attention.${part}.bias`]!.shape).toEqual([16]);
    }
    expect(Object.keys(baseline).some((n) => n.includes('qkv'))).toBe(false);
  });

  it('gradients by the three names match float64 finite differences of a reference loss', { timeout: 60_000 }, async () => {
    const model = RoFormerV2.create({ config, seed: 4 });
    const trainer = new Trainer(model, { lr: 1e-3 });
    const batch = arrays(0);
    const { gradients } = await trainer.gradients(microBatch(batch));
    expect(Object.keys(gradients).sort()).toEqual(Object.keys(model.namedParameters()).sort());
    const w = snapshot(model.namedParameters());
    const h = 1e-5;
    for (const name of qkvNames) {
      const got = values(gradients[name]!);
      const expected = new Float64Array(got.length);
      const weight = w[name]!;
      for (let i = 0; i < weight.length; i++) {
        const x = weight[i]!;
        weight[i] = x + h;
        const up = referenceLoss(w, [batch]);
        weight[i] = x - h;
        const down = referenceLoss(w, [batch]);
        weight[i] = x;
        expected[i] = (up - down) / (2 * h);
      }
      expect(maxAbs(expected)).toBeGreaterThan(1e-3); // a gradient that is there to get wrong
      expect(maxDiff(got, expected)).toBeLessThan(1e-4 * maxAbs(expected) + 1e-6);
    }
  });

  // The optimisers' per-tensor rules see three tensors: LAMB's trust ratio and Adafactor's
  // row and column moments over a packed (3·hidden × hidden) matrix would differ.
  for (const [kind, lr, extra] of [
    ['adamw', 3e-3, {}],
    ['lamb', 2e-2, {}],
    ['adafactor', 2e-2, {}],
    ['adamw', 3e-3, { staticStep: true, maxGradNorm: 0.5 }], // clipping through the unpacked gradients
  ] as const) {
    it(`${kind}${'staticStep' in extra ? ' (static step, clipped)' : ''}: 3 steps give the reference losses and the reference per-tensor updates`, async () => {
      const model = RoFormerV2.create({ config, seed: 5 });
      const maxGradNorm = 'maxGradNorm' in extra ? extra.maxGradNorm : 0;
      const trainer = new Trainer(model, { optimizer: kind, lr, ...extra, maxGradNorm });
      const reference = new ReferenceOptimizer(kind, lr);
      // The same rules applied to each layer's packed (48 × 16) matrix instead: what the
      // optimiser would do had it been handed the packed weight.
      const packedReference = new ReferenceOptimizer(kind, lr);
      const losses: number[] = [];
      for (let t = 1; t <= 3; t++) {
        const batch = arrays(t);
        const before = snapshot(model.namedParameters());
        const { gradients } = await trainer.gradients(microBatch(batch));
        const g = snapshot(gradients);
        const total = norm(Object.values(g).flatMap((x) => Array.from(x)));
        const clip = maxGradNorm > 0 && total > maxGradNorm ? maxGradNorm / (total + 1e-6) : 1;
        const result = await trainer.step(microBatch(batch));
        expect(result.loss).toBeCloseTo(referenceLoss(before, [batch]), 5);
        losses.push(result.loss);
        const after = snapshot(model.namedParameters());
        for (const name of [...qkvNames, 'layer.1.attention.output.weight']) {
          const expected = reference.update(name, before[name]!, g[name]!.map((x) => x * clip), 16, t);
          expect(maxDiff(after[name]!, expected)).toBeLessThan(2e-6);
          expect(maxDiff(after[name]!, before[name]!)).toBeGreaterThan(1e-4); // it moved
        }
        if (kind === 'adamw') continue; // elementwise: packed or not makes no difference
        for (const i of LAYERS) {
          const names = PARTS.map((part) => `layer.${i}.attention.${part}.weight`);
          const concat = (w: Weights, scale = 1) => Float64Array.from(names.flatMap((n) => Array.from(w[n]!, (x) => x * scale)));
          const packed = packedReference.update(`layer.${i}.qkv`, concat(before), concat(g, clip), 48, t);
          expect(maxDiff(concat(after), packed)).toBeGreaterThan(1e-5);
        }
      }
      expect(new Set(losses.map((l) => l.toFixed(4))).size).toBe(3);
    });
  }

  it('resumes a checkpoint written before the packing (optimiser state per tensor) and continues exactly', async () => {
    const runDir = tmp('pre-packed');
    cpSync(join(FIXTURE, 'run'), runDir, { recursive: true });
    const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as { losses: number[]; weights: Record<string, number[]> };
    const model = RoFormerV2.create({ config, seed: 99 }); // other weights: the checkpoint's must replace them
    const trainer = new Trainer(model, TRAINER_OPTIONS as { optimizer: 'lamb'; lr: number });
    const { step } = await trainer.load(runDir);
    expect(step).toBe(2);
    const losses = [];
    for (let i = 2; i < 4; i++) losses.push((await trainer.step(microBatch(arrays(i)))).loss);
    losses.forEach((loss, i) => expect(loss).toBeCloseTo(expected.losses[i]!, 5));
    const parameters = model.namedParameters();
    expect(Object.keys(expected.weights).length).toBe(8);
    for (const [name, weights] of Object.entries(expected.weights)) expect(maxDiff(values(parameters[name]!), weights)).toBeLessThan(1e-5);
  });

  it('bf16 with 2 micro-batches: each step the reference loss of the current weights (casts kept for the step, dropped before the update)', async () => {
    const model = RoFormerV2.create({ config, seed: 6 });
    const trainer = new Trainer(model, { lr: 5e-2, precision: 'bf16', maxGradNorm: 0 });
    const fp32 = new Trainer(RoFormerV2.create({ config, seed: 6 }), { lr: 5e-2, maxGradNorm: 0 });
    const batches = [arrays(7), arrays(8)];
    // The gradient of both micro-batches, bf16 against fp32 at the same weights.
    const low = snapshot((await trainer.gradients(batches.map(microBatch))).gradients);
    const high = snapshot((await fp32.gradients(batches.map(microBatch))).gradients);
    for (const name of qkvNames) expect(maxDiff(low[name]!, high[name]!)).toBeLessThan(0.05 * maxAbs(high[name]!));
    let previous = Number.NaN;
    for (let t = 0; t < 3; t++) {
      const expected = referenceLoss(snapshot(model.namedParameters()), batches);
      const { loss } = await trainer.step(batches.map(microBatch));
      expect(Math.abs(loss - expected)).toBeLessThan(0.03);
      // Weights cast before the last update would give the previous step's loss instead.
      if (t > 0) expect(Math.abs(expected - previous)).toBeGreaterThan(0.12);
      previous = expected;
    }
  });

  it('a model dir keeps the Hugging Face names: save, load, identical tensors', async () => {
    const model = RoFormerV2.create({ config, seed: 7 });
    const dir = tmp('qkv-dir');
    await model.save(dir);
    const { tensors } = await readSafetensors(join(dir, 'model.safetensors'));
    for (const i of LAYERS) {
      for (const part of PARTS) expect(tensors.get(`roformer.encoder.layer.${i}.attention.self.${part}.weight`)?.shape).toEqual([16, 16]);
    }
    expect([...tensors.keys()].some((n) => n.includes('qkv'))).toBe(false);
    const loaded = (await RoFormerV2.fromPretrained(dir)).namedParameters();
    for (const [name, t] of Object.entries(model.namedParameters())) expect(Array.from(values(loaded[name]!))).toEqual(Array.from(values(t)));
    // Each block loads into its own rows: query, key and value stay distinct after the round trip.
    expect(maxDiff(values(loaded['layer.0.attention.query.weight']!), values(loaded['layer.0.attention.key.weight']!))).toBeGreaterThan(0.01);
    // And the loaded model computes what a float64 reference computes from the three tensors.
    const reference = roformerModel([2, 9, 4, 3], undefined, {
      wordEmbeddings: toMat(loaded['word_embeddings.weight']!),
      tokenTypeEmbeddings: toMat(loaded['token_type_embeddings.weight']!),
      layers: LAYERS.map((i) => blockWeights(loaded, `layer.${i}.`)),
    }, { numHeads: 2, alpha: 1, eps: 1e-12 });
    const hidden = await (await RoFormerV2.fromPretrained(dir)).eval().forward(tensor([[2, 9, 4, 3]], undefined, 'int64'));
    expect(maxDiff(values(hidden), reference.hidden.data)).toBeLessThan(1e-5);
  });

  it('a missing or misshaped q/k/v tensor is named with its shape, in loadStateDict and in a model dir, and changes nothing', async () => {
    const model = RoFormerV2.create({ config, seed: 8 });
    const before = snapshot(model.namedParameters());
    const state = { ...model.namedParameters() };
    state['layer.1.attention.key.weight'] = tensor(new Float32Array(16 * 32).fill(1), [16, 32]);
    state['layer.0.attention.query.weight'] = tensor(new Float32Array(16 * 16).fill(1), [16, 16]); // valid, must not be copied alone
    delete state['layer.0.attention.value.weight'];
    expect(() => model.loadStateDict(state)).toThrow(/tensor layer\.1\.attention\.key\.weight has shape \[16, 32\] but the model expects \[16, 16\]/);
    expect(() => model.loadStateDict(state)).toThrow(/missing tensor layer\.0\.attention\.value\.weight/);
    for (const [name, x] of Object.entries(snapshot(model.namedParameters()))) expect(Array.from(x)).toEqual(Array.from(before[name]!));

    const dir = tmp('qkv-bad');
    await model.save(dir);
    const file = join(dir, 'model.safetensors');
    const { tensors } = await readSafetensors(file);
    const entries = [...tensors].map(([name, entry]) => ({ name, dtype: entry.dtype, shape: entry.shape, data: entry.data }));
    await writeSafetensorsAtomic(file, entries.filter((e) => e.name !== 'roformer.encoder.layer.1.attention.self.key.weight'));
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(/missing tensor roformer\.encoder\.layer\.1\.attention\.self\.key\.weight/);
    await writeSafetensorsAtomic(file, entries.map((e) => (e.name === 'roformer.encoder.layer.0.attention.self.value.weight' ? { ...e, shape: [8, 32] } : e)));
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(/tensor roformer\.encoder\.layer\.0\.attention\.self\.value\.weight has shape \[8,32\], expected \[16,16\]/);
  });
});

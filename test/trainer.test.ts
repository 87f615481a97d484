// The training step: loss falls, accumulation, clipping, α, mixed precision, loss
// scaling, inf/NaN skips, async behaviour, queueing, bad batches, checkpoints and
// exact resume.

import { mkdtempSync, readdirSync, readFileSync, renameSync, truncateSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { RobertaBaseline, RoFormerV2, Trainer, linearWarmupDecay, piecewiseLinear, residualWarmup, tensor, type MicroBatch, type Tensor } from '../lib/index.js';
import { seededRandom } from './reference.js';
import { values } from './native-helpers.js';

const tiny = { vocab_size: 60, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32 };
const noDropout = { ...tiny, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
const MASK = 4;

/** A random MLM micro-batch: ~25% of the real tokens become [MASK] targets. */
function makeBatch(seed: number, batch = 2, seq = 10, vocab = 60): MicroBatch {
  const rand = seededRandom(seed);
  const ids: number[][] = [];
  const positions: number[] = [];
  const targets: number[] = [];
  for (let b = 0; b < batch; b++) {
    const length = seq - Math.floor(rand() * 3);
    const row = Array.from({ length: seq }, (_, s) => (s === 0 ? 2 : s === length - 1 ? 3 : s >= length ? 0 : 5 + Math.floor(rand() * (vocab - 5))));
    for (let s = 1; s < length - 1; s++) {
      if (rand() < 0.25 || (s === 1 && positions.length === 0)) {
        positions.push(b * seq + s);
        targets.push(row[s]!);
        row[s] = MASK;
      }
    }
    ids.push(row);
  }
  return {
    inputIds: tensor(ids, undefined, 'int64'),
    targetPositions: tensor(positions, undefined, 'int64'),
    targetIds: tensor(targets, undefined, 'int64'),
  };
}

const snapshot = (model: RoFormerV2) => Object.fromEntries(Object.entries(model.namedParameters()).map(([k, t]) => [k, values(t)]));
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-${name}-`));

describe('Trainer.step', () => {
  it('lowers the loss on a fixed batch (AdamW, LAMB, Adafactor)', async () => {
    for (const [optimizer, lr] of [['adamw', 3e-3], ['lamb', 1e-2], ['adafactor', 1e-2]] as const) {
      const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 1 }), { optimizer, lr });
      const batch = makeBatch(1);
      const first = await trainer.step(batch);
      let last = first;
      for (let i = 0; i < 30; i++) last = await trainer.step(batch);
      expect(last.loss).toBeLessThan(first.loss * 0.7);
      expect(last.step).toBe(31);
      expect(last.skipped).toBe(false);
    }
  });

  it('accumulating two micro-batches equals one batch holding both', async () => {
    const ids = [
      [2, 11, MASK, 13, 3, 0],
      [2, 21, 22, MASK, MASK, 3],
    ];
    const whole: MicroBatch = {
      inputIds: tensor(ids, undefined, 'int64'),
      targetPositions: tensor([2, 9, 10], undefined, 'int64'),
      targetIds: tensor([12, 23, 24], undefined, 'int64'),
    };
    const halves: MicroBatch[] = [
      { inputIds: tensor([ids[0]!], undefined, 'int64'), targetPositions: tensor([2], undefined, 'int64'), targetIds: tensor([12], undefined, 'int64') },
      { inputIds: tensor([ids[1]!], undefined, 'int64'), targetPositions: tensor([3, 4], undefined, 'int64'), targetIds: tensor([23, 24], undefined, 'int64') },
    ];
    const a = RoFormerV2.create({ config: noDropout, seed: 2 });
    const b = RoFormerV2.create({ config: noDropout, seed: 2 });
    const options = { optimizer: 'adamw' as const, lr: 1e-2, eps: 1e3 }; // large eps: the update is proportional to the gradient
    const ra = await new Trainer(a, options).step(whole);
    const rb = await new Trainer(b, options).step(halves);
    expect(rb.loss).toBeCloseTo(ra.loss, 5);
    expect(rb.gradNorm).toBeCloseTo(ra.gradNorm, 5);
    expect(rb.targets).toBe(3);
    const [wa, wb] = [snapshot(a), snapshot(b)];
    for (const name of Object.keys(wa)) {
      wa[name]!.forEach((v, i) => expect(Math.abs(v - wb[name]![i]!)).toBeLessThan(1e-6));
    }
  });

  it('clips the global gradient norm', async () => {
    const batch = makeBatch(3);
    const delta = async (maxGradNorm: number) => {
      const model = RoFormerV2.create({ config: noDropout, seed: 3 });
      const before = snapshot(model);
      // With a huge eps, AdamW's first update is lr·g/(|g| + eps) ≈ lr·g/eps: proportional to the (clipped) gradient.
      const result = await new Trainer(model, { lr: 1000, eps: 1e6, weightDecay: 0, maxGradNorm }).step(batch);
      const after = snapshot(model);
      let sq = 0;
      for (const k of Object.keys(before)) before[k]!.forEach((v, i) => (sq += (after[k]![i]! - v) ** 2));
      return { norm: Math.sqrt(sq), gradNorm: result.gradNorm };
    };
    const free = await delta(0);
    const clipped = await delta(free.gradNorm / 4);
    expect(clipped.gradNorm).toBeCloseTo(free.gradNorm, 5); // reported before clipping
    expect(clipped.norm / free.norm).toBeCloseTo(0.25, 3);
    expect(free.norm * 1e3).toBeCloseTo(free.gradNorm, 1); // sanity of the proportionality
  });

  it('warms the residual scale α from 0 to 1 and passes the scheduled lr', async () => {
    const model = RoFormerV2.create({ config: noDropout, seed: 4 });
    const schedule = linearWarmupDecay({ peak: 1e-3, warmupSteps: 2, totalSteps: 6 });
    const trainer = new Trainer(model, { lr: schedule, alphaWarmupSteps: 4 });
    const alphas: number[] = [];
    const lrs: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await trainer.step(makeBatch(10 + i));
      alphas.push(r.alpha);
      lrs.push(r.lr);
    }
    expect(alphas).toEqual([0, 0.25, 0.5, 0.75, 1, 1]);
    expect(model.residualScale).toBe(1);
    expect(lrs.map((x) => +x.toPrecision(6))).toEqual([1e-3 / 3, 2e-3 / 3, 1e-3, 7.5e-4, 5e-4, 2.5e-4].map((x) => +x.toPrecision(6)));
  });

  it('trains in bf16 autocast on the CPU (fp32 master weights)', async () => {
    const model = RoFormerV2.create({ config: noDropout, seed: 5 });
    const trainer = new Trainer(model, { lr: 3e-3, precision: 'bf16' });
    const batch = makeBatch(5);
    const first = await trainer.step(batch);
    let last = first;
    for (let i = 0; i < 20; i++) last = await trainer.step(batch);
    expect(last.loss).toBeLessThan(first.loss * 0.8);
    expect(Object.values(model.namedParameters()).every((t) => t.dtype === 'float32')).toBe(true);
  });

  it('trains the RoBERTa baseline in bf16 autocast on the CPU too (the benchmark compares both)', async () => {
    const trainer = new Trainer(RobertaBaseline.create({ config: noDropout, seed: 5 }), { lr: 3e-3, precision: 'bf16' });
    const batch = makeBatch(5);
    const first = await trainer.step(batch);
    let last = first;
    for (let i = 0; i < 20; i++) last = await trainer.step(batch);
    expect(last.loss).toBeLessThan(first.loss * 0.8);
  });

  it('fp16 asks for CUDA on a CPU model, with a clear error', () => {
    expect(() => new Trainer(RoFormerV2.create({ config: tiny }), { precision: 'fp16' })).toThrow(/fp16 needs a CUDA device/);
    expect(() => new Trainer(RoFormerV2.create({ config: tiny }), { precision: 'fp8' as never })).toThrow(/unknown precision 'fp8'/);
    expect(() => new Trainer(RoFormerV2.create({ config: tiny }), { optimizer: 'sgd' as never })).toThrow(/unknown optimizer 'sgd'/);
  });
});

describe('inf/NaN and loss scaling', () => {
  it('skips a step with NaN gradients: weights and optimiser state unchanged, the skip counted', async () => {
    const model = RoFormerV2.create({ config: noDropout, seed: 6 });
    const trainer = new Trainer(model, { lr: 1e-3 });
    await trainer.step(makeBatch(6)); // the optimiser has moments now
    const good = Object.fromEntries(Object.entries(model.namedParameters()).map(([k, t]) => [k, t.to()]));
    const poisoned = values(good['layer.0.intermediate.weight']!);
    poisoned[0] = NaN;
    model.loadStateDict({ ...good, 'layer.0.intermediate.weight': tensor(poisoned, good['layer.0.intermediate.weight']!.shape) });
    const weightsBefore = snapshot(model);
    const stateBefore = Object.fromEntries(Object.entries(trainer.native.stateTensors()).map(([k, t]) => [k, t.toBuffer()]));

    const result = await trainer.step(makeBatch(7));
    expect(result.skipped).toBe(true);
    expect(result.skippedSteps).toBe(1);
    expect(result.step).toBe(1);
    const weightsAfter = snapshot(model);
    for (const k of Object.keys(weightsBefore)) expect(Array.from(weightsAfter[k]!)).toEqual(Array.from(weightsBefore[k]!));
    for (const [k, t] of Object.entries(trainer.native.stateTensors())) {
      if (!k.startsWith('rng.')) expect(t.toBuffer().equals(stateBefore[k]!)).toBe(true);
    }
    // Restore the weight: training carries on.
    model.loadStateDict(good);
    const next = await trainer.step(makeBatch(8));
    expect(next.skipped).toBe(false);
    expect(next.step).toBe(2);
  });

  it('dynamic loss scaling: starts at 65536, ×2 after the growth interval, ×0.5 and skip on overflow', async () => {
    const model = RoFormerV2.create({ config: noDropout, seed: 7 });
    const trainer = new Trainer(model, { lr: 1e-3, lossScaling: true, growthInterval: 3 });
    const scales: number[] = [];
    for (let i = 0; i < 4; i++) scales.push((await trainer.step(makeBatch(20 + i))).lossScale);
    expect(scales).toEqual([65536, 65536, 65536, 131072]);
    expect(trainer.native.counters().growthTracker).toBe(1);

    const good = Object.fromEntries(Object.entries(model.namedParameters()).map(([k, t]) => [k, t.to()]));
    const poisoned = values(good['word_embeddings.weight']!).map(() => Infinity);
    model.loadStateDict({ ...good, 'word_embeddings.weight': tensor(poisoned, good['word_embeddings.weight']!.shape) });
    const overflow = await trainer.step(makeBatch(30));
    expect(overflow.skipped).toBe(true);
    expect(trainer.native.counters().lossScale).toBe(65536);
    expect(trainer.native.counters().growthTracker).toBe(0);
    model.loadStateDict(good);
    // Gradients are unscaled before the update: the step matches an unscaled trainer's.
    const twin = RoFormerV2.create({ config: noDropout, seed: 7 });
    twin.loadStateDict(good);
    const plain = await new Trainer(twin, { lr: 1e-3 }).step(makeBatch(31));
    const scaled = await trainer.step(makeBatch(31));
    expect(scaled.lossScale).toBe(65536);
    expect(scaled.gradNorm).toBeCloseTo(plain.gradNorm, 3);
  });
});

describe('async behaviour', () => {
  it('keeps the event loop free while a long step runs', async () => {
    const model = RoFormerV2.create({ size: 'small', config: { hidden_dropout_prob: 0 }, seed: 8 });
    const trainer = new Trainer(model, { lr: 1e-4 });
    const batch = makeBatch(8, 16, 128, 12000);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const started = Date.now();
    await trainer.step(batch);
    const elapsed = Date.now() - started;
    clearInterval(timer);
    expect(elapsed).toBeGreaterThan(50); // the step is long enough for the check to mean something
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(elapsed / 5 / 4));
  });

  it('queues a second step() instead of racing it; the native handle refuses a concurrent one', async () => {
    const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 9 }), { lr: 1e-3 });
    const [a, b, c] = await Promise.all([trainer.step(makeBatch(1)), trainer.step(makeBatch(2)), trainer.step(makeBatch(3))]);
    expect([a.step, b.step, c.step]).toEqual([1, 2, 3]);

    const first = trainer.native.step([makeBatch(4)], 1e-3, 1);
    expect(() => trainer.native.step([makeBatch(5)], 1e-3, 1)).toThrow(/still running; await it first/);
    await first;
    expect((await trainer.native.step([makeBatch(6)], 1e-3, 1)).step).toBe(5);
  });
});

describe('bad batches', () => {
  it('give clear errors and leave the trainer usable', async () => {
    const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 10 }), { lr: 1e-3 });
    const good = makeBatch(1);
    await expect(trainer.step([])).rejects.toThrow(/at least one micro-batch/);
    await expect(trainer.step({ ...good, inputIds: tensor([[2, 99, 3]], undefined, 'int64') })).rejects.toThrow(/input_ids contains the id 99, but vocab_size is 60/);
    await expect(trainer.step({ ...good, targetIds: tensor([70], undefined, 'int64'), targetPositions: tensor([1], undefined, 'int64') })).rejects.toThrow(/targetIds must be in \[0, vocab_size = 60\)/);
    await expect(trainer.step({ ...good, targetIds: tensor([5, 6], undefined, 'int64'), targetPositions: tensor([1], undefined, 'int64') })).rejects.toThrow(/targetPositions has 1 entries but targetIds has 2/);
    await expect(trainer.step({ ...good, targetPositions: tensor([500], undefined, 'int64'), targetIds: tensor([5], undefined, 'int64') })).rejects.toThrow(/positions contains the id 500/);
    await expect(trainer.step({ ...good, targetPositions: tensor([], undefined, 'int64'), targetIds: tensor([], undefined, 'int64') })).rejects.toThrow(/no MLM targets/);
    await expect(trainer.step({ ...good, inputIds: tensor([2, 5, 3], undefined, 'int64') })).rejects.toThrow(/input_ids must have shape \(batch, seq\)/);
    await expect(trainer.step({ ...good, inputIds: 'ids' as unknown as Tensor })).rejects.toThrow(/inputIds must be a Tensor/);
    const result = await trainer.step(good);
    expect(result.skipped).toBe(false);
    expect(result.step).toBe(1);
  });
});

describe('checkpoints', () => {
  it('resume is exact: N steps straight = N/2, save, load into a fresh trainer, N/2 (with dropout)', async () => {
    const config = { ...tiny, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1 };
    const options = { optimizer: 'lamb' as const, lr: piecewiseLinear(1e-2, [[0, 0.1], [3, 1], [8, 0.5]]), alphaWarmupSteps: 4 };
    const N = 8;
    const straight = new Trainer(RoFormerV2.create({ config, seed: 11 }), options);
    const expected: number[] = [];
    for (let i = 0; i < N; i++) expected.push((await straight.step(makeBatch(100 + i))).loss);

    const runDir = tmp('resume');
    const first = new Trainer(RoFormerV2.create({ config, seed: 11 }), options);
    const got: number[] = [];
    for (let i = 0; i < N / 2; i++) got.push((await first.step(makeBatch(100 + i))).loss);
    await first.save(runDir, { dataPosition: { next: N / 2 } });

    const resumed = new Trainer(RoFormerV2.create({ config, seed: 999 }), options); // other weights, other RNG use
    const { dataPosition, step } = await resumed.load(runDir);
    expect(step).toBe(N / 2);
    for (let i = (dataPosition as { next: number }).next; i < N; i++) got.push((await resumed.step(makeBatch(100 + i))).loss);

    expect(got.length).toBe(N);
    got.forEach((loss, i) => expect(loss).toBeCloseTo(expected[i]!, 5));
    expect(Math.abs(expected[1]! - expected[2]!)).toBeGreaterThan(1e-4); // the losses differ, so the match means something
  });

  it('writes the Hugging Face model dir, optimiser state and trainer state; keeps the last K', async () => {
    const runDir = tmp('layout');
    const model = RoFormerV2.create({ config: noDropout, seed: 12 });
    const trainer = new Trainer(model, { lr: 1e-3 });
    for (let i = 0; i < 3; i++) {
      await trainer.step(makeBatch(i));
      await trainer.save(runDir, { keepLast: 2, files: { 'vocab.txt': '[PAD]\n[UNK]\n' } });
    }
    expect(readdirSync(runDir).filter((d) => d.startsWith('checkpoint-')).sort()).toEqual(['checkpoint-2', 'checkpoint-3']);
    expect(readFileSync(join(runDir, 'latest'), 'utf8').trim()).toBe('checkpoint-3');
    const dir = join(runDir, 'checkpoint-3');
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors', 'optimizer.safetensors', 'trainer_state.json', 'vocab.txt']);
    const state = JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8'));
    expect(state).toMatchObject({ step: 3, skippedSteps: 0, lossScale: 1 });
    // the checkpoint is a loadable model dir
    const loaded = await RoFormerV2.fromPretrained(dir);
    const ids = tensor([[2, 7, 8, 3]], undefined, 'int64');
    expect(values(await loaded.forward(ids))).toEqual(values(await model.eval().forward(ids)));
    expect(readdirSync(runDir).some((d) => d.includes('.tmp-'))).toBe(false);
  });

  it('a corrupted or truncated checkpoint is a clear error and changes nothing', async () => {
    const runDir = tmp('corrupt');
    const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 13 }), { lr: 1e-3 });
    await trainer.step(makeBatch(1));
    const dir = await trainer.save(runDir);
    const other = new Trainer(RoFormerV2.create({ config: noDropout, seed: 14 }), { lr: 1e-3 });
    const before = snapshot(other.model as RoFormerV2);

    const optimizerFile = join(dir, 'optimizer.safetensors');
    const size = readFileSync(optimizerFile).length;
    truncateSync(optimizerFile, Math.floor(size / 2));
    await expect(other.load(runDir)).rejects.toThrow(/optimizer\.safetensors.*truncated/s);

    writeFileSync(join(dir, 'trainer_state.json'), '{ not json');
    await expect(other.load(dir)).rejects.toThrow(/trainer_state\.json: unreadable trainer state/);
    await expect(other.load(tmp('empty'))).rejects.toThrow(/is not a checkpoint/);

    expect(snapshot(other.model as RoFormerV2)).toEqual(before);
    expect(other.globalStep).toBe(0);
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(true);
  });

  it('a checkpoint of another model size or optimiser is refused, naming the difference', async () => {
    const runDir = tmp('size');
    const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 15 }), { lr: 1e-3 });
    await trainer.step(makeBatch(1));
    await trainer.save(runDir);
    const bigger = new Trainer(RoFormerV2.create({ config: { ...noDropout, hidden_size: 32 }, seed: 15 }), { lr: 1e-3 });
    await expect(bigger.load(runDir)).rejects.toThrow(/different model size \(hidden_size: checkpoint 16, model 32\)/);
    const lamb = new Trainer(RoFormerV2.create({ config: noDropout, seed: 15 }), { optimizer: 'lamb' });
    await expect(lamb.load(runDir)).rejects.toThrow(/saved with optimizer adamw, this trainer uses lamb/);
  });

  it('a save that fails leaves the previous checkpoint intact', async () => {
    const runDir = tmp('failsave');
    const model = RoFormerV2.create({ config: noDropout, seed: 16 });
    const trainer = new Trainer(model, { lr: 1e-3 });
    await trainer.step(makeBatch(1));
    await trainer.save(runDir);
    await trainer.step(makeBatch(2));
    // A file that cannot be written makes the save fail half-way.
    await expect(trainer.save(runDir, { files: { 'vocab.txt': 42 as unknown as string } })).rejects.toThrow();
    expect(readFileSync(join(runDir, 'latest'), 'utf8').trim()).toBe('checkpoint-1');
    expect(readdirSync(runDir).filter((d) => d.startsWith('.'))).toEqual([]);
    const restored = new Trainer(RoFormerV2.create({ config: noDropout, seed: 17 }), { lr: 1e-3 });
    expect((await restored.load(runDir)).step).toBe(1);
  });
});

describe('checkpoint edge cases', () => {
  it('saves the residual scale α with the model, so a mid-warm-up checkpoint loads as the same function', async () => {
    const runDir = tmp('alpha');
    const model = RoFormerV2.create({ config: noDropout, seed: 18 });
    const trainer = new Trainer(model, { lr: 1e-3, alphaWarmupSteps: 10 });
    for (let i = 0; i < 3; i++) await trainer.step(makeBatch(i));
    const dir = await trainer.save(runDir);
    expect(model.residualScale).toBeCloseTo(0.2, 10); // α of the last step (step 2 of 10)
    const loaded = await RoFormerV2.fromPretrained(dir);
    expect(loaded.residualScale).toBeCloseTo(0.2, 10);
    const ids = tensor([[2, 9, 4, 11, 3]], undefined, 'int64');
    expect(values(await loaded.forward(ids))).toEqual(values(await model.eval().forward(ids)));
  });

  it('falls back to the complete copy when a re-save of the same step was killed mid-swap', async () => {
    const runDir = tmp('swap');
    const trainer = new Trainer(RoFormerV2.create({ config: noDropout, seed: 19 }), { lr: 1e-3 });
    await trainer.step(makeBatch(1));
    await trainer.save(runDir);
    // what a kill between the two renames leaves: the old copy moved aside, the new one still a temp dir
    renameSync(join(runDir, 'checkpoint-1'), join(runDir, '.checkpoint-1.old-123-abcd'));
    const other = new Trainer(RoFormerV2.create({ config: noDropout, seed: 20 }), { lr: 1e-3 });
    expect((await other.load(runDir)).step).toBe(1);
    // the next successful save cleans the leftovers up
    await other.step(makeBatch(2));
    await other.save(runDir);
    expect(readdirSync(runDir).filter((d) => d.startsWith('.'))).toEqual([]);
  });

  it('refuses float64 weights, and a model moved or cast after its Trainer was made, before touching anything', async () => {
    const cast = RoFormerV2.create({ config: noDropout, seed: 21 }).to('cpu', 'float64');
    expect(() => new Trainer(cast, { lr: 1e-3 })).toThrow(/is float64: train with float32 weights/);
    const model = RoFormerV2.create({ config: noDropout, seed: 22 });
    const trainer = new Trainer(model, { lr: 1e-3 });
    model.to('cpu', 'float64');
    const before = snapshot(model);
    await expect(trainer.step(makeBatch(1))).rejects.toThrow(/moved to cpu \/ float64 after this Trainer was created for cpu \/ float32: create the Trainer after model\.to\(\)/);
    expect(snapshot(model)).toEqual(before);
  });
});

describe('schedules', () => {
  it('linear warm-up/decay, piecewise-linear and α warm-up', () => {
    const s = linearWarmupDecay({ peak: 1, warmupSteps: 4, totalSteps: 12 });
    expect([0, 3, 4, 8, 12, 20].map(s)).toEqual([0.2, 0.8, 1, 0.5, 0, 0]);
    const p = piecewiseLinear(2, [[0, 0], [10, 1], [20, 0.5]]);
    expect([0, 5, 10, 15, 20, 30].map(p)).toEqual([0, 1, 2, 1.5, 1, 1]);
    expect([0, 1, 2, 10].map(residualWarmup(2))).toEqual([0, 0.5, 1, 1]);
    expect(() => piecewiseLinear(1, [[5, 1], [5, 2]])).toThrow(/steps must increase/);
  });
});

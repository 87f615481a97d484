// The executor thread (issue 12): all heavy native work runs on one thread in
// submission order; JS-thread methods never block on a running step and never see
// weights mid-update; dispose() frees native memory at once.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { RoFormerV2, Trainer, readModelDir, tensor, type MicroBatch } from '../lib/index.js';
import { seededRandom } from './reference.js';
import { values } from './native-helpers.js';

const tiny = { vocab_size: 60, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32 };

/** Random ids with every 4th position an MLM target ([MASK] = 4). */
function mlmBatch(seed: number, batch: number, seq: number, vocab: number): MicroBatch {
  const rand = seededRandom(seed);
  const ids = Array.from({ length: batch }, () => Array.from({ length: seq }, () => 5 + Math.floor(rand() * (vocab - 5))));
  const positions: number[] = [];
  const targets: number[] = [];
  ids.forEach((row, b) => {
    for (let s = 1; s < seq; s += 4) {
      positions.push(b * seq + s);
      targets.push(row[s]!);
      row[s] = 4;
    }
  });
  return { inputIds: tensor(ids, undefined, 'int64'), targetPositions: tensor(positions, undefined, 'int64'), targetIds: tensor(targets, undefined, 'int64') };
}

/** A step long enough (hundreds of ms on 2 cores) for timing checks to mean something. */
const longStep = () => ({
  model: RoFormerV2.create({ size: 'small', config: { hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, seed: 3 }),
  batch: mlmBatch(1, 16, 128, 12000),
});

const rssMB = () => process.memoryUsage.rss() / 2 ** 20;

describe('one executor thread, in submission order', () => {
  it('settles forward passes in the order they were submitted', async () => {
    const model = RoFormerV2.create({ config: tiny, seed: 1 });
    const order: number[] = [];
    const ids = tensor([[2, 7, 9, 3]], undefined, 'int64');
    await Promise.all(Array.from({ length: 20 }, (_, i) => model.forward(ids).then((t) => { order.push(i); t.dispose(); })));
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('a forward pass submitted after a step sees the updated weights', async () => {
    const model = RoFormerV2.create({ config: { ...tiny, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, seed: 2 });
    const trainer = new Trainer(model, { lr: 1e-2 });
    const ids = tensor([[2, 7, 9, 3]], undefined, 'int64');
    const before = values(await model.forward(ids));
    const step = trainer.native.step([mlmBatch(2, 2, 8, 60)], 1e-2, 1);
    const after = model.native.forward(ids, null, null); // queued behind the step, not racing it
    await step;
    const afterValues = values(await after);
    model.eval();
    const again = values(await model.forward(ids));
    expect(afterValues).not.toEqual(before);
    expect(afterValues).toEqual(again);
  });
});

describe('JS-thread methods while a step runs', () => {
  it('train()/eval() return at once, a timer keeps firing, and the mode applies after the step', async () => {
    const { model, batch } = longStep();
    const trainer = new Trainer(model, { lr: 1e-4 });
    await trainer.step(batch); // warm-up: first-step allocations
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const started = Date.now();
    const step = trainer.step(batch);
    await new Promise((r) => setTimeout(r, 20)); // the step is now running on the executor
    const callStarted = Date.now();
    model.eval();
    model.train();
    model.eval();
    const callMs = Date.now() - callStarted;
    expect(model.training).toBe(false); // the queued mode, reported at once
    await step;
    const elapsed = Date.now() - started;
    clearInterval(timer);
    expect(elapsed).toBeGreaterThan(100);
    expect(callMs).toBeLessThan(20); // never waited for the step
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(elapsed / 5 / 4));
    await model.idle();
    expect(model.training).toBe(false);
  });

  it('namedParameters(), to(), loadStateDict() are refused with a clear error, not blocked', async () => {
    const { model, batch } = longStep();
    const trainer = new Trainer(model, { lr: 1e-4 });
    const step = trainer.step(batch);
    await new Promise((r) => setTimeout(r, 10));
    expect(() => model.namedParameters()).toThrow(/namedParameters: a training step or forward pass that uses this model is still running; await it first/);
    expect(() => model.to('cpu')).toThrow(/to: .*still running/);
    expect(() => model.loadStateDict({})).toThrow(/loadStateDict: .*still running/);
    expect(() => model.setResidualScale(0.5)).toThrow(/setResidualScale: .*still running/);
    await step;
    expect(Object.keys(model.namedParameters()).length).toBeGreaterThan(0); // free again once settled
  });

  it('model.save() during a step waits for it and saves the updated weights, never half of them', async () => {
    const model = RoFormerV2.create({ config: { ...tiny, hidden_dropout_prob: 0 }, seed: 4 });
    const trainer = new Trainer(model, { lr: 5e-2 });
    const before = Object.fromEntries(Object.entries(model.namedParameters()).map(([k, t]) => [k, values(t)]));
    const dir = mkdtempSync(join(tmpdir(), 'roformer-save-during-step-'));
    const step = trainer.native.step([mlmBatch(3, 2, 8, 60)], 5e-2, 1);
    const saved = model.save(dir);
    await step;
    await saved;
    const after = Object.fromEntries(Object.entries(model.namedParameters()).map(([k, t]) => [k, values(t)]));
    const { state } = await readModelDir(dir);
    expect(Object.keys(state).sort()).toEqual(Object.keys(after).sort());
    let changed = 0;
    for (const [name, t] of Object.entries(state)) {
      expect(values(t), name).toEqual(after[name]); // the weights after the step, every one
      if (JSON.stringify(after[name]) !== JSON.stringify(before[name])) changed++;
    }
    expect(changed).toBeGreaterThan(0); // and the step did change them
    expect(readFileSync(join(dir, 'config.json'), 'utf8')).toContain('hidden_size');
  });
});

describe('dispose()', () => {
  it('use after dispose is a clear error; a trainer cannot be made for a disposed model', async () => {
    const model = RoFormerV2.create({ config: tiny, seed: 5 });
    const trainer = new Trainer(model, { lr: 1e-3 });
    trainer.dispose();
    expect(trainer.disposed).toBe(true);
    await expect(trainer.step(mlmBatch(4, 2, 8, 60))).rejects.toThrow(/this trainer was disposed and can no longer be used/);
    expect(() => trainer.native.counters()).toThrow(/counters: this trainer was disposed/);
    model.dispose();
    model.dispose(); // twice is fine
    expect(model.disposed).toBe(true);
    await expect(model.forward(tensor([[2, 3]], undefined, 'int64'))).rejects.toThrow(/forward: this model was disposed/);
    expect(() => model.namedParameters()).toThrow(/namedParameters: this model was disposed/);
    expect(() => model.train()).toThrow(/train: this model was disposed/);
    expect(() => new Trainer(model)).toThrow(/was disposed/);
  });

  it('frees the weights and optimiser state at once (resident memory falls)', async () => {
    // ~390 MB of weights (vocab 50k × 1024, two layers), plus AdamW moments after a step.
    const config = { vocab_size: 50000, hidden_size: 1024, num_hidden_layers: 2, num_attention_heads: 8, intermediate_size: 2048 };
    const baseline = rssMB();
    const model = RoFormerV2.create({ config, seed: 6 });
    const trainer = new Trainer(model, { lr: 1e-4 });
    await trainer.step(mlmBatch(5, 2, 16, 50000));
    const loaded = rssMB();
    expect(loaded - baseline).toBeGreaterThan(500); // weights + gradients + moments
    trainer.dispose();
    model.dispose();
    const freed = rssMB();
    expect(loaded - freed).toBeGreaterThan(0.8 * (loaded - baseline));
  });

  it('dispose() while a step runs: the step completes, then the memory goes', async () => {
    const { model, batch } = longStep();
    const trainer = new Trainer(model, { lr: 1e-4 });
    const step = trainer.step(batch);
    await new Promise((r) => setTimeout(r, 10));
    trainer.dispose();
    model.dispose();
    const result = await step;
    expect(Number.isFinite(result.loss)).toBe(true);
    expect(model.disposed).toBe(true);
  });
});

describe('process exit', () => {
  it('exiting right after the last job settles never aborts (25 processes)', () => {
    // The executor's last touch of Node is the hand-over of the result; a process that
    // exits as soon as the Promise settles must find nothing native still using it.
    const script = `
      import('${process.cwd()}/dist/lib/index.js').then(async ({ RoFormerV2, tensor }) => {
        const model = RoFormerV2.create({ config: ${JSON.stringify(tiny)}, seed: 1 });
        const ids = tensor([[2, 7, 9, 3]], undefined, 'int64');
        await Promise.all([model.forward(ids), model.forward(ids), model.forward(ids)]);
        process.exit(0);
      });`;
    const codes: Array<number | null> = [];
    for (let i = 0; i < 25; i++) codes.push(spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' }).status);
    expect(codes).toEqual(Array(25).fill(0));
  });
});

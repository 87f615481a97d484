// The static step (trainer option staticStep): loss, gradient norm, skip decision,
// clipping factor and learning rate stay on the device, the update is skipped there
// (AdamW: libtorch ≥ 2.4's fused kernel), the figures are read once after the update.
// It must train exactly as the host-decided step: the same losses, norms, skips and
// weights after several steps (fp32 tolerance; the fused kernel rounds a little
// differently from the foreach update).

import { describe, expect, it } from 'vitest';

import { RoFormerV2, tensor, Trainer, type TrainerOptions } from '../lib/index.js';
import { maxAbsDiff } from './reference.js';
import { TINY_CONFIG as tiny, values } from './native-helpers.js';

const batch = () => ({
  inputIds: tensor([[2, 7, 9, 11, 13, 3, 0, 0], [2, 5, 17, 19, 23, 29, 31, 3]], undefined, 'int64'),
  targetPositions: tensor([2, 3, 10, 12, 3], undefined, 'int64'),
  targetIds: tensor([9, 11, 17, 23, -100], undefined, 'int64'),
});

async function train(options: TrainerOptions, steps: number) {
  const model = RoFormerV2.create({ config: tiny, seed: 11 });
  const trainer = new Trainer(model, options);
  const results = [];
  for (let i = 0; i < steps; i++) results.push(await trainer.step(batch(), { lr: 0.05 / (i + 1) }));
  const params = model.namedParameters();
  return { results, weights: Object.keys(params).map((name) => values(params[name]!)), counters: trainer.native.counters() };
}

describe('static step', () => {
  for (const optimizer of ['adamw', 'lamb', 'adafactor'] as const) {
    for (const maxGradNorm of [0.05, 0]) {
      it(`${optimizer}, ${maxGradNorm ? 'clipped' : 'no clipping'}: the same losses, norms and weights as the host-decided step`, async () => {
        const host = await train({ optimizer, maxGradNorm, staticStep: false }, 4);
        const device = await train({ optimizer, maxGradNorm, staticStep: true }, 4);
        host.results.forEach((h, i) => {
          const d = device.results[i]!;
          expect(d.skipped).toBe(false);
          expect(d.step).toBe(h.step);
          expect(d.targets).toBe(4);
          expect(Math.abs(d.loss - h.loss)).toBeLessThan(1e-5);
          expect(Math.abs(d.gradNorm - h.gradNorm)).toBeLessThan(1e-5 * Math.max(1, h.gradNorm));
          expect(Math.abs(d.tasks[0]!.loss - h.tasks[0]!.loss)).toBeLessThan(1e-5);
        });
        // The steps did move the weights (so equal weights mean equal updates).
        expect(host.results[3]!.loss).not.toBe(host.results[0]!.loss);
        host.weights.forEach((w, k) => expect(maxAbsDiff(w, device.weights[k]!)).toBeLessThan(2e-5));
      });
    }
  }

  it('skips an overflowing step on the device as the host does: no update, the loss scale backed off', async () => {
    // A loss scale of 1e300 is inf in float32: inf gradients, skip, back off to 1e8, train.
    const options = { lossScaling: true, initScale: 1e300, backoffFactor: 1e-292 } as const;
    const host = await train({ ...options, staticStep: false }, 3);
    const device = await train({ ...options, staticStep: true }, 3);
    expect(host.results[0]!.skipped).toBe(true);
    expect(host.results.map((r) => r.skipped)).toEqual(device.results.map((r) => r.skipped));
    expect(host.results.map((r) => r.lossScale)).toEqual(device.results.map((r) => r.lossScale));
    expect(device.counters).toEqual(host.counters);
    expect(device.counters.skippedSteps).toBeGreaterThan(0);
    expect(device.counters.step).toBeGreaterThan(0);
    host.weights.forEach((w, k) => expect(maxAbsDiff(w, device.weights[k]!)).toBeLessThan(2e-5));
  });
});

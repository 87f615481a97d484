// CUDA checks for a machine with an NVIDIA GPU (CI has none, so these are not part
// of `npm test`). Run after `npm run build` with libtorch 2.x + CUDA:
//
//   node scripts/cuda-check.mjs            # exits non-zero on the first failed check
//
// 1. CPU and CUDA forward passes of the same weights agree (fp32).
// 2. bf16 autocast training lowers the loss on a fixed batch; weights stay fp32.
// 3. fp16 training with dynamic loss scaling lowers the loss; the scale starts at 65536,
//    halves and skips the step on an overflow.
// 4. A checkpoint saved on CUDA resumes on CUDA with the same next loss.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const { RoFormerV2, Trainer, tensor, runtimeInfo } = await import('../dist/lib/index.js');

const info = runtimeInfo();
console.log(`libtorch ${info.libtorchVersion}, CUDA ${info.cudaAvailable ? `${info.cudaDeviceCount} device(s)` : 'not available'}, fused attention ${info.fusedAttention}`);
if (!info.cudaAvailable) {
  console.error('no CUDA device: nothing to check here');
  process.exit(2);
}

const config = { vocab_size: 1000, hidden_size: 256, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 1024, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
const B = 16;
const S = 128;
const ids = Int32Array.from({ length: B * S }, (_, i) => 5 + ((i * 7919) % 990));
const positions = Int32Array.from({ length: 300 }, (_, i) => i * 6);
const batch = () => ({
  inputIds: tensor(ids, [B, S], 'int64'),
  targetPositions: tensor(positions, [positions.length], 'int64'),
  targetIds: tensor(Int32Array.from(positions, (p) => ids[p]), [positions.length], 'int64'),
});
const check = (name, fn) =>
  fn().then(
    () => console.log(`ok   ${name}`),
    (error) => {
      console.error(`FAIL ${name}\n${error.stack}`);
      process.exit(1);
    },
  );

await check('CPU and CUDA forward agree (fp32)', async () => {
  const cpu = RoFormerV2.create({ config, seed: 1 }).eval();
  const gpu = RoFormerV2.create({ config, seed: 1 }).to('cuda').eval();
  const input = tensor(ids.slice(0, 2 * S), [2, S], 'int64');
  const a = (await cpu.forward(input)).toArray();
  const b = (await gpu.forward(input)).toArray();
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  assert.ok(max < 1e-3, `max difference ${max}`);
});

for (const precision of ['bf16', 'fp16']) {
  await check(`${precision} training lowers the loss`, async () => {
    const model = RoFormerV2.create({ config, seed: 2 }).to('cuda');
    const trainer = new Trainer(model, { lr: 1e-3, precision });
    const first = await trainer.step(batch());
    if (precision === 'fp16') assert.equal(first.lossScale, 65536);
    let last = first;
    for (let i = 0; i < 30; i++) last = await trainer.step(batch());
    console.log(`     loss ${first.loss.toFixed(3)} → ${last.loss.toFixed(3)}, scale ${last.lossScale}, skipped ${last.skippedSteps}`);
    assert.ok(last.loss < first.loss * 0.8);
    assert.ok(Object.values(model.namedParameters()).every((t) => t.dtype === 'float32'));
  });
}

await check('fp16 overflow halves the scale and skips the step', async () => {
  const model = RoFormerV2.create({ config, seed: 3 }).to('cuda');
  const trainer = new Trainer(model, { lr: 1e-3, precision: 'fp16' });
  await trainer.step(batch());
  const good = Object.fromEntries(Object.entries(model.namedParameters()).map(([k, t]) => [k, t.to()]));
  const huge = good['layer.0.intermediate.weight'].to('cpu');
  const poisoned = Float32Array.from(huge.toArray(), () => 1e30);
  model.loadStateDict({ ...good, 'layer.0.intermediate.weight': tensor(poisoned, huge.shape) });
  const r = await trainer.step(batch());
  assert.equal(r.skipped, true);
  assert.equal(trainer.native.counters().lossScale, 32768);
});

await check('checkpoint on CUDA resumes exactly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cuda-resume-'));
  const a = new Trainer(RoFormerV2.create({ config, seed: 4 }).to('cuda'), { lr: 1e-3, precision: 'bf16' });
  for (let i = 0; i < 3; i++) await a.step(batch());
  await a.save(dir);
  const expected = (await a.step(batch())).loss;
  const b = new Trainer(RoFormerV2.create({ config, seed: 5 }).to('cuda'), { lr: 1e-3, precision: 'bf16' });
  await b.load(dir);
  const got = (await b.step(batch())).loss;
  assert.ok(Math.abs(got - expected) < 1e-3, `${got} vs ${expected}`);
});

console.log('all CUDA checks passed');

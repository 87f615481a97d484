// CUDA checks for a machine with an NVIDIA GPU (CI has none, so these are not part of `npm test`;
// bench/gpu/check.sh runs them on the GPU machine). After `npm run build` with libtorch 2.x + CUDA:
//
//   node scripts/cuda-check.mjs [--json FILE]   # runs every check; exits 1 if any failed
//
// Without a CUDA device it says so and exits 3 (check.sh records that as skipped). The checks,
// each independent of the others' outcome:
//  1. CPU and CUDA forward passes of the same weights agree (fp32).
//  2. bf16 and fp16 training lower the loss on a fixed batch; weights stay fp32; fp16's loss
//     scale starts at 65536.
//  3. fp16: an overflow halves the scale and skips the step.
//  4. A checkpoint saved on CUDA resumes on CUDA with the same next loss.
//  5. Task heads (classification, span) train on CUDA under bf16; predict() returns their outputs.
//  6. The multi-task step (MLM + two heads, 'unit' normalisation) gives per-task losses, and its
//     combined gradient equals the sum of the per-task ones (normalisation 'none').
//  7. The executor: forward passes settle in submission order; one queued behind a step sees
//     the updated weights.
//  8. dispose(): the trainer's and the model's CUDA memory is freed at once.
//  9. The host allocator beside CUDA: a CPU model's steps reuse cached host blocks while a CUDA
//     model trains, and CUDA results are unchanged by it.
// 10. NCCL with world size 1: a process group on CUDA, all-reduce, and a step through it equal
//     to the same step without it.
// ROFORMER_CHECK_DEVICE=cpu runs the checks that make sense on the CPU there (a test of this
// script, not of CUDA).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const { RoFormerV2, Trainer, Distributed, collate, tensor, runtimeInfo } = await import('../dist/lib/index.js');
const { loadNative } = await import('../dist/bindings/load.js');

const jsonIndex = process.argv.indexOf('--json');
const jsonFile = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined;
const info = runtimeInfo();
const device = process.env.ROFORMER_CHECK_DEVICE ?? 'cuda';
console.log(`libtorch ${info.libtorchVersion}, CUDA ${info.cudaAvailable ? `${info.cudaDeviceCount} device(s)` : 'not available'}, fused attention ${info.fusedAttention}, backends ${info.distributedBackends.join(', ') || 'none'}`);
if (device === 'cuda' && !info.cudaAvailable) {
  console.log('skip: no CUDA device here (nothing to check)');
  process.exit(3);
}
const onCuda = device === 'cuda';
const native = loadNative();

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
const model = (seed, cfg = config) => RoFormerV2.create({ config: cfg, seed }).to(device);
const maxDifference = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

const results = [];
async function check(name, fn, { cudaOnly = false } = {}) {
  const started = performance.now();
  if (cudaOnly && !onCuda) return void results.push({ name, status: 'skipped', detail: 'CUDA only' });
  try {
    const detail = (await fn()) ?? '';
    results.push({ name, status: 'ok', seconds: (performance.now() - started) / 1000, detail });
    console.log(`ok   ${name}${detail ? `: ${detail}` : ''}`);
  } catch (error) {
    if (error?.skip) {
      results.push({ name, status: 'skipped', detail: error.skip });
      return void console.log(`skip ${name}: ${error.skip}`);
    }
    results.push({ name, status: 'failed', seconds: (performance.now() - started) / 1000, detail: String(error?.stack ?? error) });
    console.error(`FAIL ${name}\n${error?.stack ?? error}`);
  }
}

await check('CPU and CUDA forward agree (fp32)', async () => {
  const cpu = RoFormerV2.create({ config, seed: 1 }).eval();
  const gpu = model(1).eval();
  const input = tensor(ids.slice(0, 2 * S), [2, S], 'int64');
  const max = maxDifference((await cpu.forward(input)).toArray(), (await gpu.forward(input)).toArray());
  assert.ok(max < 1e-3, `max difference ${max}`);
  return `max difference ${max.toExponential(2)}`;
}, { cudaOnly: true });

for (const precision of onCuda ? ['bf16', 'fp16'] : ['bf16']) {
  await check(`${precision} training lowers the loss`, async () => {
    const m = model(2);
    const trainer = new Trainer(m, { lr: 1e-3, precision });
    const first = await trainer.step(batch());
    if (precision === 'fp16') assert.equal(first.lossScale, 65536);
    let last = first;
    for (let i = 0; i < 30; i++) last = await trainer.step(batch());
    assert.ok(last.loss < first.loss * 0.8, `loss ${first.loss} → ${last.loss}`);
    assert.ok(Object.values(m.namedParameters()).every((t) => t.dtype === 'float32'));
    return `loss ${first.loss.toFixed(3)} → ${last.loss.toFixed(3)}, scale ${last.lossScale}, skipped ${last.skippedSteps}`;
  });
}

await check('fp16 overflow halves the scale and skips the step', async () => {
  const m = model(3);
  const trainer = new Trainer(m, { lr: 1e-3, precision: 'fp16' });
  await trainer.step(batch());
  const good = Object.fromEntries(Object.entries(m.namedParameters()).map(([k, t]) => [k, t.to()]));
  const huge = good['layer.0.intermediate.weight'].to('cpu');
  const poisoned = Float32Array.from(huge.toArray(), () => 1e30);
  m.loadStateDict({ ...good, 'layer.0.intermediate.weight': tensor(poisoned, huge.shape) });
  const r = await trainer.step(batch());
  assert.equal(r.skipped, true);
  assert.equal(trainer.native.counters().lossScale, 32768);
}, { cudaOnly: true });

await check('checkpoint resumes exactly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cuda-resume-'));
  const a = new Trainer(model(4), { lr: 1e-3, precision: 'bf16' });
  for (let i = 0; i < 3; i++) await a.step(batch());
  await a.save(dir);
  const expected = (await a.step(batch())).loss;
  const b = new Trainer(model(5), { lr: 1e-3, precision: 'bf16' });
  await b.load(dir);
  const got = (await b.step(batch())).loss;
  assert.ok(Math.abs(got - expected) < 1e-3, `${got} vs ${expected}`);
});

// Task examples: token ids in [5, 1000), [CLS] = 2 first and [SEP] = 3 last.
const row = (length, salt) => Array.from({ length }, (_, s) => (s === 0 ? 2 : s === length - 1 ? 3 : 5 + ((s * 131 + salt * 977) % 990)));
const topic = (n, salt) =>
  Array.from({ length: n }, (_, i) => {
    const r = row(12 + (i % 5), salt + i);
    return { kind: 'classification', ids: r, typeIds: r.map(() => 0), label: (i + salt) % 4 };
  });
const spans = (n, salt) =>
  Array.from({ length: n }, (_, i) => {
    const r = row(16, salt + i);
    return { kind: 'span', ids: r, typeIds: r.map(() => 0), spans: [{ label: i % 2, start: 1 + (i % 5), end: 3 + (i % 5) }], offsets: r.map(() => [0, 0]), text: '' };
  });
const heads = { topic: { kind: 'classification', numLabels: 4 }, ner: { kind: 'span', numLabels: 2, headSize: 32 } };

await check('task heads train under bf16 and predict', async () => {
  const trainer = new Trainer(model(6), { lr: 1e-3, precision: 'bf16', heads });
  const step = () => trainer.step([collate(topic(16, 1), { task: 'topic' }), collate(spans(8, 2), { task: 'ner' })]);
  const first = await step();
  let last = first;
  for (let i = 0; i < 20; i++) last = await step();
  for (const task of ['topic', 'ner']) {
    assert.ok(Number.isFinite(first.taskLosses[task]), `${task} loss ${first.taskLosses[task]}`);
    assert.ok(last.taskLosses[task] < first.taskLosses[task], `${task}: ${first.taskLosses[task]} → ${last.taskLosses[task]}`);
  }
  const predicted = await trainer.predict(collate(topic(4, 9), { task: 'topic' }));
  const logits = Object.values(predicted).find((t) => t && typeof t === 'object' && 'shape' in t);
  assert.ok(logits, 'predict returned no tensor');
  assert.deepEqual(logits.shape.slice(-1), [4]);
  return `topic ${first.taskLosses.topic.toFixed(3)} → ${last.taskLosses.topic.toFixed(3)}, ner ${first.taskLosses.ner.toFixed(3)} → ${last.taskLosses.ner.toFixed(3)}`;
});

await check('multi-task step: combined gradient = sum of the tasks\' (fp32)', async () => {
  const trainer = new Trainer(model(7), { lr: 1e-3, heads });
  const batches = () => [batch(), collate(topic(8, 3), { task: 'topic' }), collate(spans(4, 4), { task: 'ner' })];
  const flat = async (list) => {
    const { gradients } = await trainer.gradients(list, 'none');
    return Object.fromEntries(Object.entries(gradients).map(([k, t]) => [k, Float64Array.from(t.to('cpu').toArray())]));
  };
  const all = await flat(batches());
  const parts = await Promise.all(batches().map((b) => flat([b])));
  let worst = 0;
  for (const [name, g] of Object.entries(all)) {
    const sum = new Float64Array(g.length);
    for (const p of parts) p[name]?.forEach((v, i) => (sum[i] += v));
    const scale = g.reduce((m, v) => Math.max(m, Math.abs(v)), 1e-6);
    worst = Math.max(worst, maxDifference(g, sum) / scale);
  }
  assert.ok(worst < 2e-3, `relative difference ${worst}`);
  const r = await new Trainer(model(7), { lr: 1e-3, heads, gradientNormalization: 'unit' }).step(batches());
  assert.deepEqual(r.tasks.map((t) => t.task), ['mlm', 'topic', 'ner']);
  return `worst relative difference ${worst.toExponential(2)}`;
});

await check('executor: submission order, and a forward queued behind a step sees its update', async () => {
  const m = model(8);
  const input = tensor(ids.slice(0, 4 * S), [4, S], 'int64');
  const order = [];
  await Promise.all(Array.from({ length: 20 }, (_, i) => m.forward(input).then((t) => { order.push(i); t.dispose(); })));
  assert.deepEqual(order, Array.from({ length: 20 }, (_, i) => i));
  m.eval();
  const before = (await m.forward(input)).toArray();
  m.train();
  const trainer = new Trainer(m, { lr: 1e-2 });
  const step = trainer.native.step([batch()], 1e-2, 1);
  const queued = m.native.forward(input, null, null);
  await step;
  const after = (await queued).toArray();
  m.eval();
  const again = (await m.forward(input)).toArray();
  assert.ok(maxDifference(before, after) > 0, 'the step changed nothing');
  assert.equal(maxDifference(after, again), 0);
});

await check('dispose() frees the CUDA memory at once', async () => {
  const allocated = () => native.peakMemory('cuda', true) && native.peakMemory('cuda');
  native.releaseMemory();
  const base = allocated();
  const m = model(9);
  const trainer = new Trainer(m, { lr: 1e-3 });
  await trainer.step(batch());
  const held = allocated();
  trainer.dispose();
  m.dispose();
  native.releaseMemory();
  const after = allocated();
  assert.ok(held > base, `nothing allocated (${base} → ${held})`);
  assert.ok(after - base < (held - base) / 20, `still held after dispose: ${after - base} of ${held - base} bytes`);
  return `${((held - base) / 2 ** 20).toFixed(1)} MiB held, ${((after - base) / 2 ** 20).toFixed(2)} MiB left`;
}, { cudaOnly: true });

await check('host allocator beside CUDA', async () => {
  const stats = native.hostCacheStats();
  if (!stats.enabled) throw { skip: 'the host cache is off (ROFORMER_HOST_CACHE=0)' };
  const cpuConfig = { vocab_size: 500, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 256, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
  const cpuTrainer = new Trainer(RoFormerV2.create({ config: cpuConfig, seed: 10 }), { lr: 1e-3 });
  const gpuTrainer = new Trainer(model(11), { lr: 1e-3, precision: 'bf16' });
  const reference = new Trainer(model(11), { lr: 1e-3, precision: 'bf16' });
  const cpuBatch = () => ({ ...batch(), inputIds: tensor(Int32Array.from(ids, (v) => v % 495 + 5), [B, S], 'int64'), targetIds: tensor(Int32Array.from(positions, (p) => ids[p] % 495 + 5), [positions.length], 'int64') });
  await cpuTrainer.step(cpuBatch());
  const first = native.hostCacheStats();
  const [cpuLoss, gpuLoss] = [[], []];
  for (let i = 0; i < 3; i++) {
    const [c, g] = await Promise.all([cpuTrainer.step(cpuBatch()), gpuTrainer.step(batch())]);
    cpuLoss.push(c.loss); gpuLoss.push(g.loss);
  }
  const later = native.hostCacheStats();
  assert.ok(later.hits - first.hits > 10, `host cache hits ${later.hits - first.hits}`);
  for (let i = 0; i < 3; i++) {
    const alone = (await reference.step(batch())).loss;
    assert.ok(Math.abs(alone - gpuLoss[i]) < 1e-3, `step ${i}: ${gpuLoss[i]} beside the CPU model, ${alone} alone`);
  }
  return `${later.hits - first.hits} host cache hits, ${later.misses - first.misses} misses`;
});

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => { const { port } = server.address(); server.close(() => resolve(port)); });
    server.on('error', reject);
  });
}

await check('NCCL with world size 1', async () => {
  const backend = onCuda ? 'nccl' : 'gloo';
  if (!info.distributedBackends.includes(backend)) throw { skip: `this build has no ${backend} (backends: ${info.distributedBackends.join(', ') || 'none'})` };
  const group = await Distributed.init({ rank: 0, worldSize: 1, localRank: 0, masterAddr: '127.0.0.1', masterPort: await freePort(), timeoutSeconds: 60, backend }, device);
  try {
    assert.equal(group.native.backend, backend);
    assert.deepEqual(await group.allReduce([1.5, -2]), [1.5, -2]);
    const together = new Trainer(model(12), { lr: 1e-3, precision: 'bf16', distributed: group });
    const alone = new Trainer(model(12), { lr: 1e-3, precision: 'bf16' });
    for (let i = 0; i < 3; i++) {
      const [a, b] = [(await together.step(batch())).loss, (await alone.step(batch())).loss];
      assert.ok(Math.abs(a - b) < 1e-3, `step ${i}: ${a} through ${backend}, ${b} without`);
    }
    await group.barrier();
  } finally {
    await group.shutdown();
  }
  return `backend ${backend}`;
});

const failed = results.filter((r) => r.status === 'failed');
if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ libtorch: info.libtorchVersion, device, results }, null, 1) + '\n');
console.log(failed.length ? `${failed.length} of ${results.length} CUDA checks FAILED: ${failed.map((r) => r.name).join('; ')}` : `all CUDA checks passed (${results.filter((r) => r.status === 'ok').length} ok, ${results.filter((r) => r.status === 'skipped').length} skipped)`);
process.exit(failed.length ? 1 : 0);

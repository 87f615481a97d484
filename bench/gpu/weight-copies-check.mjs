// The weights' kept autocast copies on CUDA (native/weight_copies.h; bench/gpu/check.sh phase
// weight-copies). After the fused AdamW kernel one multi-tensor copy rewrites every weight's bf16
// copy, and the forward casts none; a CUDA graph reads the copies its capture used, and before
// each replay the host rewrites those whose weights it changed (loadStateDict).
//
// Two child processes (ROFORMER_WEIGHT_COPIES is read once per process), with the copies and
// without (a cast per weight in every forward), train the same model on one batch with CUDA
// graphs, no dropout, and load the weights saved after step 2 back after step 5:
//   - their losses agree step by step (within 1e-3 relative: only the embedding gradient's
//     atomic adds differ between runs);
//   - in each, step 6's loss (the restored weights) is step 3's (the same weights): a replay that
//     read copies of the weights before the load would give the trajectory's loss instead.
// ROFORMER_CHECK_DEVICE=cpu ROFORMER_GRAPH_STEPS=emulate: the same logic on the CPU (a dry run).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const { requireFeature, device, checkModel, checkShape } = await import('./compare-steps.mjs');

const steps = 8;
const savedAfter = 2; // the weights after this step are saved ...
const loadedAfter = 5; // ... and loaded back after this one

if (process.argv.includes('--child')) {
  const { Trainer, tensor } = await import('../../dist/lib/index.js');
  const { mlmBatch } = await import('./batch.mjs');
  const { batch, seq } = checkShape({ batch: 64, seq: 128 });
  const precision = 'bf16'; // the copies are autocast's: bf16 in the CPU's dry run too
  const model = checkModel({ hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }).to(device);
  const trainer = new Trainer(model, { lr: 1e-3, precision, staticStep: true, cudaGraphs: true });
  const input = mlmBatch(model.config.vocab_size, batch, seq, 0);
  const losses = [];
  const ways = [];
  let saved;
  for (let i = 0; i < steps; i++) {
    const result = await trainer.step(input);
    losses.push(result.loss);
    ways.push(result.cudaGraph ?? 'eager');
    if (i === savedAfter) saved = Object.fromEntries(Object.entries(model.namedParameters()).map(([n, t]) => [n, tensor(new Float32Array(t.toArray()), t.shape)]));
    if (i === loadedAfter) model.loadStateDict(saved);
  }
  console.log(JSON.stringify({ losses, ways }));
  process.exit(0);
}

requireFeature('CUDA graphs', 'cudaGraphs', 'issue 19 item 2');
const jsonIndex = process.argv.indexOf('--json');
const jsonFile = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined;
const run = (copies) => {
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child'], { env: { ...process.env, ROFORMER_WEIGHT_COPIES: copies }, encoding: 'utf8', maxBuffer: 16 << 20 });
  if (child.status !== 0) {
    console.error(`FAIL: the run with ROFORMER_WEIGHT_COPIES=${copies} exited ${child.status}\n${child.stderr}`);
    process.exit(1);
  }
  return JSON.parse(child.stdout.trim().split('\n').pop());
};
const kept = run('1');
const cast = run('0');
const relative = (a, b) => Math.abs(a - b) / Math.abs(b);
const failures = [];
const worst = Math.max(...kept.losses.map((loss, i) => relative(loss, cast.losses[i])));
if (!(worst <= 1e-3)) failures.push(`with the copies the losses differ from casting every step by up to ${worst.toExponential(2)} relative (limit 1e-3)`);
for (const [name, r] of [['copies', kept], ['casts', cast]]) {
  const restored = relative(r.losses[loadedAfter + 1], r.losses[savedAfter + 1]);
  const moved = relative(r.losses[loadedAfter], r.losses[savedAfter + 1]);
  console.log(`${name}: losses ${r.losses.map((l) => l.toFixed(5)).join(', ')} (${r.ways.join(', ')}); after the load ${restored.toExponential(2)} from the saved weights' loss, the trajectory ${moved.toExponential(2)} away`);
  if (!(moved > 10 * restored)) failures.push(`${name}: step ${loadedAfter + 1} after loading the weights of step ${savedAfter} is not step ${savedAfter + 1}'s loss (${restored.toExponential(2)} from it, the trajectory ${moved.toExponential(2)})`);
  if (r.ways.filter((w) => w === 'replayed').length < steps - 3) failures.push(`${name}: only ${r.ways.filter((w) => w === 'replayed').length} of ${steps} steps replayed a graph (${r.ways.join(', ')})`);
}
console.log(`copies vs casts: losses within ${worst.toExponential(2)} relative`);
if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ kept, cast, worst, failures }, null, 1) + '\n');
for (const f of failures) console.error(`FAIL: ${f}`);
process.exit(failures.length ? 1 : 0);

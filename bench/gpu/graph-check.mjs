// CUDA-graph steps (issue 19 item 2) against eager ones (bench/gpu/check.sh phase graphs).
//
// 1. Without dropout: two trainers from the same weights, given the same batches, one with
//    cudaGraphs and one without (both the static step): the same losses and weight updates
//    (compare-steps.mjs: within the noise of two eager runs), in bf16 at 64 × 128 and 16 × 512 and
//    in fp32 at 64 × 128; every graph step after the first two of a shape a replay; the median
//    step time of each.
// 2. With dropout (0.1, as the models' default): the fused norms draw their masks from the CUDA
//    generator's graph-safe state, so each replay must draw fresh masks. A learning rate too small
//    to move a float32 weight and one batch fed at every step: the losses then differ only by
//    their masks, so the replays' losses must all differ, and their mean must match the eager
//    steps' within the spread of either.
// Without the trainer option `cudaGraphs` in this build, the phase is skipped.
import { writeFileSync } from 'node:fs';

const { compareSteps, requireFeature, device, checkModel, checkShape } = await import('./compare-steps.mjs');
const { Trainer } = await import('../../dist/lib/index.js');
const { loadNative } = await import('../../dist/bindings/load.js');
const { mlmBatch } = await import('./batch.mjs');

/** A shape's first step runs eagerly, its second is captured, every later one replays the graph. */
function checkStep(result, index, options) {
  if (!options.cudaGraphs) return;
  const expected = index === 0 ? undefined : index === 1 ? 'captured' : 'replayed';
  if (result.cudaGraph !== expected) {
    console.error(`FAIL: graph step ${index} ran ${result.cudaGraph ?? 'eagerly'}, expected ${expected ?? 'eagerly'} (is there a "CUDA graph capture failed" line above?)`);
    process.exit(1);
  }
}

requireFeature('CUDA graphs', 'cudaGraphs', 'issue 19 item 2');
const jsonIndex = process.argv.indexOf('--json');
const jsonFile = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined;
if (jsonIndex > 0) process.argv.splice(jsonIndex, 2); // this script writes the file, with both parts
const shapes = [{ batch: 64, seq: 128 }, { batch: 16, seq: 512 }, { batch: 64, seq: 128, precision: 'fp32' }];
const updates = await compareSteps({ feature: 'CUDA graphs', option: { cudaGraphs: true }, issue: 'issue 19 item 2', compareWeights: true, checkStep, steps: 20, runs: shapes, exitOnFailure: false, common: { staticStep: true } });
let failed = updates.failures.length > 0;

// 2. Dropout under graphs.
const { batch, seq, precision } = checkShape({ batch: 64, seq: 128 });
const steps = 10;
const dropoutRun = async (cudaGraphs) => {
  const model = checkModel().to(device); // dropout 0.1
  const trainer = new Trainer(model, { lr: 1e-12, precision, staticStep: true, cudaGraphs });
  const input = mlmBatch(model.config.vocab_size, batch, seq, 0);
  const losses = [];
  const ways = [];
  for (let i = 0; i < steps; i++) {
    const result = await trainer.step(input);
    losses.push(result.loss);
    ways.push(result.cudaGraph ?? 'eager');
  }
  trainer.dispose();
  model.dispose();
  return { losses, ways };
};
const eager = await dropoutRun(false);
const graphs = await dropoutRun(true);
const replayed = graphs.losses.filter((_, i) => graphs.ways[i] === 'replayed');
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const spread = (xs) => Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / Math.max(1, xs.length - 1));
const distinct = new Set(replayed).size;
const meanGap = Math.abs(mean(replayed) - mean(eager.losses));
const allowedGap = 4 * Math.max(spread(replayed), spread(eager.losses)) + 1e-3;
console.log(`dropout 0.1 under graphs (one batch, lr 1e-12): ${replayed.length} replays, ${distinct} distinct losses; mean ${mean(replayed).toFixed(4)} ± ${spread(replayed).toExponential(1)} vs eager ${mean(eager.losses).toFixed(4)} ± ${spread(eager.losses).toExponential(1)}`);
if (replayed.length < steps - 2) {
  console.error(`FAIL: with dropout only ${replayed.length} of ${steps} steps replayed a graph (${graphs.ways.join(', ')})`);
  failed = true;
} else if (distinct < replayed.length) {
  console.error('FAIL: replays repeat a loss: the dropout masks do not change between replays');
  failed = true;
} else if (!(meanGap <= allowedGap)) {
  console.error(`FAIL: with dropout the replays' mean loss is ${meanGap.toExponential(2)} from the eager steps' (allowed ${allowedGap.toExponential(2)})`);
  failed = true;
}
if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ feature: 'CUDA graphs', runs: updates.runs, dropout: { eager, graphs, distinct, meanGap, allowedGap } }, null, 1) + '\n');
if (failed) process.exit(1);

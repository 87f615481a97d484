// Two trainers from the same weights, one with a trainer option on and one without, given the
// same batches: their losses must agree step by step (bf16 on CUDA, within 2e-2 relative), and
// with `compareWeights`, so must what the steps did to the weights (‖Δw_feature − Δw_ref‖ /
// ‖Δw_ref‖ over all weights, within 5e-2); each one's median step time is reported.
// static-step.mjs and graph-check.mjs use it.
//
// A feature this build does not have (its option is not in dist/bindings/native.d.ts) exits 3,
// which bench/gpu/check.sh records as skipped with the printed reason.
import { readFileSync, writeFileSync } from 'node:fs';

const { RoFormerV2, Trainer } = await import('../../dist/lib/index.js');
const { loadNative } = await import('../../dist/bindings/load.js');
const { mlmBatch } = await import('./batch.mjs');

/**
 * option: the trainer option that turns the feature on (e.g. { cudaGraphs: true }); feature: its
 * name in words, for the messages. Shapes: [batch, seq] pairs, each run for `steps` steps.
 */
export async function compareSteps({ feature, option, issue, shapes = [[64, 128], [16, 512]], steps = 12, warmup = 3, size = 'base', compareWeights = false, checkStep }) {
  const jsonIndex = process.argv.indexOf('--json');
  const jsonFile = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined;
  const optionName = Object.keys(option)[0];
  const types = readFileSync(new URL('../../dist/bindings/native.d.ts', import.meta.url), 'utf8');
  if (!types.includes(`${optionName}?:`)) {
    console.log(`skip: ${feature} (${issue}) is not in this build: no '${optionName}' trainer option in bindings/native.ts`);
    process.exit(3);
  }
  if (!loadNative().runtimeInfo().cudaAvailable) {
    console.log('skip: no CUDA device here');
    process.exit(3);
  }
  const runs = [];
  let worst = 0;
  let worstUpdate = 0;
  for (const [batch, seq] of shapes) {
    const create = () => RoFormerV2.create({ size, seed: 7, config: { hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 } });
    const initial = compareWeights ? weightsOf(create()) : null;
    const run = async (extra) => {
      const model = create().to('cuda');
      const trainer = new Trainer(model, { lr: 1e-4, precision: 'bf16', ...extra });
      const losses = [];
      const ms = [];
      for (let i = 0; i < warmup + steps; i++) {
        const started = performance.now();
        const result = await trainer.step(mlmBatch(model.config.vocab_size, batch, seq, i));
        loadNative().synchronize('cuda');
        if (i >= warmup) ms.push(performance.now() - started);
        losses.push(result.loss);
        checkStep?.(result, i, extra);
      }
      const weights = compareWeights ? weightsOf(model) : null;
      trainer.dispose();
      model.dispose();
      ms.sort((a, b) => a - b);
      return { losses, msPerStep: ms[Math.floor(ms.length / 2)], weights };
    };
    // The option explicitly off for the reference run: a feature on by default on CUDA (the static step) would otherwise be on in both.
    const eager = await run({ [optionName]: false });
    const withFeature = await run(option);
    const difference = Math.max(...eager.losses.map((l, i) => Math.abs(l - withFeature.losses[i]) / Math.abs(l)));
    worst = Math.max(worst, difference);
    const updateDifference = compareWeights ? relativeUpdateDifference(initial, eager.weights, withFeature.weights) : null;
    if (updateDifference !== null) worstUpdate = Math.max(worstUpdate, updateDifference);
    delete eager.weights;
    delete withFeature.weights;
    const r = { batch, seq, eager, [optionName]: withFeature, relativeLossDifference: difference, relativeUpdateDifference: updateDifference, speedup: eager.msPerStep / withFeature.msPerStep };
    runs.push(r);
    const updates = updateDifference === null ? '' : `, weight updates by ${updateDifference.toExponential(2)}`;
    console.log(`${batch} × ${seq}: eager ${eager.msPerStep.toFixed(2)} ms, ${feature} ${withFeature.msPerStep.toFixed(2)} ms (${r.speedup.toFixed(2)}×); losses differ by ${difference.toExponential(2)} at most${updates}`);
  }
  if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ feature, option, runs }, null, 1) + '\n');
  if (!(worst < 2e-2)) {
    console.error(`FAIL: ${feature} changes the losses (relative difference ${worst})`);
    process.exit(1);
  }
  if (compareWeights && !(worstUpdate < 5e-2)) {
    console.error(`FAIL: ${feature} changes the weight updates (relative difference ${worstUpdate})`);
    process.exit(1);
  }
}

/** Every weight of a model, as float32 on the host, by name. */
function weightsOf(model) {
  const out = {};
  for (const [name, t] of Object.entries(model.namedParameters())) {
    const host = t.to('cpu', 'float32');
    out[name] = Float32Array.from(host.toArray());
    host.dispose();
  }
  return out;
}

/** ‖(b − w0) − (a − w0)‖ / ‖a − w0‖ over all weights: how far b's updates are from a's. */
function relativeUpdateDifference(w0, a, b) {
  let apart = 0;
  let moved = 0;
  for (const [name, start] of Object.entries(w0)) {
    for (let i = 0; i < start.length; i++) {
      const da = a[name][i] - start[i];
      apart += (b[name][i] - a[name][i]) ** 2;
      moved += da * da;
    }
  }
  return Math.sqrt(apart) / Math.sqrt(moved);
}

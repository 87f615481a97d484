// Two trainers from the same weights, one with a trainer option on and one without, given the
// same batches: their losses must agree step by step (within 2e-2 relative), and with
// `compareWeights`, so must what the steps did to the weights. static-step.mjs and
// graph-check.mjs use it; each one's median step time is reported.
//
// The weights: ‖Δw_feature − Δw_ref‖ / ‖Δw_ref‖ over all weights, beside the same figure for a
// second reference run (the noise floor: kernels that add with atomics, as the embedding's
// gradient does, make two identical runs differ, and Adam's update m/√v turns small gradient
// differences into whole-step ones). The feature passes when it is within 5e-2 or twice the
// noise floor, and no single tensor's update is off by more than 0.5 or twice its own noise floor
// (a tensor left out of the update, or updated twice, is off by 1 or more whatever the noise). The worst tensors are
// printed, so a failure says where to look.
//
// A feature this build does not have (its option is not in dist/bindings/native.d.ts) exits 3,
// which bench/gpu/check.sh records as skipped with the printed reason.
import { readFileSync, writeFileSync } from 'node:fs';

const { RoFormerV2, Trainer } = await import('../../dist/lib/index.js');
const { loadNative } = await import('../../dist/bindings/load.js');
const { mlmBatch } = await import('./batch.mjs');

// The checks run the base model on CUDA. ROFORMER_CHECK_DEVICE=cpu (with ROFORMER_GRAPH_STEPS=emulate
// for the graph steps) runs the same logic on the CPU with a one-layer model of width 64, fp32
// and small batches: a dry run of the scripts themselves before a GPU lease, whose figures mean nothing.
export const device = process.env.ROFORMER_CHECK_DEVICE ?? 'cuda';
const dryRun = device === 'cpu';
/** The model the checks train: base, or the dry run's one layer. */
export function checkModel(config = {}) {
  const tiny = dryRun ? { num_hidden_layers: 1, hidden_size: 64, num_attention_heads: 2, intermediate_size: 128 } : {};
  return RoFormerV2.create({ size: 'base', seed: 7, config: { ...tiny, ...config } });
}
/** A run's shape and precision as the check wants it, or the dry run's (2 × 16, fp32). */
export const checkShape = (shape) => (dryRun ? { batch: 2, seq: 16, precision: 'fp32' } : { precision: 'bf16', ...shape });

/**
 * option: the trainer option that turns the feature on (e.g. { cudaGraphs: true }); feature: its
 * name in words, for the messages. runs: { batch, seq, precision } each run for `steps` steps.
 * common: trainer options of every run. Prints each failure and exits 1 after the last run, or
 * with exitOnFailure false returns them.
 */
export async function compareSteps({ feature, option, issue, runs: shapes = [{ batch: 64, seq: 128 }, { batch: 16, seq: 512 }], steps = 12, warmup = 3, compareWeights = false, checkStep, exitOnFailure = true, common = {} }) {
  const jsonIndex = process.argv.indexOf('--json');
  const jsonFile = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined;
  const optionName = Object.keys(option)[0];
  requireFeature(feature, optionName, issue);
  const runs = [];
  const failures = [];
  for (const { batch, seq, precision } of shapes.map(checkShape)) {
    const create = () => checkModel({ hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 });
    const initial = compareWeights ? weightsOf(create()) : null;
    const run = async (extra) => {
      const model = create().to(device);
      const trainer = new Trainer(model, { lr: 1e-4, precision, ...common, ...extra });
      const losses = [];
      const ms = [];
      for (let i = 0; i < warmup + steps; i++) {
        const started = performance.now();
        const result = await trainer.step(mlmBatch(model.config.vocab_size, batch, seq, i));
        loadNative().synchronize(device);
        if (i >= warmup) ms.push(performance.now() - started);
        losses.push(result.loss);
        checkStep?.(result, i, extra);
      }
      const weights = compareWeights ? weightsOf(model) : null;
      trainer.dispose();
      model.dispose();
      return { losses, msPerStep: median(ms), weights };
    };
    // The option explicitly off for the reference run: a feature on by default on CUDA (the static step) would otherwise be on in both.
    const eager = await run({ [optionName]: false });
    const withFeature = await run(option);
    const lossDifference = Math.max(...eager.losses.map((l, i) => Math.abs(l - withFeature.losses[i]) / Math.abs(l)));
    const r = { batch, seq, precision, eager, [optionName]: withFeature, relativeLossDifference: lossDifference, speedup: eager.msPerStep / withFeature.msPerStep };
    let updates = '';
    if (compareWeights) {
      const again = await run({ [optionName]: false });
      const floor = updateDifference(initial, eager.weights, again.weights);
      const apart = updateDifference(initial, eager.weights, withFeature.weights);
      r.relativeUpdateDifference = apart.total;
      r.noiseFloor = floor.total;
      r.worstTensors = apart.worst;
      updates = `, weight updates by ${apart.total.toExponential(2)} (two ${optionName}-off runs: ${floor.total.toExponential(2)})`;
      const allowed = Math.max(5e-2, 2 * floor.total);
      if (!(apart.total <= allowed)) failures.push(`${batch} × ${seq} ${precision}: the weight updates differ by ${apart.total.toExponential(2)}, over ${allowed.toExponential(2)}`);
      for (const [name, value] of apart.worst) {
        const tensorFloor = floor.byTensor.get(name) ?? 0;
        if (!(value <= Math.max(0.5, 2 * tensorFloor))) failures.push(`${batch} × ${seq} ${precision}: tensor ${name}'s update differs by ${value.toExponential(2)} (two ${optionName}-off runs: ${tensorFloor.toExponential(2)})`);
      }
      for (const x of [eager, withFeature, again]) delete x.weights;
      r.eagerAgain = { losses: again.losses, msPerStep: again.msPerStep };
    }
    if (!(lossDifference < 2e-2)) failures.push(`${batch} × ${seq} ${precision}: the losses differ by ${lossDifference}`);
    runs.push(r);
    console.log(`${batch} × ${seq} ${precision}: eager ${eager.msPerStep.toFixed(2)} ms, ${feature} ${withFeature.msPerStep.toFixed(2)} ms (${r.speedup.toFixed(2)}×); losses differ by ${lossDifference.toExponential(2)} at most${updates}`);
    if (r.worstTensors) console.log(`  worst tensors: ${r.worstTensors.map(([name, v]) => `${name} ${v.toExponential(2)}`).join(', ')}`);
  }
  if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ feature, option, runs }, null, 1) + '\n');
  for (const failure of failures) console.error(`FAIL: ${feature} changes the training: ${failure}`);
  if (failures.length > 0 && exitOnFailure) process.exit(1);
  return { runs, failures };
}

/** Exits 3 (skipped) when this build lacks the trainer option, or when there is no CUDA device. */
export function requireFeature(feature, optionName, issue) {
  const types = readFileSync(new URL('../../dist/bindings/native.d.ts', import.meta.url), 'utf8');
  if (!types.includes(`${optionName}?:`)) {
    console.log(`skip: ${feature} (${issue}) is not in this build: no '${optionName}' trainer option in bindings/native.ts`);
    process.exit(3);
  }
  if (device === 'cuda' && !loadNative().runtimeInfo().cudaAvailable) {
    console.log('skip: no CUDA device here');
    process.exit(3);
  }
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
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

/**
 * ‖(b − w0) − (a − w0)‖ / ‖a − w0‖ over all weights (total), and per tensor (byTensor; worst: the
 * five worst as [name, relative difference] pairs): how far b's updates are from a's.
 */
function updateDifference(w0, a, b) {
  let apart = 0;
  let moved = 0;
  const perTensor = [];
  for (const [name, start] of Object.entries(w0)) {
    let tensorApart = 0;
    let tensorMoved = 0;
    for (let i = 0; i < start.length; i++) {
      const da = a[name][i] - start[i];
      tensorApart += (b[name][i] - a[name][i]) ** 2;
      tensorMoved += da * da;
    }
    apart += tensorApart;
    moved += tensorMoved;
    perTensor.push([name, tensorMoved > 0 ? Math.sqrt(tensorApart / tensorMoved) : tensorApart > 0 ? Infinity : 0]);
  }
  const byTensor = new Map(perTensor);
  perTensor.sort((x, y) => y[1] - x[1]);
  return { total: Math.sqrt(apart) / Math.sqrt(moved), worst: perTensor.slice(0, 5), byTensor };
}

// Counting a step's libtorch ops (native/op_count.h, roformer-bench --count-ops): the
// measure of kernel launches that needs no GPU. What is counted must be the innermost working
// ops only (no views, allocations or autograd's own records), by the phase of the step; the
// fused kernels show as roformer::* ops with the dtypes they ran in — under bf16 autocast the
// residual stream, q and k in bf16.

import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { loadNative } from '../bindings/load.js';
import { RoFormerV2, Trainer, tensor } from '../lib/index.js';

const native = loadNative();
const LAYERS = 2;
const CONFIG = { vocab_size: 80, hidden_size: 32, num_hidden_layers: LAYERS, num_attention_heads: 4, intermediate_size: 64 };
const ids = Array.from({ length: 4 }, (_, b) => Array.from({ length: 12 }, (_, s) => 5 + ((b * 31 + s * 7) % 70)));
const batch = () => ({ inputIds: tensor(ids, undefined, 'int64'), targetPositions: tensor([1, 13, 30, 44], undefined, 'int64'), targetIds: tensor([9, 17, 23, 41], undefined, 'int64') });

/**
 * The counted ops of the second training step (with one parent named: `op < parent`), its losses
 * and the weights after it, in a child process with ROFORMER_FUSED=`fused` and
 * ROFORMER_DIRECT_GRADIENTS=`direct`, ROFORMER_WEIGHT_COPIES=`copies` (each read once per process).
 */
function countedRun(fused: '0' | '1', precision: 'fp32' | 'bf16', direct: '0' | '1' = '1', copies: '0' | '1' = '1', config: object = CONFIG, optimizer = 'adamw', env: Record<string, string> = {}, model: 'RoFormerV2' | 'RobertaBaseline' | 'GauAlpha' = 'RoFormerV2') {
  const script = `
    const { ${model}: RoFormerV2, Trainer, tensor } = await import('./dist/lib/index.js');
    const { loadNative } = await import('./dist/bindings/load.js');
    const ids = ${JSON.stringify(ids)};
    const batch = () => ({ inputIds: tensor(ids, undefined, 'int64'), targetPositions: tensor([1, 13, 30, 44], undefined, 'int64'), targetIds: tensor([9, 17, 23, 41], undefined, 'int64') });
    const model = RoFormerV2.create({ config: ${JSON.stringify(config)}, seed: 3 });
    const trainer = new Trainer(model, { lr: 1e-2, precision: '${precision}', optimizer: '${optimizer}' });
    const losses = [(await trainer.step(batch())).loss];
    const b = batch();
    loadNative().opCountStart({ dtypes: true, parents: 1 });
    losses.push((await trainer.step(b)).loss);
    const ops = loadNative().opCountStop();
    losses.push((await trainer.step(batch())).loss);
    const weights = Object.fromEntries(Object.entries(model.namedParameters()).map(([name, t]) => [name, Array.from(t.toArray())]));
    console.log(JSON.stringify({ ops, losses, weights }));`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ROFORMER_FUSED: fused, ROFORMER_DIRECT_GRADIENTS: direct, ROFORMER_WEIGHT_COPIES: copies, ...env }, encoding: 'utf8', maxBuffer: 64 << 20 });
  expect(child.status, child.stderr).toBe(0);
  return JSON.parse(child.stdout) as { ops: Array<{ phase: string; op: string; count: number }>; losses: number[]; weights: Record<string, number[]> };
}

/** The counted ops of the second training step, without parents, in a child process with ROFORMER_FUSED=`fused` (read once per process). */
function countedStep(fused: '0' | '1', precision: 'fp32' | 'bf16'): Array<{ phase: string; op: string; count: number }> {
  const script = `
    const { RoFormerV2, Trainer, tensor } = await import('./dist/lib/index.js');
    const { loadNative } = await import('./dist/bindings/load.js');
    const ids = ${JSON.stringify(ids)};
    const batch = () => ({ inputIds: tensor(ids, undefined, 'int64'), targetPositions: tensor([1, 13, 30, 44], undefined, 'int64'), targetIds: tensor([9, 17, 23, 41], undefined, 'int64') });
    const trainer = new Trainer(RoFormerV2.create({ config: ${JSON.stringify(CONFIG)}, seed: 3 }), { lr: 1e-2, precision: '${precision}' });
    await trainer.step(batch());
    const b = batch();
    loadNative().opCountStart({ dtypes: true });
    await trainer.step(b);
    console.log(JSON.stringify(loadNative().opCountStop()));`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ROFORMER_FUSED: fused }, encoding: 'utf8' });
  expect(child.status, child.stderr).toBe(0);
  return JSON.parse(child.stdout) as Array<{ phase: string; op: string; count: number }>;
}

const countOf = (ops: Array<{ op: string; count: number }>, op: string) => ops.filter((o) => o.op === op).reduce((sum, o) => sum + o.count, 0);

describe('op counting', () => {
  it('counts the working ops of a training step by phase, and none that only view, allocate or wrap', async () => {
    const trainer = new Trainer(RoFormerV2.create({ config: CONFIG, seed: 3 }), { lr: 1e-2 });
    await trainer.step(batch());
    const b = batch();
    native.opCountStart();
    const started = performance.now();
    await trainer.step(b);
    const stepMs = performance.now() - started;
    const ops = native.opCountStop();
    const phases = new Set(ops.map((o) => o.phase));
    expect(phases.has('forward and backward')).toBe(true);
    expect(phases.has('update')).toBe(true);
    for (const o of ops) {
      expect(Number.isInteger(o.count) && o.count >= 0).toBe(true);
      expect(o.selfSeconds).toBeGreaterThanOrEqual(0);
      // counted: working ops only; the others are listed for their self time, with count 0
      if (o.count > 0) expect(o.op).not.toMatch(/^(aten::(view|empty|empty_strided|reshape|transpose|as_strided|detach|to|contiguous|resolve_conj)$|autograd::)/);
    }
    expect(ops.some((o) => o.count === 0 && /^aten::(view|transpose|empty)$/.test(o.op))).toBe(true);
    // self times partition the ops' time: their sum is positive and below the step's wall time
    const selfSum = ops.reduce((sum, o) => sum + o.selfSeconds, 0);
    expect(selfSum).toBeGreaterThan(0);
    expect(selfSum * 1000).toBeLessThan(stepMs);
    // every matrix product of the step: per layer q/k/v, output, two feed-forward (forward + two
    // gradients each; the weights' gradients accumulated into .grad by addmm_ in fp32)
    expect(countOf(ops, 'aten::mm') + countOf(ops, 'aten::addmm') + countOf(ops, 'aten::addmm_')).toBeGreaterThanOrEqual(3 * 4 * LAYERS);
    // nothing counted once stopped
    await trainer.step(batch());
    native.opCountStart();
    expect(native.opCountStop()).toEqual([]);
  });

  it('refuses to start twice or stop what has not started, and takes parents and dtypes to name ops by', () => {
    native.opCountStart();
    try {
      expect(() => native.opCountStart()).toThrow(/already started/);
    } finally {
      native.opCountStop();
    }
    expect(() => native.opCountStop()).toThrow(/has not started/);
    expect(() => native.opCountStart({ parents: 9 })).toThrow(/parents must be in \[0, 8\]/);
    native.opCountStart({ parents: 1, dtypes: true });
    const t = tensor([1, 2, 3], undefined, 'float32');
    const narrow = t.to('cpu', 'bfloat16');
    const ops = native.opCountStop();
    // the cast is one copy (into bf16 from f32), inside _to_copy
    expect(ops.map((o) => o.op)).toContain('aten::copy_(bf16, f32) < aten::_to_copy');
    [t, narrow].forEach((x) => x.dispose());
  });

  it('shows the fused kernels as roformer::* ops, once per call; under bf16 autocast they run on a bf16 residual stream and bf16 q, k', () => {
    for (const precision of ['fp32', 'bf16'] as const) {
      const ops = countedStep('1', precision);
      const t = precision === 'fp32' ? 'f32' : 'bf16';
      expect(countOf(ops, `roformer::residual_rms_norm(${t}, ${t})`), precision).toBe(2 * LAYERS);
      expect(countOf(ops, `roformer::residual_rms_norm_backward(${t})`), precision).toBe(2 * LAYERS);
      expect(countOf(ops, `roformer::rotary_qk(${t}, ${t})`), precision).toBe(LAYERS);
      expect(countOf(ops, `roformer::rotary_qk_backward(${t}, ${t})`), precision).toBe(LAYERS);
      // from the fp32 tables; the gradient it gets back is the stream's
      expect(countOf(ops, 'roformer::embedding_rms_norm(f32, f32)'), precision).toBe(1);
      expect(countOf(ops, `roformer::embedding_rms_norm_backward(${t})`), precision).toBe(1);
    }
    // without the fused path, none (the bf16 gradients' accumulation into fp32 is not a fused op of the model)
    expect(countedStep('0', 'bf16').filter((o) => o.op.startsWith('roformer::') && !o.op.startsWith('roformer::add_bf16_into_float'))).toEqual([]);
  });
});

/**
 * Three steps with gradients straight into .grad and three without (ROFORMER_DIRECT_GRADIENTS=1, 0),
 * checked to train alike (below).
 */
function directAndPlain(precision: 'fp32' | 'bf16') {
  const direct = countedRun('1', precision, '1');
  const plain = countedRun('1', precision, '0');
  expectSameTraining(direct, plain);
  return { direct, plain };
}

/**
 * The same losses and weights to float rounding: only the order of the additions changed (the
 * embedding rows' gradients go into .grad one after another, so the rows of an id that occurs
 * twice and the tied decoder's gradient are summed in another order; libtorch 2.6 shows it).
 */
function expectSameTraining(a: ReturnType<typeof countedRun>, b: ReturnType<typeof countedRun>) {
  a.losses.forEach((loss, i) => expect(Math.abs(loss - b.losses[i]!)).toBeLessThanOrEqual(1e-6 * Math.abs(loss)));
  expect(Object.keys(a.weights)).toEqual(Object.keys(b.weights));
  // per tensor, ‖a − b‖ / ‖b‖ (as fusedKernelCheck measures): element by element, Adam turns a
  // rounding difference in a near-zero gradient into a step-sized one (m / √v), which libtorch
  // 2.6's BLAS shows in fp32
  for (const [name, values] of Object.entries(a.weights)) {
    const other = b.weights[name]!;
    let diff = 0;
    let norm = 0;
    values.forEach((v, i) => {
      diff += (v - other[i]!) ** 2;
      norm += other[i]! ** 2;
    });
    expect(Math.sqrt(diff / norm), name).toBeLessThan(1e-5);
  }
  // and the weights moved: equality of two no-ops cannot pass
  expect(a.losses[2]).not.toBe(a.losses[0]);
}

describe('weight gradients straight into .grad (native/compute_weight.h)', () => {
  it('are added into .grad from bf16 by one op each (widened as added: no fp32 temporary), and train exactly as the cast-then-accumulate path', () => {
    const { direct, plain } = directAndPlain('bf16');
    // every linear layer's weight — per layer q/k/v, attention output, two feed-forward — and the
    // tied MLM decoder; on the CPU by the kernel that widens bf16 as it adds (kernels/grad_accumulate_cpu.h)
    const castWeight = 'autograd::engine::evaluate_function: torch::autograd::CppNode<roformer::compute::(anonymous namespace)::CastWeight>';
    const added = (run: typeof direct) => countOf(run.ops, `roformer::add_bf16_into_float(f32, bf16) < ${castWeight}`);
    expect(added(direct)).toBe(4 * LAYERS + 1);
    expect(added(plain)).toBe(0);
    // libtorch's mixed add (a cast into an fp32 temporary, then the add) is not used
    expect(direct.ops.filter((o) => o.op.startsWith('aten::') && o.op.endsWith(castWeight))).toEqual([]);
    // and fp32 training has no casts to go through
    expect(countedRun('1', 'fp32').ops.filter((o) => o.op.includes('CastWeight'))).toEqual([]);
  });

  it('in fp32 go into .grad inside the backward (addmm_, index_add_), with no AccumulateGrad pass, and train as before to float rounding', () => {
    const { direct, plain } = directAndPlain('fp32');
    // every linear layer's weight (per layer q/k/v, attention output, two feed-forward) and the tied
    // decoder by addmm_ into .grad: the sublayers' first products (q/k/v, the first feed-forward) in
    // the node that also sums their input's gradients (one more addmm_ each: compute::linear_passing_input)
    const addmmIn = (run: typeof direct, fn: string) => countOf(run.ops, `aten::addmm_(f32, f32, f32) < autograd::engine::evaluate_function: torch::autograd::CppNode<roformer::compute::(anonymous namespace)::${fn}>`);
    expect(addmmIn(direct, 'LinearIntoGrad')).toBe(2 * LAYERS + 1);
    expect(addmmIn(direct, 'LinearPassingInput')).toBe(2 * 2 * LAYERS);
    expect(addmmIn(plain, 'LinearIntoGrad')).toBe(0);
    expect(addmmIn(plain, 'LinearPassingInput')).toBe(2 * LAYERS);
    // RoFormerV2 has only matrices and embedding tables: nothing is left for AccumulateGrad
    const accumulated = (run: typeof direct) => run.ops.filter((o) => o.op.includes('AccumulateGrad')).reduce((sum, o) => sum + o.count, 0);
    expect(accumulated(direct)).toBe(0);
    expect(accumulated(plain)).toBeGreaterThanOrEqual(4 * LAYERS + 2);
  });
});

describe("a sublayer's first product passing its input on to the residual (compute::linear_passing_input)", () => {
  // autograd's sum of a tensor's gradients: an add (libtorch 1.13), in place where it can (2.x: add_)
  const adds = (run: ReturnType<typeof countedRun>) => run.ops.filter((o) => o.phase === 'forward and backward' && /^aten::add_?\(/.test(o.op)).reduce((sum, o) => sum + o.count, 0);
  const off = { ROFORMER_PASSING_INPUT: '0' };

  it("sums x's two gradients in the product (no add of the residual's gradients: two a block, one a GAU-α layer) and trains as autograd's sum does, to float rounding, in all three architectures", () => {
    for (const fused of ['1', '0'] as const) {
      // fused: the residual norm's kernel; unfused: libtorch's norm(x + α·dropout(f)), whose add hands one gradient to both inputs
      const passing = countedRun(fused, 'fp32');
      const summed = countedRun(fused, 'fp32', '1', '1', CONFIG, 'adamw', off);
      expect(adds(summed) - adds(passing), `ROFORMER_FUSED=${fused}`).toBe(2 * LAYERS);
      expectSameTraining(passing, summed);
    }
    // the baseline's blocks too (biases: the affine variant; x + dropout(f) then LayerNorm)
    const passing = countedRun('1', 'fp32', '1', '1', CONFIG, 'adamw', {}, 'RobertaBaseline');
    const summed = countedRun('1', 'fp32', '1', '1', CONFIG, 'adamw', off, 'RobertaBaseline');
    expect(adds(summed) - adds(passing)).toBe(2 * LAYERS);
    expectSameTraining(passing, summed);
    // GAU-α's layers (one unit each, its first product the [U|V|Z] projection)
    const gau = { vocab_size: 80, hidden_size: 32, num_hidden_layers: LAYERS, intermediate_size: 64, attention_key_size: 16 };
    const gauPassing = countedRun('1', 'fp32', '1', '1', gau, 'adamw', {}, 'GauAlpha');
    const gauSummed = countedRun('1', 'fp32', '1', '1', gau, 'adamw', off, 'GauAlpha');
    expect(adds(gauSummed) - adds(gauPassing)).toBe(LAYERS);
    expectSameTraining(gauPassing, gauSummed);
  });

  it('in bf16 too (the sum in the product, rounded once: within bf16 rounding of the sum autograd makes)', () => {
    const passing = countedRun('1', 'bf16');
    const summed = countedRun('1', 'bf16', '1', '1', CONFIG, 'adamw', off);
    expect(adds(summed) - adds(passing)).toBe(2 * LAYERS);
    passing.losses.forEach((loss, i) => expect(Math.abs(loss - summed.losses[i]!)).toBeLessThan(1e-2 * Math.abs(loss)));
    expect(passing.losses[2]).not.toBe(passing.losses[0]);
  });
});

describe("gradients zeroed by AdamW's one-pass update as it reads them (Optimizer::set_zero_gradients)", () => {
  const fills = (run: ReturnType<typeof countedRun>) => countOf(run.ops, 'aten::zero_(f32) < aten::_foreach_zero_');
  const before = { ROFORMER_ZERO_IN_UPDATE: '0' };
  // the gradients the step zeroes: word and segment tables, and per layer q/k/v, attention output, two feed-forward
  const gradients = 4 * LAYERS + 2;

  for (const precision of ['fp32', 'bf16'] as const) {
    it(`need no zeroing pass at the next step, and train bit for bit as before (${precision})`, () => {
      const consumed = countedRun('1', precision);
      const zeroedAtStep = countedRun('1', precision, '1', '1', CONFIG, 'adamw', before);
      expect(fills(zeroedAtStep)).toBe(gradients);
      expect(fills(consumed)).toBe(0);
      expect(consumed.losses).toEqual(zeroedAtStep.losses);
      expect(consumed.weights).toEqual(zeroedAtStep.weights);
      expect(consumed.losses[2]).not.toBe(consumed.losses[0]);
    });
  }

  it('are zeroed at the step as before where the update does not consume them (LAMB)', () => {
    expect(fills(countedRun('1', 'fp32', '1', '1', CONFIG, 'lamb'))).toBe(gradients);
  });
});

describe("bf16 copies of the weights kept from step to step (native/weight_copies.h)", () => {
  it("are rewritten by AdamW's update, so that a bf16 step casts no weight, and train bit for bit as a cast every step", () => {
    // feed-forward weights of 38,400 elements: split among the threads, and into the update's blocks
    const wide = { ...CONFIG, hidden_size: 96, intermediate_size: 400 };
    const kept = countedRun('1', 'bf16', '1', '1', wide);
    const cast = countedRun('1', 'bf16', '1', '0', wide);
    const casts = (run: typeof kept) => countOf(run.ops, 'aten::copy_(bf16, f32) < aten::_to_copy');
    // every linear layer's weight and the tied decoder (4 per layer + 1) is cast in each step without the copies
    expect(casts(cast) - casts(kept)).toBe(4 * LAYERS + 1);
    // the update rounds to bf16 as libtorch's cast does: the same losses and weights, exactly
    expect(kept.losses).toEqual(cast.losses);
    expect(kept.weights).toEqual(cast.weights);
    expect(kept.losses[2]).not.toBe(kept.losses[0]);
  });

  it('are cast again into their own memory when an optimiser changed the weights without rewriting them (LAMB), as a cast every step would', () => {
    const kept = countedRun('1', 'bf16', '1', '1', CONFIG, 'lamb');
    const cast = countedRun('1', 'bf16', '1', '0', CONFIG, 'lamb');
    const fresh = (run: typeof kept) => countOf(run.ops, 'aten::copy_(bf16, f32) < aten::_to_copy');
    // without the copies each weight is cast into a new tensor; with them, stale after LAMB's
    // update, each is written again in place (a copy_ with no _to_copy around it), so that its
    // address stays what a CUDA graph captured
    expect(fresh(cast)).toBeGreaterThanOrEqual(4 * LAYERS + 1);
    expect(fresh(cast) - fresh(kept)).toBe(4 * LAYERS + 1);
    expect(countOf(kept.ops, 'aten::copy_(bf16, f32)')).toBe(4 * LAYERS + 1);
    expect(kept.losses).toEqual(cast.losses);
    expect(kept.weights).toEqual(cast.weights);
    expect(kept.losses[2]).not.toBe(kept.losses[0]);
  });

  it('are cast afresh after the weights change outside the update (loadStateDict)', () => {
    const script = `
      const { RoFormerV2, Trainer, tensor } = await import('./dist/lib/index.js');
      const ids = ${JSON.stringify(ids)};
      const batch = () => ({ inputIds: tensor(ids, undefined, 'int64'), targetPositions: tensor([1, 13, 30, 44], undefined, 'int64'), targetIds: tensor([9, 17, 23, 41], undefined, 'int64') });
      const config = { ...${JSON.stringify(CONFIG)}, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
      const model = RoFormerV2.create({ config, seed: 3 });
      const snapshot = Object.fromEntries(Object.entries(model.namedParameters()).map(([n, t]) => [n, tensor(new Float32Array(t.toArray()), t.shape)]));
      const trainer = new Trainer(model, { lr: 1e-2, precision: 'bf16' });
      const first = (await trainer.step(batch())).loss;
      const second = (await trainer.step(batch())).loss;
      model.loadStateDict(snapshot); // the weights of the first step again, written by copy_
      const again = (await trainer.step(batch())).loss;
      console.log(JSON.stringify({ first, second, again }));`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ROFORMER_WEIGHT_COPIES: '1' }, encoding: 'utf8' });
    expect(child.status, child.stderr).toBe(0);
    const { first, second, again } = JSON.parse(child.stdout) as { first: number; second: number; again: number };
    expect(second).not.toBe(first);
    // no dropout: the forward on the restored weights gives the first step's loss exactly
    expect(again).toBe(first);
  });
});

describe('roformer-bench --count-ops', () => {
  it('counts one eager step of each model and writes the counts as JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'roformer-count-ops-'));
    const config = join(dir, 'tiny.json');
    writeFileSync(config, JSON.stringify({ num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, vocab_size: 500 }));
    const json = join(dir, 'ops.json');
    const { stdout } = await promisify(execFile)(process.execPath, ['dist/bench/cli.js', '--count-ops', '--config', config, '--seq', '16', '--batch', '2', '--warmup', '1', '--json', json]);
    expect(stdout).toMatch(/seq 16, roformer-v2: \d+ ops \(/);
    expect(stdout).toMatch(/seq 16, roberta-baseline: \d+ ops \(/);
    const report = JSON.parse(readFileSync(json, 'utf8')) as { counts: Array<{ model: string; seq: number; total: number; byPhase: Record<string, number>; ops: Array<{ count: number }> }> };
    expect(report.counts.map((c) => c.model)).toEqual(['roformer-v2', 'roberta-baseline']);
    // --op-detail: dtypes and the enclosing op in each name
    const detailed = await promisify(execFile)(process.execPath, ['dist/bench/cli.js', '--count-ops', '--op-detail', '--config', config, '--seq', '16', '--batch', '2', '--warmup', '1']);
    expect(detailed.stdout).toMatch(/aten::mm\(f32, f32\) < /);
    for (const c of report.counts) {
      expect(c.total).toBe(c.ops.reduce((sum, o) => sum + o.count, 0));
      expect(Object.values(c.byPhase).reduce((a, b) => a + b, 0)).toBe(c.total);
      expect(c.byPhase['forward and backward']).toBeGreaterThan(0);
      expect(c.byPhase['update']).toBeGreaterThan(0);
    }
  }, 60_000);
});

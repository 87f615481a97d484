// The optimisers' update rules (native/optimizers.cpp) against an independent
// float64 reference written here with plain loops: AdamW (PyTorch semantics),
// LAMB (trust ratio per parameter) and Adafactor (Hugging Face, explicit lr,
// no first moment). Each run makes 3 steps with different gradients and lrs.
import { describe, it, expect, afterAll } from 'vitest';

import { optimizerSteps, tensor, type Tensor } from '../lib/index.js';

// ---------------------------------------------------------------- test data

/** mulberry32: a small seeded PRNG giving uniforms in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normals (Box–Muller) from a seeded PRNG. */
function normals(rand: () => number, n: number, scale = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u1 = 1 - rand(); // (0, 1]
    const u2 = rand();
    out[i] = scale * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
  return out;
}

interface Param {
  shape: number[];
  data: Float64Array;
}
type Params = Record<string, Param>;
type Grads = Record<string, Float64Array>;

const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** Params {w: 4×3 matrix (or `matrix`), b: length-5 vector} and 3 steps of gradients at varying scales. */
function problem(seed: number, paramScale = 1, gradScales = [1, 10, 0.05], matrix = [4, 3]): { params: Params; grads: Grads[] } {
  const rand = prng(seed);
  const params: Params = {
    w: { shape: matrix, data: normals(rand, numel(matrix), paramScale) },
    b: { shape: [5], data: normals(rand, 5, paramScale) },
  };
  const grads = gradScales.map((s) => ({ w: normals(rand, numel(matrix), s), b: normals(rand, 5, s) }));
  return { params, grads };
}

const LRS = [1e-2, 5e-3, 2e-2];

// ---------------------------------------------------------------- native runs

const live: Tensor[] = [];
afterAll(() => {
  for (const t of live) if (!t.disposed) t.dispose();
});

const f64 = (data: Float64Array, shape: number[], dtype: 'float64' | 'float32' = 'float64'): Tensor => {
  const t = dtype === 'float64' ? tensor(Float64Array.from(data), shape) : tensor(Float32Array.from(data), shape);
  live.push(t);
  return t;
};

/** Runs the native optimiser over copies of `params`; returns the updated values. */
function runNative(
  options: Parameters<typeof optimizerSteps>[0],
  params: Params,
  grads: Grads[],
  lrs: number[],
  dtype: 'float64' | 'float32' = 'float64',
): Record<string, Float64Array> {
  const tensors: Record<string, Tensor> = {};
  for (const [name, p] of Object.entries(params)) tensors[name] = f64(p.data, p.shape, dtype);
  const gradTensors = grads.map((g) => {
    const out: Record<string, Tensor> = {};
    for (const [name, p] of Object.entries(params)) out[name] = f64(g[name]!, p.shape, dtype);
    return out;
  });
  optimizerSteps(options, tensors, gradTensors, lrs);
  const result: Record<string, Float64Array> = {};
  for (const [name, t] of Object.entries(tensors)) {
    expect(t.dtype).toBe(dtype);
    result[name] = Float64Array.from(t.toArray() as Float64Array | Float32Array);
  }
  return result;
}

// ---------------------------------------------------------------- float64 references

const clone = (params: Params): Record<string, Float64Array> =>
  Object.fromEntries(Object.entries(params).map(([k, p]) => [k, Float64Array.from(p.data)]));

const norm = (x: Float64Array): number => {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s);
};
const rms = (x: Float64Array): number => norm(x) / Math.sqrt(x.length);

interface AdamOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

function adamwReference(o: AdamOptions, params: Params, grads: Grads[], lrs: number[]): Record<string, Float64Array> {
  const p = clone(params);
  const m: Grads = {};
  const v: Grads = {};
  for (const name of Object.keys(p)) {
    m[name] = new Float64Array(p[name]!.length);
    v[name] = new Float64Array(p[name]!.length);
  }
  for (let s = 0; s < grads.length; s++) {
    const t = s + 1;
    const lr = lrs[s]!;
    const bias1 = 1 - o.beta1 ** t;
    const bias2 = 1 - o.beta2 ** t;
    for (const name of Object.keys(p)) {
      const pp = p[name]!;
      const g = grads[s]![name]!;
      const mm = m[name]!;
      const vv = v[name]!;
      const decays = params[name]!.shape.length >= 2;
      for (let i = 0; i < pp.length; i++) {
        if (decays) pp[i] = pp[i]! * (1 - lr * o.weightDecay);
        mm[i] = o.beta1 * mm[i]! + (1 - o.beta1) * g[i]!;
        vv[i] = o.beta2 * vv[i]! + (1 - o.beta2) * g[i]! * g[i]!;
        pp[i] = pp[i]! - (lr / bias1) * (mm[i]! / (Math.sqrt(vv[i]! / bias2) + o.eps));
      }
    }
  }
  return p;
}

/** LAMB; also returns the trust ratio each (step, param) used. */
function lambReference(
  o: AdamOptions,
  params: Params,
  grads: Grads[],
  lrs: number[],
): { result: Record<string, Float64Array>; trusts: Array<Record<string, number>> } {
  const p = clone(params);
  const m: Grads = {};
  const v: Grads = {};
  for (const name of Object.keys(p)) {
    m[name] = new Float64Array(p[name]!.length);
    v[name] = new Float64Array(p[name]!.length);
  }
  const trusts: Array<Record<string, number>> = [];
  for (let s = 0; s < grads.length; s++) {
    const t = s + 1;
    const lr = lrs[s]!;
    const bias1 = 1 - o.beta1 ** t;
    const bias2 = 1 - o.beta2 ** t;
    const stepTrust: Record<string, number> = {};
    for (const name of Object.keys(p)) {
      const pp = p[name]!;
      const g = grads[s]![name]!;
      const mm = m[name]!;
      const vv = v[name]!;
      const decays = params[name]!.shape.length >= 2;
      const r = new Float64Array(pp.length);
      for (let i = 0; i < pp.length; i++) {
        mm[i] = o.beta1 * mm[i]! + (1 - o.beta1) * g[i]!;
        vv[i] = o.beta2 * vv[i]! + (1 - o.beta2) * g[i]! * g[i]!;
        r[i] = mm[i]! / bias1 / (Math.sqrt(vv[i]! / bias2) + o.eps);
        if (decays && o.weightDecay !== 0) r[i] = r[i]! + o.weightDecay * pp[i]!;
      }
      const pn = norm(pp);
      const rn = norm(r);
      const trust = pn > 0 && rn > 0 ? pn / rn : 1;
      stepTrust[name] = trust;
      for (let i = 0; i < pp.length; i++) pp[i] = pp[i]! - lr * trust * r[i]!;
    }
    trusts.push(stepTrust);
  }
  return { result: p, trusts };
}

interface AdafactorOptions {
  weightDecay: number;
  scaleParameter: boolean;
}

/** Hugging Face Adafactor (relative_step=False, warmup_init=False, beta1=None); also reports clipping. */
function adafactorReference(
  o: AdafactorOptions,
  params: Params,
  grads: Grads[],
  lrs: number[],
): { result: Record<string, Float64Array>; clipped: number; floored: number } {
  const eps1 = 1e-30;
  const eps2 = 1e-3;
  const clip = 1;
  const decayRate = -0.8;
  const p = clone(params);
  const row: Grads = {};
  const col: Grads = {};
  const vec: Grads = {};
  for (const [name, prm] of Object.entries(params)) {
    if (prm.shape.length >= 2) {
      row[name] = new Float64Array(prm.shape[0]!);
      col[name] = new Float64Array(prm.shape[1]!);
    } else {
      vec[name] = new Float64Array(prm.data.length);
    }
  }
  let clipped = 0;
  let floored = 0;
  for (let s = 0; s < grads.length; s++) {
    const t = s + 1;
    const lr = lrs[s]!;
    const beta2t = 1 - t ** decayRate;
    for (const [name, prm] of Object.entries(params)) {
      const pp = p[name]!;
      const g = grads[s]![name]!;
      const sq = g.map((x) => x * x + eps1);
      const u = new Float64Array(pp.length);
      if (prm.shape.length >= 2) {
        const [rows, cols] = prm.shape as [number, number];
        const R = row[name]!;
        const C = col[name]!;
        for (let i = 0; i < rows; i++) {
          let mean = 0;
          for (let j = 0; j < cols; j++) mean += sq[i * cols + j]!;
          R[i] = beta2t * R[i]! + (1 - beta2t) * (mean / cols);
        }
        for (let j = 0; j < cols; j++) {
          let mean = 0;
          for (let i = 0; i < rows; i++) mean += sq[i * cols + j]!;
          C[j] = beta2t * C[j]! + (1 - beta2t) * (mean / rows);
        }
        let meanR = 0;
        for (let i = 0; i < rows; i++) meanR += R[i]!;
        meanR /= rows;
        for (let i = 0; i < rows; i++) {
          for (let j = 0; j < cols; j++) {
            u[i * cols + j] = g[i * cols + j]! / Math.sqrt(R[i]! / meanR) / Math.sqrt(C[j]!);
          }
        }
      } else {
        const V = vec[name]!;
        for (let i = 0; i < pp.length; i++) {
          V[i] = beta2t * V[i]! + (1 - beta2t) * sq[i]!;
          u[i] = g[i]! / Math.sqrt(V[i]!);
        }
      }
      const ratio = rms(u) / clip;
      if (ratio > 1) clipped++;
      const divisor = Math.max(1, ratio);
      for (let i = 0; i < u.length; i++) u[i] = u[i]! / divisor;
      const pRms = rms(pp);
      if (o.scaleParameter && pRms < eps2) floored++;
      const step = o.scaleParameter ? lr * Math.max(eps2, pRms) : lr;
      const decays = prm.shape.length >= 2 && o.weightDecay !== 0;
      for (let i = 0; i < pp.length; i++) {
        const before = pp[i]!;
        let next = before;
        if (decays) next -= step * o.weightDecay * before;
        next -= step * u[i]!;
        pp[i] = next;
      }
    }
  }
  return { result: p, clipped, floored };
}

// ---------------------------------------------------------------- comparison

/** Largest |a − b| / (1 + |b|) over all parameters. */
function maxError(actual: Record<string, Float64Array>, expected: Record<string, Float64Array>): number {
  let worst = 0;
  for (const [name, e] of Object.entries(expected)) {
    const a = actual[name];
    expect(a, `param ${name}`).toBeDefined();
    expect(a!.length).toBe(e.length);
    for (let i = 0; i < e.length; i++) {
      const err = Math.abs(a![i]! - e[i]!) / (1 + Math.abs(e[i]!));
      if (!(err <= worst)) worst = Number.isNaN(err) ? Infinity : Math.max(worst, err);
    }
  }
  return worst;
}

/** Largest |a − b| between two value sets (for "did it move" checks). */
function maxDiff(a: Float64Array, b: Float64Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

function expectMatches(actual: Record<string, Float64Array>, expected: Record<string, Float64Array>, params: Params, limit = 1e-12): void {
  const perParam: Record<string, number> = {};
  for (const name of Object.keys(expected)) {
    perParam[name] = maxError({ [name]: actual[name]! }, { [name]: expected[name]! });
  }
  for (const [name, err] of Object.entries(perParam)) {
    expect(err, `max relative error in ${name}`).toBeLessThan(limit);
    // The optimiser really moved every parameter (so a no-op can't pass).
    expect(maxDiff(actual[name]!, params[name]!.data), `${name} moved`).toBeGreaterThan(1e-6);
  }
}

const DEFAULTS: AdamOptions = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

// ---------------------------------------------------------------- tests

describe('AdamW against a float64 reference', () => {
  it('3 steps with the default options', () => {
    const { params, grads } = problem(1);
    const native = runNative({ optimizer: 'adamw' }, params, grads, LRS);
    expectMatches(native, adamwReference(DEFAULTS, params, grads, LRS), params);
  });

  it('3 steps with non-default betas, eps and weight decay', () => {
    const { params, grads } = problem(2, 1, [0.3, 4, 0.01]);
    const o: AdamOptions = { beta1: 0.8, beta2: 0.95, eps: 1e-3, weightDecay: 0.2 };
    const native = runNative({ optimizer: 'adamw', ...o }, params, grads, LRS);
    expectMatches(native, adamwReference(o, params, grads, LRS), params);
  });

  it('weight decay changes only the matrix, never the vector', () => {
    const { params, grads } = problem(3);
    const without = runNative({ optimizer: 'adamw', weightDecay: 0 }, params, grads, LRS);
    const withDecay = runNative({ optimizer: 'adamw', weightDecay: 0.1 }, params, grads, LRS);
    // The 1-D parameter is bit-for-bit the same with and without decay...
    expect(Array.from(withDecay.b!)).toEqual(Array.from(without.b!));
    // ...while the matrix differs, by the amount the reference says.
    expect(maxDiff(withDecay.w!, without.w!)).toBeGreaterThan(1e-5);
    expectMatches(without, adamwReference({ ...DEFAULTS, weightDecay: 0 }, params, grads, LRS), params);
    expectMatches(withDecay, adamwReference({ ...DEFAULTS, weightDecay: 0.1 }, params, grads, LRS), params);
  });

  // fp32 on the CPU takes the one-pass update (native/kernels/adamw_cpu.h) where libtorch has no
  // fused AdamW: float math, so float rounding; a 256 × 160 matrix is split among the threads.
  it('3 steps in float32 (the one-pass CPU update) with non-default options and weight decay', () => {
    const { params, grads } = problem(4, 1, [0.3, 4, 0.01], [256, 160]);
    const o: AdamOptions = { beta1: 0.8, beta2: 0.95, eps: 1e-3, weightDecay: 0.2 };
    const native = runNative({ optimizer: 'adamw', ...o }, params, grads, LRS, 'float32');
    expectMatches(native, adamwReference(o, params, grads, LRS), params, 2e-6);
  });
});

describe('LAMB against a float64 reference', () => {
  const LAMB: AdamOptions = { ...DEFAULTS, eps: 1e-6 };

  it('3 steps with the default options (eps 1e-6)', () => {
    const { params, grads } = problem(4);
    const native = runNative({ optimizer: 'lamb' }, params, grads, LRS);
    expectMatches(native, lambReference(LAMB, params, grads, LRS).result, params);
  });

  it('3 steps with non-default betas, eps and weight decay', () => {
    const { params, grads } = problem(5, 1, [2, 0.1, 30]);
    const o: AdamOptions = { beta1: 0.7, beta2: 0.99, eps: 1e-4, weightDecay: 0.3 };
    const native = runNative({ optimizer: 'lamb', ...o }, params, grads, LRS);
    expectMatches(native, lambReference(o, params, grads, LRS).result, params);
  });

  it('the trust ratio scales the step (‖p‖/‖r‖ far from 1)', () => {
    // Large weights (‖p‖ ≫ ‖r‖, since Adam's direction is O(1) per element).
    const { params, grads } = problem(6, 50);
    const { result, trusts } = lambReference(LAMB, params, grads, LRS);
    for (const step of trusts) for (const trust of Object.values(step)) expect(trust).toBeGreaterThan(10);
    const native = runNative({ optimizer: 'lamb' }, params, grads, LRS);
    expectMatches(native, result, params);
    // Plain Adam direction (trust ≡ 1, i.e. AdamW-like step of lr·r) ends somewhere else entirely.
    const plain = lambReferenceWithoutTrust(LAMB, params, grads, LRS);
    for (const name of ['w', 'b']) {
      const movedNative = maxDiff(native[name]!, params[name]!.data);
      const movedPlain = maxDiff(plain[name]!, params[name]!.data);
      expect(movedNative / movedPlain, name).toBeGreaterThan(10);
    }
  });

  it('the trust ratio shrinks the step when ‖p‖ ≪ ‖r‖', () => {
    const { params, grads } = problem(7, 1e-3);
    const { result, trusts } = lambReference({ ...LAMB, weightDecay: 0 }, params, grads, LRS);
    for (const step of trusts) for (const trust of Object.values(step)) expect(trust).toBeLessThan(0.1);
    const native = runNative({ optimizer: 'lamb', weightDecay: 0 }, params, grads, LRS);
    for (const name of ['w', 'b']) {
      expect(maxError({ [name]: native[name]! }, { [name]: result[name]! }), name).toBeLessThan(1e-12);
    }
  });

  it('a zero parameter uses trust 1 (plain Adam step) on its first update', () => {
    const { grads } = problem(8);
    const params: Params = { w: { shape: [4, 3], data: new Float64Array(12) }, b: { shape: [5], data: new Float64Array(5) } };
    const { result, trusts } = lambReference(LAMB, params, grads, LRS);
    expect(trusts[0]).toEqual({ w: 1, b: 1 });
    const native = runNative({ optimizer: 'lamb' }, params, grads, LRS);
    expectMatches(native, result, params);
  });
});

/** LAMB with the trust ratio forced to 1 (for contrast only). */
function lambReferenceWithoutTrust(o: AdamOptions, params: Params, grads: Grads[], lrs: number[]): Record<string, Float64Array> {
  const p = clone(params);
  const m: Grads = {};
  const v: Grads = {};
  for (const name of Object.keys(p)) {
    m[name] = new Float64Array(p[name]!.length);
    v[name] = new Float64Array(p[name]!.length);
  }
  for (let s = 0; s < grads.length; s++) {
    const t = s + 1;
    for (const name of Object.keys(p)) {
      const pp = p[name]!;
      const g = grads[s]![name]!;
      const decays = params[name]!.shape.length >= 2;
      for (let i = 0; i < pp.length; i++) {
        m[name]![i] = o.beta1 * m[name]![i]! + (1 - o.beta1) * g[i]!;
        v[name]![i] = o.beta2 * v[name]![i]! + (1 - o.beta2) * g[i]! * g[i]!;
        let r = m[name]![i]! / (1 - o.beta1 ** t) / (Math.sqrt(v[name]![i]! / (1 - o.beta2 ** t)) + o.eps);
        if (decays) r += o.weightDecay * pp[i]!;
        pp[i] = pp[i]! - lrs[s]! * r;
      }
    }
  }
  return p;
}

describe('Adafactor against a float64 reference', () => {
  it('3 steps with the default options (scaleParameter, weight decay 0.01)', () => {
    const { params, grads } = problem(9);
    const { result, clipped } = adafactorReference({ weightDecay: 0.01, scaleParameter: true }, params, grads, LRS);
    // The varying gradient scale makes the RMS clip engage at least once.
    expect(clipped).toBeGreaterThan(0);
    const native = runNative({ optimizer: 'adafactor' }, params, grads, LRS);
    expectMatches(native, result, params);
  });

  it('3 steps without weight decay', () => {
    const { params, grads } = problem(10, 1, [0.5, 0.02, 8]);
    const { result } = adafactorReference({ weightDecay: 0, scaleParameter: true }, params, grads, LRS);
    const native = runNative({ optimizer: 'adafactor', weightDecay: 0 }, params, grads, LRS);
    expectMatches(native, result, params);
  });

  it('3 steps with scaleParameter false (step size is lr itself)', () => {
    const { params, grads } = problem(11, 3);
    const o = { weightDecay: 0.05, scaleParameter: false };
    const { result } = adafactorReference(o, params, grads, LRS);
    const native = runNative({ optimizer: 'adafactor', ...o }, params, grads, LRS);
    expectMatches(native, result, params);
    // ...and it differs from the scaled run (RMS(p) ≈ 3 here, not 1).
    const scaled = runNative({ optimizer: 'adafactor', weightDecay: 0.05 }, params, grads, LRS);
    expect(maxDiff(scaled.w!, native.w!)).toBeGreaterThan(1e-4);
  });

  it('tiny parameters use the eps2 = 1e-3 floor for the step size', () => {
    const { params, grads } = problem(12, 1e-5);
    const { result, floored } = adafactorReference({ weightDecay: 0.01, scaleParameter: true }, params, grads, LRS);
    expect(floored).toBe(6); // both params, all 3 steps
    const native = runNative({ optimizer: 'adafactor' }, params, grads, LRS);
    expectMatches(native, result, params);
  });

  it('non-square factoring: a 3×4 matrix and a 1×6 row', () => {
    const rand = prng(13);
    const params: Params = {
      w: { shape: [3, 4], data: normals(rand, 12) },
      r: { shape: [1, 6], data: normals(rand, 6) },
      b: { shape: [5], data: normals(rand, 5) },
    };
    const grads = [1, 5, 0.2].map((s) => ({ w: normals(rand, 12, s), r: normals(rand, 6, s), b: normals(rand, 5, s) }));
    const o = { weightDecay: 0.02, scaleParameter: true };
    const native = runNative({ optimizer: 'adafactor', weightDecay: 0.02 }, params, grads, LRS);
    expectMatches(native, adafactorReference(o, params, grads, LRS).result, params);
  });
});

describe('optimizerSteps input errors', () => {
  it('an unknown optimiser name is an Error mentioning "unknown optimizer"', () => {
    const { params, grads } = problem(14);
    let caught: unknown;
    try {
      runNative({ optimizer: 'sgd' as 'adamw' }, params, grads, LRS);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(Error);
    expect((caught as Error).message).toMatch(/unknown optimizer/);
    expect((caught as Error).message).toMatch(/sgd/);
  });

  it('a missing gradient is an Error naming the parameter', () => {
    for (const optimizer of ['adamw', 'lamb', 'adafactor'] as const) {
      const { params, grads } = problem(15);
      delete grads[1]!.b;
      const tensors = { w: f64(params.w!.data, [4, 3]), b: f64(params.b!.data, [5]) };
      const gradTensors = grads.map((g) => {
        const out: Record<string, Tensor> = {};
        for (const [name, arr] of Object.entries(g)) out[name] = f64(arr, params[name]!.shape);
        return out;
      });
      let caught: unknown;
      try {
        optimizerSteps({ optimizer }, tensors, gradTensors, LRS);
      } catch (e) {
        caught = e;
      }
      expect(caught, optimizer).toBeInstanceOf(Error);
      expect((caught as Error).message, optimizer).toMatch(/\bb\b/);
      expect((caught as Error).message, optimizer).toMatch(/grads\[1\]/);
    }
  });
});

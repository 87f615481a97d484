// Checks the float64 reference itself, with properties that would fail if it were wrong.
import { describe, it, expect } from 'vitest';
import {
  attention,
  baselineBlock,
  gelu,
  layerNorm,
  mat,
  matmulT,
  maxAbsDiff,
  randomMat,
  rmsNorm,
  roformerBlock,
  roformerModel,
  rotate,
  seededRandom,
  type BaselineBlockWeights,
  type BlockWeights,
  type Mat,
  type ModelWeights,
} from './reference.js';

const row = (m: Mat, r: number): Float64Array => m.data.slice(r * m.cols, (r + 1) * m.cols);
const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};
const randomVec = (n: number, rand: () => number): Float64Array => randomMat(1, n, rand).data;

function randomBlock(d: number, ffn: number, rand: () => number): BlockWeights {
  const s = 1 / Math.sqrt(d);
  return {
    query: randomMat(d, d, rand, s),
    key: randomMat(d, d, rand, s),
    value: randomMat(d, d, rand, s),
    output: randomMat(d, d, rand, s),
    intermediate: randomMat(ffn, d, rand, s),
    ffnOutput: randomMat(d, ffn, rand, 1 / Math.sqrt(ffn)),
  };
}

describe('matmulT', () => {
  it('matches a hand-computed 2x3 · (2x3)ᵀ example', () => {
    const x = mat(2, 3, [1, 2, 3, 4, 5, 6]);
    const w = mat(2, 3, [1, 0, -1, 2, 1, 0]); // (out=2, in=3)
    // row0: [1-3, 2+2] = [-2, 4]; row1: [4-6, 8+5] = [-2, 13]
    expect(Array.from(matmulT(x, w).data)).toEqual([-2, 4, -2, 13]);
    expect(matmulT(x, w).rows).toBe(2);
    expect(matmulT(x, w).cols).toBe(2);
  });

  it('rejects mismatched inner dimensions', () => {
    expect(() => matmulT(mat(2, 3), mat(2, 2))).toThrow();
  });
});

describe('mat / helpers', () => {
  it('mat rejects data of the wrong length', () => {
    expect(() => mat(2, 2, [1, 2, 3])).toThrow();
  });

  it('maxAbsDiff finds the largest gap, throws on length mismatch, never hides NaN', () => {
    expect(maxAbsDiff([1, 2, 3], [1, 2.5, 2])).toBe(1);
    expect(() => maxAbsDiff([1], [1, 2])).toThrow();
    expect(maxAbsDiff([NaN], [0])).toBeNaN();
  });

  it('seededRandom is deterministic, in [0,1), and seed-dependent', () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const c = seededRandom(43);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(xs);
    expect(c()).not.toBe(xs[0]);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
  });

  it('randomMat stays within [-scale, scale]', () => {
    const m = randomMat(10, 10, seededRandom(1), 0.3);
    for (const v of m.data) expect(Math.abs(v)).toBeLessThanOrEqual(0.3);
  });
});

describe('rmsNorm', () => {
  it('gives rows with mean square ≈ 1 and keeps direction', () => {
    const x = randomMat(5, 16, seededRandom(2), 7);
    const y = rmsNorm(x, 1e-12);
    for (let r = 0; r < 5; r++) {
      const yr = row(y, r);
      expect(dot(yr, yr) / 16).toBeCloseTo(1, 12);
      const xr = row(x, r);
      const cos = dot(xr, yr) / Math.sqrt(dot(xr, xr) * dot(yr, yr));
      expect(cos).toBeCloseTo(1, 12);
    }
  });

  it('eps keeps a zero row finite', () => {
    const y = rmsNorm(mat(1, 4), 1e-12);
    expect(Array.from(y.data)).toEqual([0, 0, 0, 0]);
  });
});

describe('layerNorm', () => {
  it('gives zero mean and unit variance rows before the affine part', () => {
    const d = 12;
    const x = randomMat(4, d, seededRandom(3), 5);
    const y = layerNorm(x, new Float64Array(d).fill(1), new Float64Array(d), 1e-12);
    for (let r = 0; r < 4; r++) {
      const yr = row(y, r);
      const mean = yr.reduce((s, v) => s + v, 0) / d;
      expect(mean).toBeCloseTo(0, 12);
      expect(dot(yr, yr) / d - mean * mean).toBeCloseTo(1, 12);
    }
  });

  it('applies gamma and beta per column', () => {
    const x = mat(1, 2, [1, 3]); // mean 2, var 1 → normalised [-1, 1]
    const y = layerNorm(x, [2, 3], [10, 20], 0);
    expect(maxAbsDiff(y.data, [8, 23])).toBeLessThan(1e-15);
  });
});

describe('rotate (RoPE)', () => {
  const hd = 8;
  const heads = 3;
  const rand = seededRandom(4);

  it('is the identity at position 0', () => {
    const x = randomMat(1, hd * heads, rand);
    expect(maxAbsDiff(rotate(x, hd, [0]).data, x.data)).toBe(0);
  });

  it('preserves the norm of every head slice', () => {
    const x = randomMat(4, hd * heads, rand);
    const y = rotate(x, hd, [0, 1, 17, 1000]);
    for (let r = 0; r < 4; r++) {
      for (let h = 0; h < heads; h++) {
        const xs = row(x, r).slice(h * hd, (h + 1) * hd);
        const ys = row(y, r).slice(h * hd, (h + 1) * hd);
        expect(dot(ys, ys)).toBeCloseTo(dot(xs, xs), 12);
      }
    }
  });

  it('rotates the first pair by angle p (θ_0 = 1) and the last pair by p·base^(-(d-2)/d)', () => {
    const x = mat(1, 4, [1, 0, 1, 0]);
    const p = 0.7;
    const y = rotate(x, 4, [p], 100);
    const t1 = p * Math.pow(100, -2 / 4);
    expect(maxAbsDiff(y.data, [Math.cos(p), Math.sin(p), Math.cos(t1), Math.sin(t1)])).toBeLessThan(1e-15);
  });

  it('scores depend only on relative position: ⟨R_m q, R_n k⟩ = ⟨R_{m+t} q, R_{n+t} k⟩', () => {
    const q = randomMat(1, hd, rand);
    const k = randomMat(1, hd, rand);
    const score = (m: number, n: number): number => dot(rotate(q, hd, [m]).data, rotate(k, hd, [n]).data);
    for (const [m, n, t] of [
      [3, 7, 5],
      [0, 12, 100],
      [9, 2, 513],
    ] as const) {
      expect(score(m + t, n + t)).toBeCloseTo(score(m, n), 10);
    }
    // ...and it really does depend on the offset (otherwise the test above proves nothing).
    expect(Math.abs(score(0, 1) - score(0, 2))).toBeGreaterThan(1e-3);
  });
});

describe('attention', () => {
  const rand = seededRandom(5);

  it('with all-equal keys returns the mean of v in every head', () => {
    const seq = 5;
    const d = 8;
    const q = randomMat(seq, d, rand);
    const kRow = randomVec(d, rand);
    const k = mat(seq, d, Array.from({ length: seq }, () => Array.from(kRow)).flat());
    const v = randomMat(seq, d, rand);
    const out = attention(q, k, v, 2);
    const mean = new Float64Array(d);
    for (let j = 0; j < seq; j++) for (let c = 0; c < d; c++) mean[c]! += v.data[j * d + c]! / seq;
    for (let i = 0; i < seq; i++) expect(maxAbsDiff(row(out, i), mean)).toBeLessThan(1e-14);
  });

  it('matches a hand-computed single-head example', () => {
    // hd = 2, one query [1, 0], keys [0,0] and [√2, 0] → scores 0 and 1 → softmax [1, e]/(1+e)
    const q = mat(1, 2, [1, 0]);
    const k = mat(2, 2, [0, 0, Math.SQRT2, 0]);
    const v = mat(2, 2, [1, 2, 3, 4]);
    const p1 = Math.E / (1 + Math.E);
    const expected = [(1 - p1) * 1 + p1 * 3, (1 - p1) * 2 + p1 * 4];
    expect(maxAbsDiff(attention(q, k, v, 1).data, expected)).toBeLessThan(1e-15);
  });

  it('keeps heads independent: changing head 1 inputs does not touch head 0 output', () => {
    const q = randomMat(4, 8, rand);
    const k = randomMat(4, 8, rand);
    const v = randomMat(4, 8, rand);
    const a = attention(q, k, v, 2);
    const v2 = mat(4, 8, v.data);
    for (let j = 0; j < 4; j++) v2.data[j * 8 + 6] = 99;
    const b = attention(q, k, v2, 2);
    for (let i = 0; i < 4; i++) {
      expect(maxAbsDiff(row(a, i).slice(0, 4), row(b, i).slice(0, 4))).toBe(0);
      expect(maxAbsDiff(row(a, i).slice(4), row(b, i).slice(4))).toBeGreaterThan(1e-3);
    }
  });

  it('masked keys have no influence on the output', () => {
    const seq = 6;
    const q = randomMat(seq, 8, rand);
    const k = randomMat(seq, 8, rand);
    const v = randomMat(seq, 8, rand);
    const mask = [true, true, false, true, false, true];
    const a = attention(q, k, v, 2, mask);
    const k2 = mat(seq, 8, k.data);
    const v2 = mat(seq, 8, v.data);
    for (const j of [2, 4]) {
      for (let c = 0; c < 8; c++) {
        k2.data[j * 8 + c] = 1000;
        v2.data[j * 8 + c] = -1e6;
      }
    }
    expect(maxAbsDiff(attention(q, k2, v2, 2, mask).data, a.data)).toBe(0);
    // Without the mask, the same change must matter.
    expect(maxAbsDiff(attention(q, k2, v2, 2).data, attention(q, k, v, 2).data)).toBeGreaterThan(1);
  });

  it('equals attention over only the unmasked keys', () => {
    const q = randomMat(3, 4, rand);
    const k = randomMat(4, 4, rand);
    const v = randomMat(4, 4, rand);
    const keep = [0, 2];
    const pick = (m: Mat): Mat => mat(keep.length, m.cols, keep.flatMap((j) => Array.from(row(m, j))));
    const masked = attention(q, k, v, 2, [true, false, true, false]);
    expect(maxAbsDiff(masked.data, attention(q, pick(k), pick(v), 2).data)).toBeLessThan(1e-15);
  });
});

describe('gelu', () => {
  it('matches exact values to 1e-12', () => {
    expect(gelu(0)).toBe(0);
    expect(Math.abs(gelu(1) - 0.8413447460685429)).toBeLessThan(1e-12);
    expect(Math.abs(gelu(-1) - -0.15865525393145707)).toBeLessThan(1e-12);
  });

  it('matches high-precision values across both erf branches (relative 1e-12)', () => {
    // Reference values computed with mpmath at 40 digits: 0.5 x erfc(-x/√2).
    const cases: [number, number][] = [
      [-10, -7.6198530241605261e-23],
      [-6, -5.9195258702261888e-9],
      [-4.2, -5.6052145866806579e-5],
      [-3, -0.0040496940948902836],
      [-2.9, -0.0054108585711137114],
      [-2.8, -0.0071543649251982153],
      [-0.5, -0.15426876936299345],
      [0.1, 0.053982783727702901],
      [2, 1.9544997361036416],
      [3, 2.9959503059051097],
      [4.3, 4.2999632784064746],
      [6, 5.9999999940804741],
      [10, 10],
    ];
    for (const [x, y] of cases) expect(Math.abs(gelu(x) - y)).toBeLessThanOrEqual(1e-12 * Math.abs(y));
  });

  it('is continuous at the series / continued-fraction switch (|x/√2| = 2)', () => {
    for (const x0 of [2 * Math.SQRT2, -2 * Math.SQRT2]) {
      const h = 1e-9;
      expect(Math.abs(gelu(x0 + h) - gelu(x0 - h))).toBeLessThan(1e-8);
    }
  });
});

describe('roformerBlock', () => {
  const d = 8;
  const rand = seededRandom(6);
  const w = randomBlock(d, 16, rand);
  const opts = { numHeads: 2, alpha: 1, eps: 1e-12 };

  it('with alpha = 0 reduces to the two norms alone', () => {
    const x = randomMat(5, d, rand, 3);
    const y = roformerBlock(x, w, { ...opts, alpha: 0 });
    // Two norms, not one: eps makes rmsNorm(rmsNorm(x)) differ from rmsNorm(x) by ~eps/2 relative.
    expect(maxAbsDiff(y.data, rmsNorm(rmsNorm(x, 1e-12), 1e-12).data)).toBeLessThan(1e-15);
  });

  it('matches a step-by-step composition of the primitives', () => {
    const x = randomMat(4, d, rand);
    const alpha = 0.3;
    const pos = [0, 1, 2, 3];
    const q = rotate(matmulT(x, w.query), 4, pos);
    const k = rotate(matmulT(x, w.key), 4, pos);
    const a = matmulT(attention(q, k, matmulT(x, w.value), 2), w.output);
    const x1 = rmsNorm(mat(4, d, x.data.map((v, i) => v + alpha * a.data[i]!)), 1e-12);
    const h = matmulT(x1, w.intermediate);
    const f = matmulT(mat(h.rows, h.cols, h.data.map((v) => Math.max(v, 0))), w.ffnOutput);
    const expected = rmsNorm(mat(4, d, x1.data.map((v, i) => v + alpha * f.data[i]!)), 1e-12);
    expect(maxAbsDiff(roformerBlock(x, w, { ...opts, alpha }).data, expected.data)).toBeLessThan(1e-14);
  });

  it('shifting all positions by a constant leaves the output unchanged (RoPE is relative)', () => {
    const x = randomMat(5, d, rand);
    const a = roformerBlock(x, w, opts);
    const b = roformerBlock(x, w, { ...opts, positions: [100, 101, 102, 103, 104] });
    expect(maxAbsDiff(a.data, b.data)).toBeLessThan(1e-10);
    // but the order of tokens matters (no bag-of-words)
    const c = roformerBlock(x, w, { ...opts, positions: [4, 3, 2, 1, 0] });
    expect(maxAbsDiff(a.data, c.data)).toBeGreaterThan(1e-3);
  });
});

describe('roformerModel', () => {
  const d = 8;
  const rand = seededRandom(7);
  const w: ModelWeights = {
    wordEmbeddings: randomMat(20, d, rand),
    tokenTypeEmbeddings: randomMat(2, d, rand),
    layers: [randomBlock(d, 16, rand), randomBlock(d, 16, rand)],
  };
  const opts = { numHeads: 2, alpha: 1, eps: 1e-12 };

  it('with no layers is rmsNorm of the summed embeddings, and logits are tied', () => {
    const ids = [2, 5, 7];
    const { hidden, logits } = roformerModel(ids, [0, 1, 1], { ...w, layers: [] }, opts);
    const x = mat(3, d);
    ids.forEach((id, p) => {
      for (let j = 0; j < d; j++) {
        x.data[p * d + j] = w.wordEmbeddings.data[id * d + j]! + w.tokenTypeEmbeddings.data[(p === 0 ? 0 : 1) * d + j]!;
      }
    });
    expect(maxAbsDiff(hidden.data, rmsNorm(x, 1e-12).data)).toBeLessThan(1e-15);
    expect(logits.rows).toBe(3);
    expect(logits.cols).toBe(20);
    expect(logits.data[1 * 20 + 4]).toBeCloseTo(dot(row(hidden, 1), row(w.wordEmbeddings, 4)), 14);
  });

  it('token types default to zeros', () => {
    const ids = [1, 3, 4];
    const a = roformerModel(ids, undefined, w, opts);
    const b = roformerModel(ids, [0, 0, 0], w, opts);
    expect(maxAbsDiff(a.hidden.data, b.hidden.data)).toBe(0);
  });

  it('padding (id 0) does not change the hidden states of real tokens', () => {
    const a = roformerModel([3, 4, 5], undefined, w, opts);
    const b = roformerModel([3, 4, 5, 0, 0], undefined, w, opts);
    expect(maxAbsDiff(a.hidden.data, b.hidden.data.slice(0, 3 * d))).toBeLessThan(1e-13);
    // an explicit all-true mask lets the pads be attended, which must change the result
    const c = roformerModel([3, 4, 5, 0, 0], undefined, w, { ...opts, keyMask: [true, true, true, true, true] });
    expect(maxAbsDiff(c.hidden.data.slice(0, 3 * d), a.hidden.data)).toBeGreaterThan(1e-3);
  });

  it('respects a custom padId', () => {
    const a = roformerModel([3, 4, 5], undefined, w, { ...opts, padId: 9 });
    const b = roformerModel([3, 4, 5, 9], undefined, w, { ...opts, padId: 9 });
    expect(maxAbsDiff(a.hidden.data, b.hidden.data.slice(0, 3 * d))).toBeLessThan(1e-13);
  });
});

describe('baselineBlock', () => {
  const d = 8;
  const ffn = 16;
  const rand = seededRandom(8);
  const vec = (n: number): Float64Array => randomVec(n, rand);
  const w: BaselineBlockWeights = {
    query: randomMat(d, d, rand, 0.3),
    queryBias: vec(d),
    key: randomMat(d, d, rand, 0.3),
    keyBias: vec(d),
    value: randomMat(d, d, rand, 0.3),
    valueBias: vec(d),
    output: randomMat(d, d, rand, 0.3),
    outputBias: vec(d),
    attentionNormWeight: vec(d),
    attentionNormBias: vec(d),
    intermediate: randomMat(ffn, d, rand, 0.3),
    intermediateBias: vec(ffn),
    ffnOutput: randomMat(d, ffn, rand, 0.3),
    ffnOutputBias: vec(d),
    outputNormWeight: vec(d),
    outputNormBias: vec(d),
  };

  it('matches a step-by-step composition with explicit biases', () => {
    const x = randomMat(4, d, rand);
    const lin = (m: Mat, W: Mat, b: Float64Array): Mat => {
      const y = matmulT(m, W);
      return mat(y.rows, y.cols, y.data.map((v, i) => v + b[i % y.cols]!));
    };
    const a = lin(attention(lin(x, w.query, w.queryBias), lin(x, w.key, w.keyBias), lin(x, w.value, w.valueBias), 2), w.output, w.outputBias);
    const x1 = layerNorm(mat(4, d, x.data.map((v, i) => v + a.data[i]!)), w.attentionNormWeight, w.attentionNormBias, 1e-5);
    const h = lin(x1, w.intermediate, w.intermediateBias);
    const f = lin(mat(h.rows, h.cols, h.data.map(gelu)), w.ffnOutput, w.ffnOutputBias);
    const expected = layerNorm(mat(4, d, x1.data.map((v, i) => v + f.data[i]!)), w.outputNormWeight, w.outputNormBias, 1e-5);
    expect(maxAbsDiff(baselineBlock(x, w, { numHeads: 2, eps: 1e-5 }).data, expected.data)).toBeLessThan(1e-14);
  });

  it('is permutation-equivariant (no position information) and honours the key mask', () => {
    const x = randomMat(3, d, rand);
    const perm = [2, 0, 1];
    const xp = mat(3, d, perm.flatMap((j) => Array.from(row(x, j))));
    const y = baselineBlock(x, w, { numHeads: 2, eps: 1e-5 });
    const yp = baselineBlock(xp, w, { numHeads: 2, eps: 1e-5 });
    perm.forEach((j, i) => expect(maxAbsDiff(row(yp, i), row(y, j))).toBeLessThan(1e-13));

    const x2 = mat(3, d, x.data);
    for (let c = 0; c < d; c++) x2.data[2 * d + c] = 50;
    const mask = [true, true, false];
    const m1 = baselineBlock(x, w, { numHeads: 2, eps: 1e-5, keyMask: mask });
    const m2 = baselineBlock(x2, w, { numHeads: 2, eps: 1e-5, keyMask: mask });
    expect(maxAbsDiff(m1.data.slice(0, 2 * d), m2.data.slice(0, 2 * d))).toBe(0);
  });
});

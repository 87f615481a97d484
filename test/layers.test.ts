// The building blocks against the float64 reference (test/reference.ts), and the
// block's gradients against finite differences.

import { describe, expect, it } from 'vitest';

import { EncoderBlock, RMSNorm, RotaryEmbedding, SelfAttention, tensor, type Tensor } from '../lib/index.js';
import {
  attention,
  mat,
  matmulT,
  maxAbsDiff,
  randomMat,
  rmsNorm,
  roformerBlock,
  rotate,
  seededRandom,
  type Mat,
} from './reference.js';
import { blockWeights, fromMats, sampleMat, toMat, values } from './native-helpers.js';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('RotaryEmbedding', () => {
  it('rotates each interleaved pair by p·θ_i, element by element', () => {
    const rand = seededRandom(1);
    const [heads, seq, headDim] = [3, 9, 8];
    const rope = new RotaryEmbedding({ headDim });
    const inputs = range(heads).map(() => randomMat(seq, headDim, rand));
    const out = rope.apply(fromMats(inputs)); // (heads, seq, headDim): rows are positions
    for (let h = 0; h < heads; h++) {
      const expected = rotate(inputs[h]!, headDim, range(seq));
      expect(maxAbsDiff(sampleMat(out, h).data, expected.data)).toBeLessThan(1e-12);
    }
  });

  it('matches the explicit formula for one pair at a large position', () => {
    // x = (1, 0 | 0, 1) at position p: pair 0 turns by p·θ_0 = p, pair 1 by p·10000^(-1/2).
    const seq = 3001;
    const x = new Float64Array(seq * 4);
    x[(seq - 1) * 4 + 0] = 1;
    x[(seq - 1) * 4 + 3] = 1;
    const out = values(new RotaryEmbedding({ headDim: 4 }).apply(tensor(x, [seq, 4])));
    const p = seq - 1;
    const theta1 = Math.pow(10000, -2 / 4);
    const last = Array.from(out.subarray(p * 4));
    expect(maxAbsDiff(last, [Math.cos(p), Math.sin(p), -Math.sin(p * theta1), Math.cos(p * theta1)])).toBeLessThan(1e-9);
  });

  it('works past 512 positions (no fixed table) and keeps vector norms', () => {
    const rand = seededRandom(2);
    const x = randomMat(2048, 16, rand);
    const out = toMat(new RotaryEmbedding({ headDim: 16 }).apply(tensor(x.data, [2048, 16])));
    const norm = (m: Mat, r: number) => Math.hypot(...m.data.subarray(r * m.cols, (r + 1) * m.cols));
    for (const r of [0, 511, 512, 2047]) expect(norm(out, r)).toBeCloseTo(norm(x, r), 10);
    expect(maxAbsDiff(out.data, rotate(x, 16, range(2048)).data)).toBeLessThan(1e-9);
  });

  it('⟨R_m q, R_n k⟩ depends only on m − n', () => {
    const rand = seededRandom(3);
    const headDim = 16;
    const q = randomMat(1, headDim, rand);
    const k = randomMat(1, headDim, rand);
    const seq = 700;
    const repeat = (v: Mat) => mat(seq, headDim, Float64Array.from({ length: seq * headDim }, (_, i) => v.data[i % headDim]!));
    const rope = new RotaryEmbedding({ headDim });
    const rq = toMat(rope.apply(tensor(repeat(q).data, [seq, headDim])));
    const rk = toMat(rope.apply(tensor(repeat(k).data, [seq, headDim])));
    const score = (m: number, n: number) => {
      let s = 0;
      for (let i = 0; i < headDim; i++) s += rq.data[m * headDim + i]! * rk.data[n * headDim + i]!;
      return s;
    };
    for (const [m, n] of [[5, 2], [0, 40], [100, 100]] as const) {
      for (const shift of [1, 17, 550]) expect(score(m + shift, n + shift)).toBeCloseTo(score(m, n), 9);
    }
    // ... and it does depend on m − n (the test would pass trivially otherwise)
    expect(Math.abs(score(5, 2) - score(5, 3))).toBeGreaterThan(1e-6);
  });

  it('position interpolation scales positions by the factor', () => {
    const rand = seededRandom(4);
    const x = randomMat(40, 8, rand);
    const out = toMat(new RotaryEmbedding({ headDim: 8, interpolationFactor: 0.25 }).apply(tensor(x.data, [40, 8])));
    expect(maxAbsDiff(out.data, rotate(x, 8, range(40).map((p) => p * 0.25)).data)).toBeLessThan(1e-12);
  });
});

describe('RMSNorm', () => {
  it('y = x / sqrt(mean(x²) + eps) per row, no gain', () => {
    const rand = seededRandom(5);
    const x = randomMat(6, 10, rand, 3);
    const norm = new RMSNorm({ eps: 1e-6 });
    expect(norm.namedParameters()).toEqual({});
    const out = toMat(norm.forward(tensor(x.data, [6, 10])));
    expect(maxAbsDiff(out.data, rmsNorm(x, 1e-6).data)).toBeLessThan(1e-14);
    // float32 and bfloat16 inputs are normalised in float32 and keep their dtype
    const out32 = norm.forward(tensor(x.data, [6, 10], 'float32'));
    expect(out32.dtype).toBe('float32');
    expect(maxAbsDiff(values(out32), rmsNorm(x, 1e-6).data)).toBeLessThan(1e-5);
    const out16 = norm.forward(tensor(x.data, [6, 10], 'bfloat16'));
    expect(out16.dtype).toBe('bfloat16');
    expect(maxAbsDiff(values(out16), rmsNorm(x, 1e-6).data)).toBeLessThan(2e-2);
  });
});

describe('SelfAttention', () => {
  it('matches an explicit float64 softmax computation, with padded keys masked', () => {
    const rand = seededRandom(6);
    const [batch, seq, hidden, heads] = [2, 5, 16, 2];
    const layer = new SelfAttention({ hiddenSize: hidden, numHeads: heads, seed: 11 }).to('cpu', 'float64');
    const p = layer.namedParameters();
    expect(Object.keys(p).sort()).toEqual(['key.weight', 'output.weight', 'query.weight', 'value.weight']);
    const xs = range(batch).map(() => randomMat(seq, hidden, rand));
    const mask = [
      [1, 1, 1, 1, 1],
      [1, 1, 1, 0, 0],
    ];
    const out = layer.forward(fromMats(xs), tensor(mask, undefined, 'int64'));
    for (let b = 0; b < batch; b++) {
      const x = xs[b]!;
      const q = rotate(matmulT(x, toMat(p['query.weight']!)), hidden / heads, range(seq));
      const k = rotate(matmulT(x, toMat(p['key.weight']!)), hidden / heads, range(seq));
      const v = matmulT(x, toMat(p['value.weight']!));
      const expected = matmulT(attention(q, k, v, heads, mask[b]!.map(Boolean)), toMat(p['output.weight']!));
      expect(maxAbsDiff(sampleMat(out, b).data, expected.data)).toBeLessThan(1e-12);
    }
  });

  it('with rotary off and biases on (the baseline attention) matches too', () => {
    const rand = seededRandom(7);
    const layer = new SelfAttention({ hiddenSize: 8, numHeads: 2, bias: true, rotary: false, seed: 3 }).to('cpu', 'float64');
    const p = layer.namedParameters();
    const x = randomMat(4, 8, rand);
    const lin = (m: Mat, name: string) => {
      const y = matmulT(m, toMat(p[`${name}.weight`]!));
      const b = values(p[`${name}.bias`]!);
      for (let i = 0; i < y.data.length; i++) y.data[i]! += b[i % y.cols]!;
      return y;
    };
    const expected = lin(attention(lin(x, 'query'), lin(x, 'key'), lin(x, 'value'), 2), 'output');
    expect(maxAbsDiff(sampleMat(layer.forward(fromMats([x])), 0).data, expected.data)).toBeLessThan(1e-12);
  });
});

describe('EncoderBlock', () => {
  const options = { hidden_size: 16, num_attention_heads: 2, intermediate_size: 32, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, layer_norm_eps: 1e-12 };

  it('post-norm with α: Norm(x + α·Attn(x)), then Norm(x + α·FFN(x))', () => {
    const rand = seededRandom(8);
    for (const alpha of [1, 0.3, 0]) {
      const block = new EncoderBlock({ ...options, alpha, seed: 5 }).to('cpu', 'float64');
      const w = blockWeights(block.namedParameters());
      const xs = [randomMat(6, 16, rand), randomMat(6, 16, rand)];
      const mask = [
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0],
      ];
      const out = block.forward(fromMats(xs), tensor(mask, undefined, 'int32'));
      for (let b = 0; b < 2; b++) {
        const expected = roformerBlock(xs[b]!, w, { numHeads: 2, alpha, eps: 1e-12, keyMask: mask[b]!.map(Boolean) });
        expect(maxAbsDiff(sampleMat(out, b).data, expected.data)).toBeLessThan(1e-12);
      }
    }
  });

  it('has no biases and no norm parameters', () => {
    const names = Object.keys(new EncoderBlock(options).namedParameters()).sort();
    expect(names).toEqual(['attention.key.weight', 'attention.output.weight', 'attention.query.weight', 'attention.value.weight', 'intermediate.weight', 'output.weight']);
  });

  it('gradients match central finite differences in float64', () => {
    const rand = seededRandom(9);
    const [seq, hidden] = [4, 8];
    const block = new EncoderBlock({ ...options, hidden_size: hidden, intermediate_size: 16, alpha: 0.8, seed: 2 }).to('cpu', 'float64');
    const x = randomMat(seq, hidden, rand);
    const mask = tensor([[1, 1, 1, 0]], undefined, 'int64');
    const r = randomMat(seq, hidden, rand); // loss = ⟨block(x), r⟩
    const gradOut = fromMats([r]);
    const { inputs, parameters } = block.vjp([fromMats([x]), mask], gradOut);
    expect(inputs[1]).toBeNull(); // the integer mask has no gradient

    const loss = (input: Tensor) => {
      const y = values(block.forward(input, mask));
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i]! * r.data[i]!;
      return s;
    };
    const h = 1e-6;
    const check = (analytic: number, numeric: number) =>
      expect(Math.abs(analytic - numeric)).toBeLessThan(1e-6 * Math.max(1, Math.abs(numeric)));

    // with respect to the input
    const gx = values(inputs[0]!);
    for (const i of [0, 5, 13, 22, 31]) {
      const plus = Float64Array.from(x.data);
      const minus = Float64Array.from(x.data);
      plus[i]! += h;
      minus[i]! -= h;
      check(gx[i]!, (loss(tensor(plus, [1, seq, hidden])) - loss(tensor(minus, [1, seq, hidden]))) / (2 * h));
    }

    // with respect to weights of every matrix
    const input = fromMats([x]);
    const original = Object.fromEntries(Object.entries(block.namedParameters()).map(([k, v]) => [k, v.to()]));
    for (const name of Object.keys(original)) {
      const w = values(original[name]!);
      const g = values(parameters[name]!);
      for (const i of [0, Math.floor(w.length / 2), w.length - 1]) {
        const perturbed = (delta: number) => {
          const copy = Float64Array.from(w);
          copy[i]! += delta;
          block.loadStateDict({ ...original, [name]: tensor(copy, original[name]!.shape) });
          return loss(input);
        };
        check(g[i]!, (perturbed(h) - perturbed(-h)) / (2 * h));
      }
      block.loadStateDict(original);
    }
  });
});

// GAU-α (native/gau_alpha.h) and the attention normalisations both architectures
// share (native/attention_normalization.h), each piece against a float64 reference
// written here in plain loops, gradients against central finite differences; the
// port's model dirs loaded and saved; RoFormerV2's pre-norm block and its
// normalisation option.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  EncoderBlock,
  GatedAttentionUnit,
  GauAlpha,
  GauLayer,
  loadPretrained,
  NormalizedAttention,
  readSafetensors,
  RoFormerV2,
  RotaryEmbedding,
  SelfAttention,
  tensor,
  writeSafetensorsAtomic,
  type AttentionNormalization,
  type Tensor,
} from '../lib/index.js';
import { mat, matmulT, maxAbsDiff, randomMat, rmsNorm, rotate, seededRandom, type Mat } from './reference.js';
import { blockWeights, fromMats, sampleMat, toMat, values } from './native-helpers.js';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const tmp = () => mkdtempSync(join(tmpdir(), 'roformer-gau-'));

// ---------------------------------------------------------------------------
// The float64 reference
// ---------------------------------------------------------------------------

/** The normalised weights of one query row over its scores a_j; kept[j] false = padded key (weight 0). */
function normalizeRow(scores: number[], kept: boolean[], normalization: AttentionNormalization): number[] {
  const n = kept.filter(Boolean).length;
  if (normalization === 'squared_relu') return scores.map((a, j) => (kept[j] ? Math.max(a, 0) ** 2 / n : 0));
  const factor = normalization === 'softmax_plus' ? Math.log(n) / Math.log(512) : 1;
  const logits = scores.map((a, j) => (kept[j] ? a * factor : -Infinity));
  const max = Math.max(...logits);
  const e = logits.map((l) => (l === -Infinity ? 0 : Math.exp(l - max)));
  const z = e.reduce((s, v) => s + v, 0);
  return e.map((v) => v / z);
}

/** A v for one head: q, k (seq, d), v (seq, dv); a = q kᵀ / √d (or q kᵀ unscaled). */
function attend(q: Mat, k: Mat, v: Mat, kept: boolean[], normalization: AttentionNormalization, scaled = true): Mat {
  const out = mat(q.rows, v.cols);
  const scale = scaled ? 1 / Math.sqrt(q.cols) : 1;
  for (let i = 0; i < q.rows; i++) {
    const scores = range(k.rows).map((j) => range(q.cols).reduce((s, d) => s + q.data[i * q.cols + d]! * k.data[j * k.cols + d]!, 0) * scale);
    const weights = normalizeRow(scores, kept, normalization);
    for (let c = 0; c < v.cols; c++) out.data[i * v.cols + c] = range(k.rows).reduce((s, j) => s + weights[j]! * v.data[j * v.cols + c]!, 0);
  }
  return out;
}

const swish = (x: number) => x / (1 + Math.exp(-x));
const columns = (m: Mat, from: number, to: number) => mat(m.rows, to - from, range(m.rows).flatMap((r) => Array.from(m.data.subarray(r * m.cols + from, r * m.cols + to))));
const scaleColumns = (m: Mat, gamma: ArrayLike<number>) => mat(m.rows, m.cols, m.data.map((x, i) => x * gamma[i % m.cols]!));
const hadamard = (a: Mat, b: Mat) => mat(a.rows, a.cols, a.data.map((x, i) => x * b.data[i]!));

interface GauWeights {
  iDense: Mat; // (2e + s, hidden)
  oDense: Mat; // (hidden, e)
  gammaQ: Float64Array;
  gammaK: Float64Array;
}

function gauWeights(p: Record<string, Tensor>, prefix = ''): GauWeights {
  return {
    iDense: toMat(p[`${prefix}i_dense.weight`]!),
    oDense: toMat(p[`${prefix}o_dense.weight`]!),
    gammaQ: values(p[`${prefix}q_scaleoffset.weight`]!),
    gammaK: values(p[`${prefix}k_scaleoffset.weight`]!),
  };
}

/** The gated attention unit over one sequence: (u ⊙ (A v)) W_o. */
function gauReference(x: Mat, w: GauWeights, e: number, s: number, kept: boolean[], normalization: AttentionNormalization): Mat {
  const projected = matmulT(x, w.iDense);
  const activated = mat(projected.rows, projected.cols, projected.data.map(swish));
  const u = columns(activated, 0, e);
  const v = columns(activated, e, 2 * e);
  const z = columns(activated, 2 * e, 2 * e + s);
  const positions = range(x.rows);
  const q = rotate(scaleColumns(z, w.gammaQ), s, positions);
  const k = rotate(scaleColumns(z, w.gammaK), s, positions);
  return matmulT(hadamard(u, attend(q, k, v, kept, normalization)), w.oDense);
}

const addMats = (a: Mat, b: Mat) => mat(a.rows, a.cols, a.data.map((x, i) => x + b.data[i]!));

/** ⟨f(x), r⟩ and its gradient checks by central differences, for a layer with vjp(). */
function checkGradients(
  layer: { vjp: (inputs: Array<Tensor | null>, g: Tensor) => { inputs: Array<Tensor | null>; parameters: Record<string, Tensor> }; namedParameters(): Record<string, Tensor>; loadStateDict(s: Record<string, Tensor>): void },
  forward: (input: Tensor) => Tensor,
  x: Mat,
  batchShape: number[],
  mask: Tensor,
  rand: () => number,
) {
  const out = forward(tensor(x.data, batchShape));
  const r = Float64Array.from({ length: out.shape.reduce((a, b) => a * b, 1) }, () => rand() * 2 - 1);
  const { inputs, parameters } = layer.vjp([tensor(x.data, batchShape), mask], tensor(r, out.shape));
  const loss = (input: Tensor) => values(forward(input)).reduce((s, y, i) => s + y * r[i]!, 0);
  const h = 1e-6;
  const check = (analytic: number, numeric: number) => expect(Math.abs(analytic - numeric)).toBeLessThan(1e-6 * Math.max(1, Math.abs(numeric)));
  const gx = values(inputs[0]!);
  for (const i of [0, 3, Math.floor(x.data.length / 2), x.data.length - 1]) {
    const moved = (delta: number) => {
      const copy = Float64Array.from(x.data);
      copy[i]! += delta;
      return loss(tensor(copy, batchShape));
    };
    check(gx[i]!, (moved(h) - moved(-h)) / (2 * h));
  }
  const input = tensor(x.data, batchShape);
  const original = Object.fromEntries(Object.entries(layer.namedParameters()).map(([k, v]) => [k, v.to()]));
  for (const name of Object.keys(original)) {
    const w = values(original[name]!);
    const g = values(parameters[name]!);
    for (const i of [0, Math.floor(w.length / 2), w.length - 1]) {
      const moved = (delta: number) => {
        const copy = Float64Array.from(w);
        copy[i]! += delta;
        layer.loadStateDict({ ...original, [name]: tensor(copy, original[name]!.shape) });
        return loss(input);
      };
      check(g[i]!, (moved(h) - moved(-h)) / (2 * h));
    }
    layer.loadStateDict(original);
  }
}

// ---------------------------------------------------------------------------
// Attention normalisation
// ---------------------------------------------------------------------------

describe('attention normalisation', () => {
  const [batch, heads, seq, d, dv] = [2, 2, 6, 4, 3];
  const mask = [
    [1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 0, 0],
  ];
  const rand = seededRandom(21);
  const block = (cols: number, scale = 1) => range(batch * heads).map(() => randomMat(seq, cols, rand, scale));
  const qs = block(d, 2);
  const ks = block(d, 2);
  const vs = block(dv);
  const stack = (mats: Mat[], cols: number) => {
    const data = new Float64Array(mats.length * seq * cols);
    mats.forEach((m, i) => data.set(m.data, i * seq * cols));
    return tensor(data, [batch, heads, seq, cols]);
  };

  for (const normalization of ['softmax', 'softmax_plus', 'squared_relu'] as const) {
    it(`${normalization} matches the reference, padded keys masked and n counted per row`, () => {
      const layer = new NormalizedAttention({ normalization });
      const out = layer.forward(stack(qs, d), stack(ks, d), stack(vs, dv), tensor(mask, undefined, 'int64'));
      const all = values(out);
      for (let b = 0; b < batch; b++) {
        for (let h = 0; h < heads; h++) {
          const i = b * heads + h;
          const expected = attend(qs[i]!, ks[i]!, vs[i]!, mask[b]!.map(Boolean), normalization);
          expect(maxAbsDiff(all.subarray(i * seq * dv, (i + 1) * seq * dv), expected.data)).toBeLessThan(1e-12);
        }
      }
    });
  }

  it('softmax_plus differs from softmax below 512 real tokens and equals it at exactly 512', () => {
    const plus = new NormalizedAttention({ normalization: 'softmax_plus' });
    const plain = new NormalizedAttention({ normalization: 'softmax' });
    const args = [stack(qs, d), stack(ks, d), stack(vs, dv), tensor(mask, undefined, 'int64')] as const;
    expect(maxAbsDiff(values(plus.forward(...args)), values(plain.forward(...args)))).toBeGreaterThan(1e-3);
    const n = 512;
    const q = tensor(Float64Array.from({ length: n * 2 }, () => rand() - 0.5), [1, 1, n, 2]);
    const k = tensor(Float64Array.from({ length: n * 2 }, () => rand() - 0.5), [1, 1, n, 2]);
    const v = tensor(Float64Array.from({ length: n }, () => rand()), [1, 1, n, 1]);
    expect(maxAbsDiff(values(plus.forward(q, k, v)), values(plain.forward(q, k, v)))).toBeLessThan(1e-12);
  });

  it('squared_relu gives a padded row of all-negative scores zero output, not NaN', () => {
    const layer = new NormalizedAttention({ normalization: 'squared_relu' });
    const q = tensor([1, 0, 1, 0], [1, 1, 2, 2], 'float64');
    const k = tensor([-1, 0, -1, 0], [1, 1, 2, 2], 'float64');
    const v = tensor([5, 7], [1, 1, 2, 1], 'float64');
    expect(Array.from(values(layer.forward(q, k, v, tensor([[1, 0]], undefined, 'int64'))))).toEqual([0, 0]);
  });

  for (const normalization of ['softmax_plus', 'squared_relu'] as const) {
    it(`${normalization}: gradients with respect to q, k and v match central differences`, () => {
      const layer = new NormalizedAttention({ normalization });
      const m = tensor(mask, undefined, 'int64');
      const inputs = [stack(qs, d), stack(ks, d), stack(vs, dv)];
      const r = Float64Array.from({ length: batch * heads * seq * dv }, () => rand() * 2 - 1);
      const { inputs: grads } = layer.vjp([...inputs, m], tensor(r, [batch, heads, seq, dv]));
      const loss = (xs: Tensor[]) => values(layer.forward(xs[0]!, xs[1]!, xs[2]!, m)).reduce((s, y, i) => s + y * r[i]!, 0);
      const h = 1e-6;
      for (let which = 0; which < 3; which++) {
        const base = values(inputs[which]!);
        const g = values(grads[which]!);
        for (const i of [1, 17, base.length - 2]) {
          const moved = (delta: number) => {
            const copy = Float64Array.from(base);
            copy[i]! += delta;
            return loss(inputs.map((t, j) => (j === which ? tensor(copy, t.shape) : t)));
          };
          const numeric = (moved(h) - moved(-h)) / (2 * h);
          expect(Math.abs(g[i]! - numeric)).toBeLessThan(1e-6 * Math.max(1, Math.abs(numeric)));
        }
      }
    });
  }
});

// ---------------------------------------------------------------------------
// GAU-α's pieces
// ---------------------------------------------------------------------------

describe('RoPE over the s dimensions of q and k', () => {
  it('rotates interleaved pairs over s = 16, and gives the scores of the port’s concatenated layout', () => {
    const rand = seededRandom(22);
    const [seq, s] = [7, 16];
    const q = randomMat(seq, s, rand);
    const k = randomMat(seq, s, rand);
    const rope = new RotaryEmbedding({ headDim: s });
    const rq = toMat(rope.apply(tensor(q.data, [seq, s])));
    const rk = toMat(rope.apply(tensor(k.data, [seq, s])));
    expect(maxAbsDiff(rq.data, rotate(q, s, range(seq)).data)).toBeLessThan(1e-12);
    // The port writes [x_even·cos − x_odd·sin, x_even·sin + x_odd·cos] (halves, not pairs):
    // a permutation of the same coordinates, applied to q and k alike, so q·k is the same.
    const portLayout = (x: Mat) =>
      mat(seq, s, range(seq).flatMap((p) => {
        const row = Array.from(x.data.subarray(p * s, (p + 1) * s));
        const angle = (i: number) => p * Math.pow(10000, (-2 * i) / s);
        const even = range(s / 2).map((i) => row[2 * i]! * Math.cos(angle(i)) - row[2 * i + 1]! * Math.sin(angle(i)));
        const odd = range(s / 2).map((i) => row[2 * i]! * Math.sin(angle(i)) + row[2 * i + 1]! * Math.cos(angle(i)));
        return [...even, ...odd];
      }));
    const scores = (a: Mat, b: Mat) => matmulT(a, b).data;
    expect(maxAbsDiff(scores(rq, rk), scores(portLayout(q), portLayout(k)))).toBeLessThan(1e-12);
  });
});

describe('GatedAttentionUnit', () => {
  const options = { hidden_size: 12, intermediate_size: 10, attention_key_size: 8, attention_probs_dropout_prob: 0, hidden_dropout_prob: 0 };
  const mask = [
    [1, 1, 1, 1, 1],
    [1, 1, 1, 0, 0],
  ];

  it('has the port’s parameters: i_dense (2e + s, hidden), o_dense (hidden, e), q/k scales (s), no biases', () => {
    const unit = new GatedAttentionUnit({ ...options, seed: 1 });
    const shapes = Object.fromEntries(Object.entries(unit.namedParameters()).map(([k, v]) => [k, v.shape]));
    expect(shapes).toEqual({ 'i_dense.weight': [28, 12], 'o_dense.weight': [12, 10], 'q_scaleoffset.weight': [8], 'k_scaleoffset.weight': [8] });
  });

  for (const normalization of ['softmax_plus', 'softmax', 'squared_relu'] as const) {
    it(`${normalization}: the gate u ⊙ (A v), then W_o, matches the reference with padding`, () => {
      const rand = seededRandom(23);
      const unit = new GatedAttentionUnit({ ...options, normalization, seed: 2 }).to('cpu', 'float64');
      // Scales other than 1, so γ_q ≠ γ_k is exercised.
      const p = unit.namedParameters();
      unit.loadStateDict({
        ...p,
        'q_scaleoffset.weight': tensor(Float64Array.from({ length: 8 }, () => 0.5 + rand()), [8]),
        'k_scaleoffset.weight': tensor(Float64Array.from({ length: 8 }, () => 0.5 + rand()), [8]),
      });
      const w = gauWeights(unit.namedParameters());
      const xs = [randomMat(5, 12, rand, 2), randomMat(5, 12, rand, 2)];
      const out = unit.forward(fromMats(xs), tensor(mask, undefined, 'int64'));
      for (let b = 0; b < 2; b++) {
        const expected = gauReference(xs[b]!, w, 10, 8, mask[b]!.map(Boolean), normalization);
        expect(maxAbsDiff(sampleMat(out, b).data, expected.data)).toBeLessThan(1e-12);
      }
    });
  }

  it('gradients match central finite differences in float64 (softmax_plus, padded)', () => {
    const rand = seededRandom(24);
    const unit = new GatedAttentionUnit({ ...options, seed: 3 }).to('cpu', 'float64');
    const m = tensor([[1, 1, 1, 0]], undefined, 'int64');
    checkGradients(unit, (x) => unit.forward(x, m), randomMat(4, 12, rand), [1, 4, 12], m, rand);
  });
});

describe('GauLayer', () => {
  it('x ← Norm(x + GAU(x)), post-norm, RMS norm without gain', () => {
    const rand = seededRandom(25);
    const layer = new GauLayer({ hidden_size: 12, intermediate_size: 10, attention_key_size: 8, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, seed: 4 }).to('cpu', 'float64');
    const p = layer.namedParameters();
    expect(Object.keys(p).sort()).toEqual(['gau.i_dense.weight', 'gau.k_scaleoffset.weight', 'gau.o_dense.weight', 'gau.q_scaleoffset.weight']);
    const w = gauWeights(p, 'gau.');
    const mask = [
      [1, 1, 1, 1, 1, 1],
      [1, 1, 0, 0, 0, 0],
    ];
    const xs = [randomMat(6, 12, rand), randomMat(6, 12, rand)];
    const out = layer.forward(fromMats(xs), tensor(mask, undefined, 'int64'));
    for (let b = 0; b < 2; b++) {
      const expected = rmsNorm(addMats(xs[b]!, gauReference(xs[b]!, w, 10, 8, mask[b]!.map(Boolean), 'softmax_plus')), 1e-12);
      expect(maxAbsDiff(sampleMat(out, b).data, expected.data)).toBeLessThan(1e-12);
    }
  });

  it('gradients match central finite differences in float64', () => {
    const rand = seededRandom(26);
    const layer = new GauLayer({ hidden_size: 8, intermediate_size: 6, attention_key_size: 4, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, seed: 5 }).to('cpu', 'float64');
    const m = tensor([[1, 1, 1, 1, 0]], undefined, 'int64');
    checkGradients(layer, (x) => layer.forward(x, m), randomMat(5, 8, rand), [1, 5, 8], m, rand);
  });
});

// ---------------------------------------------------------------------------
// The whole model: initialisation, the port's model dirs
// ---------------------------------------------------------------------------

const TINY = { vocab_size: 300, hidden_size: 32, num_hidden_layers: 2, intermediate_size: 64, attention_key_size: 16 };

describe('GauAlpha', () => {
  it('is initialised as the port does: normal(0, 0.02) weights, the pad row zero, scales 1', () => {
    const model = GauAlpha.create({ config: { ...TINY, vocab_size: 2000, hidden_size: 128, intermediate_size: 256 }, seed: 7 });
    const p = model.namedParameters();
    const embeddings = values(p['word_embeddings.weight']!);
    expect(Array.from(embeddings.subarray(0, 128)).every((v) => v === 0)).toBe(true); // pad_token_id 0
    const rest = embeddings.subarray(128);
    const std = Math.sqrt(rest.reduce((s, v) => s + v * v, 0) / rest.length);
    expect(std).toBeGreaterThan(0.019);
    expect(std).toBeLessThan(0.021);
    const iDense = values(p['layer.0.gau.i_dense.weight']!);
    expect(Math.sqrt(iDense.reduce((s, v) => s + v * v, 0) / iDense.length)).toBeCloseTo(0.02, 3);
    expect(Array.from(values(p['layer.1.gau.q_scaleoffset.weight']!)).every((v) => v === 1)).toBe(true);
    expect(model.config.normalization).toBe('softmax_plus');
    expect(model.architecture).toBe('gau-alpha');
    model.dispose();
  });

  it('forward: embeddings → Norm, then the layers; MLM logits tied to the embeddings', async () => {
    const rand = seededRandom(27);
    const model = GauAlpha.create({ config: { ...TINY, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, seed: 8 }).to('cpu', 'float64').eval();
    const p = model.namedParameters();
    const ids = [
      [2, 17, 45, 99, 3],
      [2, 8, 3, 0, 0],
    ];
    const hidden = await model.forward(tensor(ids, undefined, 'int64'));
    const logits = await model.mlmLogits(hidden);
    const word = toMat(p['word_embeddings.weight']!);
    const type0 = values(p['token_type_embeddings.weight']!).subarray(0, 32);
    for (let b = 0; b < 2; b++) {
      const kept = ids[b]!.map((t) => t !== 0);
      let x = rmsNorm(mat(5, 32, ids[b]!.flatMap((t) => Array.from(word.data.subarray(t * 32, (t + 1) * 32)).map((v, c) => v + type0[c]!))), 1e-12);
      for (let l = 0; l < 2; l++) x = rmsNorm(addMats(x, gauReference(x, gauWeights(p, `layer.${l}.gau.`), 64, 16, kept, 'softmax_plus')), 1e-12);
      expect(maxAbsDiff(sampleMat(hidden, b).data, x.data)).toBeLessThan(1e-11);
      expect(maxAbsDiff(values(logits).subarray(b * 5 * 300, (b + 1) * 5 * 300), matmulT(x, word).data)).toBeLessThan(1e-10);
    }
    void rand;
    model.dispose();
  });

  it('saves in the port’s names and config keys, and loads back the same function', async () => {
    const dir = tmp();
    const model = GauAlpha.create({ config: TINY, seed: 9 }).eval();
    await model.save(dir);
    const { tensors } = await readSafetensors(join(dir, 'model.safetensors'));
    expect([...tensors.keys()].sort()).toEqual(
      [
        'cls.predictions.decoder.weight',
        'gau_alpha.embeddings.token_type_embeddings.weight',
        'gau_alpha.embeddings.word_embeddings.weight',
        ...[0, 1].flatMap((i) => ['i_dense', 'o_dense', 'q_scaleoffset', 'k_scaleoffset'].map((n) => `gau_alpha.encoder.layer.${i}.gau.${n}.weight`)),
      ].sort(),
    );
    const config = JSON.parse(await import('node:fs/promises').then((fs) => fs.readFile(join(dir, 'config.json'), 'utf8')));
    expect(config).toMatchObject({ model_type: 'gau_alpha', architectures: ['GAUAlphaForMaskedLM'], attention_key_size: 16, normalization: 'softmax_plus', hidden_act: 'swish', use_bias: false, attention_scale: true, embedding_size: 32 });
    expect(config.num_attention_heads).toBeUndefined();

    const loaded = await loadPretrained(dir);
    expect(loaded).toBeInstanceOf(GauAlpha);
    const ids = tensor([[2, 5, 9, 3]], undefined, 'int64');
    expect(maxAbsDiff(values(await loaded.forward(ids)), values(await model.forward(ids)))).toBe(0);
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(/GAU-α .*GauAlpha\.fromPretrained/);
    model.dispose();
    loaded.dispose();
  });

  it('loads a dir as the port writes it: its config.json, the bare encoder’s names, no tied decoder', async () => {
    const source = GauAlpha.create({ config: TINY, seed: 10 });
    const params = source.namedParameters();
    const dir = tmp();
    // GAUAlphaModel (the bare encoder) saves `embeddings.…`/`encoder.…` without the prefix.
    const portName = (native: string) => native.startsWith('layer.') ? `encoder.${native}` : `embeddings.${native}`;
    await writeSafetensorsAtomic(
      join(dir, 'model.safetensors'),
      Object.entries(params).map(([name, t]) => ({ name: portName(name), dtype: 'F32' as const, shape: t.shape, data: t.toBuffer() })),
    );
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({ architectures: ['GAUAlphaForMaskedLM'], model_type: 'gau_alpha', attention_key_size: 16, attention_probs_dropout_prob: 0.1, attention_scale: true, classifier_dropout: 0.1, embedding_size: 32, gradient_checkpointing: false, hidden_act: 'swish', hidden_dropout_prob: 0.1, hidden_size: 32, initializer_range: 0.02, intermediate_size: 64, layer_norm_eps: 1e-12, max_position_embeddings: 512, normalization: 'softmax_plus', num_hidden_layers: 2, pad_token_id: 0, torch_dtype: 'float32', transformers_version: '4.17.0', type_vocab_size: 2, use_bias: false, vocab_size: 300 }),
    );
    const loaded = await GauAlpha.fromPretrained(dir);
    const ids = tensor([[2, 7, 11, 3, 0]], undefined, 'int64');
    expect(maxAbsDiff(values(await loaded.forward(ids)), values(await source.eval().forward(ids)))).toBe(0);
    source.dispose();
    loaded.dispose();
  });

  it('names a missing or mis-shaped tensor in the port’s names', async () => {
    const dir = tmp();
    const model = GauAlpha.create({ config: TINY, seed: 11 });
    await model.save(dir);
    const config = JSON.parse((await import('node:fs')).readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, attention_key_size: 8 }));
    await expect(GauAlpha.fromPretrained(dir)).rejects.toThrow(/gau_alpha\.encoder\.layer\.0\.gau\.q_scaleoffset\.weight has shape \[16\], expected \[8\]/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: 3 }));
    await expect(GauAlpha.fromPretrained(dir)).rejects.toThrow(/missing tensor gau_alpha\.encoder\.layer\.2\.gau\.i_dense\.weight/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, normalization: 'softmax_minus' }));
    await expect(GauAlpha.fromPretrained(dir)).rejects.toThrow(/normalization must be one of softmax, softmax_plus, squared_relu/);
    model.dispose();
  });
});

// ---------------------------------------------------------------------------
// RoFormerV2's options: pre-norm, attention normalisation
// ---------------------------------------------------------------------------

describe('RoFormerV2 options', () => {
  const options = { hidden_size: 16, num_attention_heads: 2, intermediate_size: 32, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, layer_norm_eps: 1e-12 };

  it('pre-norm block: x + α·Attn(Norm(x)), then x + α·FFN(Norm(x)), no parameters added', () => {
    const rand = seededRandom(28);
    const alpha = 0.7;
    const block = new EncoderBlock({ ...options, norm_position: 'pre', alpha, seed: 6 }).to('cpu', 'float64');
    const w = blockWeights(block.namedParameters());
    const x = randomMat(5, 16, rand);
    const kept = [true, true, true, true, false];
    const attentionOf = (h: Mat) => {
      const q = rotate(matmulT(h, w.query), 8, range(5));
      const k = rotate(matmulT(h, w.key), 8, range(5));
      const v = matmulT(h, w.value);
      const heads = [0, 1].map((i) => attend(columns(q, 8 * i, 8 * i + 8), columns(k, 8 * i, 8 * i + 8), columns(v, 8 * i, 8 * i + 8), kept, 'softmax'));
      return matmulT(mat(5, 16, range(5).flatMap((r) => heads.flatMap((hd) => Array.from(hd.data.subarray(r * 8, r * 8 + 8))))), w.output);
    };
    const scaled = (m: Mat) => mat(m.rows, m.cols, m.data.map((v) => v * alpha));
    const x1 = addMats(x, scaled(attentionOf(rmsNorm(x, 1e-12))));
    const hidden = matmulT(rmsNorm(x1, 1e-12), w.intermediate);
    const x2 = addMats(x1, scaled(matmulT(mat(hidden.rows, hidden.cols, hidden.data.map((v) => Math.max(v, 0))), w.ffnOutput)));
    const out = block.forward(fromMats([x]), tensor([kept.map(Number)], undefined, 'int64'));
    expect(maxAbsDiff(sampleMat(out, 0).data, x2.data)).toBeLessThan(1e-12);
    expect(Object.keys(block.namedParameters())).toHaveLength(6);
  });

  it('SelfAttention with softmax_plus scales each row’s logits by log n / log 512', () => {
    const rand = seededRandom(29);
    const layer = new SelfAttention({ hiddenSize: 8, numHeads: 1, normalization: 'softmax_plus', seed: 7 }).to('cpu', 'float64');
    const p = layer.namedParameters();
    const x = randomMat(5, 8, rand, 3);
    const kept = [true, true, true, false, false];
    const q = rotate(matmulT(x, toMat(p['query.weight']!)), 8, range(5));
    const k = rotate(matmulT(x, toMat(p['key.weight']!)), 8, range(5));
    const expected = matmulT(attend(q, k, matmulT(x, toMat(p['value.weight']!)), kept, 'softmax_plus'), toMat(p['output.weight']!));
    const out = layer.forward(fromMats([x]), tensor([kept.map(Number)], undefined, 'int64'));
    expect(maxAbsDiff(sampleMat(out, 0).data, expected.data)).toBeLessThan(1e-12);
  });

  it('the whole model follows its config: each normalisation and norm position gives another function of the same weights', async () => {
    const ids = tensor([[2, 9, 4, 7, 3, 0]], undefined, 'int64');
    const hiddenOf = async (config: Record<string, unknown>, create: (c: Record<string, unknown>) => RoFormerV2 | GauAlpha) => {
      const model = create(config).eval();
      const out = values(await model.forward(ids));
      model.dispose();
      return out;
    };
    const roformer = (extra: Record<string, unknown>) => hiddenOf(extra, (c) => RoFormerV2.create({ config: { vocab_size: 50, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, ...c }, seed: 13 }));
    const gau = (extra: Record<string, unknown>) => hiddenOf(extra, (c) => GauAlpha.create({ config: { ...TINY, vocab_size: 50, initializer_range: 0.5, ...c }, seed: 13 }));
    const base = await roformer({});
    for (const variant of [{ normalization: 'softmax_plus' }, { normalization: 'squared_relu' }, { norm_position: 'pre' }]) {
      expect(maxAbsDiff(await roformer(variant), base), JSON.stringify(variant)).toBeGreaterThan(1e-4);
    }
    const gauBase = await gau({});
    for (const variant of [{ normalization: 'softmax' }, { normalization: 'squared_relu' }]) {
      expect(maxAbsDiff(await gau(variant), gauBase), JSON.stringify(variant)).toBeGreaterThan(1e-4);
    }
  });

  it('a pre-norm squared_relu RoFormerV2 saves both keys and loads back the same function', async () => {
    const dir = tmp();
    const model = RoFormerV2.create({ config: { vocab_size: 200, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, norm_position: 'pre', normalization: 'squared_relu' }, seed: 12 }).eval();
    await model.save(dir);
    const loaded = await RoFormerV2.fromPretrained(dir);
    expect(loaded.config).toMatchObject({ norm_position: 'pre', normalization: 'squared_relu' });
    const ids = tensor([[2, 9, 4, 3]], undefined, 'int64');
    const hidden = values(await loaded.forward(ids));
    expect(maxAbsDiff(hidden, values(await model.forward(ids)))).toBe(0);
    // The final Norm of a pre-norm stack: every row has unit RMS.
    for (let r = 0; r < 4; r++) expect(Math.hypot(...hidden.subarray(r * 16, r * 16 + 16)) / 4).toBeCloseTo(1, 6);
    model.dispose();
    loaded.dispose();
  });
});

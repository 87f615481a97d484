// The whole models against the float64 reference; padding invariance; seeding;
// initialisation; save → load in the Hugging Face layout.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { readSafetensors, RobertaBaseline, RoFormerV2, tensor, toHuggingFaceName, type Tensor } from '../lib/index.js';
import { baselineBlock, gelu, layerNorm, mat, matmulT, maxAbsDiff, roformerModel, type Mat } from './reference.js';
import { blockWeights, sampleMat, TINY_CONFIG as tiny, toMat, values } from './native-helpers.js';

function referenceWeights(model: RoFormerV2) {
  const p = model.namedParameters();
  return {
    wordEmbeddings: toMat(p['word_embeddings.weight']!),
    tokenTypeEmbeddings: toMat(p['token_type_embeddings.weight']!),
    layers: Array.from({ length: model.config.num_hidden_layers }, (_, i) => blockWeights(p, `layer.${i}.`)),
  };
}

const ids = [
  [2, 7, 9, 11, 13, 3, 0, 0],
  [2, 5, 3, 0, 0, 0, 0, 0],
];
const tokenTypes = [
  [0, 0, 0, 0, 1, 1, 0, 0],
  [0, 1, 1, 0, 0, 0, 0, 0],
];

describe('RoFormerV2 forward', () => {
  it('matches the float64 reference: hidden states and tied MLM logits', async () => {
    const model = RoFormerV2.create({ config: tiny, seed: 1 }).to('cpu', 'float64').eval();
    const w = referenceWeights(model);
    const hidden = await model.forward(tensor(ids, undefined, 'int64'), { tokenTypeIds: tensor(tokenTypes, undefined, 'int64') });
    const logits = await model.mlmLogits(hidden);
    expect(hidden.shape).toEqual([2, 8, 16]);
    expect(logits.shape).toEqual([16, 50]);
    const allLogits = toMat(logits);
    for (let b = 0; b < 2; b++) {
      const expected = roformerModel(ids[b]!, tokenTypes[b], w, { numHeads: 2, alpha: 1, eps: 1e-12 });
      expect(maxAbsDiff(sampleMat(hidden, b).data, expected.hidden.data)).toBeLessThan(1e-12);
      expect(maxAbsDiff(allLogits.data.subarray(b * 8 * 50, (b + 1) * 8 * 50), expected.logits.data)).toBeLessThan(1e-12);
    }
  });

  it('computes the MLM head only at the requested positions', async () => {
    const model = RoFormerV2.create({ config: tiny, seed: 2 }).eval();
    const hidden = await model.forward(tensor(ids, undefined, 'int32'));
    const all = toMat(await model.mlmLogits(hidden));
    const positions = [1, 4, 9];
    const some = toMat(await model.mlmLogits(hidden, tensor(positions, undefined, 'int64')));
    expect(some.rows).toBe(3);
    positions.forEach((p, i) => {
      // float32 GEMM vs a smaller GEMM: the same values up to summation order
      expect(maxAbsDiff(some.data.subarray(i * 50, (i + 1) * 50), all.data.subarray(p * 50, (p + 1) * 50))).toBeLessThan(1e-5);
    });
  });

  it('follows the residual scale α set by the trainer', async () => {
    const model = RoFormerV2.create({ config: tiny, seed: 3 }).to('cpu', 'float64').eval();
    model.setResidualScale(0.25);
    expect(model.residualScale).toBe(0.25);
    const hidden = await model.forward(tensor([ids[0]!], undefined, 'int64'));
    const expected = roformerModel(ids[0]!, undefined, referenceWeights(model), { numHeads: 2, alpha: 0.25, eps: 1e-12 });
    expect(maxAbsDiff(sampleMat(hidden, 0).data, expected.hidden.data)).toBeLessThan(1e-12);
    expect(() => model.setResidualScale(1.5)).toThrow(/\[0, 1\]/);
  });

  it('padding does not change the outputs at real positions', async () => {
    const model = RoFormerV2.create({ config: tiny, seed: 4 }).eval();
    const real = [2, 17, 23, 8, 3];
    const short = values(await model.forward(tensor([real], undefined, 'int64')));
    const padded = values(await model.forward(tensor([[...real, 0, 0, 0, 0, 0, 0]], undefined, 'int64')));
    expect(maxAbsDiff(short, padded.subarray(0, short.length))).toBeLessThan(1e-5);
    // an explicit attention mask works the same way, whatever the padded ids are
    const masked = values(
      await model.forward(tensor([[...real, 44, 45]], undefined, 'int64'), {
        attentionMask: tensor([[1, 1, 1, 1, 1, 0, 0]], undefined, 'int64'),
      }),
    );
    expect(maxAbsDiff(short, masked.subarray(0, short.length))).toBeLessThan(1e-5);
    // ...and the padded positions would have changed the result if they were attended
    const unmasked = values(await model.forward(tensor([[...real, 44, 45]], undefined, 'int64')));
    expect(maxAbsDiff(short, unmasked.subarray(0, short.length))).toBeGreaterThan(1e-3);
  });

  it('a row with no real token stays finite (no softmax over nothing)', async () => {
    const model = RoFormerV2.create({ config: tiny, seed: 4 }).eval();
    const out = values(await model.forward(tensor([[2, 9, 3], [0, 0, 0]], undefined, 'int64')));
    expect(out.every(Number.isFinite)).toBe(true);
    const masked = values(
      await model.forward(tensor([[2, 9, 3]], undefined, 'int64'), { attentionMask: tensor([[0, 0, 0]], undefined, 'int64') }),
    );
    expect(masked.every(Number.isFinite)).toBe(true);
  });

  it('runs at lengths past 512 (no position table)', async () => {
    const model = RoFormerV2.create({ config: tiny, seed: 5 }).eval();
    const long = Array.from({ length: 1030 }, (_, i) => 4 + (i % 40));
    const hidden = await model.forward(tensor([long], undefined, 'int64'));
    expect(hidden.shape).toEqual([1, 1030, 16]);
    expect(values(hidden).every(Number.isFinite)).toBe(true);
  });

  it('dropout is active in training mode and off in eval mode', async () => {
    const model = RoFormerV2.create({ config: { ...tiny, hidden_dropout_prob: 0.5 }, seed: 6 });
    const input = tensor([ids[0]!], undefined, 'int64');
    expect(model.training).toBe(true);
    const a = values(await model.forward(input));
    const b = values(await model.forward(input));
    expect(maxAbsDiff(a, b)).toBeGreaterThan(1e-3);
    model.eval();
    expect(maxAbsDiff(values(await model.forward(input)), values(await model.forward(input)))).toBe(0);
  });
});

describe('RoFormerV2 weights', () => {
  it('same seed → same weights and outputs; another seed → different', async () => {
    const bytes = (m: RoFormerV2) => Object.values(m.namedParameters()).map((t) => t.toBuffer());
    const a = RoFormerV2.create({ config: tiny, seed: 7 }).eval();
    const b = RoFormerV2.create({ config: tiny, seed: 7 }).eval();
    const c = RoFormerV2.create({ config: tiny, seed: 8 }).eval();
    bytes(a).forEach((buf, i) => expect(buf.equals(bytes(b)[i]!)).toBe(true));
    expect(bytes(a)[0]!.equals(bytes(c)[0]!)).toBe(false);
    const input = tensor(ids, undefined, 'int64');
    expect(values(await a.forward(input))).toEqual(values(await b.forward(input)));
  });

  it("uses the authors' initialisation: truncated normal, σ = 1.13684723/√fan_in · L^(-1/2)", () => {
    const layers = 4;
    const model = RoFormerV2.create({ config: { vocab_size: 3000, hidden_size: 256, num_hidden_layers: layers, num_attention_heads: 4, intermediate_size: 1024 }, seed: 9 });
    const p = model.namedParameters();
    for (const [name, fanIn] of [
      ['word_embeddings.weight', 256],
      ['layer.0.attention.query.weight', 256],
      ['layer.3.output.weight', 1024],
    ] as const) {
      const w = values(p[name]!);
      const sigma = (1.13684723 / Math.sqrt(fanIn)) / Math.sqrt(layers);
      const mean = w.reduce((s, v) => s + v, 0) / w.length;
      const std = Math.sqrt(w.reduce((s, v) => s + (v - mean) ** 2, 0) / w.length);
      // A normal truncated at ±2σ has standard deviation 0.879626·σ; the constant makes that 1/√fan_in·L^(-1/2).
      expect(std / (0.879626 * sigma)).toBeGreaterThan(0.98);
      expect(std / (0.879626 * sigma)).toBeLessThan(1.02);
      expect(w.reduce((m, x) => Math.max(m, Math.abs(x)), 0)).toBeLessThanOrEqual(2 * sigma * (1 + 1e-6));
      expect(Math.abs(mean)).toBeLessThan(0.02 * sigma);
    }
  });

  it('has the spec parameter counts for the named sizes', () => {
    const count = (size: 'small' | 'base') => RoFormerV2.create({ size }).parameterCount;
    // small: 12000·384 + 2·384 + 6·(4·384² + 2·384·1536) ≈ 15.2M; base ≈ 94.1M (spec: ~15M, ~94M)
    expect(count('small')).toBe(12000 * 384 + 2 * 384 + 6 * (4 * 384 * 384 + 2 * 384 * 1536));
    expect(count('base')).toBe(12000 * 768 + 2 * 768 + 12 * (4 * 768 * 768 + 2 * 768 * 3072));
  });
});

describe('model dirs (Hugging Face layout)', () => {
  it('save → fromPretrained gives identical outputs, with the HF tensor names and config keys', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'roformer-dir-')), 'model');
    const model = RoFormerV2.create({ config: tiny, seed: 10 }).eval();
    await model.save(dir);

    const file = await readSafetensors(join(dir, 'model.safetensors'));
    const expectedNames = [...Object.keys(model.namedParameters()).map(toHuggingFaceName), 'cls.predictions.decoder.weight'].sort();
    expect([...file.tensors.keys()].sort()).toEqual(expectedNames);
    expect(expectedNames).toContain('roformer.encoder.layer.1.attention.self.query.weight');
    expect(expectedNames).toContain('roformer.encoder.layer.0.output.dense.weight');

    const loaded = await RoFormerV2.fromPretrained(dir);
    expect(loaded.training).toBe(false);
    expect(loaded.config).toEqual(model.config);
    const input = tensor(ids, undefined, 'int64');
    const [h1, h2] = [await model.forward(input), await loaded.forward(input)];
    expect(values(h2)).toEqual(values(h1));
    expect(values(await loaded.mlmLogits(h2))).toEqual(values(await model.mlmLogits(h1)));
  });
});

describe('Hugging Face port compatibility', () => {
  it("accepts (and ignores) the port's stored sinusoidal table roformer.encoder.embed_positions.weight", async () => {
    const { readSafetensors: read, writeSafetensorsAtomic } = await import('../lib/model/safetensors.js');
    const dir = join(mkdtempSync(join(tmpdir(), 'roformer-hf-')), 'model');
    const model = RoFormerV2.create({ config: tiny, seed: 14 }).eval();
    await model.save(dir);
    const file = await read(join(dir, 'model.safetensors'));
    const entries = [...file.tensors.values()].map((e) => ({ name: e.name, dtype: e.dtype, shape: e.shape, data: e.data }));
    const table = Buffer.alloc(512 * 8 * 4); // (max_position, head size 8) float32
    await writeSafetensorsAtomic(join(dir, 'model.safetensors'), [...entries, { name: 'roformer.encoder.embed_positions.weight', dtype: 'F32', shape: [512, 8], data: table }]);
    const loaded = await RoFormerV2.fromPretrained(dir);
    const input = tensor(ids, undefined, 'int64');
    expect(values(await loaded.forward(input))).toEqual(values(await model.forward(input)));
    // a table of the wrong width is still an unexpected tensor
    await writeSafetensorsAtomic(join(dir, 'model.safetensors'), [...entries, { name: 'roformer.encoder.embed_positions.weight', dtype: 'F32', shape: [512, 4], data: Buffer.alloc(512 * 4 * 4) }]);
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(/unexpected tensor roformer\.encoder\.embed_positions\.weight/);
  });
});

describe('RobertaBaseline', () => {
  it('one layer matches a float64 RoBERTa reference (learned positions, LayerNorm, GELU, biases)', async () => {
    const config = { ...tiny, num_hidden_layers: 1, max_position_embeddings: 16 };
    const model = RobertaBaseline.create({ config, seed: 12 }).to('cpu', 'float64').eval();
    // Give the norms and biases non-trivial values so the test can see them.
    const p = model.namedParameters();
    const perturbed: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(p)) {
      const v = values(t).map((x, i) => (t.shape.length === 1 ? x + 0.1 * Math.sin(i + name.length) : x));
      perturbed[name] = tensor(v, t.shape, 'float64');
    }
    model.loadStateDict(perturbed);
    const w = (name: string) => toMat(perturbed[name]!);
    const v = (name: string) => values(perturbed[name]!);

    const seqIds = ids[0]!;
    const S = seqIds.length;
    const embed = mat(S, 16);
    for (let s = 0; s < S; s++) {
      for (let j = 0; j < 16; j++) {
        embed.data[s * 16 + j] = w('word_embeddings.weight').data[seqIds[s]! * 16 + j]! + w('position_embeddings.weight').data[s * 16 + j]! + w('token_type_embeddings.weight').data[j]!;
      }
    }
    const eps = 1e-12;
    const x0 = layerNorm(embed, v('embeddings_norm.weight'), v('embeddings_norm.bias'), eps);
    const l = 'layer.0.';
    const expected = baselineBlock(x0, {
      query: w(l + 'attention.query.weight'), queryBias: v(l + 'attention.query.bias'),
      key: w(l + 'attention.key.weight'), keyBias: v(l + 'attention.key.bias'),
      value: w(l + 'attention.value.weight'), valueBias: v(l + 'attention.value.bias'),
      output: w(l + 'attention.output.weight'), outputBias: v(l + 'attention.output.bias'),
      attentionNormWeight: v(l + 'attention_norm.weight'), attentionNormBias: v(l + 'attention_norm.bias'),
      intermediate: w(l + 'intermediate.weight'), intermediateBias: v(l + 'intermediate.bias'),
      ffnOutput: w(l + 'output.weight'), ffnOutputBias: v(l + 'output.bias'),
      outputNormWeight: v(l + 'output_norm.weight'), outputNormBias: v(l + 'output_norm.bias'),
    }, { numHeads: 2, eps, keyMask: seqIds.map((id) => id !== 0) });

    const hidden = await model.forward(tensor([seqIds], undefined, 'int64'));
    expect(maxAbsDiff(sampleMat(hidden, 0).data, expected.data)).toBeLessThan(1e-12);

    // RoBERTa's MLM head: dense → GELU → LayerNorm → tied decoder + bias
    const dense = matmulT(expected, w('lm_dense.weight'));
    const bias = v('lm_dense.bias');
    const activated: Mat = mat(dense.rows, dense.cols, dense.data.map((x, i) => gelu(x + bias[i % dense.cols]!)));
    const normed = layerNorm(activated, v('lm_norm.weight'), v('lm_norm.bias'), eps);
    const logits = matmulT(normed, w('word_embeddings.weight'));
    const lmBias = v('lm_bias');
    logits.data.forEach((x, i) => (logits.data[i] = x + lmBias[i % logits.cols]!));
    expect(maxAbsDiff(values(await model.mlmLogits(hidden)), logits.data)).toBeLessThan(1e-12);
  });

  it('runs with bf16 weights (the benchmark\'s encode mode), LayerNorm computed in float32', async () => {
    const model = RobertaBaseline.create({ config: tiny, seed: 13 }).eval();
    const input = tensor(ids, undefined, 'int64');
    const reference = values(await model.forward(input));
    model.to('cpu', 'bfloat16');
    const hidden = await model.forward(input);
    expect(hidden.dtype).toBe('bfloat16');
    expect(maxAbsDiff(values(hidden), reference)).toBeLessThan(0.1);
  });

  it('has the parameters RoFormerV2 removes, at the same sizes', () => {
    const v2 = RoFormerV2.create({ size: 'small' }).parameterCount;
    const baseline = RobertaBaseline.create({ size: 'small' }).parameterCount;
    // + positions (512·384) + LayerNorms + biases + LM head (384² + 384 + 2·384 + 12000)
    expect(baseline).toBeGreaterThan(v2 + 512 * 384);
  });
});

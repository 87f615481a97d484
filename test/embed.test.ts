// Sentence embeddings: pooling against float64 computations written here from the
// model's own hidden states; BERT-whitening on synthetic data with a known covariance;
// the .npy output read back by a reader written here; `roformer embed` end to end.

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { buildVocab, Tokenizer } from '../lib/data/tokenizer.js';
import { SentenceEncoder, type Pooling } from '../lib/embed/sentence-encoder.js';
import { symmetricEigen } from '../lib/embed/symmetric-eigen.js';
import { Whitening, WhiteningError } from '../lib/embed/whitening.js';
import { EncoderBlock, RMSNorm } from '../lib/model/layers.js';
import { RoFormerV2 } from '../lib/model/model.js';
import { tensor } from '../lib/model/tensor.js';
import { failure, roformer } from './cli-run.js';

const TEXTS = ['今天天气很好', '好', '北京上海今天东西质量问题答案甲乙丙丁', '上下文'];
const ALPHA = 0.7; // a residual scale other than 1, so that the first-layer twin must carry it

let dir: string;
let modelDir: string;
let model: RoFormerV2;
let tokenizer: Tokenizer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'embed-test-'));
  modelDir = join(dir, 'model');
  tokenizer = Tokenizer.fromTokens(await buildVocab(['很好不好今天天气东西质量上下文问题答案甲乙丙丁北京上海'], { size: 200 }));
  model = RoFormerV2.create({
    config: { vocab_size: tokenizer.size, num_hidden_layers: 3, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64 },
    seed: 3,
  }).eval();
  model.setResidualScale(ALPHA);
  await model.save(modelDir);
  await tokenizer.save(join(modelDir, 'vocab.txt'));
});

/** Text → the model's last hidden states alone (batch of 1, so no padding at all), as float64 rows. */
async function lastLayer(text: string): Promise<number[][]> {
  const ids = tokenizer.encode(text);
  const input = tensor(Int32Array.from(ids), [1, ids.length], 'int64');
  const hidden = await model.forward(input);
  const values = Array.from(hidden.toArray() as Float32Array);
  input.dispose();
  hidden.dispose();
  return rows(values, model.config.hidden_size);
}

/** The first block's output from the building blocks: embeddings (summed here) → RMSNorm → EncoderBlock with block 0's weights. */
async function firstLayer(text: string): Promise<number[][]> {
  const { hidden_size: h } = model.config;
  const ids = tokenizer.encode(text);
  const weights = model.namedParameters();
  const words = weights['word_embeddings.weight']!.toArray() as Float32Array;
  const segment0 = weights['token_type_embeddings.weight']!.toArray() as Float32Array;
  const embedded = new Float32Array(ids.length * h);
  ids.forEach((id, t) => {
    for (let k = 0; k < h; k++) embedded[t * h + k] = words[id * h + k]! + segment0[k]!;
  });
  const block = new EncoderBlock({ ...model.config, alpha: ALPHA }).eval();
  block.loadStateDict(Object.fromEntries(Object.entries(weights).filter(([n]) => n.startsWith('layer.0.')).map(([n, t]) => [n.slice('layer.0.'.length), t])));
  const x = tensor(embedded, [1, ids.length, h]);
  const normed = new RMSNorm({ eps: model.config.layer_norm_eps }).forward(x);
  const out = block.forward(normed);
  const values = Array.from(out.toArray() as Float32Array);
  for (const t of [x, normed, out, ...Object.values(weights)]) t.dispose();
  return rows(values, h);
}

const rows = (flat: number[], width: number): number[][] => Array.from({ length: flat.length / width }, (_, i) => flat.slice(i * width, (i + 1) * width));
const meanRows = (m: number[][]): number[] => m[0]!.map((_, k) => m.reduce((s, r) => s + r[k]!, 0) / m.length);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
};

describe('SentenceEncoder.embed', () => {
  it('pools as computed here from the hidden states: cls, mean without padding, first-last-avg', async () => {
    const encoder = new SentenceEncoder(model, tokenizer);
    // One batch: the short texts are padded to the longest.
    const got = Object.fromEntries(
      await Promise.all((['cls', 'mean', 'first-last-avg'] as Pooling[]).map(async (p) => [p, await encoder.embed(TEXTS, { pooling: p, batchSize: 4 })] as const)),
    );
    for (const [i, text] of TEXTS.entries()) {
      const last = await lastLayer(text);
      const first = await firstLayer(text);
      expect(maxDiff(got.cls![i]!, last[0]!)).toBeLessThan(1e-5);
      expect(maxDiff(got.mean![i]!, meanRows(last))).toBeLessThan(1e-5);
      const firstLast = meanRows(last.map((row, t) => row.map((v, k) => (v + first[t]![k]!) / 2)));
      expect(maxDiff(got['first-last-avg']![i]!, firstLast)).toBeLessThan(1e-5);
      // The reference would not match a pooling that took padding in or ignored the first layer.
      expect(maxDiff(got.mean![i]!, got['first-last-avg']![i]!)).toBeGreaterThan(1e-3);
    }
  });

  it('gives each text the same vector whatever the batch it is in, in input order', async () => {
    const encoder = new SentenceEncoder(model, tokenizer);
    const together = await encoder.embed(TEXTS, { batchSize: 4 });
    const alone = await encoder.embed(TEXTS, { batchSize: 1 });
    expect(together).toHaveLength(TEXTS.length);
    together.forEach((row, i) => {
      expect(row).toHaveLength(32);
      expect(maxDiff(row, alone[i]!)).toBeLessThan(1e-5);
    });
    const progress: number[] = [];
    await encoder.embed(TEXTS, { batchSize: 3, maxLength: 4, onProgress: (p) => progress.push(p.done, p.truncated) });
    expect(progress).toEqual([3, 3, 4, 3]); // three texts are longer than 2 tokens + [CLS] [SEP]
    await expect(encoder.embed(TEXTS, { pooling: 'max' as Pooling })).rejects.toThrow(/pooling must be one of mean, cls, first-last-avg, got "max"/);
    await expect(encoder.embed(TEXTS, { batchSize: 0 })).rejects.toThrow(/batchSize must be an integer >= 1/);
  });
});

/** A seeded normal sampler (Box–Muller over a 32-bit LCG), so the synthetic data is the same every run. */
function normals(seed: number): () => number {
  let state = seed >>> 0;
  const uniform = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** A random orthogonal d×d matrix (rows), by Gram–Schmidt. */
function orthogonal(d: number, next: () => number): number[][] {
  const q: number[][] = [];
  while (q.length < d) {
    let v = Array.from({ length: d }, next);
    for (const u of q) {
      const dot = v.reduce((s, x, i) => s + x * u[i]!, 0);
      v = v.map((x, i) => x - dot * u[i]!);
    }
    const norm = Math.hypot(...v);
    q.push(v.map((x) => x / norm));
  }
  return q;
}

/** N samples x = μ + Σ_i sqrt(variance_i)·z_i·q_i: covariance Σ variance_i q_i q_iᵀ. */
function synthetic(n: number, variances: number[], directions: number[][], mean: number[], seed: number): Float32Array[] {
  const next = normals(seed);
  return Array.from({ length: n }, () => {
    const x = mean.slice();
    variances.forEach((variance, i) => {
      const z = Math.sqrt(variance) * next();
      directions[i]!.forEach((q, k) => (x[k] += z * q));
    });
    return Float32Array.from(x);
  });
}

/** Sample mean and covariance (1/N), float64. */
function moments(data: ArrayLike<number>[]): { mean: number[]; covariance: number[][] } {
  const d = data[0]!.length;
  const mean = Array.from({ length: d }, (_, k) => data.reduce((s, r) => s + r[k]!, 0) / data.length);
  const covariance = mean.map((_, p) => mean.map((_, q) => data.reduce((s, r) => s + (r[p]! - mean[p]!) * (r[q]! - mean[q]!), 0) / data.length));
  return { mean, covariance };
}

describe('BERT-whitening', () => {
  const d = 6;
  const variances = [9, 4, 2, 1, 0.5, 0.25];
  const directions = orthogonal(d, normals(7));
  const offset = [3, -2, 1, 0.5, -1, 2];
  const data = synthetic(4000, variances, directions, offset, 11);

  it.each([
    ['random', 40, (next: () => number, p: number, q: number) => next() + (p === q ? p / 10 : 0)],
    ['repeated eigenvalues', 9, (_: () => number, p: number, q: number) => (p === q ? [3, 3, 3, 1, 1, 0, 0, 0, 2][p]! : 0)],
    ['rank one', 7, (_: () => number, p: number, q: number) => (p + 1) * (q + 1)],
    ['zero', 4, () => 0],
  ])('symmetricEigen (%s): A·v = λ·v, orthonormal vectors, largest first', (_, n, entry) => {
    const next = normals(5);
    const a = new Float64Array(n * n);
    for (let p = 0; p < n; p++) for (let q = p; q < n; q++) a[p * n + q] = a[q * n + p] = entry(next, p, q);
    const { values, vectors } = symmetricEigen(a, n);
    for (let j = 0; j < n; j++) {
      for (let r = 0; r < n; r++) {
        let av = 0;
        for (let c = 0; c < n; c++) av += a[r * n + c]! * vectors[c * n + j]!;
        expect(Math.abs(av - values[j]! * vectors[r * n + j]!)).toBeLessThan(1e-10);
      }
      for (let j2 = 0; j2 < n; j2++) {
        let dot = 0;
        for (let r = 0; r < n; r++) dot += vectors[r * n + j]! * vectors[r * n + j2]!;
        expect(Math.abs(dot - (j === j2 ? 1 : 0))).toBeLessThan(1e-10);
      }
      if (j > 0) expect(values[j]!).toBeLessThanOrEqual(values[j - 1]!);
    }
  });

  it('β = γ = 1, k = d: zero mean and identity covariance on the corpus', () => {
    const whitened = Whitening.fit(data).apply(data);
    const { mean, covariance } = moments(whitened);
    for (const m of mean) expect(Math.abs(m)).toBeLessThan(1e-5);
    covariance.forEach((row, p) => row.forEach((c, q) => expect(Math.abs(c - (p === q ? 1 : 0))).toBeLessThan(1e-4)));
  });

  it('γ = 0 is a rotation: β = 0 keeps every norm and cosine; β = 1 gives the eigenvalues as variances', () => {
    const fit = Whitening.fit(data);
    const rotated = fit.with({ beta: 0, gamma: 0 }).apply(data.slice(0, 50));
    rotated.forEach((row, i) => expect(Math.abs(Math.hypot(...row) - Math.hypot(...data[i]!))).toBeLessThan(1e-4));
    const dot = (x: ArrayLike<number>, y: ArrayLike<number>) => Array.from(x).reduce((s, v, k) => s + v * y[k]!, 0);
    expect(Math.abs(dot(rotated[0]!, rotated[1]!) - dot(data[0]!, data[1]!))).toBeLessThan(1e-3);
    const { covariance } = moments(fit.with({ gamma: 0 }).apply(data));
    covariance.forEach((row, p) => row.forEach((c, q) => expect(Math.abs(c - (p === q ? fit.eigenvalues[p]! : 0))).toBeLessThan(1e-4)));
    // The sample eigenvalues are near the variances the data was drawn with.
    fit.eigenvalues.forEach((l, i) => expect(Math.abs(l / variances[i]! - 1)).toBeLessThan(0.1));
  });

  it('k keeps the k directions of largest variance', () => {
    const fit = Whitening.fit(data, { k: 2, gamma: 0 });
    const kept = fit.apply(data);
    expect(kept[0]).toHaveLength(2);
    // The kept axes span the two directions drawn with variance 9 and 4: each projects onto them almost whole.
    for (const q of directions.slice(0, 2)) {
      const projected = fit.with({ beta: 0 }).apply([Float32Array.from(q)])[0]!;
      expect(Math.hypot(...projected)).toBeGreaterThan(0.99);
    }
    for (const q of directions.slice(2)) expect(Math.hypot(...fit.with({ beta: 0 }).apply([Float32Array.from(q)])[0]!)).toBeLessThan(0.1);
    const { covariance } = moments(kept);
    expect(covariance[0]![0]! + covariance[1]![1]!).toBeCloseTo(fit.eigenvalues[0]! + fit.eigenvalues[1]!, 4);
  });

  it('saves and loads (k, β, γ overridable), and says what is wrong with a bad file', async () => {
    const fit = Whitening.fit(data, { k: 3, beta: 0.5, gamma: 0.25, pooling: 'mean' });
    const path = join(dir, 'w.safetensors');
    await fit.save(path);
    const loaded = await Whitening.load(path);
    expect([loaded.k, loaded.beta, loaded.gamma, loaded.pooling]).toEqual([3, 0.5, 0.25, 'mean']);
    expect(maxDiff(loaded.apply(data.slice(0, 5)).flatMap((r) => Array.from(r)), fit.apply(data.slice(0, 5)).flatMap((r) => Array.from(r)))).toBe(0);
    expect((await Whitening.load(path, { k: 6 })).apply(data.slice(0, 1))[0]).toHaveLength(6);
    await expect(Whitening.load(path, { k: 7 })).rejects.toThrow(/w\.safetensors: whitening k must be at most the embedding size 6, got 7/);
    await expect(Whitening.load(join(modelDir, 'model.safetensors'))).rejects.toThrow(WhiteningError);
    await expect(Whitening.load(join(modelDir, 'model.safetensors'))).rejects.toThrow(/has no tensor 'mean'/);
    await expect(Whitening.load(join(modelDir, 'vocab.txt'))).rejects.toThrow(/vocab\.txt is not a whitening file/);
    expect(() => Whitening.fit(data.slice(0, 1))).toThrow(/at least 2 embeddings/);
    expect(() => Whitening.fit(data, { beta: 2 })).toThrow(/whitening beta must be a number from 0 to 1, got 2/);
  });
});

/** An independent .npy reader: the header's dict, parsed here, and the float32 values. */
function readNpy(path: string): { descr: string; fortranOrder: boolean; shape: number[]; values: Float32Array; headerBytes: number } {
  const bytes = readFileSync(path);
  expect(bytes.subarray(0, 6).equals(Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]))).toBe(true); // \x93NUMPY
  expect([bytes[6], bytes[7]]).toEqual([1, 0]);
  const headerLength = bytes.readUInt16LE(8);
  const header = bytes.subarray(10, 10 + headerLength).toString('latin1');
  expect(header.endsWith('\n')).toBe(true);
  const match = /^\{'descr': '([^']+)', 'fortran_order': (True|False), 'shape': \((\d+), (\d+)\), \} *\n$/.exec(header);
  expect(match, header).not.toBeNull();
  const shape = [Number(match![3]), Number(match![4])];
  const data = bytes.subarray(10 + headerLength);
  expect(data.length).toBe(shape[0]! * shape[1]! * 4);
  const values = new Float32Array(data.length / 4);
  for (let i = 0; i < values.length; i++) values[i] = data.readFloatLE(4 * i);
  return { descr: match![1]!, fortranOrder: match![2] === 'True', shape, values, headerBytes: 10 + headerLength };
}

describe('roformer embed', () => {
  it('text in, .npy out: the header says float32, C order, (n, hidden); the rows are embed()\'s', async () => {
    const input = join(dir, 'texts.txt');
    writeFileSync(input, TEXTS.join('\n') + '\n');
    const out = join(dir, 'out', 'texts.npy');
    const { stderr } = await roformer('embed', '--model', modelDir, input, '--out', out, '--pooling', 'cls', '--batch-size', '3');
    expect(stderr).toMatch(/embedded 4 texts \(cls pooling, 32 dims\)/);
    const npy = readNpy(out);
    expect(npy.descr).toBe('<f4');
    expect(npy.fortranOrder).toBe(false);
    expect(npy.shape).toEqual([4, 32]);
    expect(npy.headerBytes % 64).toBe(0);
    const expected = await new SentenceEncoder(model, tokenizer).embed(TEXTS, { pooling: 'cls' });
    expect(maxDiff(npy.values, expected.flatMap((r) => Array.from(r)))).toBeLessThan(1e-5);
  });

  it('JSONL in (--field), JSONL out; fit a whitening beside the model, then apply it', async () => {
    const input = join(dir, 'texts.jsonl');
    writeFileSync(input, TEXTS.map((t, i) => JSON.stringify({ id: i, sentence: t })).join('\n') + '\n\n');
    const out = join(dir, 'texts.jsonl.out.jsonl');
    await roformer('embed', '--model', modelDir, input, '--field', 'sentence', '--out', out);
    const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { line: number; embedding: number[] });
    expect(lines.map((l) => l.line)).toEqual([1, 2, 3, 4]);
    const expected = await new SentenceEncoder(model, tokenizer).embed(TEXTS);
    lines.forEach((l, i) => expect(maxDiff(l.embedding, expected[i]!)).toBeLessThan(1e-5));

    const fit = await roformer('embed', '--model', modelDir, input, '--field', 'sentence', '--fit-whitening', '--k', '3', '--gamma', '0.5');
    expect(fit.stderr).toMatch(/whitening fitted on 4 embeddings \(k 3, beta 1, gamma 0.5\) → .*whitening\.safetensors/);
    const saved = await Whitening.load(join(modelDir, 'whitening.safetensors'));
    expect([saved.k, saved.beta, saved.gamma, saved.pooling]).toEqual([3, 1, 0.5, 'mean']);

    const whitenedOut = join(dir, 'whitened.npy');
    await roformer('embed', '--model', modelDir, input, '--field', 'sentence', '--whitening', join(modelDir, 'whitening.safetensors'), '--out', whitenedOut);
    const npy = readNpy(whitenedOut);
    expect(npy.shape).toEqual([4, 3]);
    const want = saved.apply(expected).flatMap((r) => Array.from(r));
    expect(maxDiff(npy.values, want)).toBeLessThan(1e-4);
  });

  it('bad input: the file and line, or the flag, is named; exit status 1', async () => {
    const blank = join(dir, 'blank.txt');
    writeFileSync(blank, '今天\n\n好\n');
    const jsonl = join(dir, 'bad.jsonl');
    writeFileSync(jsonl, '{"text": "好"}\n{"sentence": "今天"}\n');
    const broken = join(dir, 'broken.jsonl');
    writeFileSync(broken, '{"text": "好"}\n{"text": \n');
    const good = join(dir, 'texts.txt');
    const cases: Array<[string[], RegExp]> = [
      [['embed', '--model', modelDir, blank, '--out', join(dir, 'x.npy')], /blank\.txt:2: empty line/],
      [['embed', '--model', modelDir, jsonl, '--out', join(dir, 'x.npy')], /bad\.jsonl:2: no field "text" \(choose the field with --field\)/],
      [['embed', '--model', modelDir, broken, '--out', join(dir, 'x.npy')], /broken\.jsonl:2: not valid JSON/],
      [['embed', '--model', modelDir, good, '--out', join(dir, 'x.csv')], /--out must end in \.npy or \.jsonl, got '.*x\.csv'/],
      [['embed', '--model', modelDir, good, '--out', join(dir, 'x.npy'), '--pooling', 'max'], /--pooling must be one of mean, cls, first-last-avg, got 'max'/],
      [['embed', '--model', modelDir, good, '--out', join(dir, 'x.npy'), '--k', '4'], /--k, --beta and --gamma set a whitening/],
      [['embed', '--model', modelDir, good, '--out', join(dir, 'x.npy'), '--beta', '1.5'], /--beta must be a number from 0 to 1, got '1.5'/],
      [['embed', '--model', modelDir, good], /--out is required/],
      [['embed', '--model', modelDir, good, '--fit-whitening', join(dir, 'w2.safetensors'), '--k', '33'], /--k must be at most the model's hidden size 32, got 33/],
      [['embed', '--model', modelDir, join(dir, 'missing.txt'), '--out', join(dir, 'x.npy')], /<input> must be an existing file \(not a directory\), got '.*missing\.txt'/],
      [['embed', '--model', modelDir, good, '--out', join(dir, 'x.npy'), '--pooling', 'cls', '--whitening', join(modelDir, 'whitening.safetensors')], /was fitted on mean pooling; pass --pooling mean/],
      [['embed', '--model', modelDir, good, '--out', join(dir, 'x.npy'), '--whitening', join(modelDir, 'vocab.txt')], /vocab\.txt is not a whitening file/],
      [['embed', '--model', join(dir, 'out'), good, '--out', join(dir, 'x.npy')], /embed-test-\w+\/out/], // not a model, checkpoint or run dir
    ];
    for (const [args, message] of cases) {
      const { code, stderr } = await failure(...args);
      expect(code, args.join(' ')).toBe(1);
      expect(stderr, args.join(' ')).toMatch(message);
      expect(stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    }
  });
});

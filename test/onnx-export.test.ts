// ONNX out: `roformer export --format onnx` on a tiny fresh model, checked with the
// clients users will run it with. onnxruntime-node must give the addon's logits
// (padding, an all-padding row, segment ids, two lengths, α < 1); transformers.js,
// reading only the exported folder, must tokenize like our Tokenizer and fill masks
// with the same top-5 as `roformer fill-mask`. A fine-tuned model's classification and
// multilabel heads export with --head: the same logits as the trainer's predict(), and
// transformers.js's text-classification scores from them.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as ort from 'onnxruntime-node';
import { AutoTokenizer, env, pipeline } from '@huggingface/transformers';

import { RoFormerV2, Tokenizer, Trainer, tensor, writeHeads, type HeadSpecs } from '../lib/index.js';
import { decodeOnnxModel } from '../lib/export/onnx-proto.js';
import { failure, roformer } from './cli-run.js';


const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'onnx-export-test-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

// Specials, CJK characters, punctuation, English words and ## pieces, an accented word.
const VOCAB = [
  '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]',
  ...'我们今天天气很好是中国人的北京上海学习模型语言，。！？、,.!?-'.split('').filter((c, i, all) => all.indexOf(c) === i),
  'the', 'weather', 'is', 'good', 'model', 'play', '##ing', '##ed', 'token', '##izer', 'cafe', 'new', 'york', 'hello', '2026', '##s',
];
const TINY = { num_hidden_layers: 2, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 64, vocab_size: VOCAB.length };

/** Saves a fresh tiny model with the vocab as a model dir and exports it; returns both folders. */
async function exportedModel(name: string, residualScale: number): Promise<{ modelDir: string; onnxDir: string }> {
  const modelDir = path.join(tmpRoot, `${name}-model`);
  const onnxDir = path.join(tmpRoot, name);
  const model = RoFormerV2.create({ config: TINY, seed: 7 });
  model.setResidualScale(residualScale);
  await model.save(modelDir);
  model.dispose();
  await Tokenizer.fromTokens(VOCAB).save(path.join(modelDir, 'vocab.txt'));
  const { stdout } = await roformer('export', modelDir, '--format', 'onnx', '--out', onnxDir);
  expect(stdout).toContain(`wrote ${onnxDir}: config.json, tokenizer.json, tokenizer_config.json, vocab.txt, onnx/model.onnx`);
  return { modelDir, onnxDir };
}

/** max |a − b| / max |b|: the error relative to the reference's scale. */
function relativeError(actual: Float32Array, expected: Float32Array): number {
  expect(actual.length).toBe(expected.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return diff / scale;
}

/** Rows padded with id 0 to one length, attention mask 1 at real tokens; segment 1 on each row's second half. */
function batchOf(rows: number[][], length: number) {
  const ids = new BigInt64Array(rows.length * length);
  const mask = new BigInt64Array(rows.length * length);
  const types = new BigInt64Array(rows.length * length);
  rows.forEach((row, r) =>
    row.forEach((id, i) => {
      ids[r * length + i] = BigInt(id);
      mask[r * length + i] = 1n;
      types[r * length + i] = i >= row.length / 2 ? 1n : 0n;
    }),
  );
  return { ids, mask, types, dims: [rows.length, length] };
}

type Batch = ReturnType<typeof batchOf>;

const ortFeeds = (batch: Batch) => ({
  input_ids: new ort.Tensor('int64', batch.ids, batch.dims),
  attention_mask: new ort.Tensor('int64', batch.mask, batch.dims),
  token_type_ids: new ort.Tensor('int64', batch.types, batch.dims),
});

/** The same batch as addon tensors (the caller disposes them). */
const addonInputs = (batch: Batch) => ({
  inputIds: tensor(batch.ids, batch.dims, 'int64'),
  attentionMask: tensor(batch.mask, batch.dims, 'int64'),
  tokenTypeIds: tensor(batch.types, batch.dims, 'int64'),
});

describe('roformer export --format onnx', () => {
  const sessions: ort.InferenceSession[] = [];
  afterAll(async () => {
    for (const s of sessions) await s.release();
  });

  for (const residualScale of [1, 0.4]) {
    it(`onnxruntime-node gives the addon's logits (α = ${residualScale}; padding, an empty row, segments, two lengths)`, async () => {
      const { modelDir, onnxDir } = await exportedModel(`alpha-${residualScale}`, residualScale);
      const model = await RoFormerV2.fromPretrained(modelDir);
      const session = await ort.InferenceSession.create(path.join(onnxDir, 'onnx', 'model.onnx'));
      sessions.push(session);
      expect(session.inputNames).toEqual(['input_ids', 'attention_mask', 'token_type_ids']);
      expect(session.outputNames).toEqual(['logits']);

      const random = (n: number, seed: number) => Array.from({ length: n }, (_, i) => 5 + ((i * 7919 + seed * 104729) % (VOCAB.length - 5)));
      // Length 7 with a short row and an all-padding one, then length 13.
      const batches = [batchOf([random(7, 1), random(4, 2), []], 7), batchOf([random(13, 3), random(9, 4)], 13)];
      for (const batch of batches) {
        const { logits } = await session.run(ortFeeds(batch));
        expect(logits!.dims).toEqual([...batch.dims, VOCAB.length]);

        const { inputIds, attentionMask, tokenTypeIds } = addonInputs(batch);
        const hidden = await model.forward(inputIds, { attentionMask, tokenTypeIds });
        const expected = await model.mlmLogits(hidden);
        const reference = expected.toArray() as Float32Array;
        [inputIds, attentionMask, tokenTypeIds, hidden, expected].forEach((t) => t.dispose());

        const error = relativeError(logits!.data as Float32Array, reference);
        expect(error).toBeLessThanOrEqual(1e-4);
      }
      model.dispose();
    });
  }

  it('writes opset 17, dynamic batch and sequence axes, fp32 weights under their checkpoint names', () => {
    const bytes = fs.readFileSync(path.join(tmpRoot, 'alpha-1', 'onnx', 'model.onnx'));
    const onnx = decodeOnnxModel(bytes);
    expect(onnx.opset_import).toEqual([{ domain: '', version: 17 }]);
    const dims = (v: (typeof onnx.graph.input)[number]) => v.type.tensor_type.shape.dim;
    for (const input of onnx.graph.input) expect(dims(input)).toEqual([{ dim_param: 'batch' }, { dim_param: 'sequence' }]);
    expect(dims(onnx.graph.output[0]!)).toEqual([{ dim_param: 'batch' }, { dim_param: 'sequence' }, { dim_value: VOCAB.length }]);
    const names = onnx.graph.initializer.map((t) => t.name);
    expect(names).toContain('roformer.embeddings.word_embeddings.weight');
    expect(names).toContain('roformer.encoder.layer.1.output.dense.weight');
    expect(names).not.toContain('residual_scale'); // α = 1 needs no multiply
  });

  it('bad input: a missing or unknown --format, a model dir without vocab.txt (exit 1, named on stderr)', async () => {
    const modelDir = path.join(tmpRoot, 'alpha-1-model');
    const out = path.join(tmpRoot, 'never-written');
    const noFormat = await failure('export', modelDir, '--out', out);
    expect(noFormat.stderr).toContain("required option '--format <format>' not specified");
    const unknown = await failure('export', modelDir, '--format', 'tflite', '--out', out);
    expect(unknown.stderr).toMatch(/--format <format>' argument 'tflite' is invalid. Allowed choices are onnx/);
    const noVocab = path.join(tmpRoot, 'no-vocab');
    fs.cpSync(modelDir, noVocab, { recursive: true });
    fs.rmSync(path.join(noVocab, 'vocab.txt'));
    const missing = await failure('export', noVocab, '--format', 'onnx', '--out', out);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`${noVocab} has no vocab.txt: the export writes tokenizer.json from it`);
    expect(fs.existsSync(out)).toBe(false);
  });

  describe('transformers.js, from the exported folder only', () => {
    let ours: Tokenizer;
    beforeAll(async () => {
      env.allowRemoteModels = false;
      env.allowLocalModels = true;
      env.localModelPath = tmpRoot;
      ours = await Tokenizer.fromFile(path.join(tmpRoot, 'alpha-1', 'vocab.txt'));
    });

    it('tokenizes Chinese, English and mixed text like our Tokenizer', async () => {
      const theirs = await AutoTokenizer.from_pretrained('alpha-1');
      const texts = [
        '我们今天天气很好。',
        'The weather is good!',
        'Tokenizer playing played plays',
        'Hello, 北京 and New York 2026：上海？',
        'CAFÉ café — naïve unknownword',
        '中国人[MASK]学习[MASK]模型',
        '  spaces\tand\nnew lines  ',
      ];
      for (const text of texts) {
        const { input_ids } = theirs(text) as { input_ids: { data: BigInt64Array } };
        expect(Array.from(input_ids.data, Number), text).toEqual(ours.encode(text));
      }
    });

    it("fill-mask returns the same top-5 tokens as roformer fill-mask", async () => {
      const fill = await pipeline('fill-mask', 'alpha-1', { dtype: 'fp32' });
      for (const text of ['我们今天[MASK]气很好。', 'the [MASK] is good', '北京[MASK]上海']) {
        const { stdout } = await roformer('fill-mask', '--model', path.join(tmpRoot, 'alpha-1-model'), '--json', text);
        const expected = (JSON.parse(stdout) as { predictions: Array<{ candidates: Array<{ token: string; probability: number }> }> }).predictions[0]!.candidates;
        // roformer fill-mask never proposes [PAD] [CLS] [SEP] [MASK]; the pipeline may, so ask for 4 more and drop them.
        const skipped = new Set(['[PAD]', '[CLS]', '[SEP]', '[MASK]']);
        const results = (await fill(text, { top_k: 9 })) as Array<{ token: number; score: number }>;
        const candidates = results.filter((r) => !skipped.has(VOCAB[r.token]!)).slice(0, 5);
        expect(candidates.map((r) => VOCAB[r.token]), text).toEqual(expected.map((c) => c.token));
        candidates.forEach((r, i) => expect(r.score).toBeCloseTo(expected[i]!.probability, 5));
      }
      await fill.dispose();
    });
  });
});

describe('roformer export --format onnx --head', () => {
  const HEADS: HeadSpecs = {
    topic: { kind: 'classification', numLabels: 3, labels: ['weather', 'city', 'model'] },
    tags: { kind: 'multilabel', numLabels: 2 },
    spans: { kind: 'span', numLabels: 1, headSize: 8 },
  };
  let modelDir: string;
  let trainer: Trainer;
  let model: RoFormerV2;

  beforeAll(async () => {
    // A fine-tuned model dir: the encoder, vocab.txt, heads.json + heads.safetensors.
    modelDir = path.join(tmpRoot, 'finetuned-model');
    model = RoFormerV2.create({ config: TINY, seed: 11 });
    trainer = new Trainer(model, { heads: HEADS });
    await model.save(modelDir);
    const headWeights = trainer.native.headParameters();
    await writeHeads(modelDir, trainer.heads, headWeights);
    Object.values(headWeights).forEach((t) => t.dispose());
    await Tokenizer.fromTokens(VOCAB).save(path.join(modelDir, 'vocab.txt'));
  });
  afterAll(() => {
    trainer.dispose();
    model.dispose();
  });

  /** The trainer's logits for a padded batch of the head. */
  async function predicted(task: string, batch: Batch): Promise<Float32Array> {
    const { inputIds, attentionMask, tokenTypeIds } = addonInputs(batch);
    const { scores } = await trainer.predict({ task, inputIds, attentionMask, tokenTypeIds });
    const values = scores.toArray() as Float32Array;
    [inputIds, attentionMask, tokenTypeIds, scores].forEach((t) => t.dispose());
    return values;
  }

  it('a classification head: onnxruntime-node gives the logits of predict(); config.json names its labels', async () => {
    const out = path.join(tmpRoot, 'topic');
    const { stdout } = await roformer('export', modelDir, '--format', 'onnx', '--out', out, '--head', 'topic');
    expect(stdout).toContain('head topic');
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      model_type: 'roformer',
      architectures: ['RoFormerForSequenceClassification'],
      problem_type: 'single_label_classification',
      id2label: { 0: 'weather', 1: 'city', 2: 'model' },
    });

    const session = await ort.InferenceSession.create(path.join(out, 'onnx', 'model.onnx'));
    const batch = batchOf([[5, 6, 7, 8, 9, 10], [11, 12, 13], []], 6);
    const { logits } = await session.run(ortFeeds(batch));
    await session.release();
    expect(logits!.dims).toEqual([3, 3]);
    expect(relativeError(logits!.data as Float32Array, await predicted('topic', batch))).toBeLessThanOrEqual(1e-4);
  });

  it("a multilabel head: transformers.js's text-classification gives the sigmoids of predict()", async () => {
    const out = path.join(tmpRoot, 'tags');
    await roformer('export', modelDir, '--format', 'onnx', '--out', out, '--head', 'tags');
    env.allowRemoteModels = false;
    env.localModelPath = tmpRoot;
    const classify = await pipeline('text-classification', 'tags', { dtype: 'fp32' });
    const ours = await Tokenizer.fromFile(path.join(modelDir, 'vocab.txt'));
    for (const text of ['北京天气很好', 'the model is playing']) {
      const ids = ours.encode(text);
      const logits = await predicted('tags', { ids: BigInt64Array.from(ids, BigInt), mask: BigInt64Array.from(ids, () => 1n), types: new BigInt64Array(ids.length), dims: [1, ids.length] });
      const results = (await classify(text, { top_k: 2 })) as Array<{ label: string; score: number }>;
      const byLabel = Object.fromEntries(results.map((r) => [r.label, r.score]));
      expect(Object.keys(byLabel).sort()).toEqual(['LABEL_0', 'LABEL_1']);
      logits.forEach((logit, i) => expect(byLabel[`LABEL_${i}`]).toBeCloseTo(1 / (1 + Math.exp(-logit)), 5));
    }
    await classify.dispose();
  });

  it('bad --head: a span head, an unknown task, a model without heads (named on stderr); no --head exports the MLM model with a note', async () => {
    const out = path.join(tmpRoot, 'bad-head');
    const span = await failure('export', modelDir, '--format', 'onnx', '--out', out, '--head', 'spans');
    expect(span.stderr).toContain('--head spans: a span head does not export yet; only classification and multilabel heads');
    const unknown = await failure('export', modelDir, '--format', 'onnx', '--out', out, '--head', 'nope');
    expect(unknown.stderr).toContain(`--head nope: ${modelDir} has no head of that name (its heads: topic, tags, spans)`);
    const plain = await failure('export', path.join(tmpRoot, 'alpha-1-model'), '--format', 'onnx', '--out', out, '--head', 'topic');
    expect(plain.stderr).toContain('has no task heads (no heads.json)');
    expect(fs.existsSync(out)).toBe(false);

    const { stdout, stderr } = await roformer('export', modelDir, '--format', 'onnx', '--out', out);
    expect(stderr).toContain('has task heads (topic, tags, spans); exporting the MLM model');
    expect(stdout).not.toContain('head ');
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).architectures).toEqual(['RoFormerForMaskedLM']);
  });
});

// MLM pre-training end to end on a small real corpus (Song ci from chinese-poetry):
// the loss falls, evaluation runs, checkpoints and the report are written, an
// interrupted run resumes exactly, and the CLI around it behaves.

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { beforeAll, describe, expect, it } from 'vitest';

import {
  Corpus,
  DEMO_OVERRIDES,
  fillMask,
  loadForInference,
  MlmPipeline,
  PRETRAIN_DEFAULTS,
  pretrain,
  readMetrics,
  resolvePretrainConfig,
  Tokenizer,
  buildVocab,
  type PretrainConfig,
} from '../lib/index.js';
import { ensureDemoCorpus } from '../lib/data/demo-corpus.js';
import { demoPrecision } from '../lib/pretrain/config.js';

const run = promisify(execFile);
const CLI = 'dist/lib/cli.js';
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-${name}-`));

let corpusFile: string;

beforeAll(async () => {
  // 15,000 lines of verse (about as much text as 1,500 whole ci): enough to learn something in a few dozen steps, small enough to be quick.
  const [demo] = await ensureDemoCorpus(join(tmpdir(), 'roformer-test-corpus'));
  const lines = readFileSync(demo!, 'utf8').split('\n').slice(0, 15000);
  corpusFile = join(tmp('corpus'), 'ci.txt');
  writeFileSync(corpusFile, lines.join('\n') + '\n');
});

const tinyRun = (out: string, overrides: Partial<PretrainConfig> = {}): PretrainConfig => ({
  ...PRETRAIN_DEFAULTS,
  corpus: [corpusFile],
  out,
  model: { num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 2, intermediate_size: 128, hidden_dropout_prob: 0.1 },
  vocabSize: 3000,
  maxLength: 48,
  batchSize: 16,
  steps: 40,
  lr: 2e-3,
  warmupSteps: 5,
  evalEvery: 20,
  evalBatches: 4,
  evalFraction: 0.05,
  saveEvery: 20,
  logEvery: 10,
  ...overrides,
});

describe('pretrain', () => {
  it('lowers the held-out loss, raises masked-token accuracy, writes checkpoints, metrics and the report', async () => {
    const out = tmp('run');
    const result = await pretrain(tinyRun(out));
    expect(result.step).toBe(40);
    expect(result.interrupted).toBe(false);

    const metrics = await readMetrics(join(out, 'metrics.jsonl'));
    const evals = metrics.filter((m) => m.type === 'eval');
    const train = metrics.filter((m) => m.type === 'train');
    expect(evals.map((m) => m.step)).toEqual([0, 20, 40]);
    expect(train.map((m) => m.step)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(evals[2]!.loss).toBeLessThan(evals[0]!.loss - 1);
    expect((evals[2] as { accuracy: number }).accuracy).toBeGreaterThan((evals[0] as { accuracy: number }).accuracy);

    const svg = readFileSync(join(out, 'report.svg'), 'utf8');
    expect(svg).toMatch(/^<svg/);
    expect(svg.match(/<polyline/g)?.length).toBeGreaterThanOrEqual(3);
    expect(readFileSync(join(out, 'latest'), 'utf8').trim()).toBe('checkpoint-40');
    for (const file of ['config.json', 'model.safetensors', 'vocab.txt', 'optimizer.safetensors', 'trainer_state.json']) {
      expect(existsSync(join(out, 'checkpoint-40', file))).toBe(true);
    }

    // the run dir serves fill-mask
    const { model, tokenizer } = await loadForInference(out);
    const [prediction] = await fillMask(model, tokenizer, '明月几时有，把酒问青[MASK]。', 3);
    expect(prediction!.candidates).toHaveLength(3);
    const p = prediction!.candidates.map((c) => c.probability);
    expect(p[0]).toBeGreaterThanOrEqual(p[1]!);
    expect(p.every((x) => x > 0 && x < 1)).toBe(true);
    expect(result.loopOverhead).toBeLessThan(0.5); // the figure itself is reported by the CLI, not asserted tightly
  });

  it('an interrupted run resumes exactly where it stopped (model, optimiser, masks, data position)', async () => {
    const straight = tmp('straight');
    await pretrain(tinyRun(straight, { steps: 24, evalEvery: 0, saveEvery: 0, masking: 'whole-word' }));
    const expected = (await readMetrics(join(straight, 'metrics.jsonl'))).filter((m) => m.type === 'train').map((m) => m.loss);

    const out = tmp('interrupted');
    const abort = new AbortController();
    const first = await pretrain(tinyRun(out, { steps: 24, evalEvery: 0, saveEvery: 0, masking: 'whole-word' }), {
      signal: abort.signal,
      onEvent: (e) => {
        if (e.type === 'step' && e.step === 11) abort.abort();
      },
    });
    expect(first.interrupted).toBe(true);
    expect(first.step).toBe(11);
    expect(first.checkpoint.endsWith('checkpoint-11')).toBe(true);

    await expect(pretrain(tinyRun(out, { steps: 24 }))).rejects.toThrow(/already holds a run: pass --resume/);
    const second = await pretrain(tinyRun(out, { steps: 24, evalEvery: 0, saveEvery: 0, masking: 'whole-word' }), { resume: true });
    expect(second.step).toBe(24);
    const got = (await readMetrics(join(out, 'metrics.jsonl'))).filter((m) => m.type === 'train').map((m) => m.loss);
    expect(got).toHaveLength(24);
    got.forEach((loss, i) => expect(loss).toBeCloseTo(expected[i]!, 4));
  });

  it('--resume on a directory without a checkpoint is a clear error', async () => {
    await expect(pretrain(tinyRun(tmp('nothing')), { resume: true })).rejects.toThrow(/is not a run with a checkpoint/);
  });
});

describe('pipeline', () => {
  it('length-grouped, padded batches with targets at real tokens; resume positions reproduce the stream', async () => {
    const corpus = await Corpus.open({ paths: [corpusFile], evalFraction: 0 });
    const tokenizer = Tokenizer.fromTokens(await buildVocab(readFileSync(corpusFile, 'utf8').split('\n'), { size: 3000 }));
    const pipeline = new MlmPipeline(corpus, tokenizer, { maxLength: 40, batchSize: 8, bufferBatches: 5, seed: 3 });
    const seen: Array<{ ids: number[]; targets: number[] }> = [];
    let resumeAfter3 = null;
    let k = 0;
    for await (const batch of pipeline.batches()) {
      const [b, s] = batch.microBatch.inputIds.shape as [number, number];
      expect(b).toBe(8);
      expect(s).toBeLessThanOrEqual(40);
      const ids = Array.from(batch.microBatch.inputIds.toArray() as BigInt64Array, Number);
      const positions = Array.from(batch.microBatch.targetPositions.toArray() as BigInt64Array, Number);
      // every row starts with [CLS]; targets never sit on padding or specials
      for (let r = 0; r < b; r++) expect(ids[r * s]).toBe(tokenizer.clsId);
      for (const p of positions) expect([tokenizer.padId, tokenizer.clsId, tokenizer.sepId]).not.toContain(ids[p]);
      seen.push({ ids, targets: Array.from(batch.microBatch.targetIds.toArray() as BigInt64Array, Number) });
      if (k === 3) resumeAfter3 = batch.resume;
      batch.dispose();
      if (++k === 12) break; // crosses a buffer boundary (5 batches per buffer)
    }
    let j = 4;
    for await (const batch of pipeline.batches(resumeAfter3!)) {
      expect(Array.from(batch.microBatch.inputIds.toArray() as BigInt64Array, Number)).toEqual(seen[j]!.ids);
      expect(Array.from(batch.microBatch.targetIds.toArray() as BigInt64Array, Number)).toEqual(seen[j]!.targets);
      batch.dispose();
      if (++j === 12) break;
    }
    expect(j).toBe(12);
  });

  it('held-out batches take their own masking rate (the demo trains at 30%, reports at 15%)', async () => {
    const corpus = await Corpus.open({ paths: [corpusFile], evalFraction: 0.2 });
    const tokenizer = Tokenizer.fromTokens(await buildVocab(readFileSync(corpusFile, 'utf8').split('\n'), { size: 3000 }));
    const pipeline = new MlmPipeline(corpus, tokenizer, { maxLength: 40, batchSize: 8, seed: 3, masking: { scheme: 'token', probability: 0.3 } });
    /** Targets over the tokens that could be masked (not [PAD], [CLS], [SEP]). */
    const rate = (batches: Array<{ microBatch: { inputIds: { toArray(): unknown }; targetIds: { toArray(): unknown } } }>) => {
      let targets = 0;
      let tokens = 0;
      for (const b of batches) {
        tokens += Array.from(b.microBatch.inputIds.toArray() as BigInt64Array, Number).filter((id) => ![tokenizer.padId, tokenizer.clsId, tokenizer.sepId].includes(id)).length;
        targets += Array.from(b.microBatch.targetIds.toArray() as BigInt64Array, Number).filter((t) => t !== -100).length;
      }
      return targets / tokens;
    };
    const atTraining = await pipeline.evalBatches(20);
    const atBert = await pipeline.evalBatches(20, undefined, 0.15);
    // About 30% and 15% of the maskable tokens (random draws: loose bounds).
    expect(rate(atTraining)).toBeGreaterThan(0.22);
    expect(rate(atBert)).toBeGreaterThan(0.1);
    expect(rate(atBert)).toBeLessThan(0.2);
    // Fixed masks: the same call gives the same batches.
    const again = await pipeline.evalBatches(20, undefined, 0.15);
    expect(Array.from(again[0]!.microBatch.targetIds.toArray() as BigInt64Array, Number)).toEqual(Array.from(atBert[0]!.microBatch.targetIds.toArray() as BigInt64Array, Number));
    for (const b of [...atTraining, ...atBert, ...again]) b.dispose();
  });
});

describe('config', () => {
  it('validates files and flags, naming the bad key', async () => {
    const dir = tmp('config');
    const file = join(dir, 'run.json');
    writeFileSync(file, JSON.stringify({ corpus: [corpusFile], lrr: 1e-3 }));
    await expect(resolvePretrainConfig({ file })).rejects.toThrow(/run\.json: unknown option 'lrr' \(did you mean 'lr'\?\)/);
    writeFileSync(file, JSON.stringify({ corpus: [corpusFile], steps: -5 }));
    await expect(resolvePretrainConfig({ file })).rejects.toThrow(/steps must be an integer >= 1, got -5/);
    writeFileSync(file, '{ "corpus": ');
    await expect(resolvePretrainConfig({ file })).rejects.toThrow(/run\.json: invalid JSON/);
    await expect(resolvePretrainConfig({ flags: { optimizer: 'sgd' as never, corpus: [corpusFile] } })).rejects.toThrow(/optimizer must be one of adamw, lamb, adafactor/);
    await expect(resolvePretrainConfig({ flags: {} })).rejects.toThrow(/no corpus/);
    writeFileSync(file, JSON.stringify({ corpus: [corpusFile], steps: 7, batchSize: 4 }));
    const config = await resolvePretrainConfig({ file, flags: { steps: 9 } });
    expect(config).toMatchObject({ steps: 9, batchSize: 4, lr: PRETRAIN_DEFAULTS.lr });
  });

  it('--demo: the demo settings (token masking, 1,024 held-out lines evaluated) under the file and the flags', async () => {
    const demo = await resolvePretrainConfig({ flags: { demo: true } });
    expect(demo).toMatchObject({ ...DEMO_OVERRIDES, corpus: [], demo: true });
    // evalMaskProbability is a setting of its own: a file may set it, null means the training rate.
    expect((await resolvePretrainConfig({ flags: { corpus: [corpusFile] } })).evalMaskProbability).toBeNull();
    // The metric: held-out masked-token accuracy over BERT's single-character targets (15% of them),
    // on 1,024 held-out lines; training masks 30%.
    expect(demo).toMatchObject({ masking: 'token', maskProbability: 0.3, evalMaskProbability: 0.15 });
    expect(demo.precision).toBe(demoPrecision());
    expect(demoPrecision('flags\t\t: fpu avx512f avx512_bf16 amx_tile')).toBe('bf16');
    expect(demoPrecision('flags\t\t: fpu avx2 amx_bf16 avx512f')).toBe('bf16');
    expect(demoPrecision('flags\t\t: fpu avx2 avx512f')).toBe('fp32');
    expect(demoPrecision('')).toBe('fp32');
    expect(demo.evalBatches * demo.batchSize).toBe(1024);
    // A user's flags still win over the demo's settings, and unchanged ones stay the demo's.
    const dir = tmp('demo-config');
    const file = join(dir, 'demo.json');
    writeFileSync(file, JSON.stringify({ demo: true, lr: 1e-3 }));
    const tuned = await resolvePretrainConfig({ file, flags: { batchSize: 32 } });
    expect(tuned).toMatchObject({ batchSize: 32, lr: 1e-3, steps: DEMO_OVERRIDES.steps, maxLength: DEMO_OVERRIDES.maxLength, demo: true });
  });
});

describe('pre-training on JSON Lines with the text in several fields', () => {
  it('--field takes a comma-separated list: checked where flags are parsed, the records read as one document each', async () => {
    await expect(resolvePretrainConfig({ flags: { corpus: [corpusFile], field: 'sentence,,content' } })).rejects.toThrow(
      /command line: field must be one or more JSON field names separated by commas/,
    );
    const bad = await run('node', [CLI, 'pretrain', '--corpus', corpusFile, '--field', 'sentence1,', '--out', join(tmp('field-flag'), 'run')]).catch((e) => e);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--field must be one or more JSON field names separated by commas/);

    // FewCLUE-shaped unlabeled files: single sentences, pairs, and one record with no text field.
    const dir = tmp('fields');
    const lines = readFileSync(corpusFile, 'utf8').split('\n').filter((l) => l.trim() !== '');
    const singles = join(dir, 'eprstmt.json');
    const pairs = join(dir, 'bustm.json');
    writeFileSync(singles, lines.slice(0, 600).map((sentence, id) => JSON.stringify({ id, sentence })).join('\n') + '\n');
    const records = lines.slice(600, 1200).map((l, id) => JSON.stringify({ id, sentence1: l.slice(0, 10), sentence2: l.slice(10) }));
    records.splice(2, 0, JSON.stringify({ id: 'x', label: '1' }));
    writeFileSync(pairs, records.join('\n') + '\n');
    const problems: string[] = [];
    const result = await pretrain(
      tinyRun(join(dir, 'run'), { corpus: [singles, pairs], field: 'sentence,sentence1,sentence2,content', masking: 'whole-word', steps: 10, evalEvery: 10, saveEvery: 10 }),
      { onEvent: (e) => e.type === 'problems' && problems.push(`${e.count}: ${e.examples.join('; ')}`) },
    );
    expect(result.step).toBe(10);
    expect(result.lastEval?.loss).toBeGreaterThan(0);
    // the record with none of the fields: counted once, named by file and line
    expect(problems).toEqual([expect.stringMatching(/^1: .*bustm\.json:3: none of the fields "sentence", "sentence1", "sentence2", "content" present as a string$/)]);
  });
});

describe('roformer CLI', () => {
  it('--help of every command works', async () => {
    for (const args of [['--help'], ['pretrain', '--help'], ['fill-mask', '--help'], ['vocab', '--help']]) {
      const { stdout } = await run(process.execPath, [CLI, ...args]);
      expect(stdout).toMatch(/Usage: roformer/);
    }
  });

  it('vocab builds a vocab.txt; fill-mask prints predictions, --json, and clear errors', async () => {
    const dir = tmp('cli');
    const vocab = join(dir, 'vocab.txt');
    const { stdout } = await run(process.execPath, [CLI, 'vocab', '--corpus', corpusFile, '--size', '2000', '--out', vocab]);
    expect(stdout).toMatch(/wrote .*vocab\.txt: \d+ tokens/);
    expect(readFileSync(vocab, 'utf8').split('\n').slice(0, 5)).toEqual(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);

    const out = join(dir, 'run');
    await pretrain(tinyRun(out, { steps: 4, evalEvery: 0, saveEvery: 0, vocab }));
    const json = JSON.parse((await run(process.execPath, [CLI, 'fill-mask', '--model', out, '--top-k', '4', '--json', '春风又绿江[MASK]岸。'])).stdout);
    expect(json.predictions).toHaveLength(1);
    expect(json.predictions[0].candidates).toHaveLength(4);
    const text = (await run(process.execPath, [CLI, 'fill-mask', '--model', out, '[MASK]月几时有'])).stdout;
    expect(text).toMatch(/\[MASK\] #1\n {2}\S+ +\d+\.\d+%/);

    await expect(run(process.execPath, [CLI, 'fill-mask', '--model', out, '没有面具'])).rejects.toMatchObject({ stderr: expect.stringMatching(/no \[MASK\] token/) });
    await expect(run(process.execPath, [CLI, 'fill-mask', '--model', dir, 'x[MASK]'])).rejects.toMatchObject({ stderr: expect.stringMatching(/is not a checkpoint/) });
  });

  it('fill-mask refuses a model dir whose vocab size differs from its vocab.txt', async () => {
    const dir = tmp('mismatch');
    const { RoFormerV2 } = await import('../lib/index.js');
    await RoFormerV2.create({ config: { vocab_size: 100, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32 } }).save(dir);
    writeFileSync(join(dir, 'vocab.txt'), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '春', '风'].join('\n') + '\n');
    await expect(loadForInference(dir)).rejects.toThrow(/vocab\.txt has 7 tokens but the model's vocab_size is 100/);
    await expect(run(process.execPath, [CLI, 'fill-mask', '--model', dir, '春[MASK]'])).rejects.toMatchObject({ stderr: expect.stringMatching(/vocab_size is 100/) });
  });

  it('Ctrl-C saves a checkpoint; --resume continues the same run to the end', async () => {
    const out = join(tmp('sigint'), 'run');
    const args = [CLI, 'pretrain', '--corpus', corpusFile, '--out', out, '--steps', '400', '--batch-size', '8', '--max-length', '32', '--vocab-size', '2000', '--eval-every', '0', '--save-every', '0'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
      if (/step 20\//.test(output) && !child.killed) child.kill('SIGINT');
    });
    child.stderr.on('data', (d) => (output += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(130);
    expect(output).toMatch(/interrupted: saving a checkpoint/);
    const stoppedAt = Number(/stopped at step (\d+)/.exec(output)![1]);
    expect(stoppedAt).toBeGreaterThanOrEqual(20);
    expect(readFileSync(join(out, 'latest'), 'utf8').trim()).toBe(`checkpoint-${stoppedAt}`);

    const resumed = await run(process.execPath, [CLI, 'pretrain', '--out', out, '--resume', '--steps', `${stoppedAt + 5}`]);
    expect(resumed.stdout).toMatch(new RegExp(`resuming from .*checkpoint-${stoppedAt}`));
    expect(resumed.stdout).toMatch(new RegExp(`finished at step ${stoppedAt + 5}`));
  });
});

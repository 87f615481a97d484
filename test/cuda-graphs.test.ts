// CUDA graphs of the training step (native/cuda_graph_step.h) on the machine CI has, the CPU:
// capture and replay need a GPU (bench/gpu/graph-check.mjs compares graph steps with eager ones
// there), but everything around them is checked here — the graph steps' own path (keys, static
// buffers, the step computed from them) emulated on the CPU, where it must train exactly as the
// eager static step; the length buckets the pipeline rounds batches to on CUDA; the trainer
// option that refuses graphs where they cannot apply; the pre-training setting and its flag.

import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { buildVocab, Corpus, GauAlpha, MlmPipeline, RobertaBaseline, RoFormerV2, resolvePretrainConfig, tensor, Tokenizer, Trainer, type MlmBatch } from '../lib/index.js';
import { bucketedLength, LENGTH_BUCKET } from '../lib/data/length-buckets.js';
import { IGNORED_TARGET } from '../lib/data/pipeline.js';
import { TINY_CONFIG as tiny, values } from './native-helpers.js';
import { maxAbsDiff } from './reference.js';

const run = promisify(execFile);
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-${name}-`));

describe('length buckets', () => {
  it('round a length up to the next multiple of the bucket, never past the max length nor below the length', () => {
    expect(LENGTH_BUCKET).toBe(64);
    expect([1, 40, 64].map((n) => bucketedLength(n, 512))).toEqual([64, 64, 64]);
    expect([65, 128, 129, 500].map((n) => bucketedLength(n, 512))).toEqual([128, 128, 192, 512]);
    expect(bucketedLength(70, 100)).toBe(100); // 128 would pass the max length
    expect(bucketedLength(30, 20)).toBe(30); // never shorter than the rows
    expect(bucketedLength(5, 100, 8)).toBe(8);
    expect(() => bucketedLength(5, 100, 0)).toThrow(/the bucket must be an integer >= 1, got 0/);
  });
});

describe('the pipeline with length buckets', () => {
  let corpusFile: string;
  let tokenizer: Tokenizer;
  beforeAll(async () => {
    // Lines of 3 to 90 characters, so that the length-grouped batches have many lengths.
    const characters = '春眠不觉晓处处闻啼鸟夜来风雨声花落知多少床前明月光疑是地上霜举头望低思故乡';
    const lines = Array.from({ length: 240 }, (_, i) => {
      const n = 3 + ((i * 37) % 88);
      return Array.from({ length: n }, (_, k) => characters[(i * 7 + k * 3) % characters.length]).join('');
    });
    corpusFile = join(tmp('buckets'), 'lines.txt');
    writeFileSync(corpusFile, lines.join('\n') + '\n');
    tokenizer = Tokenizer.fromTokens(await buildVocab(lines, { size: 200 }));
  });

  async function firstBatches(lengthBuckets: boolean, count: number): Promise<MlmBatch[]> {
    const corpus = await Corpus.open({ paths: [corpusFile], evalFraction: 0 });
    const pipeline = new MlmPipeline(corpus, tokenizer, { maxLength: 100, batchSize: 4, bufferBatches: 6, seed: 5, lengthBuckets });
    const batches: MlmBatch[] = [];
    for await (const batch of pipeline.batches()) {
      batches.push(batch);
      if (batches.length === count) break;
    }
    return batches;
  }

  const numbers = (t: { toArray(): unknown }) => Array.from(t.toArray() as BigInt64Array, Number);

  it('gives batches of a few lengths holding the same rows and targets, the extra columns padding', async () => {
    const plain = await firstBatches(false, 20);
    const bucketed = await firstBatches(true, 20);
    const lengths = new Set<number>();
    const plainLengths = new Set<number>();
    for (let k = 0; k < plain.length; k++) {
      const a = plain[k]!;
      const b = bucketed[k]!;
      const [rows, seq] = a.microBatch.inputIds.shape as [number, number];
      const [rowsB, seqB] = b.microBatch.inputIds.shape as [number, number];
      plainLengths.add(seq);
      lengths.add(seqB);
      expect(rowsB).toBe(rows);
      expect(seqB).toBe(bucketedLength(seq, 100));
      expect(b.tokens).toBe(a.tokens);
      expect(b.targets).toBe(a.targets);
      const ids = numbers(a.microBatch.inputIds);
      const idsB = numbers(b.microBatch.inputIds);
      for (let r = 0; r < rows; r++) {
        expect(idsB.slice(r * seqB, r * seqB + seq)).toEqual(ids.slice(r * seq, (r + 1) * seq));
        expect(idsB.slice(r * seqB + seq, (r + 1) * seqB).every((id) => id === tokenizer.padId)).toBe(true);
      }
      // The same targets at the same tokens, their flat positions moved to the wider rows.
      const targets = (batch: MlmBatch, width: number) => {
        const positions = numbers(batch.microBatch.targetPositions);
        return numbers(batch.microBatch.targetIds)
          .map((id, i) => ({ id, row: Math.floor(positions[i]! / width), column: positions[i]! % width }))
          .filter((t) => t.id !== IGNORED_TARGET);
      };
      expect(targets(b, seqB)).toEqual(targets(a, seq));
      a.dispose();
      b.dispose();
    }
    expect(plainLengths.size).toBeGreaterThan(4);
    expect([...lengths].every((n) => n % LENGTH_BUCKET === 0 || n === 100)).toBe(true);
    expect(lengths.size).toBeLessThanOrEqual(2); // 64 and the max length 100
  });
});

describe('trainer option cudaGraphs', () => {
  const batch = () => ({
    inputIds: tensor([[2, 7, 9, 11, 13, 3, 0, 0], [2, 5, 17, 19, 23, 29, 31, 3]], undefined, 'int64'),
    targetPositions: tensor([2, 3, 10, 12, 3], undefined, 'int64'),
    targetIds: tensor([9, 11, 17, 23, -100], undefined, 'int64'),
  });

  it('on the CPU, asking for graphs is an error that says why', () => {
    const model = RoFormerV2.create({ config: tiny, seed: 3 });
    expect(() => new Trainer(model, { cudaGraphs: true })).toThrow(/cudaGraphs: CUDA graphs need a CUDA device \(the model is on cpu\); leave cudaGraphs off/);
    model.dispose();
  });

  it('off (the CPU default) trains exactly as without the option', async () => {
    const losses = async (options: { cudaGraphs?: boolean }) => {
      const model = RoFormerV2.create({ config: tiny, seed: 3 });
      const trainer = new Trainer(model, options);
      const out = [];
      for (let i = 0; i < 3; i++) {
        const result = await trainer.step(batch(), { lr: 0.01 });
        expect(result.cudaGraph).toBeUndefined(); // every step eager
        out.push(result.loss, result.gradNorm);
      }
      trainer.dispose();
      model.dispose();
      return out;
    };
    expect(await losses({ cudaGraphs: false })).toEqual(await losses({}));
  });
});

describe('the graph steps, emulated on the CPU (ROFORMER_GRAPH_STEPS=emulate)', () => {
  beforeAll(() => {
    process.env.ROFORMER_GRAPH_STEPS = 'emulate';
  });
  afterAll(() => {
    delete process.env.ROFORMER_GRAPH_STEPS;
  });

  // Step i's batch: 2 rows of `seq` tokens (the first padded), 6 target slots, the last unused;
  // the ids and targets change from step to step, the shape does not.
  const mlmBatch = (i: number, seq = 8) => {
    const ids = Array.from({ length: 2 * seq }, (_, k) => 5 + ((k * 7 + i * 11) % 40));
    ids.fill(0, seq - 2, seq); // padding at the end of the first row
    const positions = [1, 2, seq + 1, seq + 3, seq + 4 + (i % 2), 0];
    return {
      inputIds: tensor(ids, [2, seq], 'int64'),
      targetPositions: tensor(positions, undefined, 'int64'),
      targetIds: tensor([...positions.slice(0, 5).map((p) => 5 + ((p * 13 + i) % 40)), -100], undefined, 'int64'),
    };
  };

  // The three architectures the trainer takes: the baseline and GAU-α get the same graph steps (issue 19 item 3).
  const architectures = {
    'RoFormerV2': () => RoFormerV2.create({ config: tiny, seed: 5 }),
    'the RoBERTa-style baseline': () => RobertaBaseline.create({ config: tiny, seed: 5 }),
    // Without dropout, as the tiny config: on the CPU the eager step's dropout draws its seed on the
    // host (fused::dropout), which an (emulated) graph step may not, so the masks would differ.
    'GAU-α': () => GauAlpha.create({ config: { vocab_size: tiny.vocab_size, hidden_size: 16, num_hidden_layers: 2, intermediate_size: 32, attention_key_size: 8, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, seed: 5 }),
  };

  async function train(options: { cudaGraphs?: boolean; alphaWarmupSteps?: number }, batches: Array<ReturnType<typeof mlmBatch>>, create = architectures['RoFormerV2']) {
    const model = create();
    const trainer = new Trainer(model, { staticStep: true, maxGradNorm: 0.5, ...options });
    const results = [];
    for (let i = 0; i < batches.length; i++) results.push(await trainer.step(batches[i]!, { lr: 0.05 / (i + 1) }));
    const params = model.namedParameters();
    const weights = Object.keys(params).map((name) => values(params[name]!));
    trainer.dispose();
    model.dispose();
    return { results, weights };
  }

  it.each(Object.keys(architectures))('train exactly as the eager static step (%s): the same losses, norms, counters and weights', async (name) => {
    const create = architectures[name as keyof typeof architectures];
    // A second shape in the middle: its first meeting runs eagerly, the first shape's graph stays.
    const batches = () => [0, 1, 2, 3, 4, 5, 6].map((i) => mlmBatch(i, i === 3 ? 12 : 8));
    const eager = await train({}, batches(), create);
    const graphs = await train({ cudaGraphs: true }, batches(), create);
    expect(eager.results.map((r) => r.cudaGraph)).toEqual(Array(7).fill(undefined));
    expect(graphs.results.map((r) => r.cudaGraph)).toEqual([undefined, 'captured', 'replayed', undefined, 'replayed', 'replayed', 'replayed']);
    graphs.results.forEach((r, i) => {
      const e = eager.results[i]!;
      expect(r.loss).toBeCloseTo(e.loss, 5);
      expect(r.gradNorm).toBeCloseTo(e.gradNorm, 5);
      expect(r.tasks.map((t) => [t.task, t.examples])).toEqual(e.tasks.map((t) => [t.task, t.examples]));
      expect(r.tasks[0]!.loss).toBeCloseTo(e.tasks[0]!.loss, 5);
      expect([r.targets, r.step, r.skipped, r.skippedSteps, r.lossScale]).toEqual([e.targets, e.step, e.skipped, e.skippedSteps, e.lossScale]);
    });
    graphs.weights.forEach((w, k) => expect(maxAbsDiff(w, eager.weights[k]!)).toBeLessThan(1e-5));
  });

  it('a residual scale α still warming up keys a new graph every step: those steps run eagerly', async () => {
    const { results } = await train({ cudaGraphs: true, alphaWarmupSteps: 3 }, [0, 1, 2, 3, 4, 5].map((i) => mlmBatch(i)));
    // α = 0, 1/3, 2/3: three keys met once; then α = 1 from step 3 on.
    expect(results.map((r) => r.cudaGraph)).toEqual([undefined, undefined, undefined, undefined, 'captured', 'replayed']);
  });

  it("task heads' steps run eagerly, MLM steps beside them through their graph", async () => {
    const model = RoFormerV2.create({ config: tiny, seed: 5 });
    const trainer = new Trainer(model, { staticStep: true, cudaGraphs: true, heads: { topic: { kind: 'classification', numLabels: 3 } } });
    const head = () => ({ task: 'topic', inputIds: tensor([[2, 7, 9, 3], [2, 5, 6, 3]], undefined, 'int64'), labels: tensor([0, 2], undefined, 'int64') });
    const ran = [];
    for (let i = 0; i < 5; i++) ran.push((await trainer.step(i === 2 ? head() : mlmBatch(i))).cudaGraph);
    expect(ran).toEqual([undefined, 'captured', undefined, 'replayed', 'replayed']);
    trainer.dispose();
    model.dispose();
  });

  it('need the static step: cudaGraphs with staticStep off is an error that says why', () => {
    const model = RoFormerV2.create({ config: tiny, seed: 5 });
    expect(() => new Trainer(model, { staticStep: false, cudaGraphs: true })).toThrow(/cudaGraphs: CUDA graphs capture the static step, which staticStep: false turns off/);
    model.dispose();
  });
});

describe('pre-training setting cudaGraphs', () => {
  it('defaults to the trainer (null); on with a CPU device is refused before any work', async () => {
    const corpus = join(tmp('graphs-config'), 'c.txt');
    writeFileSync(corpus, '春眠不觉晓\n');
    expect((await resolvePretrainConfig({ flags: { corpus: [corpus] } })).cudaGraphs).toBeNull();
    expect((await resolvePretrainConfig({ flags: { corpus: [corpus], cudaGraphs: false } })).cudaGraphs).toBe(false);
    await expect(resolvePretrainConfig({ flags: { corpus: [corpus], cudaGraphs: true } })).rejects.toThrow(
      /cudaGraphs \(--cuda-graphs\) is on, but the device is cpu: CUDA graphs need a CUDA device/,
    );
    const file = join(tmp('graphs-config'), 'run.json');
    writeFileSync(file, JSON.stringify({ corpus: [corpus], cudaGraphs: 'sometimes' }));
    await expect(resolvePretrainConfig({ file })).rejects.toThrow(/cudaGraphs must be on or off \(true or false in a config file\), got/);
  });

  it('roformer pretrain --cuda-graphs takes on or off, naming the flag otherwise', async () => {
    const failure = await run('node', ['dist/lib/cli.js', 'pretrain', '--corpus', 'x.txt', '--cuda-graphs', 'maybe']).catch((e: { stderr: string; code: number }) => e);
    expect('code' in failure && failure.code).not.toBe(0);
    expect((failure as { stderr: string }).stderr).toMatch(/--cuda-graphs must be on or off \(true or false in a config file\), got 'maybe'/);
    const onCpu = await run('node', ['dist/lib/cli.js', 'pretrain', '--corpus', 'x.txt', '--cuda-graphs', 'on', '--device', 'cpu', '--out', tmp('graphs-cli')]).catch(
      (e: { stderr: string; code: number }) => e,
    );
    expect((onCpu as { stderr: string }).stderr).toMatch(/CUDA graphs need a CUDA device/);
  });
});

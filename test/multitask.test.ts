// Supervised training end to end (issue 8, part 3): task sampling ∝ weight,
// epoch streams, fine-tuning that learns, per-task evaluation records, and exact
// resume of fine-tuning and of multi-task training (tasks, noise, MLM mixed in).

import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { ExampleStream, FINETUNE_DEFAULTS, MULTITASK_DEFAULTS, RoFormerV2, TaskSampler, finetune, loadFineTuned, multitask, readMetrics, readTaskList, type Example } from '../lib/index.js';
import { seededRandom } from './reference.js';
import { values } from './native-helpers.js';

const tiny = { num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-${name}-`));

/** A sentiment-like JSONL task a tiny model can learn: the label is whether 好 occurs. */
function writeToyTask(dir: string, seed: number): { train: string; dev: string } {
  const rand = seededRandom(seed);
  const filler = '今天我们去看山水风景城市人家花草树木春夏秋冬';
  const line = () => {
    const positive = rand() < 0.5;
    let text = Array.from({ length: 6 + Math.floor(rand() * 6) }, () => filler[Math.floor(rand() * filler.length)]).join('');
    if (positive) text = text.slice(0, 3) + '好' + text.slice(3);
    return JSON.stringify({ sentence: text, label: positive ? 'Positive' : 'Negative' });
  };
  const train = join(dir, 'train.jsonl');
  const dev = join(dir, 'dev.jsonl');
  writeFileSync(train, Array.from({ length: 96 }, line).join('\n') + '\n');
  writeFileSync(dev, Array.from({ length: 40 }, line).join('\n') + '\n');
  return { train, dev };
}

describe('task sampling', () => {
  it('over 10k draws, task frequencies match the weights (chi-square, p > 0.001)', () => {
    const names = ['a', 'b', 'c', 'd'];
    const weights = [1, 2, 3, 4];
    const sampler = new TaskSampler(names, weights, 7);
    const draws = 10_000;
    const real = new Map(names.map((n) => [n, 0]));
    for (let i = 0; i < draws; i++) {
      const n = sampler.next();
      real.set(n, real.get(n)! + 1);
    }
    const total = weights.reduce((a, b) => a + b, 0);
    const chi2 = names.reduce((sum, n, i) => {
      const expected = (draws * weights[i]!) / total;
      return sum + (real.get(n)! - expected) ** 2 / expected;
    }, 0);
    expect(chi2).toBeLessThan(16.27); // χ²(3 d.o.f.) at p = 0.001
    // And a sampler that ignored the weights would fail it: uniform counts are far off.
    const uniformChi2 = names.reduce((sum, _n, i) => sum + (draws / 4 - (draws * weights[i]!) / total) ** 2 / ((draws * weights[i]!) / total), 0);
    expect(uniformChi2).toBeGreaterThan(16.27);
    expect(sampler.probabilities.map((p) => +p.toFixed(6))).toEqual([0.1, 0.2, 0.3, 0.4]);
  });

  it('is seeded and resumable from its state; refuses bad weights', () => {
    const a = new TaskSampler(['x', 'y'], [1, 1], 3);
    const first = Array.from({ length: 50 }, () => a.next());
    const state = a.state;
    const rest = Array.from({ length: 50 }, () => a.next());
    const b = new TaskSampler(['x', 'y'], [1, 1], 99);
    b.state = state;
    expect(Array.from({ length: 50 }, () => b.next())).toEqual(rest);
    expect(new Set(first).size).toBe(2);
    expect(() => new TaskSampler(['x'], [0], 1)).toThrow(/weight must be a positive number/);
    expect(() => new TaskSampler(['x', 'y'], [1], 1)).toThrow(/2 tasks but 1 weights/);
  });
});

describe('example streams', () => {
  const examples: Example[] = Array.from({ length: 10 }, (_, i) => ({ kind: 'classification', ids: [2, 5 + i, 3], typeIds: [0, 0, 0], label: i % 2 }));

  it('each epoch visits every example once, in a new order; batches never span epochs', () => {
    const stream = new ExampleStream(examples, 4, 1);
    expect(stream.batchesPerEpoch).toBe(3);
    const epochs: number[][] = [[], []];
    for (let e = 0; e < 2; e++) {
      for (let b = 0; b < 3; b++) {
        const batch = stream.next();
        expect(batch.length).toBe(b < 2 ? 4 : 2);
        epochs[e]!.push(...batch.map((x) => (x as { ids: number[] }).ids[1]!));
      }
    }
    expect([...epochs[0]!].sort((p, q) => p - q)).toEqual(Array.from({ length: 10 }, (_, i) => 5 + i));
    expect([...epochs[1]!].sort((p, q) => p - q)).toEqual(Array.from({ length: 10 }, (_, i) => 5 + i));
    expect(epochs[0]).not.toEqual(epochs[1]);
  });

  it('continues exactly from a saved position', () => {
    const a = new ExampleStream(examples, 3, 5);
    for (let i = 0; i < 5; i++) a.next();
    const position = { ...a.position };
    const next = Array.from({ length: 6 }, () => a.next());
    const b = new ExampleStream(examples, 3, 5);
    b.position = position;
    expect(Array.from({ length: 6 }, () => b.next())).toEqual(next);
  });
});

/** Fine-tuning the toy task (writeToyTask's files) with a fresh tiny model, or --model. */
const finetuneConfig = (dir: string, files: { train: string; dev: string }, out: string) => ({
  ...FINETUNE_DEFAULTS,
  task: { name: 'toy', format: 'jsonl' as const, head: 'classification' as const, textFields: ['sentence'], labelField: 'label', labels: ['Negative', 'Positive'], metrics: ['accuracy' as const], maxLength: 32, description: 'toy' },
  train: files.train,
  dev: files.dev,
  test: files.dev,
  out,
  modelConfig: tiny,
  vocabSize: 200,
  epochs: 12,
  batchSize: 16,
  lr: 1e-2,
  optimizer: 'adamw' as const,
});

describe('finetune', () => {
  const config = finetuneConfig;

  it('learns a task a bag of characters can solve, writes results.json, the model dir and per-epoch eval records', async () => {
    const dir = tmp('ft');
    const files = writeToyTask(dir, 1);
    const out = join(dir, 'run');
    const results = await finetune(config(dir, files, out));
    expect(results.steps).toBe(12 * 6);
    expect(results.dev!.accuracy!).toBeGreaterThan(0.85);
    expect(results.majority.dev!).toBeLessThan(0.75);
    expect(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'))).toMatchObject({ task: 'toy', dev: { accuracy: results.dev!.accuracy }, majority: { dev: results.majority.dev } });
    const evals = (await readMetrics(join(out, 'metrics.jsonl'))).filter((m) => m.type === 'eval');
    expect(evals.map((m) => m.step)).toEqual([0, 6, 12, 18, 24, 30, 36, 42, 48, 54, 60, 66, 72]);
    expect(evals.every((m) => (m as { task?: string }).task === 'toy')).toBe(true);
    // The fine-tuned dir: the encoder for fromPretrained, the head for loadFineTuned.
    const encoder = await RoFormerV2.fromPretrained(results.model);
    expect(encoder.config.num_hidden_layers).toBe(1);
    const loaded = await loadFineTuned(out);
    expect(loaded.tasks.map((t) => t.name)).toEqual(['toy']);
    expect(loaded.tasks[0]!.labels).toEqual(['Negative', 'Positive']);
  });

  it('from a model dir, the same seed gives the same run (heads and dropout seeded; libtorch seeds itself from the OS)', async () => {
    const dir = tmp('ft-seeded');
    const files = writeToyTask(dir, 4);
    const start = await finetune({ ...config(dir, files, join(dir, 'start')), epochs: 1 });
    // An encoder dir without a head for the task (so the head starts fresh), with dropout.
    const encoder = join(dir, 'encoder');
    mkdirSync(encoder);
    for (const file of ['model.safetensors', 'vocab.txt']) copyFileSync(join(start.model, file), join(encoder, file));
    const modelConfig = JSON.parse(readFileSync(join(start.model, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(encoder, 'config.json'), JSON.stringify({ ...modelConfig, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1 }));
    const run = async (name: string, seed: number) => {
      const out = join(dir, name);
      await finetune({ ...config(dir, files, out), model: encoder, epochs: 1, seed });
      return (await readMetrics(join(out, 'metrics.jsonl'))).map((m) => ('loss' in m ? m.loss : null));
    };
    const a = await run('a', 5);
    const b = await run('b', 5);
    expect(b).toEqual(a);
    expect(await run('c', 6)).not.toEqual(a);
  });

  it('resumes exactly: interrupted and resumed = straight through', async () => {
    const dir = tmp('ft-resume');
    const files = writeToyTask(dir, 2);
    const straight = await finetune({ ...config(dir, files, join(dir, 'a')), epochs: 3 });
    const controller = new AbortController();
    const first = await finetune({ ...config(dir, files, join(dir, 'b')), epochs: 3 }, { signal: controller.signal, onEvent: (e) => { if (e.type === 'step' && e.step === 7) controller.abort(); } });
    expect(first.interrupted).toBe(true);
    expect(first.steps).toBe(7);
    const resumed = await finetune({ ...config(dir, files, join(dir, 'b')), epochs: 3 }, { resume: true });
    expect(resumed.steps).toBe(straight.steps);
    const a = (await RoFormerV2.fromPretrained(straight.model)).namedParameters();
    const b = (await RoFormerV2.fromPretrained(resumed.model)).namedParameters();
    for (const name of Object.keys(a)) expect(values(b[name]!), name).toEqual(values(a[name]!));
    expect(resumed.dev).toEqual(straight.dev);
  });
});

describe('multitask', () => {
  function writeTaskList(dir: string): string {
    const toy = writeToyTask(dir, 3);
    writeFileSync(join(dir, 'corpus.txt'), Array.from({ length: 200 }, (_, i) => '春眠不觉晓处处闻啼鸟夜来风雨声花落知多少'.slice(i % 5) + '山水').join('\n') + '\n');
    const tasks = {
      tasks: [
        { name: 'toy', task: { kind: 'classification', textField: 'sentence', labelField: 'label', labels: ['Negative', 'Positive'] }, files: { train: 'train.jsonl', dev: 'dev.jsonl' }, weight: 2, batchSize: 8, maxLength: 32 },
        { name: 'ner', task: 'cluener', files: { train: join(process.cwd(), 'test/fixtures/clue/cluener.json'), dev: join(process.cwd(), 'test/fixtures/clue/cluener.json') }, weight: 1, batchSize: 4, maxLength: 64 },
        { name: 'mlm', task: 'mlm', files: { corpus: ['corpus.txt'] }, weight: 1, batchSize: 8, maxLength: 32 },
      ],
    };
    void toy;
    const path = join(dir, 'tasks.json');
    writeFileSync(path, JSON.stringify(tasks));
    return path;
  }
  const config = (tasks: string, out: string, steps: number) => ({ ...MULTITASK_DEFAULTS, tasks, out, modelConfig: tiny, vocabSize: 300, steps, accumulate: 3, evalEvery: 4, saveEvery: 4, lr: 5e-3 });

  it('trains several tasks with unit gradient normalisation and noise; per-task records; exact resume', async () => {
    const dir = tmp('mt');
    const tasks = writeTaskList(dir);
    const straight = await multitask(config(tasks, join(dir, 'a'), 8));
    expect(straight.steps).toBe(8);
    expect(Object.keys(straight.tasks).sort()).toEqual(['ner', 'toy']);
    expect(straight.tasks.toy!.accuracy).toBeGreaterThanOrEqual(0);
    expect(straight.tasks.ner).toHaveProperty('f1');
    const metrics = await readMetrics(join(dir, 'a', 'metrics.jsonl'));
    const evalTasks = new Set(metrics.filter((m) => m.type === 'eval').map((m) => (m as { task?: string }).task));
    expect([...evalTasks].sort()).toEqual(['mlm', 'ner', 'toy']);

    const controller = new AbortController();
    await multitask(config(tasks, join(dir, 'b'), 8), { signal: controller.signal, onEvent: (e) => { if (e.type === 'step' && e.step === 3) controller.abort(); } });
    const resumed = await multitask(config(tasks, join(dir, 'b'), 8), { resume: true });
    expect(resumed.steps).toBe(8);
    const a = (await RoFormerV2.fromPretrained(straight.model)).namedParameters();
    const b = (await RoFormerV2.fromPretrained(resumed.model)).namedParameters();
    for (const name of Object.keys(a)) expect(values(b[name]!), name).toEqual(values(a[name]!));
    expect(resumed.tasks).toEqual(straight.tasks);
  });

  it('fine-tuning a multi-task model on one of its tasks loads that head; a head of another shape starts fresh, named', async () => {
    const dir = tmp('mt-ft');
    const tasks = writeTaskList(dir);
    const mt = await multitask({ ...config(tasks, join(dir, 'mt'), 12), noise: false });
    // The multi-task run's last evaluation of toy on its dev set: the encoder and head it saved.
    const lastToyEval = (await readMetrics(join(dir, 'mt', 'metrics.jsonl'))).filter((m) => m.type === 'eval' && (m as { task?: string }).task === 'toy').at(-1) as { step: number; loss: number; accuracy: number };
    expect(lastToyEval.step).toBe(12);

    const files = { train: join(dir, 'train.jsonl'), dev: join(dir, 'dev.jsonl') };
    const firstEval = async (out: string, labels: string[]) => {
      const notes: string[] = [];
      let first: { loss: number; accuracy: number } | undefined;
      const base = finetuneConfig(dir, files, join(dir, out));
      await finetune({ ...base, task: { ...base.task, labels }, model: mt.model, maxSteps: 1 }, {
        onNote: (message) => notes.push(message),
        onEvent: (e) => { if (e.type === 'eval' && e.step === 0) first ??= e as unknown as { loss: number; accuracy: number }; },
      });
      return { notes, first: first! };
    };
    // The same task: its head is loaded, so fine-tuning's step-0 evaluation is the multi-task model's.
    const same = await firstEval('ft', ['Negative', 'Positive']);
    expect(same.notes.join('\n')).toMatch(/the toy head saved there is loaded/);
    expect(same.notes.join('\n')).not.toMatch(/starts fresh/);
    expect(same.first.loss).toBeCloseTo(lastToyEval.loss, 5);
    expect(same.first.accuracy).toBe(lastToyEval.accuracy);
    // Three labels where the saved head has two: a fresh head, and a note naming the head and both sizes.
    const other = await firstEval('ft3', ['Negative', 'Positive', 'Neutral']);
    expect(other.notes.join('\n')).toMatch(/head toy: numLabels 2 in .*, 3 here; the toy head starts fresh/);
    expect(other.first.loss).not.toBeCloseTo(lastToyEval.loss, 3);
  });

  it('tasks.json problems are named: entry, field and file', async () => {
    const dir = tmp('mt-bad');
    const write = (value: unknown) => {
      const path = join(dir, 'tasks.json');
      writeFileSync(path, typeof value === 'string' ? value : JSON.stringify(value));
      return path;
    };
    writeFileSync(join(dir, 'train.jsonl'), '{"sentence":"好","label":"Positive"}\n');
    await expect(readTaskList(write('{oops'), { batchSize: 8 })).rejects.toThrow(/tasks\.json: .*JSON/);
    await expect(readTaskList(write({ tasks: [] }), { batchSize: 8 })).rejects.toThrow(/at least one task/);
    await expect(readTaskList(write({ tasks: [{ task: 'tnews', files: { train: 'missing.json' } }] }), { batchSize: 8 })).rejects.toThrow(/tasks\[0\]\.files\.train: .*missing\.json does not exist/);
    await expect(readTaskList(write({ tasks: [{ task: 'tnews', files: { train: 'train.jsonl' } }, { task: 'tnews', files: { train: 'train.jsonl' } }] }), { batchSize: 8 })).rejects.toThrow(/tasks\[1\]: task name 'tnews' is used twice/);
    await expect(readTaskList(write({ tasks: [{ task: 'tnews', files: { train: 'train.jsonl' }, weight: -1 }] }), { batchSize: 8 })).rejects.toThrow(/tasks\[0\]\.weight must be a positive number/);
    await expect(readTaskList(write({ tasks: [{ task: 'mlm', files: {} }] }), { batchSize: 8 })).rejects.toThrow(/the mlm task needs files\.corpus/);
  });
});

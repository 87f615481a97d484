// The supervised commands end to end, each in a child process as a user runs
// them: roformer finetune, eval, predict and multitask on small files (FewCLUE
// eprstmt, the CLUE fixtures, JSON Lines written here) with tiny models, and
// the errors a user meets with the wrong task, file or model.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { readMetrics, RoFormerV2, TASK_NAMES } from '../lib/index.js';
import { CLI, failure, roformer } from './cli-run.js';
import { FEWCLUE_DIR } from './fewclue.js';

const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-cli-${name}-`));

const TINY = JSON.stringify({ num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64 });
/** Flags every training run here shares: a tiny fresh model, short sequences, a few steps. */
const tinyFlags = (steps: number) => ['--model-config', TINY, '--vocab-size', '600', '--max-length', '48', '--batch-size', '16', '--max-steps', `${steps}`];

const FEWCLUE = join(FEWCLUE_DIR, 'eprstmt');
const FIXTURES = 'test/fixtures/clue';
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');

let data: string;
let eprstmt: { train: string; dev: string; test: string };
/** The eprstmt run every later test reads from (finetune is tested once, reused by eval and predict). */
let eprstmtRun: string;
let finetuneStdout: string;
let finetuneStderr: string;

beforeAll(async () => {
  data = tmp('data');
  // A slice of FewCLUE eprstmt: the real format, small enough for seconds per run.
  eprstmt = { train: join(FEWCLUE, 'train_few_all.json'), dev: join(data, 'dev.json'), test: join(data, 'test.json') };
  writeFileSync(eprstmt.dev, lines(join(FEWCLUE, 'dev_few_all.json')).slice(0, 40).join('\n') + '\n');
  // The test file keeps one bad record (line 3) to show that it is reported and skipped.
  const test = lines(join(FEWCLUE, 'test_public.json')).slice(0, 24);
  test.splice(2, 0, '{"id": 999, "sentence": "标签不对", "label": "Neutral"}');
  writeFileSync(eprstmt.test, test.join('\n') + '\n');

  eprstmtRun = join(tmp('eprstmt'), 'run');
  ({ stdout: finetuneStdout, stderr: finetuneStderr } = await roformer('finetune', '--task', 'eprstmt', '--train', eprstmt.train, '--dev', eprstmt.dev, '--test', eprstmt.test, '--out', eprstmtRun, ...tinyFlags(10), '--lr', '2e-3'));
}, 120_000);

describe('roformer finetune', () => {
  it('writes results.json of the documented shape and a model dir fromPretrained loads', async () => {
    const results = JSON.parse(readFileSync(join(eprstmtRun, 'results.json'), 'utf8'));
    expect(results.task).toBe('eprstmt');
    expect(results.steps).toBe(10);
    expect(results.interrupted).toBe(false);
    expect(results.examples).toEqual({ train: 160, dev: 40, test: 24 });
    for (const set of ['dev', 'test'] as const) {
      expect(results[set].accuracy).toBeGreaterThanOrEqual(0);
      expect(results[set].accuracy).toBeLessThanOrEqual(1);
      expect(results.majority[set]).toBeGreaterThan(0.2);
      expect(results.majority[set]).toBeLessThan(0.8);
    }
    expect(results.model).toBe(join(eprstmtRun, 'model'));
    for (const file of ['config.json', 'model.safetensors', 'vocab.txt', 'heads.json', 'heads.safetensors', 'tasks.json']) {
      expect(existsSync(join(eprstmtRun, 'model', file)), file).toBe(true);
    }
    const model = await RoFormerV2.fromPretrained(join(eprstmtRun, 'model'));
    expect(model.config.num_hidden_layers).toBe(1);
    expect(model.config.hidden_size).toBe(32);
    model.dispose();
  });

  it('prints the metrics beside the majority baseline, the bad record with file:line, and where things are', () => {
    expect(finetuneStdout).toMatch(/new run: .*tasks eprstmt, steps 0 → 10/);
    // Notes are diagnostics: on stderr, so that stdout stays the results.
    expect(finetuneStderr).toMatch(new RegExp(`note: ${eprstmt.test}: 1 bad record\\(s\\) skipped:\\n${eprstmt.test}:3: `));
    const results = JSON.parse(readFileSync(join(eprstmtRun, 'results.json'), 'utf8'));
    const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
    expect(finetuneStdout).toMatch(new RegExp(`accuracy\\s+${pct(results.dev.accuracy)}\\s+${pct(results.test.accuracy)}`));
    expect(finetuneStdout).toMatch(new RegExp(`majority class \\(accuracy\\)\\s+${pct(results.majority.dev)}\\s+${pct(results.majority.test)}`));
    expect(finetuneStdout).toContain(`results ${eprstmtRun}/results.json`);
    expect(finetuneStdout).toContain(`model   ${eprstmtRun}/model`);
  });

  it('resumes a run to a larger --max-steps, keeping its settings', async () => {
    const out = join(tmp('resume'), 'run');
    await roformer('finetune', '--task', 'eprstmt', '--train', eprstmt.train, '--dev', eprstmt.dev, '--out', out, ...tinyFlags(4), '--save-every', '2');
    // Starting over in the same dir is refused with the way out.
    expect((await failure('finetune', '--task', 'eprstmt', '--train', eprstmt.train, '--out', out)).stderr).toMatch(/already holds a run: pass --resume/);
    const { stdout } = await roformer('finetune', '--out', out, '--resume', '--max-steps', '7');
    expect(stdout).toMatch(/resuming from .*checkpoint-4.*steps 4 → 7/);
    expect(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).steps).toBe(7);
    const train = (await readMetrics(join(out, 'metrics.jsonl'))).filter((m) => m.type === 'train');
    expect(train.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('trains a JSON Lines task of the user’s own (--task jsonl), labels taken from the training file', async () => {
    const dir = tmp('jsonl');
    const rows = (n: number, offset: number) =>
      Array.from({ length: n }, (_, i) => JSON.stringify({ review: i % 2 ? `很好很好，推荐${i + offset}` : `太差了，不推荐${i + offset}`, stars: i % 2 ? 'five' : 'one' })).join('\n') + '\n';
    writeFileSync(join(dir, 'train.jsonl'), rows(48, 0));
    writeFileSync(join(dir, 'dev.jsonl'), rows(8, 100));
    const out = join(dir, 'run');
    await roformer('finetune', '--task', 'jsonl', '--text-field', 'review', '--label-field', 'stars', '--train', join(dir, 'train.jsonl'), '--dev', join(dir, 'dev.jsonl'), '--out', out, ...tinyFlags(6));
    const [task] = JSON.parse(readFileSync(join(out, 'model', 'tasks.json'), 'utf8'));
    expect(task).toMatchObject({ name: 'jsonl', format: 'jsonl', textFields: ['review'], labelField: 'stars', labels: ['five', 'one'], maxLength: 48 });
    const predictions = (await roformer('predict', '--model', out, join(dir, 'dev.jsonl'))).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(predictions).toHaveLength(8);
    for (const p of predictions) expect(['five', 'one']).toContain(p.label);
  });
});

describe('roformer eval', () => {
  it('prints the metrics and the loss; --json is one object agreeing with the run’s own final evaluation', async () => {
    const results = JSON.parse(readFileSync(join(eprstmtRun, 'results.json'), 'utf8'));
    const { stdout } = await roformer('eval', '--model', eprstmtRun, '--task', 'eprstmt', '--data', eprstmt.dev);
    expect(stdout).toMatch(/eprstmt on .*dev\.json: 40 labelled examples/);
    expect(stdout).toMatch(new RegExp(`accuracy\\s+${(100 * results.dev.accuracy).toFixed(2)}%`));
    expect(stdout).toMatch(/loss\s+\d+\.\d{4}/);

    const json = JSON.parse((await roformer('eval', '--model', join(eprstmtRun, 'model'), '--data', eprstmt.dev, '--json')).stdout);
    expect(json).toMatchObject({ task: 'eprstmt', examples: 40 });
    // The same examples, truncated to the same length, through the same weights: the same figures.
    expect(json.metrics.accuracy).toBe(results.dev.accuracy);
    expect(json.loss).toBeGreaterThan(0);
  });
});

describe('roformer predict', () => {
  it('writes one line per good record, in file order, with the label and its probability', async () => {
    const out = join(tmp('predict'), 'p.jsonl');
    const { stderr } = await roformer('predict', '--model', eprstmtRun, eprstmt.test, '--out', out);
    expect(stderr).toMatch(/1 bad record\(s\) skipped/);
    const predictions = lines(out).map((l) => JSON.parse(l));
    const records = lines(eprstmt.test).map((l) => JSON.parse(l));
    expect(predictions).toHaveLength(records.length - 1);
    const good = records.map((r, i) => ({ id: r.id, line: i + 1 })).filter((r) => r.line !== 3);
    expect(predictions.map((p) => ({ id: p.id, line: p.line }))).toEqual(good);
    for (const p of predictions) {
      expect(['Negative', 'Positive']).toContain(p.label);
      expect(p.score).toBeGreaterThanOrEqual(0.5); // the argmax of two classes
      expect(p.score).toBeLessThanOrEqual(1);
    }
  });

  it('names the chosen option of a multiple-choice task (c3) by index and text', async () => {
    const out = join(tmp('c3'), 'run');
    await roformer('finetune', '--task', 'c3', '--train', join(FIXTURES, 'c3.json'), '--out', out, ...tinyFlags(2), '--batch-size', '2');
    const predictions = (await roformer('predict', '--model', out, join(FIXTURES, 'c3.json'))).stdout.trim().split('\n').map((l) => JSON.parse(l));
    // The fixture: 4 questions in 2 records (ids record-question), one question with a bad answer, one bad record.
    const choices = new Map<string, string[]>();
    for (const record of JSON.parse(readFileSync(join(FIXTURES, 'c3.json'), 'utf8')) as unknown[]) {
      if (Array.isArray(record)) (record[1] as Array<{ choice: string[] }>).forEach((q, k) => choices.set(`${record[2]}-${k}`, q.choice));
    }
    expect(predictions.map((p) => p.id)).toEqual(['m32-39-0', 'd1-1-0', 'd1-1-2']);
    for (const p of predictions) {
      const options = choices.get(p.id)!;
      expect(p.option).toBeGreaterThanOrEqual(0);
      expect(p.option).toBeLessThan(options.length);
      expect(p.answer).toBe(options[p.option]);
    }
  });

  it('gives entity spans as character offsets, end exclusive (cluener)', async () => {
    const out = join(tmp('ner'), 'run');
    // Memorise the fixture: enough steps at a high rate for a tiny model to predict spans at all.
    await roformer('finetune', '--task', 'cluener', '--train', join(FIXTURES, 'cluener.json'), '--out', out, ...tinyFlags(60), '--epochs', '100', '--lr', '1e-2', '--optimizer', 'adamw');
    const { stdout } = await roformer('predict', '--model', out, join(FIXTURES, 'cluener.json'));
    const predictions = stdout.trim().split('\n').map((l) => JSON.parse(l));
    const records = lines(join(FIXTURES, 'cluener.json')).map((l) => JSON.parse(l));
    expect(predictions).toHaveLength(records.length);
    let found = 0;
    predictions.forEach((p, i) => {
      expect(Array.isArray(p.spans)).toBe(true);
      for (const s of p.spans) {
        expect(s.text).toBe(records[i].text.slice(s.start, s.end));
        found++;
      }
    });
    expect(found).toBeGreaterThan(0);
    // The gold entities, as CLUE writes them (end inclusive), come back end exclusive.
    const gold = records.flatMap((r, i) =>
      Object.entries(r.label as Record<string, Record<string, number[][]>>).flatMap(([label, entities]) =>
        Object.values(entities).flatMap((ranges) => ranges.map(([start, end]) => JSON.stringify({ line: i + 1, label, start, end: end! + 1 }))),
      ),
    );
    const predicted = predictions.flatMap((p) => p.spans.map((s: { label: string; start: number; end: number }) => JSON.stringify({ line: p.line, label: s.label, start: s.start, end: s.end })));
    expect(predicted.filter((s) => gold.includes(s)).length).toBeGreaterThan(0);
  }, 120_000);
});

describe('roformer multitask', () => {
  let tasksFile: string;

  beforeAll(() => {
    const dir = tmp('multitask');
    const rows = Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: i % 2 ? `春风又绿江南岸${i}` : `大江东去浪淘尽${i}`, label: i % 2 ? 'spring' : 'river' }));
    writeFileSync(join(dir, 'poems.jsonl'), rows.join('\n') + '\n');
    writeFileSync(join(dir, 'corpus.txt'), Array.from({ length: 60 }, (_, i) => `明月几时有，把酒问青天。不知天上宫阙，今夕是何年。${i}`).join('\n') + '\n');
    tasksFile = join(dir, 'tasks.json');
    writeFileSync(
      tasksFile,
      JSON.stringify({
        tasks: [
          { name: 'eprstmt', files: { train: resolve(eprstmt.train), dev: eprstmt.dev }, weight: 2, maxLength: 48 },
          { name: 'poems', task: { kind: 'classification' }, files: { train: 'poems.jsonl', dev: 'poems.jsonl' } },
          { name: 'mlm', files: { corpus: ['corpus.txt'] }, weight: 2, maxLength: 32 },
        ],
      }),
    );
  });

  // One micro-batch per step, so that every train record names its task (steps mixing tasks name none).
  const common = () => ['--model-config', TINY, '--vocab-size', '600', '--batch-size', '8', '--accumulate', '1', '--eval-every', '0'];

  it('trains two tasks and MLM, prints per-task metrics, stops on SIGINT with a checkpoint and resumes to the target step', async () => {
    const out = join(tmp('mt-run'), 'run');
    const child = spawn(process.execPath, [CLI, 'multitask', '--tasks', tasksFile, '--out', out, '--steps', '2000', '--save-every', '0', ...common()], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (/step 10\//.test(output) && child.exitCode === null && !child.killed) child.kill('SIGINT');
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(output).toMatch(/interrupted: saving a checkpoint/);
    expect(code).toBe(130);
    const stopped = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(stopped.interrupted).toBe(true);
    expect(stopped.steps).toBeGreaterThanOrEqual(10);
    expect(stopped.steps).toBeLessThan(2000);
    expect(readFileSync(join(out, 'latest'), 'utf8').trim()).toBe(`checkpoint-${stopped.steps}`);

    const target = stopped.steps + 4;
    const { stdout } = await roformer('multitask', '--out', out, '--resume', '--steps', `${target}`);
    expect(stdout).toMatch(new RegExp(`resuming from .*checkpoint-${stopped.steps}.*steps ${stopped.steps} → ${target}`));
    expect(stdout).toMatch(/task\s+accuracy/);
    expect(stdout).toMatch(/\neprstmt\s+\d+\.\d\d%/);
    expect(stdout).toMatch(/\npoems\s+\d+\.\d\d%/);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(results).toMatchObject({ steps: target, interrupted: false });
    expect(Object.keys(results.tasks).sort()).toEqual(['eprstmt', 'poems']);
    const train = (await readMetrics(join(out, 'metrics.jsonl'))).filter((m) => m.type === 'train');
    expect(train.map((m) => m.step)).toEqual(Array.from({ length: target }, (_, i) => i + 1));
    expect(new Set(train.map((m) => m.task).filter(Boolean))).toEqual(new Set(['eprstmt', 'poems', 'mlm']));

    // The model holds both heads; eval picks one by --task and insists when there are two.
    const json = JSON.parse((await roformer('eval', '--model', out, '--task', 'poems', '--data', join(tasksFile, '..', 'poems.jsonl'), '--json')).stdout);
    expect(json).toMatchObject({ task: 'poems', examples: 40 });
    expect((await failure('eval', '--model', out, '--data', eprstmt.dev)).stderr).toMatch(/has 2 tasks \(eprstmt, poems\): pass --task/);
  }, 180_000);

  it('explains a broken tasks.json', async () => {
    const bad = join(tmp('mt-bad'), 'tasks.json');
    writeFileSync(bad, JSON.stringify({ tasks: [{ name: 'tnews', files: { train: 'missing.json' } }] }));
    const error = await failure('multitask', '--tasks', bad, '--out', join(tmp('mt-bad-out'), 'run'));
    expect(error.code).toBe(1);
    expect(error.stderr).toMatch(/tasks\[0\]\.files\.train: .*missing\.json does not exist/);
  });
});

describe('clear errors', () => {
  it('an unknown --task lists the task names', async () => {
    const { code, stderr } = await failure('finetune', '--task', 'tnewz', '--train', eprstmt.train, '--out', join(tmp('e1'), 'run'));
    expect(code).toBe(1);
    expect(stderr).toMatch(/^roformer: unknown --task 'tnewz'/);
    for (const name of TASK_NAMES) expect(stderr).toContain(name);
    expect(stderr).toContain("'jsonl'");
  });

  it('a missing --train says what is needed', async () => {
    const { stderr } = await failure('finetune', '--task', 'eprstmt', '--out', join(tmp('e2'), 'run'));
    expect(stderr).toMatch(/finetune needs --train/);
  });

  it('a file in the wrong format names the format expected', async () => {
    const { stderr } = await failure('finetune', '--task', 'eprstmt', '--train', join(FIXTURES, 'c3.json'), '--out', join(tmp('e3'), 'run'), ...tinyFlags(1));
    expect(stderr).toMatch(/c3\.json: not a eprstmt file \(expected JSON Lines.*"sentence"/);
  });

  it('a model dir without heads is not a fine-tuned model', async () => {
    const dir = join(tmp('e4'), 'plain');
    await roformer('init', dir, '--size', 'small');
    const { stderr } = await failure('eval', '--model', dir, '--task', 'eprstmt', '--data', eprstmt.dev);
    expect(stderr).toMatch(/is not a fine-tuned model dir: it has no tasks\.json/);
  });

  it('a --task the model was not fine-tuned on lists the ones it was', async () => {
    const { stderr } = await failure('predict', '--model', eprstmtRun, '--task', 'tnews', eprstmt.test);
    expect(stderr).toMatch(/has no head for task 'tnews' \(it has: eprstmt\)/);
  });

  it('bad flag values name the flag', async () => {
    expect((await failure('finetune', '--task', 'eprstmt', '--train', eprstmt.train, '--out', 'x', '--optimizer', 'sgd')).stderr).toMatch(/--optimizer must be one of adafactor, adamw, lamb/);
    expect((await failure('finetune', '--task', 'eprstmt', '--train', eprstmt.train, '--out', 'x', '--model-config', '{nope')).stderr).toMatch(/--model-config: invalid JSON/);
    expect((await failure('multitask', '--tasks', 'x', '--out', 'y', '--gradient-normalization', 'max')).stderr).toMatch(/--gradient-normalization must be one of none, unit, pareto/);
  });
});


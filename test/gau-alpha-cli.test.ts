// GAU-α through every stage as a user runs them: a tiny `roformer pretrain --arch
// gau-alpha`, fill-mask on it, `finetune` from its run dir, eval and predict on the
// fine-tuned model, a fresh GAU-α fine-tuned directly (--arch on finetune), the multi-task
// stage and `embed` from the pre-trained run, and pre-training on two data-parallel ranks.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { GauAlpha, loadPretrained, readMetrics, readModelConfig } from '../lib/index.js';
import { ensureDemoCorpus } from '../lib/data/demo-corpus.js';
import { CLI, failure, roformer } from './cli-run.js';
import { FEWCLUE_DIR } from './fewclue.js';

const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-gau-cli-${name}-`));
const TINY_GAU = { num_hidden_layers: 2, hidden_size: 32, intermediate_size: 64, attention_key_size: 16 };
const EPRSTMT = join(FEWCLUE_DIR, 'eprstmt');

let corpus: string;
let pretrainRun: string;
let pretrainOut: { stdout: string; stderr: string };

beforeAll(async () => {
  const [songci] = await ensureDemoCorpus(join(tmpdir(), 'roformer-test-corpus'));
  corpus = join(tmp('corpus'), 'ci.txt');
  writeFileSync(corpus, readFileSync(songci!, 'utf8').split('\n').slice(0, 600).join('\n') + '\n');
  pretrainRun = join(tmp('pretrain'), 'run');
  const settings = join(tmp('settings'), 'pretrain.json');
  writeFileSync(settings, JSON.stringify({ model: TINY_GAU }));
  pretrainOut = await roformer('pretrain', '--arch', 'gau-alpha', '--config', settings, '--corpus', corpus, '--out', pretrainRun, '--vocab-size', '1500', '--max-length', '32', '--batch-size', '8', '--steps', '12', '--lr', '2e-3', '--warmup-steps', '2', '--eval-every', '6', '--save-every', '12');
}, 180_000);

describe('roformer pretrain --arch gau-alpha', () => {
  it('trains a GAU-α of the config file’s size, writes the port’s config and evaluates', async () => {
    const config = await readModelConfig(join(pretrainRun, 'checkpoint-12'));
    expect(config).toMatchObject({ model_type: 'gau_alpha', ...TINY_GAU, normalization: 'softmax_plus' });
    const evals = (await readMetrics(join(pretrainRun, 'metrics.jsonl'))).filter((m) => m.type === 'eval');
    expect(evals.map((m) => m.step)).toEqual([0, 6, 12]);
    expect(evals[2]!.loss).toBeLessThan(evals[0]!.loss);
    expect(pretrainOut.stdout + pretrainOut.stderr).not.toMatch(/error/i);
  });

  it('fill-mask reads the run dir and predicts from the GAU-α', async () => {
    const { stdout } = await roformer('fill-mask', '--model', pretrainRun, '--json', '春风又绿江[MASK]岸');
    const result = JSON.parse(stdout);
    expect(result.predictions).toHaveLength(1);
    expect(result.predictions[0].candidates).toHaveLength(5);
  });

  it('--norm-position with --arch gau-alpha names the problem', async () => {
    const { stderr, code } = await failure('pretrain', '--arch', 'gau-alpha', '--norm-position', 'pre', '--corpus', corpus, '--out', tmp('bad'));
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/--norm-position is for RoFormerV2/);
  });

  it('a bad --arch or --attention-normalization names the flag', async () => {
    expect((await failure('pretrain', '--arch', 'gau', '--corpus', corpus)).stderr).toMatch(/--arch must be one of roformer-v2, gau-alpha/);
    expect((await failure('finetune', '--attention-normalization', 'sparsemax')).stderr).toMatch(/--attention-normalization must be one of softmax, softmax_plus, squared_relu/);
  });
});

describe('fine-tuning GAU-α', () => {
  it('finetune from the pre-trained run, then eval and predict on its model', async () => {
    const out = join(tmp('finetune'), 'run');
    const dev = join(tmp('dev'), 'dev.json');
    writeFileSync(dev, readFileSync(join(EPRSTMT, 'dev_few_all.json'), 'utf8').split('\n').slice(0, 24).join('\n') + '\n');
    await roformer('finetune', '--task', 'eprstmt', '--train', join(EPRSTMT, 'train_few_all.json'), '--dev', dev, '--model', pretrainRun, '--out', out, '--max-length', '48', '--batch-size', '16', '--max-steps', '6', '--lr', '2e-3');
    const model = await loadPretrained(join(out, 'model'));
    expect(model).toBeInstanceOf(GauAlpha);
    expect(model.config.num_hidden_layers).toBe(2);
    model.dispose();
    const evaluation = JSON.parse((await roformer('eval', '--model', out, '--data', dev, '--json')).stdout);
    expect(evaluation.metrics.accuracy).toBeGreaterThanOrEqual(0);
    expect(evaluation.metrics.accuracy).toBeLessThanOrEqual(1);
    const predictions = (await roformer('predict', '--model', out, dev)).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(predictions).toHaveLength(24);
    expect(['Positive', 'Negative']).toContain(predictions[0].label);
  });

  it('finetune --arch gau-alpha --attention-normalization squared_relu trains a fresh one', async () => {
    const out = join(tmp('fresh'), 'run');
    await roformer('finetune', '--task', 'eprstmt', '--train', join(EPRSTMT, 'train_few_all.json'), '--out', out, '--arch', 'gau-alpha', '--attention-normalization', 'squared_relu', '--model-config', JSON.stringify(TINY_GAU), '--vocab-size', '600', '--max-length', '48', '--batch-size', '16', '--max-steps', '4');
    const config = await readModelConfig(join(out, 'model'));
    expect(config).toMatchObject({ model_type: 'gau_alpha', normalization: 'squared_relu', num_hidden_layers: 2 });
  });
});

describe('GAU-α in the multi-task stage, embed and data parallelism', () => {
  it('multitask starts from the pre-trained GAU-α run, trains a task head and MLM, and keeps the architecture', async () => {
    const dir = tmp('multitask');
    const tasks = join(dir, 'tasks.json');
    writeFileSync(
      tasks,
      JSON.stringify({
        tasks: [
          { name: 'eprstmt', files: { train: join(EPRSTMT, 'train_few_all.json') }, maxLength: 48 },
          { name: 'mlm', files: { corpus: [corpus] }, maxLength: 32 },
        ],
      }),
    );
    const out = join(dir, 'run');
    await roformer('multitask', '--tasks', tasks, '--model', pretrainRun, '--out', out, '--steps', '4', '--batch-size', '8', '--eval-every', '0', '--save-every', '4');
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(results).toMatchObject({ steps: 4, interrupted: false });
    const config = await readModelConfig(join(out, 'checkpoint-4'));
    expect(config).toMatchObject({ model_type: 'gau_alpha', ...TINY_GAU });
    const train = (await readMetrics(join(out, 'metrics.jsonl'))).filter((m) => m.type === 'train');
    expect(train.map((m) => m.step)).toEqual([1, 2, 3, 4]);
    train.forEach((m) => expect(Number.isFinite(m.loss)).toBe(true));
    const evaluation = JSON.parse((await roformer('eval', '--model', out, '--task', 'eprstmt', '--data', join(EPRSTMT, 'dev_few_all.json'), '--json')).stdout);
    expect(evaluation).toMatchObject({ task: 'eprstmt' });
  }, 120_000);

  it('embed reads the GAU-α run: one vector of hidden_size per text, equal texts equal, different texts apart', async () => {
    const dir = tmp('embed');
    const input = join(dir, 'texts.txt');
    const texts = ['春风又绿江南岸', '明月何时照我还', '春风又绿江南岸'];
    writeFileSync(input, texts.join('\n') + '\n');
    const out = join(dir, 'vectors.jsonl');
    await roformer('embed', '--model', pretrainRun, input, '--out', out);
    const rows = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { line: number; embedding: number[] });
    expect(rows.map((r) => r.line)).toEqual([1, 2, 3]);
    rows.forEach((r) => expect(r.embedding).toHaveLength(TINY_GAU.hidden_size));
    rows.forEach((r) => r.embedding.forEach((x) => expect(Number.isFinite(x)).toBe(true)));
    const distance = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i]!)));
    expect(distance(rows[0]!.embedding, rows[2]!.embedding)).toBeLessThan(1e-6);
    expect(distance(rows[0]!.embedding, rows[1]!.embedding)).toBeGreaterThan(1e-4);
  }, 60_000);

  it('pretrain --arch gau-alpha on two data-parallel ranks: each step once, world size 2, a GAU-α checkpoint', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer();
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
    const settings = join(tmp('ddp-settings'), 'pretrain.json');
    writeFileSync(settings, JSON.stringify({ model: TINY_GAU, logEvery: 1 }));
    const out = join(tmp('ddp'), 'run');
    const args = [CLI, 'pretrain', '--nproc-per-node', '2', '--master-port', String(port), '--dist-timeout', '30', '--arch', 'gau-alpha', '--config', settings,
      '--corpus', corpus, '--out', out, '--vocab-size', '1500', '--max-length', '32', '--batch-size', '8', '--steps', '4', '--lr', '2e-3', '--warmup-steps', '1',
      '--eval-every', '4', '--save-every', '4'];
    const child = spawn(process.execPath, args, { env: { ...process.env, ROFORMER_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, output).toBe(0);
    const train = (await readMetrics(join(out, 'metrics.jsonl'))).filter((m) => m.type === 'train');
    expect(train.map((m) => m.step)).toEqual([1, 2, 3, 4]); // rank 0 alone writes
    expect(train[0]!.worldSize).toBe(2);
    expect(await readModelConfig(join(out, 'checkpoint-4'))).toMatchObject({ model_type: 'gau_alpha', ...TINY_GAU });
  }, 120_000);
});

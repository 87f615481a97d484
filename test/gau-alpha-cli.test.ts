// GAU-α through every stage as a user runs them: a tiny `roformer pretrain --arch
// gau-alpha`, fill-mask on it, `finetune` from its run dir, eval and predict on the
// fine-tuned model, and a fresh GAU-α fine-tuned directly (--arch on finetune).

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { GauAlpha, loadPretrained, readMetrics, readModelConfig } from '../lib/index.js';
import { ensureDemoCorpus } from '../lib/data/demo-corpus.js';
import { failure, roformer } from './cli-run.js';
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

// Bad flag and config values, as a user or a program gives them: each is refused
// before any work starts, by one validator per kind of value (lib/util/value-kinds.ts),
// with an error that names the flag (the CLI) or the key (the TypeScript API); the
// CLI and the API share their limits. Plus the output side: predict --out, and
// diagnostics on stderr so that stdout stays machine-readable.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { PRETRAIN_DEFAULTS } from '../lib/pretrain/config.js';
import { pretrain } from '../lib/pretrain/pretrain.js';
import { FINETUNE_DEFAULTS, MULTITASK_DEFAULTS } from '../lib/tasks/config.js';
import { finetune } from '../lib/tasks/finetune.js';
import { multitask, readTaskList } from '../lib/tasks/multitask.js';
import { checkValue, existingFile, integerAtLeast, outputFile, positiveInteger, probability } from '../lib/util/value-kinds.js';
import { failure, roformer } from './cli-run.js';
import { FEWCLUE_DIR } from './fewclue.js';

const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-flags-${name}-`));

const TINY = { num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64 };
const EPRSTMT = join(FEWCLUE_DIR, 'eprstmt');
const train = join(EPRSTMT, 'train_few_all.json');

describe('the value kinds', () => {
  it('say what they want and name the setting', () => {
    expect(() => checkValue(positiveInteger, 0, '--steps')).toThrow("--steps must be an integer >= 1, got 0");
    expect(() => checkValue(positiveInteger, 2.5, 'steps')).toThrow(/steps must be an integer >= 1, got 2.5/);
    expect(checkValue(positiveInteger, 3, 'steps')).toBe(3);
    expect(() => checkValue(integerAtLeast(4), 3, '--max-length')).toThrow(/--max-length must be an integer >= 4, got 3/);
    expect(() => checkValue(probability, 1, 'maskProbability')).toThrow(/maskProbability must be a number between 0 and 1 \(exclusive\), got 1/);
    expect(() => checkValue(existingFile, '/no/such/file', '--train')).toThrow(/--train must be an existing file \(not a directory\)/);
    expect(() => checkValue(existingFile, tmpdir(), '--train')).toThrow(/--train must be an existing file/);
    expect(() => checkValue(outputFile, tmpdir(), '--out')).toThrow(/--out must be a file path \(not a directory\)/);
    expect(checkValue(outputFile, join(tmpdir(), 'no-such-dir', 'p.jsonl'), '--out')).toMatch(/p\.jsonl$/);
  });
});

describe('bad flag values name the flag, before any work starts', () => {
  const base = () => ['finetune', '--task', 'eprstmt', '--train', train, '--out', join(tmp('ft'), 'run')];

  it.each([
    ['--vocab-size', '0', /--vocab-size must be an integer >= 5, got '0'/],
    ['--epochs', '-2', /--epochs must be a number > 0, got '-2'/],
    ['--max-steps', '-1', /--max-steps must be a non-negative integer, got '-1'/],
    ['--eval-every', '-3', /--eval-every must be a non-negative integer, got '-3'/],
    ['--batch-size', 'many', /--batch-size must be an integer >= 1, got 'many'/],
    ['--lr', '0', /--lr must be a number > 0, got '0'/],
    ['--max-length', '3', /--max-length must be an integer >= 4, got '3'/],
    ['--seed', '1.5', /--seed must be a non-negative integer, got '1.5'/],
    ['--nproc-per-node', '0', /--nproc-per-node must be an integer >= 1, got '0'/],
  ])('finetune %s %s', async (flag, value, message) => {
    const args = [...base(), flag, value];
    const { code, stderr } = await failure(...args);
    expect(code).toBe(1);
    expect(stderr).toMatch(message);
    expect(existsSync(args[6]!)).toBe(false); // nothing was started
  });

  it('eval, pretrain and multitask flags are refused the same way', async () => {
    expect((await failure('eval', '--model', 'x', '--data', 'y', '--batch-size', '0')).stderr).toMatch(/--batch-size must be an integer >= 1, got '0'/);
    expect((await failure('pretrain', '--demo', '--steps', '0')).stderr).toMatch(/--steps must be an integer >= 1, got '0'/);
    expect((await failure('multitask', '--tasks', 'x', '--out', 'y', '--accumulate', '0')).stderr).toMatch(/--accumulate must be an integer >= 1, got '0'/);
  });

  it('a missing input file names its flag', async () => {
    const out = join(tmp('missing'), 'run');
    const { stderr } = await failure('finetune', '--task', 'eprstmt', '--train', '/no/such/train.json', '--out', out);
    expect(stderr).toMatch(/--train must be an existing file \(not a directory\), got "\/no\/such\/train\.json"/);
    expect((await failure('multitask', '--tasks', '/no/such/tasks.json', '--out', out)).stderr).toMatch(/--tasks must be an existing file/);
  });

  it('--model-config: a value of the wrong type names the key and the file', async () => {
    const dir = tmp('model-config');
    const file = join(dir, 'model.json');
    writeFileSync(file, JSON.stringify({ ...TINY, vocab_size: 'big' }));
    const { stderr } = await failure('finetune', '--task', 'eprstmt', '--train', train, '--out', join(dir, 'run'), '--model-config', file);
    expect(stderr).toMatch(new RegExp(`--model-config ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: vocab_size must be an integer, got "big"`));
  });

  it('the launcher flags are declared: --help shows them with their defaults', async () => {
    const { stdout } = await roformer('pretrain', '--help');
    expect(stdout).toMatch(/--nproc-per-node <n>/);
    expect(stdout).toMatch(/--master-addr <host>[\s\S]*\(default 127\.0\.0\.1\)/);
    expect(stdout).toMatch(/--master-port <port>[\s\S]*\(default 29500\)/);
    expect(stdout).toMatch(/--lr <x>\s+peak learning rate \(default 0\.0005\)/);
    expect((await roformer('finetune', '--help')).stdout).toMatch(/--dist-timeout <s>/);
  });
});

describe('the TypeScript API checks its config at the stage entry, with the same limits', () => {
  it('finetune, multitask and pretrain name the key', async () => {
    const out = join(tmp('api'), 'run');
    await expect(finetune({ ...FINETUNE_DEFAULTS, task: 'eprstmt', train, out, maxSteps: -1 })).rejects.toThrow(/maxSteps must be a non-negative integer, got -1/);
    await expect(finetune({ ...FINETUNE_DEFAULTS, task: 'eprstmt', train, out, vocabSize: 0 })).rejects.toThrow(/vocabSize must be an integer >= 5, got 0/);
    await expect(finetune({ ...FINETUNE_DEFAULTS, task: 'eprstmt', train, out, modelConfig: { num_hidden_layers: 'two' as never } })).rejects.toThrow(
      /modelConfig: num_hidden_layers must be an integer, got "two"/,
    );
    await expect(multitask({ ...MULTITASK_DEFAULTS, tasks: '/no/such/tasks.json', out })).rejects.toThrow(/tasks must be an existing file/);
    await expect(multitask({ ...MULTITASK_DEFAULTS, tasks: train, out, evalEvery: -3 })).rejects.toThrow(/evalEvery must be a non-negative integer, got -3/);
    await expect(pretrain({ ...PRETRAIN_DEFAULTS, corpus: [train], out, maxLength: 3 })).rejects.toThrow(/maxLength must be an integer >= 4, got 3/);
    await expect(pretrain({ ...PRETRAIN_DEFAULTS, corpus: [train], out, maskProbability: 0 })).rejects.toThrow(/maskProbability must be a number between 0 and 1/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('multitask: the mlm entry says which JSONL field holds the text', () => {
  let dir: string;
  beforeAll(() => {
    dir = tmp('mlm-field');
    // FewCLUE files keep their text in "sentence", not "text".
    writeFileSync(join(dir, 'tasks.json'), JSON.stringify({
      tasks: [
        { name: 'eprstmt', files: { train } },
        { name: 'mlm', files: { corpus: [train] }, field: 'sentence', maxLength: 32, weight: 20 },
      ],
    }));
  });

  it('reads "field" from tasks.json and refuses a bad one', async () => {
    const entries = await readTaskList(join(dir, 'tasks.json'), { batchSize: 8 });
    expect(entries[1]).toMatchObject({ name: 'mlm', field: 'sentence' });
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ tasks: [{ name: 'mlm', files: { corpus: [train] }, field: 3 }] }));
    await expect(readTaskList(bad, { batchSize: 8 })).rejects.toThrow(/tasks\[0\]\.field must be the name of the JSONL field/);
  });

  it('trains with MLM on a FewCLUE file; --field gives the default for the mlm entry', async () => {
    const config = { ...MULTITASK_DEFAULTS, tasks: join(dir, 'tasks.json'), modelConfig: TINY, vocabSize: 300, steps: 2, accumulate: 2, batchSize: 8, evalEvery: 0, saveEvery: 0 };
    const tasks: string[] = [];
    const results = await multitask({ ...config, out: join(dir, 'run') }, { onEvent: (e) => void (e.type === 'step' && tasks.push(e.task!)) });
    expect(results.steps).toBe(2);
    expect(tasks).toContain('mlm'); // MLM steps were taken (its weight is 20 to 1)
    // Without "field" in tasks.json, the stage's field (--field) applies: "text" is missing in these records.
    writeFileSync(join(dir, 'plain.json'), JSON.stringify({ tasks: [{ name: 'eprstmt', files: { train } }, { name: 'mlm', files: { corpus: [train] }, maxLength: 32, weight: 20 }] }));
    await expect(multitask({ ...config, tasks: join(dir, 'plain.json'), out: join(dir, 'run2') })).rejects.toThrow(/field "text" missing|training documents/);
    const viaFlag = await multitask({ ...config, tasks: join(dir, 'plain.json'), field: 'sentence', out: join(dir, 'run3') });
    expect(viaFlag.steps).toBe(2);
    // MLM alone is a task list too.
    writeFileSync(join(dir, 'mlm-only.json'), JSON.stringify({ tasks: [{ name: 'mlm', files: { corpus: [train] }, field: 'sentence', maxLength: 32 }] }));
    const mlmOnly = await multitask({ ...config, tasks: join(dir, 'mlm-only.json'), out: join(dir, 'run4') });
    expect(mlmOnly).toMatchObject({ steps: 2, tasks: {} });
  }, 120_000);
});

describe('predict --out', () => {
  let model: string;
  let dev: string;
  beforeAll(async () => {
    const dir = tmp('predict');
    dev = join(dir, 'dev.json');
    writeFileSync(dev, readFileSync(join(EPRSTMT, 'dev_few_all.json'), 'utf8').split('\n').slice(0, 8).join('\n') + '\n');
    const out = join(dir, 'run');
    await roformer('finetune', '--task', 'eprstmt', '--train', train, '--out', out, '--model-config', JSON.stringify(TINY), '--vocab-size', '600', '--max-length', '48', '--batch-size', '16', '--max-steps', '2');
    model = join(out, 'model');
  }, 120_000);

  it('creates a missing directory; refuses an existing directory by name; stdout stays the predictions', async () => {
    const root = tmp('predict-out');
    const target = join(root, 'missing dir', 'sub', 'p.jsonl');
    const { stdout, stderr } = await roformer('predict', '--model', model, '--out', target, dev);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/wrote 8 predictions/);
    expect(readFileSync(target, 'utf8').trim().split('\n')).toHaveLength(8);
    mkdirSync(join(root, 'a-dir'));
    const refused = await failure('predict', '--model', model, '--out', join(root, 'a-dir'), dev);
    expect(refused.stderr).toMatch(/^roformer: --out must be a file path \(not a directory\), got '.*a-dir'/);
    expect(refused.stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace
    // To stdout: one JSON object per line and nothing else.
    const lines = (await roformer('predict', '--model', model, dev)).stdout.trim().split('\n');
    expect(lines.map((l) => JSON.parse(l))).toHaveLength(8);
  });
});

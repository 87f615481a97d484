// The FewCLUE recipe benchmark (bench/fewclue-recipe.ts) end to end on a tiny model and
// budget, two tasks, one seed: the shape of its results, every arm's accuracies, the
// chart, and resuming (a second invocation does no unit twice; a unit left half done
// continues from its checkpoint). Not its figures: those are the benchmark's to measure.

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { FEWCLUE_DIR } from './fewclue.js';

const run = promisify(execFile);
const RECIPE = 'dist/bench/fewclue-recipe.js';

interface Unit {
  arm: string;
  stage: string;
  task: string;
  seed: number;
  attempts: number;
  resumed: boolean;
  started: string;
  finished: string | null;
}

/** A FewCLUE folder of two tasks cut short (the first lines of each real file), so that evaluation is quick too. */
function smallFewclue(): string {
  const dir = mkdtempSync(join(tmpdir(), 'roformer-fewclue-small-'));
  const lines = { 'train_few_all.json': 64, 'dev_few_all.json': 32, 'test_public.json': 64, 'unlabeled.json': 400 };
  for (const task of ['bustm', 'eprstmt']) {
    mkdirSync(join(dir, task));
    for (const [file, n] of Object.entries(lines)) {
      const text = readFileSync(join(FEWCLUE_DIR, task, file), 'utf8').split('\n').slice(0, n);
      writeFileSync(join(dir, task, file), text.join('\n') + '\n');
    }
  }
  return dir;
}
const DATA = smallFewclue();

const TINY = [
  '--data', DATA,
  '--tasks', 'bustm,eprstmt',
  '--seeds', '1',
  '--model-config', '{"num_hidden_layers":1,"hidden_size":32,"num_attention_heads":2,"intermediate_size":64}',
  '--vocab-size', '600',
  '--max-length', '32',
  '--corpus', join(DATA, 'bustm', 'unlabeled.json'), join(DATA, 'eprstmt', 'unlabeled.json'),
  '--mlm-steps', '4',
  '--multitask-steps', '2',
  '--epochs', '1',
  '--max-steps', '3',
  '--batch-size', '16',
];

const recipe = (out: string, ...more: string[]) => run(process.execPath, [RECIPE, '--out', out, ...TINY, ...more], { maxBuffer: 1 << 24 });
const units = (out: string): Record<string, Unit> => (JSON.parse(readFileSync(join(out, 'state.json'), 'utf8')) as { units: Record<string, Unit> }).units;

describe('bench:recipe', () => {
  it('runs every arm, writes results.json and the chart, and a second invocation resumes without redoing a unit', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'roformer-recipe-')), 'run');
    const copy = join(out, '..', 'copy.json');
    const { stdout } = await recipe(out, '--json', copy);

    // 4 arms × 2 tasks fine-tuned, the MLM stage, two multi-task stages: 11 units, each once.
    const first = units(out);
    expect(Object.keys(first).sort()).toEqual(
      [
        'a/finetune/bustm/seed-1', 'a/finetune/eprstmt/seed-1',
        'b/pretrain/-/seed-1', 'b/finetune/bustm/seed-1', 'b/finetune/eprstmt/seed-1',
        'c/multitask/-/seed-1', 'c/finetune/bustm/seed-1', 'c/finetune/eprstmt/seed-1',
        'd/multitask/-/seed-1', 'd/finetune/bustm/seed-1', 'd/finetune/eprstmt/seed-1',
      ].sort(),
    );
    for (const unit of Object.values(first)) expect(unit).toMatchObject({ attempts: 1, resumed: false, finished: expect.any(String) });
    // the order: the MLM stage, (a) and (b) task by task; then the multi-task stages, (c) and (d)
    const order = Object.keys(first).sort((x, y) => Date.parse(first[x]!.started) - Date.parse(first[y]!.started));
    const before = (x: string, y: string) => expect(order.indexOf(x)).toBeLessThan(order.indexOf(y));
    before('b/pretrain/-/seed-1', 'a/finetune/bustm/seed-1');
    before('a/finetune/bustm/seed-1', 'b/finetune/bustm/seed-1');
    before('b/finetune/bustm/seed-1', 'a/finetune/eprstmt/seed-1');
    before('b/finetune/eprstmt/seed-1', 'c/multitask/-/seed-1');
    before('c/multitask/-/seed-1', 'c/finetune/bustm/seed-1');
    before('c/finetune/bustm/seed-1', 'd/multitask/-/seed-1');
    before('d/multitask/-/seed-1', 'd/finetune/bustm/seed-1');

    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(readFileSync(copy, 'utf8')).toBe(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(results).toMatchObject({ complete: true, units: { done: 11, total: 11 }, settings: { tasks: ['bustm', 'eprstmt'], seeds: 1 } });
    expect(Object.keys(results.arms)).toEqual(['a', 'b', 'c', 'd']);
    expect(results.tasks.map((t: { task: string }) => t.task)).toEqual(['bustm', 'eprstmt']);
    for (const t of results.tasks) {
      expect(t.majority).toBeGreaterThan(0); // the training set's most frequent label, on test
      expect(t.majority).toBeLessThan(1);
      for (const arm of ['a', 'b', 'c', 'd']) {
        const f = t.arms[arm];
        expect(Object.keys(f.seeds)).toEqual(['1']);
        expect(f.mean).toBeGreaterThanOrEqual(0);
        expect(f.mean).toBeLessThanOrEqual(1);
        expect(f.min).toBe(f.mean);
      }
    }
    expect(results.average.tasks).toEqual(['bustm', 'eprstmt']);
    for (const arm of ['a', 'b', 'c', 'd']) expect(results.average.arms[arm]).toBeCloseTo((results.tasks[0].arms[arm].mean + results.tasks[1].arms[arm].mean) / 2, 10);
    // the MLM stage's held-out figures and the multi-task stages are reported
    expect(results.stages.map((s: { arm: string; stage: string }) => `${s.arm}/${s.stage}`).sort()).toEqual(['b/pretrain', 'c/multitask', 'd/multitask']);
    expect(stdout).toMatch(/\| bustm \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/);
    expect(stdout).toMatch(/11 of 11 units/);

    const chart = readFileSync(join(out, 'chart.svg'), 'utf8');
    expect(chart).toMatch(/^<svg/);
    for (const label of ['bustm', 'eprstmt', 'average', 'majority class', '(c) MLM → multi-task (grad. norm.) → fine-tune']) expect(chart).toContain(label);

    // --status runs nothing and prints the table so far; --readme puts it between the markers, leaving the rest.
    const readme = join(out, '..', 'README.md');
    writeFileSync(readme, 'before\n<!-- recipe-results -->\nold table\n<!-- /recipe-results -->\nafter\n');
    const status = await recipe(out, '--status', '--readme', readme);
    expect(status.stdout).toMatch(/\| \*\*average\*\* \(2 tasks\) \|[\s\S]*11 of 11 units/);
    const table = status.stdout.slice(status.stdout.indexOf('| task |'), status.stdout.indexOf('\n\n11 of 11'));
    const written = readFileSync(readme, 'utf8');
    expect(written).toMatch(/^before\n<!-- recipe-results -->\n\*\*Results\*\* \(11 units, complete;/);
    expect(written).toContain(table);
    expect(written).not.toContain('old table');
    expect(written).toMatch(/Stages: pretrain \(b\): 4 steps in [\d.]+ min, held-out masked-token accuracy [\d.]+%; multitask \(c\): 2 steps/);
    expect(written).toMatch(/\n<!-- \/recipe-results -->\nafter\n$/);
    writeFileSync(readme, 'no markers\n');
    const refused = await recipe(out, '--status', '--readme', readme).catch((e: { code: number; stderr: string }) => e);
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringMatching(/README\.md: no <!-- recipe-results --> … <!-- \/recipe-results --> lines/) });

    // Again: every unit is done, none runs a second time.
    const again = await recipe(out);
    expect(units(out)).toEqual(first);
    expect(again.stdout).toMatch(/11 of 11 units/);

    // A unit left half done (started, its checkpoint written, not recorded as finished) resumes
    // from its checkpoint; the others stay as they were.
    const state = JSON.parse(readFileSync(join(out, 'state.json'), 'utf8'));
    Object.assign(state.units['c/finetune/bustm/seed-1'], { finished: null, result: null });
    writeFileSync(join(out, 'state.json'), JSON.stringify(state));
    await recipe(out);
    const third = units(out);
    expect(third['c/finetune/bustm/seed-1']).toMatchObject({ attempts: 2, resumed: true, finished: expect.any(String) });
    for (const [name, unit] of Object.entries(third)) if (name !== 'c/finetune/bustm/seed-1') expect(unit).toEqual(first[name]);

    // More seeds on some tasks resume the same run (they only add units): the new units run,
    // the finished ones stay, and the table gives the mean and range over the seeds.
    const { stdout: more } = await recipe(out, '--seeds', '2', '--seeded-tasks', 'bustm');
    const fourth = units(out);
    expect(Object.keys(fourth).filter((name) => !(name in third)).sort()).toEqual(['a', 'b', 'c', 'd'].map((arm) => `${arm}/finetune/bustm/seed-2`));
    for (const [name, unit] of Object.entries(third)) expect(fourth[name]).toEqual(unit);
    const widened = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(widened).toMatchObject({ complete: true, units: { done: 15, total: 15 }, settings: { seeds: 2, seededTasks: ['bustm'] } });
    const bustm = widened.tasks.find((t: { task: string }) => t.task === 'bustm');
    for (const arm of ['a', 'b', 'c', 'd']) {
      const f = bustm.arms[arm];
      expect(Object.keys(f.seeds).sort()).toEqual(['1', '2']);
      expect(f.mean).toBeCloseTo((f.seeds['1'] + f.seeds['2']) / 2, 10);
    }
    expect(more).toMatch(/15 of 15 units/);
  }, 180_000);

  it('refuses to resume a run with other settings, naming the setting, and bad flags name the flag', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'roformer-recipe-')), 'run');
    const state = { settings: { seeds: 2 }, units: {} };
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'state.json'), JSON.stringify(state));
    const refused = await recipe(out).catch((e: { code: number; stderr: string }) => e);
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringMatching(/state\.json holds a run with other settings \(\w+: .* there, .* now\)/) });
    const badTask = await recipe(out, '--tasks', 'bustm,nope').catch((e: { code: number; stderr: string }) => e);
    expect(badTask).toMatchObject({ code: 1, stderr: expect.stringMatching(/--tasks <names>.*unknown 'nope'/) });
    const badField = await recipe(out, '--field', 'sentence,,content').catch((e: { code: number; stderr: string }) => e);
    expect(badField).toMatchObject({ code: 1, stderr: expect.stringMatching(/--field <names>' must be one or more JSON field names/) });
    expect(existsSync(join(out, 'runs'))).toBe(false); // nothing was started
  });
});

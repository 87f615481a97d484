// The task registry (names, heads, labels, metrics), the generic JSON Lines
// spec for a user's own data, and the chinese-poetry demo tasks.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { SPECIAL_TOKENS, Tokenizer } from '../lib/data/tokenizer.js';
import { ensureDemoTasks, writeDemoTasks } from '../lib/tasks/demo-tasks.js';
import { loadTaskFile, resolveTask } from '../lib/tasks/load.js';
import { CLUENER_LABELS, getTask, jsonlTask, TASK_NAMES, taskFromJSON, TaskError, toTaskSpec } from '../lib/tasks/registry.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'tasks-registry-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('built-in tasks', () => {
  it('knows every CLUE and FewCLUE task, its head and headline metric', () => {
    const table = Object.fromEntries(TASK_NAMES.map((n) => [n, [getTask(n).head, getTask(n).format, getTask(n).metrics[0]]]));
    expect(table).toEqual({
      tnews: ['classification', 'jsonl', 'accuracy'],
      iflytek: ['classification', 'jsonl', 'accuracy'],
      csldcp: ['classification', 'jsonl', 'accuracy'],
      eprstmt: ['classification', 'jsonl', 'accuracy'],
      afqmc: ['classification', 'jsonl', 'accuracy'],
      bustm: ['classification', 'jsonl', 'accuracy'],
      cmnli: ['classification', 'jsonl', 'accuracy'],
      ocnli: ['classification', 'jsonl', 'accuracy'],
      cluewsc: ['classification', 'cluewsc', 'accuracy'],
      csl: ['classification', 'csl', 'accuracy'],
      chid: ['multiple-choice', 'chid', 'accuracy'],
      c3: ['multiple-choice', 'c3', 'accuracy'],
      cmrc2018: ['span', 'cmrc2018', 'em'],
      cluener: ['span', 'cluener', 'f1'],
    });
    expect(getTask('cmrc2018').metrics).toEqual(['em', 'f1']);
    expect(getTask('cmrc2018').labels).toEqual(['answer']);
    expect(getTask('cluener').labels).toEqual(CLUENER_LABELS);
    expect(CLUENER_LABELS).toHaveLength(10);
    expect(getTask('eprstmt').labels).toEqual(['Negative', 'Positive']);
    expect(getTask('ocnli').labels).toEqual(['entailment', 'neutral', 'contradiction']);
    expect(getTask('iflytek').labels).toBeUndefined();
    expect(getTask('tnews').labels).toHaveLength(15);
    expect(getTask('tnews').labels).not.toContain('105');
    expect(getTask('tnews').labels).not.toContain('111');
  });

  it('accepts aliases and any case; an unknown name lists the known ones', () => {
    expect(getTask('wsc').name).toBe('cluewsc');
    expect(getTask('TNEWS').name).toBe('tnews');
    expect(() => getTask('mnli')).toThrow(/unknown task "mnli": the built-in tasks are tnews, iflytek/);
  });

  it('hands out copies: changing one does not change the registry', () => {
    const t = getTask('eprstmt');
    t.labels!.push('Neutral');
    expect(getTask('eprstmt').labels).toEqual(['Negative', 'Positive']);
  });

  it('a task survives JSON (a model dir stores it) and bad task JSON is named', () => {
    const t = getTask('tnews');
    expect(taskFromJSON(JSON.parse(JSON.stringify(t)), 'task.json')).toEqual(t);
    expect(() => taskFromJSON({ ...t, head: 'regression' }, 'runs/x/task.json')).toThrow(/runs\/x\/task\.json: task\.head must be one of/);
    expect(() => taskFromJSON({ ...t, labels: ['a', 'a'] }, 'task.json')).toThrow(/label "a" is listed twice/);
    expect(() => taskFromJSON({ ...t, labelDescriptions: ['x'] }, 'task.json')).toThrow(/labelDescriptions must match/);
    expect(() => taskFromJSON([], 'task.json')).toThrow(TaskError);
  });
});

describe('generic JSON Lines spec', () => {
  const tok = Tokenizer.fromTokens([...SPECIAL_TOKENS, ...'好坏今天很不错差']);

  it('classification: labels derived from the training file when not given', async () => {
    const file = path.join(dir, 'reviews.jsonl');
    writeFileSync(file, ['{"review": "今天很好", "stars": 5}', '{"review": "很差", "stars": 1}', '{"review": "不错", "stars": 4}'].join('\n'));
    const task = await resolveTask({ kind: 'classification', name: 'reviews', textField: 'review', labelField: 'stars' }, file);
    expect(task).toMatchObject({ name: 'reviews', head: 'classification', format: 'jsonl', textFields: ['review'], labels: ['1', '4', '5'] });
    const r = await loadTaskFile(task, file, tok);
    expect(r.examples.map((e) => (e.example as { label: number }).label)).toEqual([2, 0, 1]);
  });

  it('pair: two text fields, labels as given', async () => {
    const file = path.join(dir, 'pairs.jsonl');
    writeFileSync(file, '{"q": "今天", "p": "很好", "y": "yes"}\n{"q": "好", "p": "坏", "y": "no"}\n');
    const task = await resolveTask({ kind: 'pair', textFields: ['q', 'p'], labelField: 'y', labels: ['no', 'yes'] });
    const r = await loadTaskFile(task, file, tok);
    const e = r.examples[0].example as { ids: number[]; typeIds: number[]; label: number };
    expect(e.label).toBe(1);
    expect(e.typeIds).toEqual([0, 0, 0, 0, 1, 1, 1]);
    expect(() => jsonlTask({ kind: 'pair', textField: 'q' })).toThrow(/a pair task needs two textFields/);
  });

  it('multilabel: an array of labels per record, sorted and deduplicated', async () => {
    const file = path.join(dir, 'tags.jsonl');
    writeFileSync(file, '{"text": "今天很好", "label": ["b", "a", "b"]}\n{"text": "差", "label": []}\n{"text": "好", "label": "c"}\n');
    const task = await resolveTask({ kind: 'multilabel' }, file);
    expect(task.labels).toEqual(['a', 'b', 'c']);
    expect(task.head).toBe('multilabel');
    expect(task.metrics[0]).toBe('f1');
    const r = await loadTaskFile(task, file, tok);
    expect(r.examples.map((e) => (e.example as { labels: number[] }).labels)).toEqual([[0, 1], [], [2]]);
  });

  it('names the field when a record lacks it, and rejects a bad spec', async () => {
    const file = path.join(dir, 'missing.jsonl');
    writeFileSync(file, '{"text": "好", "label": "a"}\n{"body": "坏", "label": "b"}\n');
    const r = await loadTaskFile(await resolveTask({ kind: 'classification', labels: ['a', 'b'] }), file, tok);
    expect(r.problems).toEqual([{ file, line: 2, message: 'field "text" must be a string, got missing' }]);
    expect(() => toTaskSpec({ kind: 'regression' } as never)).toThrow(/kind must be 'classification', 'multilabel' or 'pair'/);
  });
});

describe('demo tasks from chinese-poetry', () => {
  it('writes seeded, stable train/dev/test splits with fixed label lists', async () => {
    const a = await writeDemoTasks(path.join(dir, 'a'), { perClass: 40 });
    expect(a.map((t) => t.task.name)).toEqual(['ci-tune', 'shi-dynasty', 'tang-poet']);
    for (const t of a) {
      expect(t.task.head).toBe('classification');
      const n = t.task.labels.length;
      expect(n === 2 || n === 10).toBe(true);
      const total = t.counts.train + t.counts.dev + t.counts.test;
      expect(total).toBeLessThanOrEqual(n * 200);
      expect(t.counts.dev).toBeGreaterThan(0);
      // Every record is in the generic format and carries one of the task's labels; no text in two splits.
      const seen = new Set<string>();
      for (const part of [t.train, t.dev, t.test]) {
        for (const line of readFileSync(part, 'utf8').trim().split('\n')) {
          const r = JSON.parse(line);
          expect(t.task.labels).toContain(r.label);
          expect(typeof r.text).toBe('string');
          expect(seen.has(r.text)).toBe(false);
          seen.add(r.text);
        }
      }
    }
    expect(a[0].task.labels).toContain('浣溪沙');
    expect(a[1].task.labels).toEqual(['song', 'tang']);
    expect(a[2].task.labels).toContain('李白');
    expect(a[2].task.labels).not.toContain('無名氏');

    // Same seed → the same bytes; ensureDemoTasks reuses them.
    const b = await writeDemoTasks(path.join(dir, 'b'), { perClass: 40 });
    for (let i = 0; i < a.length; i++) expect(readFileSync(b[i].train, 'utf8')).toBe(readFileSync(a[i].train, 'utf8'));
    const again = await ensureDemoTasks(path.join(dir, 'a'), { perClass: 40 });
    expect(again).toEqual(a);
    // Another seed → another split.
    const c = await writeDemoTasks(path.join(dir, 'c'), { perClass: 40, seed: 1 });
    expect(readFileSync(c[0].train, 'utf8')).not.toBe(readFileSync(a[0].train, 'utf8'));

    // The files load through the generic JSONL path.
    const tok = Tokenizer.fromTokens([...SPECIAL_TOKENS]);
    const loaded = await loadTaskFile(a[0].task, a[0].dev, tok);
    expect(loaded.examples).toHaveLength(a[0].counts.dev);
    expect(loaded.problems).toEqual([]);
  }, 60_000);
});

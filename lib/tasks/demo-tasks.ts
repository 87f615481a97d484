// Labelled demo tasks built from the npm package chinese-poetry, so that
// `roformer finetune --demo` runs without downloading anything:
//   ci-tune      the tune (词牌, `rhythmic`) of a Song ci, among the 10 most frequent tunes;
//   shi-dynasty  whether a shi poem is Tang or Song;
//   tang-poet    the author of a Tang shi, among the 10 most prolific named poets.
// Each is written as train/dev/test JSON Lines ({id, text, label}) in the generic
// JSONL format, split per class 80/10/10 by a seeded shuffle, so the files are the
// same on every machine for the same seed and package version.

import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { poetryRoot } from '../data/demo-corpus.js';
import { Random } from '../data/masking.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { taskFromJSON, type Task } from './registry.js';

export interface DemoTask {
  task: Task;
  train: string;
  dev: string;
  test: string;
  counts: { train: number; dev: number; test: number };
}

export interface DemoTaskOptions {
  /** Seed of the sampling and the split (default 0). */
  seed?: number;
  /** Most records per class, over all three splits (default 250). */
  perClass?: number;
}

export const DEMO_TASK_NAMES = ['ci-tune', 'shi-dynasty', 'tang-poet'] as const;

const MANIFEST = 'tasks.json';
const MANIFEST_VERSION = 1;

interface Poem {
  author?: unknown;
  paragraphs?: unknown;
  rhythmic?: unknown;
}

const poetryData = () => poetryRoot('the demo tasks', 'fine-tune on your own data with --task/--train/--dev');

/** Files `prefix.N.json` of a folder in numeric order (the package's own order). */
async function numbered(dir: string, prefix: string): Promise<string[]> {
  const pattern = new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.(\\d+)\\.json$`);
  return (await readdir(dir))
    .map((f) => [f, pattern.exec(f)] as const)
    .filter(([, m]) => m)
    .sort(([, a], [, b]) => Number(a![1]) - Number(b![1]))
    .map(([f]) => join(dir, f));
}

async function readPoems(files: string[]): Promise<Poem[]> {
  const out: Poem[] = [];
  for (const file of files) out.push(...(JSON.parse(await readFile(file, 'utf8')) as Poem[]));
  return out;
}

function textOf(poem: Poem): string {
  return Array.isArray(poem.paragraphs) ? poem.paragraphs.filter((p): p is string => typeof p === 'string').join('').trim() : '';
}

/** (text, label) pairs with a non-empty text, each text once (reprinted poems would leak across splits). */
function labelled(poems: Poem[], labelOf: (p: Poem) => unknown): Array<[string, string]> {
  const seen = new Set<string>();
  const out: Array<[string, string]> = [];
  for (const poem of poems) {
    const label = labelOf(poem);
    const text = textOf(poem);
    if (typeof label !== 'string' || !label || !text || seen.has(text)) continue;
    seen.add(text);
    out.push([text, label]);
  }
  return out;
}

/** The `n` most frequent labels (ties by label), skipping `exclude`. */
function mostFrequent(pairs: Array<[string, string]>, n: number, exclude: readonly string[] = []): string[] {
  const counts = new Map<string, number>();
  for (const [, l] of pairs) if (!exclude.includes(l)) counts.set(l, (counts.get(l) ?? 0) + 1);
  return [...counts]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, n)
    .map(([l]) => l);
}

function shuffle<T>(items: T[], random: Random): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

interface Split {
  train: Array<[string, string]>;
  dev: Array<[string, string]>;
  test: Array<[string, string]>;
}

/** Per class: a seeded sample of at most perClass texts, 80/10/10; each split then shuffled. */
function split(pairs: Array<[string, string]>, labels: string[], perClass: number, random: Random): Split {
  const out: Split = { train: [], dev: [], test: [] };
  for (const label of labels) {
    const members = shuffle(pairs.filter(([, l]) => l === label), random).slice(0, perClass);
    const nDev = Math.max(1, Math.round(members.length * 0.1));
    out.dev.push(...members.slice(0, nDev));
    out.test.push(...members.slice(nDev, 2 * nDev));
    out.train.push(...members.slice(2 * nDev));
  }
  shuffle(out.train, random);
  shuffle(out.dev, random);
  shuffle(out.test, random);
  return out;
}

async function writeSplit(dir: string, name: string, data: Split, labels: string[], description: string): Promise<DemoTask> {
  const paths = { train: join(dir, `${name}.train.jsonl`), dev: join(dir, `${name}.dev.jsonl`), test: join(dir, `${name}.test.jsonl`) };
  for (const part of ['train', 'dev', 'test'] as const) {
    const lines = data[part].map(([text, label], i) => JSON.stringify({ id: i, text, label }));
    await writeFileAtomic(paths[part], [lines.join('\n') + '\n']);
  }
  const task = taskFromJSON(
    { name, format: 'jsonl', head: 'classification', textFields: ['text'], labelField: 'label', labels, metrics: ['accuracy'], maxLength: 128, description },
    name,
  ) as Task;
  return { task, ...paths, counts: { train: data.train.length, dev: data.dev.length, test: data.test.length } };
}

/** Writes the demo tasks into `dir` (train/dev/test JSONL per task and a tasks.json manifest) and returns them. */
export async function writeDemoTasks(dir: string, options: DemoTaskOptions = {}): Promise<DemoTask[]> {
  const seed = options.seed ?? 0;
  const perClass = options.perClass ?? 250;
  if (!Number.isInteger(perClass) || perClass < 10) throw new RangeError(`perClass must be an integer ≥ 10, got ${perClass}`);
  const root = poetryData();
  await mkdir(dir, { recursive: true });
  const random = new Random(seed);
  const tasks: DemoTask[] = [];

  // Song ci by tune: the text never names its tune, so this is learnt from metre and length.
  const ci = labelled(await readPoems(await numbered(join(root, 'songci'), 'ci.song')), (p) => p.rhythmic);
  const tunes = mostFrequent(ci, 10).sort();
  tasks.push(await writeSplit(dir, 'ci-tune', split(ci, tunes, perClass, random), tunes, 'the tune (词牌) of a Song ci, 10 most frequent tunes'));

  // Tang shi: all of them; Song shi: ten files spread over the collection (it is ordered by poet).
  const tangPoems = await readPoems(await numbered(join(root, 'quantangshi'), 'poet.tang'));
  const songFiles = await numbered(join(root, 'quantangshi'), 'poet.song');
  const songPoems = await readPoems(Array.from({ length: 10 }, (_, k) => songFiles[Math.floor((k * songFiles.length) / 10)]));
  const dynasty = [...labelled(tangPoems, () => 'tang'), ...labelled(songPoems, () => 'song')];
  const perDynasty = Math.min(perClass * 5, 1250);
  tasks.push(await writeSplit(dir, 'shi-dynasty', split(dynasty, ['song', 'tang'], perDynasty, random), ['song', 'tang'], 'Tang or Song shi (traditional script)'));

  // Tang poets, the anonymous and unknown left out.
  const tang = labelled(tangPoems, (p) => p.author);
  const poets = mostFrequent(tang, 10, ['不詳', '無名氏', '佚名']).sort();
  tasks.push(await writeSplit(dir, 'tang-poet', split(tang, poets, perClass, random), poets, 'the author of a Tang shi, 10 most prolific named poets'));

  const manifest = {
    version: MANIFEST_VERSION,
    seed,
    perClass,
    tasks: tasks.map((t) => ({ task: t.task, train: relative(dir, t.train), dev: relative(dir, t.dev), test: relative(dir, t.test), counts: t.counts })),
  };
  await writeFileAtomic(join(dir, MANIFEST), [JSON.stringify(manifest, null, 2) + '\n']);
  return tasks;
}

function relative(dir: string, path: string): string {
  return path.slice(dir.length + 1);
}

/**
 * The demo tasks in `dir`, written first if `dir` has none (or they were
 * written with other options or by another version).
 */
export async function ensureDemoTasks(dir: string, options: DemoTaskOptions = {}): Promise<DemoTask[]> {
  const path = join(dir, MANIFEST);
  if (existsSync(path)) {
    try {
      const m = JSON.parse(await readFile(path, 'utf8'));
      const sameOptions = m.version === MANIFEST_VERSION && m.seed === (options.seed ?? 0) && m.perClass === (options.perClass ?? 250);
      const tasks: DemoTask[] = (m.tasks as Array<{ task: unknown; train: string; dev: string; test: string; counts: DemoTask['counts'] }>).map((t) => ({
        task: taskFromJSON(t.task, path) as Task,
        train: join(dir, t.train),
        dev: join(dir, t.dev),
        test: join(dir, t.test),
        counts: t.counts,
      }));
      if (sameOptions && tasks.every((t) => existsSync(t.train) && existsSync(t.dev) && existsSync(t.test))) return tasks;
    } catch {
      // an unreadable manifest is rewritten below
    }
  }
  return writeDemoTasks(dir, options);
}

/** The demo tasks' specs (labels included), writing the data into `dir` if needed. */
export async function demoTaskSpecs(dir: string, options: DemoTaskOptions = {}): Promise<Task[]> {
  return (await ensureDemoTasks(dir, options)).map((t) => t.task);
}

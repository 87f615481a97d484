// The built-in demo corpus: the lines of Song ci (宋词) and Yuan qu (元曲), both in
// simplified script, from the npm package chinese-poetry, written once as a plain-text
// corpus (one line of verse per line). The package is a dev/optional dependency:
// library users don't download it.

import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { writeFileAtomic } from '../util/atomic-file.js';

interface Poem {
  paragraphs?: unknown;
}

/**
 * Where the chinese-poetry package keeps its data; `neededFor` and `instead` explain
 * a missing package (it is a dev dependency, absent from a production install).
 */
export function poetryRoot(neededFor = 'the built-in demo corpus', instead = 'pass your own --corpus'): string {
  try {
    const require = createRequire(import.meta.url);
    return join(dirname(require.resolve('chinese-poetry/package.json')), 'dist');
  } catch {
    throw new Error(
      `${neededFor} needs the npm package chinese-poetry (a dev dependency of roformer-v2): ` +
        `run \`npm install chinese-poetry\`, or ${instead}`,
    );
  }
}

/** The file the demo corpus is written to, inside the run's corpus folder. */
export const DEMO_CORPUS_FILE = 'poetry-lines.txt';

/** A line worth learning from: ideographs and Chinese punctuation only (no stage directions, quotes or notes). */
const CLEAN_LINE = /^[\p{Script=Han}，、；：。！？]+$/u;
const LINE_CHARS = { min: 6, max: 30 };

/**
 * The lines of a poem: its text cut after each 。！？, kept when clean and 6–30
 * characters long. Short lines make short sequences, so a CPU trains on many of
 * them in the demo's minutes.
 */
export function poemLines(paragraphs: unknown): string[] {
  if (!Array.isArray(paragraphs)) return [];
  const text = paragraphs.filter((p): p is string => typeof p === 'string').join('');
  const lines = text.match(/[^。！？]+[。！？]/g) ?? [];
  return lines.map((l) => l.trim()).filter((l) => CLEAN_LINE.test(l) && Array.from(l).length >= LINE_CHARS.min && Array.from(l).length <= LINE_CHARS.max);
}

/**
 * Writes `dir/poetry-lines.txt` (if not there yet) and returns the corpus paths: the
 * lines of every Song ci and Yuan qu (both in simplified script), one a line, each
 * line once (the first time it occurs), so that a line held out for evaluation is
 * never also a training line.
 */
export async function ensureDemoCorpus(dir: string): Promise<string[]> {
  const path = join(dir, DEMO_CORPUS_FILE);
  if (existsSync(path)) return [path];
  const root = poetryRoot();
  const songci = join(root, 'songci');
  const ciFiles = (await readdir(songci)).filter((f) => /^ci\.song\.\d+\.json$/.test(f)).sort((a, b) => parseInt(a.slice(8)) - parseInt(b.slice(8)));
  const files = [...ciFiles.map((f) => join(songci, f)), join(root, 'yuanqu', 'yuanqu.json')];
  const seen = new Set<string>();
  for (const file of files) {
    const poems = JSON.parse(await readFile(file, 'utf8')) as Poem[];
    for (const poem of poems) for (const line of poemLines(poem.paragraphs)) seen.add(line);
  }
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(path, [[...seen].join('\n') + '\n']);
  return [path];
}

// The built-in demo corpus: Song ci (宋词, simplified script) from the npm package
// chinese-poetry, written once as a plain-text corpus (one ci per line). The package
// is a dev/optional dependency: library users don't download it.

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

/** Writes `dir/songci.txt` (if not there yet) and returns the corpus paths. */
export async function ensureDemoCorpus(dir: string): Promise<string[]> {
  const path = join(dir, 'songci.txt');
  if (existsSync(path)) return [path];
  const songci = join(poetryRoot(), 'songci');
  const files = (await readdir(songci)).filter((f) => /^ci\.song\.\d+\.json$/.test(f)).sort((a, b) => parseInt(a.slice(8)) - parseInt(b.slice(8)));
  const lines: string[] = [];
  for (const file of files) {
    const poems = JSON.parse(await readFile(join(songci, file), 'utf8')) as Poem[];
    for (const poem of poems) {
      if (Array.isArray(poem.paragraphs)) {
        const text = poem.paragraphs.filter((p): p is string => typeof p === 'string').join('').trim();
        if (text) lines.push(text);
      }
    }
  }
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(path, [lines.join('\n') + '\n']);
  return [path];
}

// Tokenizer throughput on Chinese text (Song ci from the chinese-poetry package).
//
//   npx tsc -p tsconfig.json && node dist/bench/tokenizer.bench.js [MB]
//
// Builds a vocabulary from ~5 MB (UTF-8) of poems, then times encode() over all
// of them, one poem per call (default maxLength 512), single-threaded. Also
// times encodeText() on mixed Chinese/English text, which exercises WordPiece.

import { promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { buildVocab, Tokenizer } from '../lib/data/tokenizer.js';

interface Ci {
  paragraphs: string[];
}

async function loadPoems(targetBytes: number): Promise<string[]> {
  const require = createRequire(import.meta.url);
  const dir = path.join(path.dirname(require.resolve('chinese-poetry/package.json')), 'dist', 'songci');
  const files = (await fs.readdir(dir))
    .filter((f) => /^ci\.song\.\d+\.json$/.test(f))
    .sort((a, b) => Number(a.split('.')[2]) - Number(b.split('.')[2]));
  const poems: string[] = [];
  let bytes = 0;
  for (const file of files) {
    const data = JSON.parse(await fs.readFile(path.join(dir, file), 'utf8')) as Ci[];
    for (const ci of data) {
      const text = ci.paragraphs.join('');
      poems.push(text);
      bytes += Buffer.byteLength(text);
    }
    if (bytes >= targetBytes) break;
  }
  // Not enough data: repeat what there is.
  for (let i = 0, n = poems.length; bytes < targetBytes && n > 0; i = (i + 1) % n) {
    poems.push(poems[i]);
    bytes += Buffer.byteLength(poems[i]);
  }
  return poems;
}

function time<T>(fn: () => T): [T, number] {
  const t0 = process.hrtime.bigint();
  const result = fn();
  return [result, Number(process.hrtime.bigint() - t0) / 1e9];
}

async function main(): Promise<void> {
  const megabytes = Number(process.argv[2] ?? 5);
  const poems = await loadPoems(megabytes * 1e6);
  const bytes = poems.reduce((n, p) => n + Buffer.byteLength(p), 0);
  const chars = poems.reduce((n, p) => n + p.length, 0);
  console.log(`corpus: ${poems.length} poems, ${(bytes / 1e6).toFixed(2)} MB UTF-8, ${chars} UTF-16 units`);

  const t0 = process.hrtime.bigint();
  const vocab = await buildVocab(poems, { size: 21128 });
  const buildSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const tok = Tokenizer.fromTokens(vocab, 'bench');
  console.log(`buildVocab: ${vocab.length} tokens in ${buildSeconds.toFixed(2)} s`);

  // encode() per poem: warm up, then best of several passes.
  const encodeAll = (): number => {
    let tokens = 0;
    for (const p of poems) tokens += tok.encode(p).length;
    return tokens;
  };
  encodeAll();
  let best = Infinity;
  let tokens = 0;
  for (let pass = 0; pass < 5; pass++) {
    const [n, s] = time(encodeAll);
    tokens = n;
    best = Math.min(best, s);
  }
  console.log(
    `encode(): ${tokens} tokens in ${(best * 1e3).toFixed(1)} ms → ` +
      `${(tokens / best / 1e6).toFixed(2)}M tokens/s, ${(bytes / best / 1e6).toFixed(1)} MB/s (best of 5)`,
  );

  // Mixed text: Chinese with English words, digits and upper case (WordPiece + normalisation paths).
  const english = 'RoFormerV2 uses rotary position embeddings and trains 1.3x faster than RoBERTa at length 128.';
  const mixed = poems.slice(0, 20000).map((p, i) => (i % 2 === 0 ? p + english : english.toLowerCase() + p));
  const mixedBytes = mixed.reduce((n, p) => n + Buffer.byteLength(p), 0);
  const mixedTok = Tokenizer.fromTokens(
    await buildVocab(mixed, { size: 21128 }),
    'bench-mixed',
  );
  const out: number[] = [];
  const encodeMixed = (): number => {
    let n = 0;
    for (const p of mixed) {
      out.length = 0;
      n += mixedTok.encodeText(p, out).length;
    }
    return n;
  };
  encodeMixed();
  best = Infinity;
  for (let pass = 0; pass < 5; pass++) {
    const [n, s] = time(encodeMixed);
    tokens = n;
    best = Math.min(best, s);
  }
  console.log(
    `encodeText() mixed zh/en: ${tokens} tokens in ${(best * 1e3).toFixed(1)} ms → ` +
      `${(tokens / best / 1e6).toFixed(2)}M tokens/s, ${(mixedBytes / best / 1e6).toFixed(1)} MB/s (best of 5)`,
  );

  // tokenize() returns strings: slower, for comparison.
  const [n, s] = time(() => {
    let k = 0;
    for (const p of poems) k += tok.tokenize(p).length;
    return k;
  });
  console.log(`tokenize(): ${(n / s / 1e6).toFixed(2)}M tokens/s (one pass)`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

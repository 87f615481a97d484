// Data-pipeline throughput: read → tokenize → mask → batch (tensors included),
// on one core, with no training. Target: ≥ 1M tokens/s, enough to feed a GPU
// training a base model. With --big, also streams a corpus file larger than 1 GB
// through the corpus reader and the pipeline and reports the peak resident memory.
//
//   npm run build:ts && node dist/bench/pipeline.bench.js [--big] [--masking whole-word]

import { createWriteStream, existsSync, statSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';

import { Corpus } from '../lib/data/corpus.js';
import { ensureDemoCorpus } from '../lib/data/demo-corpus.js';
import { jiebaSegmenter, MlmPipeline } from '../lib/data/pipeline.js';
import { buildVocab, Tokenizer } from '../lib/data/tokenizer.js';

const args = process.argv.slice(2);
const big = args.includes('--big');
const masking = args.includes('whole-word') ? 'whole-word' : 'token';
const dir = join(tmpdir(), 'roformer-pipeline-bench');
await mkdir(dir, { recursive: true });
const [poems] = await ensureDemoCorpus(dir);
const text = await readFile(poems!, 'utf8');

// A 64 MB corpus: the Song ci repeated (documents are a line each).
const corpusPath = join(dir, 'corpus-64mb.txt');
async function writeRepeated(path: string, bytes: number) {
  if (existsSync(path) && statSync(path).size >= bytes) return;
  const out = createWriteStream(path);
  let written = 0;
  while (written < bytes) {
    if (!out.write(text)) await once(out, 'drain');
    written += Buffer.byteLength(text);
  }
  out.end();
  await once(out, 'finish');
}
await writeRepeated(corpusPath, 64 << 20);

const tokenizer = Tokenizer.fromTokens(await buildVocab(text.split('\n'), { size: 8000 }));
const segmenter = masking === 'whole-word' ? await jiebaSegmenter() : undefined;

async function run(path: string, maxTokens: number) {
  const corpus = await Corpus.open({ paths: [path], evalFraction: 0 });
  const pipeline = new MlmPipeline(corpus, tokenizer, { maxLength: 128, batchSize: 64, masking: { scheme: masking } }, segmenter);
  let tokens = 0;
  let peakRss = 0;
  const start = performance.now();
  for await (const batch of pipeline.batches()) {
    tokens += batch.tokens;
    batch.dispose();
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    if (tokens >= maxTokens) break;
  }
  const seconds = (performance.now() - start) / 1000;
  return { tokens, seconds, tokensPerSecond: tokens / seconds, peakRssMb: peakRss / 2 ** 20 };
}

await run(corpusPath, 2e6); // warm-up (JIT, file cache)
const result = await run(corpusPath, 20e6);
console.log(
  `pipeline (${masking} masking, batch 64 × ≤128): ${(result.tokensPerSecond / 1e6).toFixed(2)}M tokens/s ` +
    `(${(result.tokens / 1e6).toFixed(1)}M tokens in ${result.seconds.toFixed(1)} s), peak RSS ${result.peakRssMb.toFixed(0)} MB`,
);

if (big) {
  const bigPath = join(dir, 'corpus-1100mb.txt');
  await writeRepeated(bigPath, 1100 << 20);
  const size = statSync(bigPath).size;
  const corpus = await Corpus.open({ paths: [bigPath], evalFraction: 0 });
  let peak = 0;
  let bytes = 0;
  let documents = 0;
  const start = performance.now();
  for await (const doc of corpus.train()) {
    if (doc.position.epoch > 0) break;
    bytes += Buffer.byteLength(doc.text) + 1;
    if (++documents % 10000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
  }
  const seconds = (performance.now() - start) / 1000;
  console.log(
    `corpus reader over a ${(size / 2 ** 30).toFixed(2)} GB file: ${(bytes / 2 ** 20 / seconds).toFixed(0)} MB/s, ` +
      `peak RSS ${(peak / 2 ** 20).toFixed(0)} MB`,
  );
  const through = await run(bigPath, 60e6);
  console.log(`pipeline over the same file: ${(through.tokensPerSecond / 1e6).toFixed(2)}M tokens/s, peak RSS ${through.peakRssMb.toFixed(0)} MB`);
  if (args.includes('--clean')) await rm(bigPath);
}

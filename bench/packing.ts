#!/usr/bin/env node
// Packed sequences against length-grouped batches on a corpus of short lines: real
// (non-padding) tokens trained per second, the data pipeline included, on the Tang
// shi of the chinese-poetry package (one poem per line; the median poem is ~40
// characters, a third of a 128-token row).
//
//   npm run bench:packing -- --steps 20 --rounds 3 --json bench/results/packing-cpu.json
//
// Each round trains the demo-sized model (4 layers, 256 wide) from the same seed once
// grouped by length and once packed, alternating, so both see the same machine load;
// the figure is the median of the rounds' ratios.

import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

import { Command } from 'commander';

import { Corpus } from '../lib/data/corpus.js';
import { poetryRoot } from '../lib/data/demo-corpus.js';
import { MlmPipeline } from '../lib/data/pipeline.js';
import type { RoFormerV2Config } from '../lib/model/config.js';
import { RoFormerV2 } from '../lib/model/model.js';
import { DEMO_OVERRIDES } from '../lib/pretrain/config.js';
import { buildCorpusVocab } from '../lib/pretrain/pretrain.js';
import { Trainer } from '../lib/training/trainer.js';
import { writeFileAtomic } from '../lib/util/atomic-file.js';
import { positiveInt } from './flags.js';

interface Options {
  steps: number;
  warmup: number;
  rounds: number;
  batch: number;
  maxLength: number;
  json?: string;
}

/** The Tang shi (全唐詩), one poem per line, written once under `dir`. */
async function tangCorpus(dir: string): Promise<string> {
  const path = join(dir, 'tang.txt');
  if (existsSync(path)) return path;
  const root = join(poetryRoot('the packing benchmark', 'run it where the dev dependencies are installed'), 'quantangshi');
  const files = (await readdir(root)).filter((f) => /^poet\.tang\.\d+\.json$/.test(f)).sort((a, b) => parseInt(a.slice(10)) - parseInt(b.slice(10)));
  const lines: string[] = [];
  for (const file of files) {
    for (const poem of JSON.parse(await readFile(join(root, file), 'utf8')) as Array<{ paragraphs?: unknown }>) {
      if (!Array.isArray(poem.paragraphs)) continue;
      const text = poem.paragraphs.filter((p): p is string => typeof p === 'string').join('').trim();
      if (text) lines.push(text);
    }
  }
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(path, [lines.join('\n') + '\n']);
  return path;
}

/** Real tokens per second over `steps` timed steps (after `warmup`), batches read as training reads them. */
async function tokensPerSecond(pipeline: MlmPipeline, vocabSize: number, options: Options): Promise<number> {
  const model = RoFormerV2.create({ size: 'small', config: { ...(DEMO_OVERRIDES.model as Partial<RoFormerV2Config>), vocab_size: vocabSize, max_position_embeddings: options.maxLength }, seed: 1 });
  const trainer = new Trainer(model, { lr: 1e-3 });
  const batches = pipeline.batches();
  let tokens = 0;
  let start = 0;
  try {
    for (let step = 0; step < options.warmup + options.steps; step++) {
      if (step === options.warmup) start = performance.now();
      const { value: batch } = await batches.next();
      if (!batch) throw new Error('the corpus ran out');
      await trainer.step(batch.microBatch);
      if (step >= options.warmup) tokens += batch.tokens;
      batch.dispose();
    }
    return tokens / ((performance.now() - start) / 1000);
  } finally {
    await batches.return(undefined);
    trainer.native.dispose();
    model.native.dispose();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

async function main(options: Options): Promise<void> {
  const corpus = await Corpus.open({ paths: [await tangCorpus(join(tmpdir(), 'roformer-bench-tang'))], evalFraction: 0 });
  const tokenizer = await buildCorpusVocab(corpus, DEMO_OVERRIDES.vocabSize!, 20e6);
  const settings = { maxLength: options.maxLength, batchSize: options.batch, seed: 1 };
  const medianLength = await new MlmPipeline(corpus, tokenizer, settings).medianLength();
  console.error(`Tang shi: median poem ${medianLength} tokens, rows of ${options.maxLength}, ${options.batch} rows a batch; load ${loadavg()[0]!.toFixed(2)}`);
  const rounds: Array<{ grouped: number; packed: number; ratio: number }> = [];
  for (let round = 0; round < options.rounds; round++) {
    const grouped = await tokensPerSecond(new MlmPipeline(corpus, tokenizer, settings), tokenizer.size, options);
    const packed = await tokensPerSecond(new MlmPipeline(corpus, tokenizer, { ...settings, pack: true }), tokenizer.size, options);
    rounds.push({ grouped, packed, ratio: packed / grouped });
    console.log(`round ${round + 1}: grouped ${grouped.toFixed(0)} real tokens/s, packed ${packed.toFixed(0)}: ${(packed / grouped).toFixed(2)}×`);
  }
  const ratio = median(rounds.map((r) => r.ratio));
  console.log(`packed / grouped by length: ${ratio.toFixed(2)}× real tokens/s (median of ${rounds.length} rounds; load ${loadavg()[0]!.toFixed(2)})`);
  if (options.json) {
    const result = { corpus: 'chinese-poetry quantangshi (Tang shi)', medianLength, ...settings, steps: options.steps, rounds, ratio, load: loadavg()[0] };
    await writeFile(options.json, JSON.stringify(result, null, 2) + '\n');
  }
}

const program = new Command()
  .name('bench:packing')
  .description('real tokens/s of packed vs length-grouped MLM batches on the Tang shi (CPU)')
  .option('--steps <n>', 'timed steps per run', positiveInt('--steps'), 20)
  .option('--warmup <n>', 'untimed steps first', positiveInt('--warmup'), 3)
  .option('--rounds <n>', 'grouped/packed pairs', positiveInt('--rounds'), 3)
  .option('--batch <n>', 'rows per batch', positiveInt('--batch'), 16)
  .option('--max-length <n>', 'tokens per row', positiveInt('--max-length'), 128)
  .option('--json <file>', 'write the figures as JSON');
program.parse();
main(program.opts<Options>()).catch((error: Error) => {
  console.error(error.message);
  process.exitCode = 1;
});

#!/usr/bin/env node
// Sentence embeddings on FewCLUE bustm (pairs of queries labelled "1" same intent / "0"
// not): the ROC AUC of the cosine similarity of the two sentences' embeddings, per
// pooling, raw and BERT-whitened (fitted on bustm's unlabeled sentences), over k; and
// `embed` throughput on CPU (a fresh small model, texts of 64 tokens).
//
//   node dist/bench/embed-bustm.js --model <model or run dir> [--json bench/results/embed-bustm.json]
//
// The README's figures are for a 4-layer, 256-wide RoFormerV2 pre-trained (MLM, 400 steps,
// the --demo model and schedule) on the same unlabeled sentences, one a line:
//   node dist/bench/embed-bustm.js --write-corpus bustm-unlabeled.txt
//   roformer pretrain --corpus bustm-unlabeled.txt --config bench/embed-bustm.pretrain.json --out runs/bustm
//   node dist/bench/embed-bustm.js --model runs/bustm --json bench/results/embed-bustm.json

import { readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';

import { Command } from 'commander';

import { POOLINGS, SentenceEncoder, type Pooling } from '../lib/embed/sentence-encoder.js';
import { Whitening } from '../lib/embed/whitening.js';
import { RoFormerV2 } from '../lib/model/model.js';

interface Pair {
  a: string;
  b: string;
  same: boolean;
}

async function readJsonl(path: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(path, 'utf8');
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** ROC AUC: the probability that a random positive scores above a random negative (ties count ½), by ranks. */
export function rocAuc(scores: number[], positive: boolean[]): number {
  const order = scores.map((s, i) => [s, i] as const).sort((x, y) => x[0] - y[0]);
  const ranks = new Float64Array(scores.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    for (let t = i; t <= j; t++) ranks[order[t]![1]] = (i + j) / 2 + 1; // average rank of a tie
    i = j + 1;
  }
  const nPos = positive.filter(Boolean).length;
  const nNeg = positive.length - nPos;
  let rankSum = 0;
  positive.forEach((p, i) => (rankSum += p ? ranks[i]! : 0));
  return (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

function cosine(x: Float32Array, y: Float32Array): number {
  let xy = 0;
  let xx = 0;
  let yy = 0;
  for (let i = 0; i < x.length; i++) {
    xy += x[i]! * y[i]!;
    xx += x[i]! * x[i]!;
    yy += y[i]! * y[i]!;
  }
  return xy / Math.sqrt(xx * yy);
}

function pairAuc(rows: Float32Array[], pairs: Pair[]): number {
  return rocAuc(
    pairs.map((_, i) => cosine(rows[2 * i]!, rows[2 * i + 1]!)),
    pairs.map((p) => p.same),
  );
}

interface PoolingResult {
  pooling: Pooling;
  raw: number;
  /** β = γ = 1 over k. */
  whitened: Array<{ k: number; auc: number }>;
  /** β = γ = 0 (centring and scaling off: rotation + truncation only) over k. */
  rotated: Array<{ k: number; auc: number }>;
  /** The smallest k whose whitened AUC is at least the raw AUC (null: none). */
  keepsRawAt: number | null;
}

async function main(): Promise<void> {
  const program = new Command()
    .name('embed-bustm')
    .option('--model <dir>', 'model dir, checkpoint or run dir')
    .option('--write-corpus <file>', "write bustm's unlabeled sentences, one a line (a pre-training corpus), and stop")
    .option('--data <dir>', 'the bustm folder', '../shared/data/fewclue/bustm')
    .option('--ks <list>', 'whitening dimensions to try (comma-separated)', '8,16,32,64,128,256')
    .option('--json <file>', 'write the figures here')
    .option('--throughput-texts <n>', 'texts per timed round of the throughput figure', Number, 128)
    .parse();
  const options = program.opts<{ model?: string; writeCorpus?: string; data: string; ks: string; json?: string; throughputTexts: number }>();

  const unlabeled = (await readJsonl(join(options.data, 'unlabeled.json'))).flatMap((r) => [String(r.sentence1), String(r.sentence2)]);
  if (options.writeCorpus) {
    await writeFile(options.writeCorpus, unlabeled.join('\n') + '\n');
    console.log(`wrote ${unlabeled.length} sentences → ${options.writeCorpus}`);
    return;
  }
  if (!options.model) return program.error('--model is required (or --write-corpus)');

  const test = (await readJsonl(join(options.data, 'test_public.json'))).map((r) => ({ a: String(r.sentence1), b: String(r.sentence2), same: r.label === '1' }));
  const encoder = await SentenceEncoder.fromPretrained(options.model);
  const d = encoder.dimension;
  const ks = [...new Set(options.ks.split(',').map(Number).filter((k) => k >= 1 && k <= d).concat(d))].sort((x, y) => x - y);

  const results: PoolingResult[] = [];
  for (const pooling of POOLINGS) {
    const pairRows = await encoder.embed(test.flatMap((p) => [p.a, p.b]), { pooling, batchSize: 64, maxLength: 64 });
    const corpusRows = await encoder.embed(unlabeled, { pooling, batchSize: 64, maxLength: 64 });
    const full = Whitening.fit(corpusRows, { pooling });
    const over = (beta: number, gamma: number) => ks.map((k) => ({ k, auc: pairAuc(full.with({ k, beta, gamma }).apply(pairRows), test) }));
    const raw = pairAuc(pairRows, test);
    const whitened = over(1, 1);
    results.push({ pooling, raw, whitened, rotated: over(0, 0), keepsRawAt: whitened.find((w) => w.auc >= raw)?.k ?? null });
  }
  encoder.dispose();

  const throughput = await measureThroughput(encoder.tokenizer, unlabeled, options.throughputTexts);
  const load = loadavg().map((l) => l.toFixed(2));

  const pct = (x: number) => (100 * x).toFixed(2);
  console.log(`bustm test_public: ${test.length} pairs (${test.filter((p) => p.same).length} same); whitening fitted on ${unlabeled.length} unlabeled sentences; model ${options.model} (hidden ${d})\n`);
  console.log(`| pooling | raw AUC | whitened, k = ${ks.join(' / ')} | rotation only (β=γ=0), same k | smallest k ≥ raw |`);
  console.log('| --- | --- | --- | --- | --- |');
  for (const r of results) {
    console.log(`| ${r.pooling} | ${pct(r.raw)} | ${r.whitened.map((w) => pct(w.auc)).join(' / ')} | ${r.rotated.map((w) => pct(w.auc)).join(' / ')} | ${r.keepsRawAt ?? 'none'} |`);
  }
  console.log(`\nthroughput: ${throughput.textsPerSecond.toFixed(1)} texts/s, median of ${throughput.rounds.map((r) => r.toFixed(1)).join(' / ')} (small model, ${throughput.tokens} tokens each, batch 32, ${throughput.threads} threads; load average ${load.join(' ')} on ${cpus().length} CPUs, shared machine)`);

  if (options.json) {
    await writeFile(options.json, `${JSON.stringify({ model: options.model, pairs: test.length, corpus: unlabeled.length, hidden: d, results, throughput: { ...throughput, loadAverage: load, cpus: cpus().length } }, null, 2)}\n`);
    console.log(`wrote ${options.json}`);
  }
}

/**
 * Texts/s of a fresh 'small' model (6 layers, 384 wide) on texts cut to 64 tokens, mean
 * pooling, batch 32: `rounds` timed passes over `count` texts after a warm-up batch. On a
 * shared machine the rounds differ; all are kept, the median is the figure.
 */
async function measureThroughput(tokenizer: SentenceEncoder['tokenizer'], sentences: string[], count: number, rounds = 3) {
  const model = RoFormerV2.create({ size: 'small', config: { vocab_size: tokenizer.size } }).eval();
  const encoder = new SentenceEncoder(model, tokenizer);
  // Long texts from the corpus (a CJK character is a token), each cut at 64 tokens.
  const joined = sentences.join('');
  const texts = Array.from({ length: count }, (_, i) => joined.slice((i * 80) % (joined.length - 80), ((i * 80) % (joined.length - 80)) + 80));
  const tokens = 64;
  await encoder.embed(texts.slice(0, 32), { maxLength: tokens }); // warm-up
  const perRound: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const started = performance.now();
    await encoder.embed(texts, { maxLength: tokens, batchSize: 32 });
    perRound.push(count / ((performance.now() - started) / 1000));
  }
  model.dispose();
  const { runtimeInfo } = await import('../lib/model/runtime.js');
  const median = [...perRound].sort((a, b) => a - b)[Math.floor(rounds / 2)]!;
  return { textsPerSecond: median, rounds: perRound, texts: count, tokens, batchSize: 32, threads: runtimeInfo().numThreads };
}

await main();

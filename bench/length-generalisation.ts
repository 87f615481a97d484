#!/usr/bin/env node
// Length generalisation: small models pre-trained (MLM) at length 128 on the same
// corpus, steps and batches, then scored on held-out text at 128, 256, 512 and 1024
// tokens: masked-token loss and accuracy. The arms ask the authors' question — does
// softmax_plus (logits × log n / log 512) keep attention, and so the loss, steady
// past the trained length where plain softmax does not?
//
//   RoFormerV2, softmax            RoFormerV2, softmax_plus
//   GAU-α, softmax_plus            GAU-α, softmax
//   RoFormerV2 softmax + position interpolation (positions × 128 / L: no training of its own)
//
// The corpus is the built-in Song ci (the chinese-poetry package). Documents are
// joined into one token stream per split (the last 5% of poems held out), and
// samples are [CLS] window [SEP] of consecutive tokens, so every length reads the
// same kind of text. Training windows start at random offsets; held-out windows
// are fixed, with fixed masks, the same for every arm.
//
//   npm run bench:length -- --steps 300 --json bench/results/length-generalisation.json --svg bench/results/length-generalisation.svg

import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Command } from 'commander';

import type { MicroBatch } from '../bindings/native.js';
import { ensureDemoCorpus } from '../lib/data/demo-corpus.js';
import { maskSample, Random, type MaskingVocab } from '../lib/data/masking.js';
import { buildVocab, Tokenizer } from '../lib/data/tokenizer.js';
import type { AttentionNormalization } from '../lib/model/config.js';
import type { EncoderConfig } from '../lib/model/encoder-config.js';
import { createEncoder, RoFormerV2, type TrainableEncoder } from '../lib/model/model.js';
import { runtimeInfo, setNumThreads } from '../lib/model/runtime.js';
import { tensor } from '../lib/model/tensor.js';
import { linearWarmupDecay } from '../lib/training/schedules.js';
import { Trainer } from '../lib/training/trainer.js';
import { groupedBarsSvg } from './chart.js';
import { positiveInt } from './flags.js';

export interface LengthOptions {
  steps: number;
  batch: number;
  lr: number;
  trainLength: number;
  lengths: number[];
  /** Held-out tokens scored at each length (windows = tokens / length). */
  evalTokens: number;
  vocabSize: number;
  hidden: number;
  layers: number;
  seed: number;
  threads?: number;
  json?: string;
  svg?: string;
}

interface Arm {
  name: string;
  /** The config of the trained model (RoFormerV2 keys or GAU-α's). */
  config: Partial<EncoderConfig>;
  /** Scored with the weights of another arm, positions interpolated (trained length / L). */
  interpolates?: string;
}

/** RoFormerV2 with `layers` blocks of width `hidden` (head size 64), or GAU-α at the depth-equivalent: 2× the layers, e = 2·hidden, s = 64. */
export function arms(hidden: number, layers: number): Arm[] {
  const roformer = (normalization: AttentionNormalization): Partial<EncoderConfig> => ({
    model_type: 'roformer',
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: hidden / 64,
    intermediate_size: 4 * hidden,
    normalization,
  });
  const gau = (normalization: AttentionNormalization): Partial<EncoderConfig> => ({
    model_type: 'gau_alpha',
    hidden_size: hidden,
    num_hidden_layers: 2 * layers,
    intermediate_size: 2 * hidden,
    attention_key_size: 64,
    normalization,
  });
  return [
    { name: 'RoFormerV2 softmax', config: roformer('softmax') },
    { name: 'RoFormerV2 softmax_plus', config: roformer('softmax_plus') },
    { name: 'GAU-α softmax_plus', config: gau('softmax_plus') },
    { name: 'GAU-α softmax', config: gau('softmax') },
    { name: 'RoFormerV2 softmax + position interpolation', config: roformer('softmax'), interpolates: 'RoFormerV2 softmax' },
  ];
}

export interface LengthResult {
  arm: string;
  length: number;
  loss: number;
  accuracy: number;
  targets: number;
}

/** One split of the corpus as a token stream (special tokens excluded). */
function tokenStream(tokenizer: Tokenizer, texts: string[]): number[] {
  const ids: number[] = [];
  for (const text of texts) tokenizer.encodeText(text, ids);
  return ids;
}

/** [CLS] stream[start .. start + length − 2) [SEP], masked BERT-style. */
function maskedBatch(stream: number[], starts: number[], length: number, vocab: MaskingVocab, tokenizer: Tokenizer, random: Random): MicroBatch {
  const ids = new Int32Array(starts.length * length);
  const positions: number[] = [];
  const labels: number[] = [];
  starts.forEach((start, b) => {
    const sample = [tokenizer.clsId, ...stream.slice(start, start + length - 2), tokenizer.sepId];
    const masked = maskSample(sample, vocab, random, { scheme: 'token', probability: 0.15 });
    ids.set(masked.inputIds, b * length);
    masked.positions.forEach((p, k) => {
      positions.push(b * length + p);
      labels.push(masked.labels[k]!);
    });
  });
  return {
    inputIds: tensor(ids, [starts.length, length], 'int64'),
    targetPositions: tensor(Int32Array.from(positions), [positions.length], 'int64'),
    targetIds: tensor(Int32Array.from(labels), [labels.length], 'int64'),
  };
}

const dispose = (batch: MicroBatch) => Object.values(batch).forEach((t) => t.dispose());

/** Held-out loss and accuracy at `length`: fixed windows and masks (seeded by the length). */
async function score(trainer: Trainer, stream: number[], length: number, options: LengthOptions, vocab: MaskingVocab, tokenizer: Tokenizer): Promise<Omit<LengthResult, 'arm'>> {
  const windows = Math.max(1, Math.floor(options.evalTokens / length));
  const step = Math.floor((stream.length - length) / windows);
  if (step < 1) throw new Error(`the held-out text (${stream.length} tokens) is too short for ${windows} windows of ${length}`);
  const random = new Random(options.seed * 7919 + length);
  let lossSum = 0;
  let correct = 0;
  let targets = 0;
  const perBatch = Math.max(1, Math.floor(4096 / length));
  for (let first = 0; first < windows; first += perBatch) {
    const starts = Array.from({ length: Math.min(perBatch, windows - first) }, (_, i) => (first + i) * step);
    const batch = maskedBatch(stream, starts, length, vocab, tokenizer, random);
    const r = await trainer.evaluate(batch);
    dispose(batch);
    lossSum += r.lossSum;
    correct += r.correct;
    targets += r.targets;
  }
  return { length, loss: lossSum / targets, accuracy: correct / targets, targets };
}

export async function runLengthBenchmark(options: LengthOptions, log: (line: string) => void = console.log): Promise<{ results: LengthResult[]; seconds: Record<string, number> }> {
  const [songci] = await ensureDemoCorpus(join(tmpdir(), 'roformer-bench-corpus'));
  const poems = readFileSync(songci!, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const held = Math.floor(poems.length * 0.05);
  const trainTexts = poems.slice(0, poems.length - held);
  const tokenizer = Tokenizer.fromTokens(await buildVocab(trainTexts, { size: options.vocabSize }), 'built from the training poems');
  const train = tokenStream(tokenizer, trainTexts);
  const heldOut = tokenStream(tokenizer, poems.slice(poems.length - held));
  log(`corpus: ${poems.length} Song ci, ${train.length} training tokens, ${heldOut.length} held-out tokens, vocab ${tokenizer.size}`);
  const vocab: MaskingVocab = {
    maskId: tokenizer.maskId,
    size: tokenizer.size,
    specialIds: new Set([tokenizer.padId, tokenizer.unkId, tokenizer.clsId, tokenizer.sepId, tokenizer.maskId]),
  };

  const results: LengthResult[] = [];
  const seconds: Record<string, number> = {};
  const trained = new Map<string, TrainableEncoder>();
  for (const arm of arms(options.hidden, options.layers)) {
    const started = performance.now();
    let model: TrainableEncoder;
    if (arm.interpolates) {
      model = trained.get(arm.interpolates)!;
      log(`  ${arm.name}: the weights of ${arm.interpolates}, positions × ${options.trainLength} / length`);
    } else {
      model = createEncoder({ config: { ...arm.config, vocab_size: tokenizer.size, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1 }, seed: options.seed });
      const trainer = new Trainer(model, { optimizer: 'adamw', lr: linearWarmupDecay({ peak: options.lr, warmupSteps: Math.round(options.steps / 10), totalSteps: options.steps }), weightDecay: 0.01, maxGradNorm: 1 });
      // The same windows and masks for every trained arm: the random streams restart per arm.
      const offsets = new Random(options.seed);
      const masks = new Random(options.seed + 1);
      let last = 0;
      for (let step = 0; step < options.steps; step++) {
        const starts = Array.from({ length: options.batch }, () => offsets.int(train.length - options.trainLength));
        const batch = maskedBatch(train, starts, options.trainLength, vocab, tokenizer, masks);
        last = (await trainer.step(batch)).loss;
        dispose(batch);
        if ((step + 1) % 50 === 0 && step + 1 < options.steps) log(`    step ${step + 1}: training loss ${last.toFixed(3)}`);
      }
      trainer.native.dispose?.();
      trained.set(arm.name, model);
      log(`  ${arm.name}: ${options.steps} steps, last training loss ${last.toFixed(3)} (${model.parameterCount.toLocaleString('en')} parameters)`);
    }
    model.eval();
    for (const length of options.lengths) {
      let scored = model;
      if (arm.interpolates) {
        // The same weights, positions scaled into the trained range.
        const factor = Math.min(1, options.trainLength / length);
        scored = RoFormerV2.create({ config: { ...(model.config as RoFormerV2["config"]), rope_interpolation_factor: factor }, seed: 0 }).eval();
        const weights = model.namedParameters();
        scored.loadStateDict(weights);
        for (const t of Object.values(weights)) t.dispose();
      }
      const evaluator = new Trainer(scored, { optimizer: 'adamw' });
      const r = await score(evaluator, heldOut, length, options, vocab, tokenizer);
      evaluator.native.dispose?.();
      if (scored !== model) scored.dispose();
      results.push({ arm: arm.name, ...r });
      log(`    length ${String(length).padStart(4)}: loss ${r.loss.toFixed(3)}, accuracy ${(100 * r.accuracy).toFixed(1)}% (${r.targets} targets)`);
    }
    seconds[arm.name] = (performance.now() - started) / 1000;
  }
  for (const model of trained.values()) model.dispose();
  return { results, seconds };
}

/** The README's table: one row per arm, loss (accuracy) per length. */
export function markdownTable(results: LengthResult[], lengths: number[]): string {
  const names = [...new Set(results.map((r) => r.arm))];
  const rows = [`| model | ${lengths.map((l) => `${l}`).join(' | ')} |`, `| --- | ${lengths.map(() => '---:').join(' | ')} |`];
  for (const name of names) {
    const cells = lengths.map((l) => {
      const r = results.find((x) => x.arm === name && x.length === l);
      return r ? `${r.loss.toFixed(2)} (${(100 * r.accuracy).toFixed(1)}%)` : '';
    });
    rows.push(`| ${name} | ${cells.join(' | ')} |`);
  }
  return rows.join('\n');
}

export function lengthChartSvg(results: LengthResult[], lengths: number[], title: string): string {
  const colors = ['#1f77b4', '#aec7e8', '#2ca02c', '#98df8a', '#9467bd'];
  const names = [...new Set(results.map((r) => r.arm))];
  return groupedBarsSvg({
    title,
    yLabel: 'held-out MLM loss (lower is better)',
    groups: lengths.map((l) => `length ${l}`),
    series: names.map((name, i) => ({ label: name, color: colors[i % colors.length]!, values: lengths.map((l) => results.find((r) => r.arm === name && r.length === l)?.loss) })),
    format: (v) => v.toFixed(2),
    width: 820,
  });
}

/** argv: the flags only (no node and script paths). */
export async function main(argv: string[]): Promise<void> {
  const program = new Command()
    .name('bench:length')
    .description('pre-train small RoFormerV2 / GAU-α models at length 128, score held-out MLM loss and accuracy at 128–1024')
    .option('--steps <n>', 'training steps per model', positiveInt('--steps'), 300)
    .option('--batch <n>', 'samples per step', positiveInt('--batch'), 16)
    .option('--lr <x>', 'peak learning rate', Number, 1e-3)
    .option('--hidden <n>', 'width (a multiple of 64)', positiveInt('--hidden'), 128)
    .option('--layers <n>', 'RoFormerV2 blocks (GAU-α gets twice as many layers)', positiveInt('--layers'), 2)
    .option('--vocab-size <n>', 'vocab built from the training poems', positiveInt('--vocab-size'), 3000)
    .option('--eval-tokens <n>', 'held-out tokens scored at each length', positiveInt('--eval-tokens'), 8192)
    .option('--seed <n>', 'random seed', positiveInt('--seed'), 1)
    .option('--threads <n>', 'intra-op threads', positiveInt('--threads'))
    .option('--json <file>', 'write the results as JSON')
    .option('--svg <file>', 'write a bar chart of the loss per length');
  program.parse(argv, { from: 'user' });
  const flags = program.opts<Omit<LengthOptions, 'trainLength' | 'lengths'>>();
  if (flags.hidden % 64 !== 0) throw new Error('--hidden must be a multiple of 64 (RoFormerV2 heads of 64)');
  const options: LengthOptions = { ...flags, trainLength: 128, lengths: [128, 256, 512, 1024] };
  if (options.threads) setNumThreads(options.threads);
  const info = runtimeInfo();
  const load = loadavg()[0]!;
  console.log(`length generalisation: trained at ${options.trainLength}, ${options.steps} steps × batch ${options.batch}, hidden ${options.hidden}, ${options.layers} RoFormerV2 blocks / ${2 * options.layers} GAU layers; libtorch ${info.libtorchVersion}, ${info.numThreads} threads, load ${load.toFixed(1)}`);
  const started = performance.now();
  const { results, seconds } = await runLengthBenchmark(options);
  const minutes = (performance.now() - started) / 60000;
  console.log(`\nheld-out MLM loss (accuracy), trained at ${options.trainLength}; ${minutes.toFixed(1)} min\n`);
  console.log(markdownTable(results, options.lengths));
  if (options.json) {
    const machine = { cpu: cpus()[0]?.model ?? 'unknown', libtorch: info.libtorchVersion, threads: info.numThreads, loadAverageAtStart: load, loadAverageAtEnd: loadavg()[0] };
    await writeFile(options.json, JSON.stringify({ date: new Date().toISOString(), machine, options, minutes, seconds, results }, null, 2) + '\n');
    console.log(`\nwrote ${options.json}`);
  }
  if (options.svg) {
    await writeFile(options.svg, lengthChartSvg(results, options.lengths, `Held-out MLM loss by evaluation length (trained at ${options.trainLength}, ${options.steps} steps)`));
    console.log(`wrote ${options.svg}`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(`bench:length: ${(error as Error).message}`);
    process.exit(1);
  });
}

#!/usr/bin/env node
// The `roformer` command. `--help` works without libtorch: the addon is loaded
// only by the commands that need it.

import { Command } from 'commander';

import { NativeLoadError } from '../bindings/load.js';
import { blasInUse, runtimeInfo } from './model/runtime.js';
import { MODEL_SIZES, type ModelSize } from './model/config.js';
import { RoFormerV2 } from './model/model.js';
import { PretrainProgress } from './training/progress.js';
import type { PretrainConfig } from './pretrain/config.js';

const program = new Command();
program.name('roformer').description('Train and use RoFormerV2 language models on libtorch').version('0.1.0');

program
  .command('info')
  .description('show libtorch version, devices, threads and BLAS (a quick health check)')
  .option('--build-config', 'also print libtorch build configuration')
  .action((options: { buildConfig?: boolean }) => {
    const info = runtimeInfo();
    console.log(`libtorch        ${info.libtorchVersion}`);
    console.log(`CUDA            ${info.cudaAvailable ? `${info.cudaDeviceCount} device(s)` : 'not available'}`);
    console.log(`fused attention ${info.fusedAttention ? 'yes (scaled_dot_product_attention)' : 'no (plain math)'}`);
    console.log(`threads         ${info.numThreads} of ${info.availableCores} available cores`);
    console.log(`BLAS            ${blasInUse(info.buildConfig)}`);
    if (options.buildConfig) console.log(`\n${info.buildConfig}\n${info.parallelInfo}`);
  });

program
  .command('init')
  .description('write a freshly initialised RoFormerV2 model dir (config.json + model.safetensors)')
  .argument('<dir>', 'output directory')
  .option('--size <size>', `model size: ${Object.keys(MODEL_SIZES).join(', ')}`, 'small')
  .option('--seed <n>', 'random seed', '0')
  .action(async (dir: string, options: { size: string; seed: string }) => {
    if (!(options.size in MODEL_SIZES)) throw new Error(`unknown --size '${options.size}': use small, base or large`);
    const model = RoFormerV2.create({ size: options.size as ModelSize, seed: Number(options.seed) });
    await model.save(dir);
    console.log(`wrote ${dir} (${(model.parameterCount / 1e6).toFixed(1)}M parameters)`);
  });

// Flags whose value is a number; commander hands over strings.
const number = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new Error(`--${name} must be a number, got '${value}'`);
  return n;
};

program
  .command('pretrain')
  .description('pre-train a RoFormerV2 with masked language modelling on plain text or JSONL')
  .option('--corpus <paths...>', 'corpus files or directories (.txt: a document per line; .jsonl: see --field)')
  .option('--demo', 'the built-in demo: Song ci from the chinese-poetry package, a small model, a few minutes on CPU')
  .option('--out <dir>', 'run directory (checkpoints, metrics.jsonl, report.svg)')
  .option('--config <file>', 'settings as JSON (keys as the flags, camelCase); flags override it')
  .option('--resume', 'continue the run in --out from its latest checkpoint, exactly where it stopped')
  .option('--size <size>', 'model size: small, base, large')
  .option('--vocab <file>', 'vocab.txt to use (default: build one from the corpus)')
  .option('--vocab-size <n>', 'tokens in a vocab built from the corpus', number('vocab-size'))
  .option('--format <format>', 'auto, text or jsonl')
  .option('--field <name>', 'JSONL field holding the text')
  .option('--documents <mode>', 'text: line (a document per line) or blank-line')
  .option('--max-length <n>', 'tokens per sample, [CLS] and [SEP] included', number('max-length'))
  .option('--batch-size <n>', 'samples per micro-batch', number('batch-size'))
  .option('--accumulate <n>', 'micro-batches per optimiser step', number('accumulate'))
  .option('--steps <n>', 'optimiser steps', number('steps'))
  .option('--optimizer <name>', 'adamw, lamb or adafactor')
  .option('--lr <x>', 'peak learning rate', number('lr'))
  .option('--warmup-steps <n>', 'linear warm-up steps', number('warmup-steps'))
  .option('--alpha-warmup-steps <n>', 'residual α warm-up steps (0: α = 1)', number('alpha-warmup-steps'))
  .option('--precision <p>', 'fp32, bf16 or fp16')
  .option('--device <d>', 'cpu or cuda')
  .option('--masking <scheme>', 'token (BERT 15%, 80/10/10) or whole-word (the authors\' scheme, jieba words)')
  .option('--eval-every <n>', 'evaluate on held-out text every n steps', number('eval-every'))
  .option('--save-every <n>', 'checkpoint every n steps', number('save-every'))
  .option('--seed <n>', 'random seed', number('seed'))
  .action(async (options: Record<string, unknown>) => {
    const { resolvePretrainConfig } = await import('./pretrain/config.js');
    const { pretrain, readRunConfig } = await import('./pretrain/pretrain.js');
    const { fillMask } = await import('./pretrain/fill-mask.js');
    const { config: file, resume, ...flags } = options;
    const out = (flags.out as string | undefined) ?? (flags.demo ? 'runs/demo' : undefined);
    // A resumed run keeps its own settings; only a new --steps may extend it.
    const saved = resume && out ? await readRunConfig(out) : null;
    const config = saved
      ? { ...saved, ...(flags.steps !== undefined ? { steps: flags.steps as number } : {}) }
      : await resolvePretrainConfig({ file: file as string | undefined, flags: flags as Partial<PretrainConfig> });

    const abort = new AbortController();
    const onSigint = () => {
      if (abort.signal.aborted) process.exit(130);
      abort.abort();
      process.stderr.write('\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit now)\n');
    };
    process.on('SIGINT', onSigint);
    const progress = new PretrainProgress(config.logEvery);
    const result = await pretrain(config, { resume: Boolean(resume), signal: abort.signal, onEvent: (e) => progress.event(e) });
    progress.stop();
    process.off('SIGINT', onSigint);
    console.log(`${result.interrupted ? 'stopped' : 'finished'} at step ${result.step}; checkpoint ${result.checkpoint}`);
    console.log(`metrics ${config.out}/metrics.jsonl, loss curve ${config.out}/report.svg`);
    console.log(`time in JS between native steps: ${(100 * result.loopOverhead).toFixed(2)}% of the native step time`);
    if (config.demo && !result.interrupted) {
      console.log('\nfill-mask on the trained model:');
      for (const text of ['明月几时有，把酒问青[MASK]。', '春风又绿江[MASK]岸。', '大江东去，浪淘[MASK]，千古风流人物。']) {
        const [prediction] = await fillMask(result.model.eval(), result.tokenizer, text, 5);
        const top = prediction!.candidates.map((c) => `${c.token} ${(100 * c.probability).toFixed(1)}%`).join('  ');
        console.log(`  ${text}  →  ${top}`);
      }
    }
    if (result.interrupted) process.exit(130);
  });

program
  .command('fill-mask')
  .description('the most likely tokens at each [MASK] of a text')
  .requiredOption('--model <dir>', 'a model dir, checkpoint dir or run dir (its latest checkpoint)')
  .option('--top-k <n>', 'candidates per mask', number('top-k'), 5)
  .option('--json', 'machine-readable output')
  .argument('<text...>', 'text with one or more [MASK]')
  .action(async (words: string[], options: { model: string; topK: number; json?: boolean }) => {
    const { fillMask, loadForInference } = await import('./pretrain/fill-mask.js');
    const { model, tokenizer } = await loadForInference(options.model);
    const text = words.join(' ');
    const predictions = await fillMask(model, tokenizer, text, options.topK);
    if (options.json) {
      console.log(JSON.stringify({ text, predictions }, null, 2));
      return;
    }
    for (const p of predictions) {
      console.log(`[MASK] #${p.mask + 1}`);
      for (const c of p.candidates) console.log(`  ${c.token.padEnd(8)} ${(100 * c.probability).toFixed(2)}%`);
    }
  });

program
  .command('vocab')
  .description('build a BERT-style vocab.txt from a corpus')
  .requiredOption('--corpus <paths...>', 'corpus files or directories')
  .requiredOption('--out <file>', 'where to write vocab.txt')
  .option('--size <n>', 'number of tokens', number('size'), 12000)
  .option('--format <format>', 'auto, text or jsonl', 'auto')
  .option('--field <name>', 'JSONL field holding the text', 'text')
  .action(async (options: { corpus: string[]; out: string; size: number; format: 'auto' | 'text' | 'jsonl'; field: string }) => {
    const { Corpus } = await import('./data/corpus.js');
    const { buildCorpusVocab } = await import('./pretrain/pretrain.js');
    const corpus = await Corpus.open({ paths: options.corpus, format: options.format, field: options.field, evalFraction: 0 });
    const tokenizer = await buildCorpusVocab(corpus, options.size);
    await tokenizer.save(options.out);
    console.log(`wrote ${options.out}: ${tokenizer.size} tokens`);
    if (corpus.problemCount > 0) {
      console.log(`${corpus.problemCount} bad line(s) skipped, e.g. ${corpus.problems.slice(0, 3).map((p) => `${p.file}:${p.line}: ${p.reason}`).join('; ')}`);
    }
  });

program.parseAsync(process.argv).catch((error: unknown) => {
  console.error(error instanceof NativeLoadError ? error.message : `roformer: ${(error as Error).message}`);
  process.exit(1);
});

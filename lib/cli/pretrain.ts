// `roformer pretrain`: MLM pre-training (lib/pretrain/pretrain.ts) run through the
// terminal runner (progress, Ctrl-C → checkpoint, --resume). The demo ends with
// fill-mask examples on held-out lines, the right answer's rank beside the top 5. Defaults and limits: lib/pretrain/config.ts.

import { Command } from 'commander';

import type { Tokenizer } from '../data/tokenizer.js';
import type { TrainableEncoder } from '../model/model.js';
import { PRETRAIN_DEFAULTS as D, PRETRAIN_KINDS as K, type PretrainConfig } from '../pretrain/config.js';
import { addArchitectureFlags, splitArchitectureFlags, type ArchitectureFlags } from './architecture-options.js';
import { addLaunchFlags, asRank } from './launch.js';
import { settingFlags } from './options.js';
import { resumedConfig, runStageInTerminal } from './run-stage.js';

type PretrainFlags = Partial<PretrainConfig> & ArchitectureFlags & { config?: string; resume?: boolean };

const setting = settingFlags(D, K);

export function pretrainCommand(): Command {
  const command = new Command('pretrain')
    .description('pre-train a RoFormerV2 with masked language modelling on plain text or JSONL')
    .option('--corpus <paths...>', 'corpus files or directories (.txt: a document per line; .jsonl: see --field)')
    .option('--demo', 'the built-in demo: lines of Song ci and Yuan qu from the chinese-poetry package, a small model, 3 minutes on a 2-core CPU')
    .option(...setting('out', '<dir>', 'run directory (checkpoints, metrics.jsonl, report.svg)'))
    .option('--config <file>', 'settings as JSON (keys as the flags, camelCase); flags override it')
    .option('--resume', 'continue the run in --out from its latest checkpoint, exactly where it stopped (--steps may extend it)')
    .option(...setting('size', '<size>', 'model size: small, base, large'))
    .option('--vocab <file>', 'vocab.txt to use (default: build one from the corpus)')
    .option(...setting('vocabSize', '<n>', 'tokens in a vocab built from the corpus'))
    .option(...setting('format', '<format>', 'auto, text or jsonl'))
    .option(...setting('field', '<names>', "JSONL field holding the text, or several separated by commas ('sentence,sentence1,sentence2'): a record's present fields, joined in this order, are one document"))
    .option(...setting('documents', '<mode>', 'text: line (a document per line) or blank-line'))
    .option(...setting('maxLength', '<n>', 'tokens per sample, [CLS] and [SEP] included'))
    .option('--pack', 'several documents per row, each attending only to itself (default: on CUDA when the median document is under half of --max-length; off on the CPU, where it measured slower)')
    .option('--no-pack', 'one document per row (length-grouped batches)')
    .option(...setting('batchSize', '<n>', 'rows per micro-batch'))
    .option(...setting('accumulate', '<n>', 'micro-batches per optimiser step'))
    .option(...setting('steps', '<n>', 'optimiser steps'))
    .option(...setting('optimizer', '<name>', 'adamw, lamb or adafactor'))
    .option(...setting('lr', '<x>', 'peak learning rate'))
    .option(...setting('warmupSteps', '<n>', 'linear warm-up steps'))
    .option(...setting('alphaWarmupSteps', '<n>', 'residual α warm-up steps (0: α = 1)'))
    .option(...setting('precision', '<p>', 'fp32, bf16 or fp16'))
    .option(...setting('device', '<d>', 'cpu, cuda or cuda:N'))
    .option(...setting('cudaGraphs', '<on|off>', 'CUDA graphs of the training step, batch lengths rounded up to multiples of 64 (default: on for CUDA; the CPU has none)', false))
    .option(...setting('masking', '<scheme>', "token (BERT 15%, 80/10/10) or whole-word (the authors' scheme, jieba words)"))
    .option(...setting('evalEvery', '<n>', 'evaluate on held-out text every n steps (0: never)'))
    .option(...setting('saveEvery', '<n>', 'checkpoint every n steps (0: only at the end)'))
    .option(...setting('seed', '<n>', 'random seed'));
  return addLaunchFlags(addArchitectureFlags(command)).action(
    asRank(async (options: PretrainFlags) => {
      const { resolvePretrainConfig } = await import('../pretrain/config.js');
      const { pretrain } = await import('../pretrain/pretrain.js');
      const { rest, model } = splitArchitectureFlags(options);
      const { config: file, resume, ...flags } = { ...rest, ...(model ? { model } : {}) };
      const out = flags.out ?? (flags.demo ? 'runs/demo' : undefined);
      const config = resume
        ? await resumedConfig<PretrainConfig>('pretrain', out, { steps: flags.steps })
        : await resolvePretrainConfig({ file, flags });
      const { results, writer } = await runStageInTerminal((hooks) => pretrain(config, hooks), { resume: Boolean(resume), logEvery: config.logEvery });
      if (!writer) return;
      console.log(`metrics ${config.out}/metrics.jsonl, curves ${config.out}/report.svg`);
      if (config.demo && !results.interrupted) await demoFillMask(results.model, results.tokenizer, config);
    }),
  );
}

/** Held-out lines the demo prints: few enough to read. */
const DEMO_EXAMPLES = 10;
/** Held-out lines the demo scores, the printed ones among them: enough for a rate to mean something. */
const DEMO_SCORED = 200;

/** The demo's last word: fill-mask on lines held out from training, the right answer's rank beside the model's top 5. */
async function demoFillMask(model: TrainableEncoder, tokenizer: Tokenizer, config: PretrainConfig): Promise<void> {
  const { openCorpus } = await import('../pretrain/pretrain.js');
  const { heldOutFillMask } = await import('../pretrain/held-out-fill-mask.js');
  const { jiebaSegmenter } = await import('../data/pipeline.js');
  const corpus = await openCorpus(config);
  const options = { count: DEMO_SCORED, seed: config.seed };
  // The printed lines: one character of a word masked, the rest of the word visible.
  const scored = await heldOutFillMask(model, tokenizer, corpus, { ...options, segment: await jiebaSegmenter() });
  const anyCharacter = await heldOutFillMask(model, tokenizer, corpus, options);
  const examples = scored.slice(0, DEMO_EXAMPLES);
  console.log(`\nfill-mask on ${examples.length} lines held out from training, one character of a word masked (jieba's words; the rest of the word visible): the right answer, its rank among the model's guesses, the top 5`);
  for (const e of examples) {
    const top = e.top.map((c) => `${c.token} ${(100 * c.probability).toFixed(1)}%`).join('  ');
    console.log(`  ${e.masked}\n      answer ${e.answer}, rank ${e.rank ?? '– (not in the vocab)'}   top 5: ${top}`);
  }
  /** How many of `lines` have the right answer among the model's first `k` guesses. */
  const within = (lines: typeof scored, k: number) => lines.filter((e) => e.rank !== null && e.rank <= k).length;
  console.log(`right answer first in ${within(examples, 1)} of ${examples.length}, in the top 5 in ${within(examples, 5)} of ${examples.length}`);
  const rates = (lines: typeof scored) => {
    const percent = (k: number) => `${((100 * within(lines, k)) / lines.length).toFixed(0)}%`;
    return `first in ${percent(1)}, in the top 5 in ${percent(5)}, in the top 20 in ${percent(20)}`;
  };
  console.log(`over ${scored.length} held-out lines (these ${examples.length} among them): ${rates(scored)}`);
  console.log(`over ${anyCharacter.length} held-out lines, any character masked (words of one character too, where several answers are often right): ${rates(anyCharacter)}`);
}

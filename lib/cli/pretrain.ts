// `roformer pretrain`: MLM pre-training (lib/pretrain/pretrain.ts) with a
// progress bar, Ctrl-C → checkpoint, and --resume. The demo ends with fill-mask
// examples on the trained model.

import { Command } from 'commander';

import type { Tokenizer } from '../data/tokenizer.js';
import type { RoFormerV2 } from '../model/model.js';
import type { PretrainConfig } from '../pretrain/config.js';
import { interruptOnCtrlC } from './interrupt.js';
import { number } from './options.js';
import { RunProgress } from './progress.js';

export function pretrainCommand(): Command {
  return new Command('pretrain')
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
    .option('--masking <scheme>', "token (BERT 15%, 80/10/10) or whole-word (the authors' scheme, jieba words)")
    .option('--eval-every <n>', 'evaluate on held-out text every n steps', number('eval-every'))
    .option('--save-every <n>', 'checkpoint every n steps', number('save-every'))
    .option('--seed <n>', 'random seed', number('seed'))
    .action(async (options: Record<string, unknown>) => {
      const { resolvePretrainConfig } = await import('../pretrain/config.js');
      const { pretrain, readRunConfig } = await import('../pretrain/pretrain.js');
      const { config: file, resume, ...flags } = options;
      const out = (flags.out as string | undefined) ?? (flags.demo ? 'runs/demo' : undefined);
      // A resumed run keeps its own settings; only a new --steps may extend it.
      const saved = resume && out ? await readRunConfig(out) : null;
      const config = saved
        ? { ...saved, ...(flags.steps !== undefined ? { steps: flags.steps as number } : {}) }
        : await resolvePretrainConfig({ file: file as string | undefined, flags: flags as Partial<PretrainConfig> });

      // Data-parallel (the launcher's or torchrun's environment): rank 0 alone reports.
      const { distributedFromEnv } = await import('../training/distributed.js');
      const distributed = distributedFromEnv();
      const writer = (distributed?.rank ?? 0) === 0;
      const interrupt = interruptOnCtrlC();
      const progress = new RunProgress(config.logEvery);
      let result;
      try {
        const onEvent = writer ? (e: Parameters<typeof progress.event>[0]) => progress.event(e) : undefined;
        result = await pretrain(config, { resume: Boolean(resume), signal: interrupt.signal, onEvent, distributed });
      } finally {
        progress.stop();
        interrupt.release();
      }
      if (!writer) return process.exit(result.interrupted ? 130 : 0);
      console.log(`metrics ${config.out}/metrics.jsonl, curves ${config.out}/report.svg`);
      if (config.demo && !result.interrupted) await demoFillMask(result.model, result.tokenizer);
      if (result.interrupted) process.exit(130);
    });
}

async function demoFillMask(model: RoFormerV2, tokenizer: Tokenizer): Promise<void> {
  const { fillMask } = await import('../pretrain/fill-mask.js');
  console.log('\nfill-mask on the trained model:');
  for (const text of ['明月几时有，把酒问青[MASK]。', '春风又绿江[MASK]岸。', '大江东去，浪淘[MASK]，千古风流人物。']) {
    const [prediction] = await fillMask(model.eval(), tokenizer, text, 5);
    const top = prediction!.candidates.map((c) => `${c.token} ${(100 * c.probability).toFixed(1)}%`).join('  ');
    console.log(`  ${text}  →  ${top}`);
  }
}

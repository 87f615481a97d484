// `roformer pretrain`: MLM pre-training (lib/pretrain/pretrain.ts) run through the
// terminal runner (progress, Ctrl-C → checkpoint, --resume). The demo ends with
// fill-mask examples on the trained model. Defaults and limits: lib/pretrain/config.ts.

import { Command } from 'commander';

import type { Tokenizer } from '../data/tokenizer.js';
import type { RoFormerV2 } from '../model/model.js';
import { PRETRAIN_DEFAULTS as D, PRETRAIN_KINDS as K, type PretrainConfig } from '../pretrain/config.js';
import { addLaunchFlags, asRank } from './launch.js';
import { parse, withDefault } from './options.js';
import { resumedConfig, runStageInTerminal } from './run-stage.js';

type PretrainFlags = Partial<PretrainConfig> & { config?: string; resume?: boolean };

export function pretrainCommand(): Command {
  const command = new Command('pretrain')
    .description('pre-train a RoFormerV2 with masked language modelling on plain text or JSONL')
    .option('--corpus <paths...>', 'corpus files or directories (.txt: a document per line; .jsonl: see --field)')
    .option('--demo', 'the built-in demo: Song ci from the chinese-poetry package, a small model, a few minutes on CPU')
    .option('--out <dir>', withDefault('run directory (checkpoints, metrics.jsonl, report.svg)', D.out))
    .option('--config <file>', 'settings as JSON (keys as the flags, camelCase); flags override it')
    .option('--resume', 'continue the run in --out from its latest checkpoint, exactly where it stopped (--steps may extend it)')
    .option('--size <size>', withDefault('model size: small, base, large', D.size), parse(K.size, 'size'))
    .option('--vocab <file>', 'vocab.txt to use (default: build one from the corpus)')
    .option('--vocab-size <n>', withDefault('tokens in a vocab built from the corpus', D.vocabSize), parse(K.vocabSize, 'vocab-size'))
    .option('--format <format>', withDefault('auto, text or jsonl', D.format), parse(K.format, 'format'))
    .option('--field <name>', withDefault('JSONL field holding the text', D.field))
    .option('--documents <mode>', withDefault('text: line (a document per line) or blank-line', D.documents), parse(K.documents, 'documents'))
    .option('--max-length <n>', withDefault('tokens per sample, [CLS] and [SEP] included', D.maxLength), parse(K.maxLength, 'max-length'))
    .option('--batch-size <n>', withDefault('samples per micro-batch', D.batchSize), parse(K.batchSize, 'batch-size'))
    .option('--accumulate <n>', withDefault('micro-batches per optimiser step', D.accumulate), parse(K.accumulate, 'accumulate'))
    .option('--steps <n>', withDefault('optimiser steps', D.steps), parse(K.steps, 'steps'))
    .option('--optimizer <name>', withDefault('adamw, lamb or adafactor', D.optimizer), parse(K.optimizer, 'optimizer'))
    .option('--lr <x>', withDefault('peak learning rate', D.lr), parse(K.lr, 'lr'))
    .option('--warmup-steps <n>', withDefault('linear warm-up steps', D.warmupSteps), parse(K.warmupSteps, 'warmup-steps'))
    .option('--alpha-warmup-steps <n>', withDefault('residual α warm-up steps (0: α = 1)', D.alphaWarmupSteps), parse(K.alphaWarmupSteps, 'alpha-warmup-steps'))
    .option('--precision <p>', withDefault('fp32, bf16 or fp16', D.precision), parse(K.precision, 'precision'))
    .option('--device <d>', withDefault('cpu, cuda or cuda:N', D.device))
    .option('--masking <scheme>', withDefault("token (BERT 15%, 80/10/10) or whole-word (the authors' scheme, jieba words)", D.masking), parse(K.masking, 'masking'))
    .option('--eval-every <n>', withDefault('evaluate on held-out text every n steps (0: never)', D.evalEvery), parse(K.evalEvery, 'eval-every'))
    .option('--save-every <n>', withDefault('checkpoint every n steps (0: only at the end)', D.saveEvery), parse(K.saveEvery, 'save-every'))
    .option('--seed <n>', withDefault('random seed', D.seed), parse(K.seed, 'seed'));
  return addLaunchFlags(command).action(
    asRank(async (options: PretrainFlags) => {
      const { resolvePretrainConfig } = await import('../pretrain/config.js');
      const { pretrain } = await import('../pretrain/pretrain.js');
      const { config: file, resume, ...flags } = options;
      const out = flags.out ?? (flags.demo ? 'runs/demo' : undefined);
      const config = resume
        ? await resumedConfig<PretrainConfig>('pretrain', out, { steps: flags.steps })
        : await resolvePretrainConfig({ file, flags });
      const { results, writer } = await runStageInTerminal((hooks) => pretrain(config, hooks), { resume: Boolean(resume), logEvery: config.logEvery });
      if (!writer) return;
      console.log(`metrics ${config.out}/metrics.jsonl, curves ${config.out}/report.svg`);
      if (config.demo && !results.interrupted) await demoFillMask(results.model, results.tokenizer);
    }),
  );
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

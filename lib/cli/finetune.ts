// `roformer finetune`: fine-tuning on one labelled task (lib/tasks/finetune.ts)
// through the terminal runner (progress, Ctrl-C → checkpoint, --resume), and at
// the end the dev/test metrics beside the majority-class baseline. `--demo` runs
// the built-in poetry tasks instead (finetune-demo.ts). Defaults: lib/tasks/config.ts.

import { Command } from 'commander';

import { FINETUNE_DEFAULTS as D, FINETUNE_KINDS as K, type FinetuneConfig } from '../tasks/config.js';
import { runFinetune } from './finetune-run.js';
import { splitArchitectureFlags, type ArchitectureFlags } from './architecture-options.js';
import { addLaunchFlags, asRank } from './launch.js';
import { settingFlags } from './options.js';
import { resumedConfig } from './run-stage.js';
import { addTrainingFlags, given, modelConfigFromFlag, taskFromFlags, taskHelp, type JsonlFlags } from './task-options.js';

interface FinetuneFlags extends JsonlFlags, ArchitectureFlags {
  task?: string;
  train?: string;
  dev?: string;
  test?: string;
  model?: string;
  out?: string;
  demo?: boolean;
  resume?: boolean;
  modelConfig?: string;
  epochs?: number;
  maxSteps?: number;
  batchSize?: number;
  lr?: number;
  optimizer?: FinetuneConfig['optimizer'];
  maxLength?: number;
  evalEvery?: number;
  saveEvery?: number;
  size?: FinetuneConfig['size'];
  vocabSize?: number;
  noise?: boolean;
  seed?: number;
  device?: FinetuneConfig['device'];
  precision?: FinetuneConfig['precision'];
}

const setting = settingFlags(D, K);

export function finetuneCommand(): Command {
  const command = new Command('finetune')
    .description(`fine-tune a RoFormerV2 on one labelled task (defaults: the authors' CLUE recipe: ${D.optimizer}, lr ${D.lr}, batch ${D.batchSize}, ${D.epochs} epochs)`)
    .option('--task <name>', taskHelp())
    .option('--train <file>', 'training file in the task’s format')
    .option('--dev <file>', 'dev file: evaluated every epoch and at the end')
    .option('--test <file>', 'test file: evaluated at the end (unlabelled records are skipped in the metrics)')
    .option('--model <dir>', 'model dir, checkpoint or run dir to start from (default: a fresh model, vocab built from --train)')
    .option('--out <dir>', 'run directory: checkpoints, metrics.jsonl, report.svg, results.json, model/')
    .option('--demo', 'the built-in demo: three poetry tasks from the chinese-poetry package, a few minutes on CPU')
    .option('--resume', 'continue the run in --out from its latest checkpoint (its own settings; --epochs/--max-steps may extend it)')
    .option(...setting('epochs', '<n>', 'passes over the training set'))
    .option(...setting('maxSteps', '<n>', 'stop after n optimiser steps even if the epochs are not done (0: no cap)'))
    .option(...setting('maxLength', '<n>', "tokens per sequence, [CLS]/[SEP] included (default: the task's, 128 for most)"))
    .option('--noise', "the authors' light input noise on training inputs (≈15% of tokens, in adjacent pairs)");
  return addLaunchFlags(addTrainingFlags(command, '--train'))
    .option('--text-field <name>', `--task jsonl: the record field holding the text (default 'text'; 'sentence1' for a pair)`)
    .option('--text-field2 <name>', '--task jsonl: the second text of a sentence pair (implies --kind pair)')
    .option('--label-field <name>', "--task jsonl: the record field holding the label (default 'label'; multilabel: an array)")
    .option('--kind <kind>', '--task jsonl: classification (default), multilabel or pair')
    .addHelpText(
      'after',
      `
--eval-every and --save-every default to ${D.evalEvery}: once per epoch.

Examples:
  roformer finetune --task eprstmt --train train.json --dev dev.json --test test.json --model runs/demo --out runs/eprstmt
  roformer finetune --task jsonl --text-field review --label-field stars --train my.jsonl --dev my-dev.jsonl --out runs/mine
  roformer finetune --demo`,
    )
    .action(
      asRank(async (flags: FinetuneFlags) => {
        if (flags.demo) {
          const { finetuneDemo } = await import('./finetune-demo.js');
          return finetuneDemo(flags);
        }
        const config = flags.resume
          ? await resumedConfig<FinetuneConfig>('finetune', flags.out, { epochs: flags.epochs, maxSteps: flags.maxSteps })
          : await newConfig(flags);
        await runFinetune(config, Boolean(flags.resume), '', flags.modelConfig);
      }),
    );
}

/** A new run: the recipe's defaults, overridden by the flags given. */
async function newConfig(flags: FinetuneFlags): Promise<FinetuneConfig> {
  const missing = (['task', 'train', 'out'] as const).filter((f) => !flags[f]);
  if (missing.length > 0) throw new Error(`finetune needs ${missing.map((f) => `--${f}`).join(', ')} (or --demo; see roformer finetune --help)`);
  const { rest, model: modelConfig } = splitArchitectureFlags(flags, modelConfigFromFlag(flags.modelConfig));
  const { task, train, dev, test, model, out, textField, textField2, labelField, kind, demo, resume, modelConfig: _file, ...recipe } = rest;
  void demo, resume, _file;
  return {
    ...D,
    ...given(recipe),
    task: await taskFromFlags(task!, { textField, textField2, labelField, kind }),
    train: train!,
    ...given({ dev, test, model, modelConfig }),
    out: out!,
  };
}

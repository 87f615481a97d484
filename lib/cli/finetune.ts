// `roformer finetune`: fine-tuning on one labelled task (lib/tasks/finetune.ts)
// with a progress bar, Ctrl-C → checkpoint, --resume, and at the end the
// dev/test metrics beside the majority-class baseline. `--demo` runs the
// built-in poetry tasks instead (finetune-demo.ts).

import { Command } from 'commander';

import type { FinetuneConfig } from '../tasks/finetune.js';
import { number } from './options.js';
import { runFinetune } from './finetune-run.js';
import { addTrainingFlags, given, modelConfigFromFlag, taskFromFlags, taskHelp, type JsonlFlags } from './task-options.js';

interface FinetuneFlags extends JsonlFlags {
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

export function finetuneCommand(): Command {
  const command = new Command('finetune')
    .description("fine-tune a RoFormerV2 on one labelled task (defaults: the authors' CLUE recipe: Adafactor, lr 5e-4, batch 32, 10 epochs)")
    .option('--task <name>', taskHelp())
    .option('--train <file>', 'training file in the task’s format')
    .option('--dev <file>', 'dev file: evaluated every epoch and at the end')
    .option('--test <file>', 'test file: evaluated at the end (unlabelled records are skipped in the metrics)')
    .option('--model <dir>', 'model dir, checkpoint or run dir to start from (default: a fresh model, vocab built from --train)')
    .option('--out <dir>', 'run directory: checkpoints, metrics.jsonl, report.svg, results.json, model/')
    .option('--demo', 'the built-in demo: three poetry tasks from the chinese-poetry package, a few minutes on CPU')
    .option('--resume', 'continue the run in --out from its latest checkpoint (its own settings; --epochs/--max-steps may extend it)')
    .option('--epochs <n>', 'passes over the training set (default 10)', number('epochs'))
    .option('--max-steps <n>', 'stop after n optimiser steps even if the epochs are not done (0: no cap)', number('max-steps'))
    .option('--batch-size <n>', 'examples per step (default 32)', number('batch-size'))
    .option('--lr <x>', 'learning rate (default 5e-4)', number('lr'))
    .option('--max-length <n>', "tokens per sequence, [CLS]/[SEP] included (default: the task's, 128 for most)", number('max-length'))
    .option('--eval-every <n>', 'evaluate on dev every n steps (default 0: once per epoch)', number('eval-every'))
    .option('--save-every <n>', 'checkpoint every n steps (default 0: once per epoch)', number('save-every'))
    .option('--noise', "the authors' light input noise on training inputs (≈15% of tokens, in adjacent pairs)");
  return addTrainingFlags(command, '--train')
    .option('--text-field <name>', `--task jsonl: the record field holding the text (default 'text'; 'sentence1' for a pair)`)
    .option('--text-field2 <name>', '--task jsonl: the second text of a sentence pair (implies --kind pair)')
    .option('--label-field <name>', "--task jsonl: the record field holding the label (default 'label'; multilabel: an array)")
    .option('--kind <kind>', '--task jsonl: classification (default), multilabel or pair')
    .addHelpText(
      'after',
      `
Examples:
  roformer finetune --task eprstmt --train train.json --dev dev.json --test test.json --model runs/demo --out runs/eprstmt
  roformer finetune --task jsonl --text-field review --label-field stars --train my.jsonl --dev my-dev.jsonl --out runs/mine
  roformer finetune --demo`,
    )
    .action(async (flags: FinetuneFlags) => {
      if (flags.demo) {
        const { finetuneDemo } = await import('./finetune-demo.js');
        return finetuneDemo(flags);
      }
      const config = flags.resume ? await resumedConfig(flags) : await newConfig(flags);
      const results = await runFinetune(config, Boolean(flags.resume));
      if (results.interrupted) process.exitCode = 130; // after the checkpoint and results, as Ctrl-C asked
    });
}

/** A new run: the recipe's defaults, overridden by the flags given. */
async function newConfig(flags: FinetuneFlags): Promise<FinetuneConfig> {
  const missing = (['task', 'train', 'out'] as const).filter((f) => !flags[f]);
  if (missing.length > 0) throw new Error(`finetune needs ${missing.map((f) => `--${f}`).join(', ')} (or --demo; see roformer finetune --help)`);
  const { FINETUNE_DEFAULTS } = await import('../tasks/finetune.js');
  const { task, train, dev, test, model, out, modelConfig, textField, textField2, labelField, kind, demo, resume, ...recipe } = flags;
  void demo, resume;
  // A JSONL task's labels come from its training file: resolved here, so the config holds a complete task.
  const { resolveTask } = await import('../tasks/load.js');
  const spec = await taskFromFlags(task!, { textField, textField2, labelField, kind });
  return {
    ...FINETUNE_DEFAULTS,
    ...given(recipe),
    task: typeof spec === 'string' ? spec : await resolveTask(spec, train),
    train: train!,
    ...given({ dev, test, model, modelConfig: modelConfigFromFlag(modelConfig) }),
    out: out!,
  };
}

/**
 * A resumed run keeps its own settings (run_config.json) and its task exactly
 * as trained (labels in head order, from the checkpoint's tasks.json); only
 * --epochs and --max-steps may extend it.
 */
async function resumedConfig(flags: FinetuneFlags): Promise<FinetuneConfig> {
  if (!flags.out) throw new Error('--resume needs --out: the run directory to continue');
  const { readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { readRunConfig } = await import('../training/run-dir.js');
  const { resolveCheckpointDir } = await import('../training/checkpoint.js');
  const { TASKS_FILE } = await import('../tasks/setup.js');
  const saved = await readRunConfig<FinetuneConfig>(flags.out);
  if (!saved) throw new Error(`--resume: ${flags.out} is not a finetune run (no run_config.json)`);
  const checkpoint = await resolveCheckpointDir(flags.out);
  const [task] = JSON.parse(await readFile(join(checkpoint, TASKS_FILE), 'utf8')) as FinetuneConfig['task'][];
  return { ...saved, task: task ?? saved.task, out: flags.out, ...given({ epochs: flags.epochs, maxSteps: flags.maxSteps }) };
}

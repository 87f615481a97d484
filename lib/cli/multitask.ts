// `roformer multitask`: supervised multi-task training (lib/tasks/multitask.ts)
// over the tasks of a tasks.json, one task per micro-batch, with a progress
// bar, Ctrl-C → checkpoint, --resume, and the per-task dev metrics at the end.

import { Command } from 'commander';

import type { MultitaskConfig } from '../tasks/multitask.js';
import { number } from './options.js';
import { metricNames, percent, table } from './results-table.js';
import { runStageInTerminal } from './run-stage.js';
import { addTrainingFlags, given, modelConfigFromFlag, oneOf } from './task-options.js';

type MultitaskFlags = Partial<Omit<MultitaskConfig, 'modelConfig'>> & { modelConfig?: string; resume?: boolean };

export function multitaskCommand(): Command {
  const command = new Command('multitask')
    .description('supervised multi-task training: every micro-batch one task of tasks.json, drawn ∝ its weight, MLM optional')
    .option('--tasks <file>', 'the task list (see below)')
    .option('--model <dir>', 'model dir, checkpoint or run dir to start from (default: a fresh model, vocab built from the training files)')
    .option('--out <dir>', 'run directory: checkpoints, metrics.jsonl, report.svg, results.json, model/')
    .option('--resume', 'continue the run in --out from its latest checkpoint (its own settings; --steps may extend it)')
    .option('--steps <n>', 'optimiser steps (default 1000)', number('steps'))
    .option('--accumulate <n>', 'micro-batches (each one task) per optimiser step (default 4)', number('accumulate'))
    .option('--batch-size <n>', 'examples per micro-batch, unless a task sets its own batchSize (default 32)', number('batch-size'))
    .option('--gradient-normalization <mode>', "unit (default: each task's gradient scaled to norm 1 before the sum), pareto (Frank–Wolfe weights) or none (plain sum)", oneOf('gradient-normalization', ['none', 'unit', 'pareto'] as const))
    .option('--noise', "the authors' light input noise on supervised inputs (default on)")
    .option('--no-noise', 'train on the inputs as they are')
    .option('--lr <x>', 'peak learning rate (default 5e-4)', number('lr'))
    .option('--warmup-steps <n>', 'linear warm-up steps (default 50)', number('warmup-steps'))
    .option('--eval-every <n>', "evaluate every task's dev set every n steps (default 100)", number('eval-every'))
    .option('--save-every <n>', 'checkpoint every n steps (default 200)', number('save-every'));
  return addTrainingFlags(command, 'the training files')
    .addHelpText(
      'after',
      `
tasks.json (paths relative to the file; weight, maxLength and batchSize optional):
  { "tasks": [
      { "name": "tnews", "files": { "train": "tnews/train.json", "dev": "tnews/dev.json" }, "weight": 2 },
      { "name": "mine", "task": { "kind": "classification", "textField": "text", "labelField": "label" },
        "files": { "train": "mine.jsonl", "dev": "mine-dev.jsonl" }, "maxLength": 64 },
      { "name": "mlm", "files": { "corpus": ["poems.txt"] }, "weight": 0.5 } ] }`,
    )
    .action(async (flags: MultitaskFlags) => {
      const config = flags.resume ? await resumedConfig(flags) : await newConfig(flags);
      const { multitask } = await import('../tasks/multitask.js');
      const { results, writer } = await runStageInTerminal((hooks) => multitask(config, hooks), Boolean(flags.resume));
      if (!writer) return;
      const names = Object.keys(results.tasks);
      const metrics = metricNames(names.map((n) => results.tasks[n] ?? null));
      console.log(`\n${results.steps} steps in ${Math.round(results.seconds)}s; dev metrics per task:`);
      console.log(table([['task', ...metrics], ...names.map((n) => [n, ...metrics.map((m) => percent(results.tasks[n]?.[m as 'accuracy']))])]));
      console.log(`\nresults ${config.out}/results.json\nmodel   ${results.model}  (roformer eval/predict --model ${results.model} --task <name>)`);
      if (results.interrupted) process.exitCode = 130; // after the checkpoint and results, as Ctrl-C asked
    });
}

async function newConfig(flags: MultitaskFlags): Promise<MultitaskConfig> {
  if (!flags.tasks || !flags.out) throw new Error('multitask needs --tasks <tasks.json> and --out <dir> (see roformer multitask --help)');
  const { MULTITASK_DEFAULTS } = await import('../tasks/multitask.js');
  const { modelConfig, resume, ...rest } = flags;
  void resume;
  return { ...MULTITASK_DEFAULTS, ...given(rest), ...given({ modelConfig: modelConfigFromFlag(modelConfig) }), tasks: flags.tasks, out: flags.out };
}

/** A resumed run keeps its own settings (run_config.json); only --steps may extend it. */
async function resumedConfig(flags: MultitaskFlags): Promise<MultitaskConfig> {
  if (!flags.out) throw new Error('--resume needs --out: the run directory to continue');
  const { readRunConfig } = await import('../training/run-dir.js');
  const saved = await readRunConfig<MultitaskConfig>(flags.out);
  if (!saved) throw new Error(`--resume: ${flags.out} is not a multitask run (no run_config.json)`);
  return { ...saved, out: flags.out, ...given({ steps: flags.steps }) };
}

// `roformer multitask`: supervised multi-task training (lib/tasks/multitask.ts) over
// the tasks of a tasks.json, one task per micro-batch, through the terminal runner
// (progress, Ctrl-C → checkpoint, --resume), and the per-task dev metrics at the end.

import { Command } from 'commander';

import { MULTITASK_DEFAULTS as D, MULTITASK_KINDS as K, type MultitaskConfig } from '../tasks/config.js';
import { splitArchitectureFlags, type ArchitectureFlags } from './architecture-options.js';
import { addLaunchFlags, asRank } from './launch.js';
import { settingFlags } from './options.js';
import { metricNames, percent, table } from './results-table.js';
import { resumedConfig, runStageInTerminal } from './run-stage.js';
import { addTrainingFlags, given, modelConfigFromFlag } from './task-options.js';

type MultitaskFlags = Partial<Omit<MultitaskConfig, 'modelConfig'>> & ArchitectureFlags & { modelConfig?: string; resume?: boolean };

const setting = settingFlags(D, K);

export function multitaskCommand(): Command {
  const command = new Command('multitask')
    .description('supervised multi-task training: every micro-batch one task of tasks.json, drawn ∝ its weight, MLM optional')
    .option('--tasks <file>', 'the task list (see below)')
    .option('--model <dir>', 'model dir, checkpoint or run dir to start from (default: a fresh model, vocab built from the training files)')
    .option('--out <dir>', 'run directory: checkpoints, metrics.jsonl, report.svg, results.json, model/')
    .option('--resume', 'continue the run in --out from its latest checkpoint (its own settings; --steps may extend it)')
    .option(...setting('steps', '<n>', 'optimiser steps'))
    .option(...setting('accumulate', '<n>', 'micro-batches (each one task) per optimiser step'))
    .option(...setting('gradientNormalization', '<mode>', "unit (each task's gradient scaled to norm 1 before the sum), pareto (Frank–Wolfe weights) or none (plain sum)"))
    .option('--noise', `the authors' light input noise on supervised inputs (default ${D.noise ? 'on' : 'off'})`)
    .option('--no-noise', 'train on the inputs as they are')
    .option(...setting('warmupSteps', '<n>', 'linear warm-up steps'))
    .option(...setting('field', '<name>', 'the mlm task\'s JSONL field holding the text (its own "field" in tasks.json overrides it)'));
  return addLaunchFlags(addTrainingFlags(command, 'the training files'))
    .addHelpText(
      'after',
      `
--eval-every defaults to ${D.evalEvery}, --save-every to ${D.saveEvery}.

tasks.json (paths relative to the file; weight, maxLength and batchSize optional):
  { "tasks": [
      { "name": "tnews", "files": { "train": "tnews/train.json", "dev": "tnews/dev.json" }, "weight": 2 },
      { "name": "mine", "task": { "kind": "classification", "textField": "text", "labelField": "label" },
        "files": { "train": "mine.jsonl", "dev": "mine-dev.jsonl" }, "maxLength": 64 },
      { "name": "mlm", "files": { "corpus": ["poems.jsonl"] }, "field": "sentence", "weight": 0.5 } ] }`,
    )
    .action(
      asRank(async (flags: MultitaskFlags) => {
        const config = flags.resume ? await resumedConfig<MultitaskConfig>('multitask', flags.out, { steps: flags.steps }) : newConfig(flags);
        const { multitask } = await import('../tasks/multitask.js');
        const { results, writer } = await runStageInTerminal((hooks) => multitask(config, hooks), { resume: Boolean(flags.resume), modelConfig: flags.modelConfig });
        if (!writer) return;
        const names = Object.keys(results.tasks);
        const metrics = metricNames(names.map((n) => results.tasks[n] ?? null));
        console.log(`\n${results.steps} steps in ${Math.round(results.seconds)}s; dev metrics per task:`);
        console.log(table([['task', ...metrics], ...names.map((n) => [n, ...metrics.map((m) => percent(results.tasks[n]?.[m as 'accuracy']))])]));
        console.log(`\nresults ${config.out}/results.json\nmodel   ${results.model}  (roformer eval/predict --model ${results.model} --task <name>)`);
      }),
    );
}

function newConfig(flags: MultitaskFlags): MultitaskConfig {
  if (!flags.tasks || !flags.out) throw new Error('multitask needs --tasks <tasks.json> and --out <dir> (see roformer multitask --help)');
  const { rest: withoutArchitecture, model: modelConfig } = splitArchitectureFlags(flags, modelConfigFromFlag(flags.modelConfig));
  const { modelConfig: _file, resume, ...rest } = withoutArchitecture;
  void resume, _file;
  return { ...D, ...given(rest), ...given({ modelConfig }), tasks: flags.tasks, out: flags.out };
}

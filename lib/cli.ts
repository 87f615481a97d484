#!/usr/bin/env node
// The `roformer` command: one file per command in lib/cli/, shared progress
// rendering, Ctrl-C handling and error printing there too. `--help` works
// without libtorch: the addon is loaded only by the commands that need it.
// This entry point alone ends the process (exit status 1 on an error); the
// commands set process.exitCode.

import { Command } from 'commander';

import { convertCommand } from './cli/convert.js';
import { doctorCommand } from './cli/doctor.js';
import { describeError } from './cli/errors.js';
import { embedCommand } from './cli/embed.js';
import { evalCommand } from './cli/eval.js';
import { exportCommand } from './cli/export.js';
import { finetuneCommand } from './cli/finetune.js';
import { fillMaskCommand } from './cli/fill-mask.js';
import { infoCommand } from './cli/info.js';
import { initCommand } from './cli/init.js';
import { multitaskCommand } from './cli/multitask.js';
import { predictCommand } from './cli/predict.js';
import { pretrainCommand } from './cli/pretrain.js';
import { vocabCommand } from './cli/vocab.js';

const program = new Command()
  .name('roformer')
  .description('Train and use RoFormerV2 language models on libtorch')
  .version('0.1.0')
  .addCommand(infoCommand())
  .addCommand(doctorCommand())
  .addCommand(initCommand())
  .addCommand(pretrainCommand())
  .addCommand(finetuneCommand())
  .addCommand(multitaskCommand())
  .addCommand(evalCommand())
  .addCommand(predictCommand())
  .addCommand(fillMaskCommand())
  .addCommand(convertCommand())
  .addCommand(exportCommand())
  .addCommand(embedCommand())
  .addCommand(vocabCommand());

program.parseAsync(process.argv).catch((error: unknown) => {
  console.error(describeError(error));
  process.exit(1);
});

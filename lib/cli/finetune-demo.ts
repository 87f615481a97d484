// `roformer finetune --demo`: fine-tuning without downloads. Three labelled
// tasks are built from the chinese-poetry package (lib/tasks/demo-tasks.ts):
// the tune of a Song ci, Tang or Song, the poet of a Tang shi. Each is
// fine-tuned from the pre-training demo's checkpoint (runs/demo) when there is
// one, else from a fresh model of the same shape, for a capped number of steps
// so that the whole demo takes minutes on a laptop CPU, and the table at the
// end sets each task's accuracy against always guessing the majority class.

import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';

import { DEMO_OVERRIDES } from '../pretrain/config.js';
import type { FinetuneConfig, FinetuneResults } from '../tasks/finetune.js';
import { runFinetune } from './finetune-run.js';
import { percent, table } from './results-table.js';
import { given } from './task-options.js';

const DEMO_DIR = 'runs/finetune-demo';
/** Where `roformer pretrain --demo` leaves its run. */
const PRETRAIN_DEMO = 'runs/demo';

/**
 * Sized for a 2-core CPU: the pre-training demo's shape (a fresh model, when there is
 * no pre-trained one, has it too), short sequences (a poem fits in 64 tokens), and a
 * step cap well under the recipe's 10 epochs. A higher learning rate than the
 * recipe's 5e-4, since the runs are short.
 */
const DEMO_RECIPE = {
  modelConfig: DEMO_OVERRIDES.model!,
  maxLength: 64,
  maxSteps: 100,
  lr: 1e-3,
  evalEvery: 50,
  saveEvery: 50,
};

interface DemoFlags {
  task?: string;
  out?: string;
  maxSteps?: number;
  epochs?: number;
  lr?: number;
  seed?: number;
  device?: FinetuneConfig['device'];
  precision?: FinetuneConfig['precision'];
}

export async function finetuneDemo(flags: DemoFlags): Promise<void> {
  const { ensureDemoTasks, DEMO_TASK_NAMES } = await import('../tasks/demo-tasks.js');
  const { FINETUNE_DEFAULTS } = await import('../tasks/finetune.js');
  const root = flags.out ?? DEMO_DIR;
  const all = await ensureDemoTasks(join(root, 'data'));
  // --task picks one of the demo tasks (the quickest way to try it).
  const chosen = flags.task ? all.filter((t) => t.task.name === flags.task) : all;
  if (chosen.length === 0) throw new Error(`--demo --task: the demo tasks are ${DEMO_TASK_NAMES.join(', ')}, not '${flags.task}'`);

  const pretrained = existsSync(join(PRETRAIN_DEMO, 'latest')) ? PRETRAIN_DEMO : undefined;
  const recipe = { ...DEMO_RECIPE, ...given({ maxSteps: flags.maxSteps, epochs: flags.epochs, lr: flags.lr, seed: flags.seed, device: flags.device, precision: flags.precision }) };
  console.log(
    pretrained
      ? `starting from the pre-training demo's checkpoint: ${pretrained}/latest`
      : `starting from a fresh model (${recipe.modelConfig.num_hidden_layers} layers, ${recipe.modelConfig.hidden_size} wide): run \`roformer pretrain --demo\` first to start from a pre-trained one`,
  );
  console.log(`demo recipe: at most ${recipe.maxSteps} steps per task (the full recipe is ${FINETUNE_DEFAULTS.epochs} epochs), batch ${FINETUNE_DEFAULTS.batchSize}, length ${recipe.maxLength}, lr ${recipe.lr}`);
  console.log(`tasks: ${chosen.map((t) => `${t.task.name} (${t.counts.train}/${t.counts.dev}/${t.counts.test} train/dev/test, ${t.task.labels.length} classes)`).join('; ')}\n`);

  const done: Array<{ name: string; results: FinetuneResults }> = [];
  for (const demo of chosen) {
    const out = join(root, demo.task.name);
    // The demo always starts over: its run dirs are its own, and a rerun should just work.
    if (existsSync(out)) await rm(out, { recursive: true, force: true });
    console.log(`── ${demo.task.name}: ${demo.task.description}`);
    const results = await runFinetune(
      { ...FINETUNE_DEFAULTS, ...recipe, task: demo.task, train: demo.train, dev: demo.dev, test: demo.test, out, ...(pretrained ? { model: pretrained } : {}) },
      false,
    );
    if (results.interrupted) {
      process.exitCode = 130; // stopped by Ctrl-C: the rest of the demo is skipped
      return;
    }
    done.push({ name: demo.task.name, results });
    console.log();
  }

  console.log(`fine-tuning demo (${pretrained ? 'from runs/demo' : 'fresh model'}, ≤ ${recipe.maxSteps} steps per task): accuracy`);
  const rows = [['task', 'dev', 'test', 'majority (test)']];
  for (const { name, results } of done) {
    rows.push([name, percent(results.dev?.accuracy), percent(results.test?.accuracy), percent(results.majority.test)]);
  }
  console.log(table(rows));
  console.log(`\nruns, results.json and fine-tuned models in ${root}/<task>; try: roformer predict --model ${root}/${done[0]!.name} ${chosen[0]!.test}`);
}

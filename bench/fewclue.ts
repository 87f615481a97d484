#!/usr/bin/env node
// FewCLUE through `finetune()`: every task of ../shared/data/fewclue (or --data),
// fine-tuned from a fresh small model (or --model DIR), evaluated on dev and the
// public test set, next to the majority-class baseline. Prints a Markdown table and
// writes the figures as JSON.
//
//   node dist/bench/fewclue.js [--tasks tnews,iflytek] [--epochs 10] [--json bench/results/fewclue.json]

import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Command } from 'commander';

import { finetune, type FinetuneResults } from '../lib/tasks/finetune.js';
import { FEWCLUE_TASKS, fewclueFinetuneConfig, headline, pct } from './fewclue-tasks.js';

/** The authors' published CLUE (full data, base model) figures, for reference only: other data, other model. */
export const PUBLISHED_CLUE: Record<string, number> = { iflytek: 62.5, tnews: 58.74, cluewsc: 82.71, csl: 84.17, ocnli: 74.23, chid: 85.95 };

async function main(): Promise<void> {
  const program = new Command()
    .name('fewclue')
    .option('--data <dir>', 'the FewCLUE datasets folder', '../shared/data/fewclue')
    .option('--tasks <names>', 'comma-separated tasks', FEWCLUE_TASKS.join(','))
    .option('--model <dir>', 'start from this model dir (default: a fresh model)')
    .option('--model-config <json>', 'fresh model config keys', '{"num_hidden_layers":2,"hidden_size":256,"num_attention_heads":4,"intermediate_size":1024}')
    .option('--epochs <n>', 'epochs', Number, 10)
    .option('--max-steps <n>', 'cap on steps per task (0: none)', Number, 0)
    .option('--lr <x>', 'learning rate', Number, 1e-3)
    .option('--max-length <n>', 'tokens per sequence (0: the task default)', Number, 128)
    .option('--out <dir>', 'run dirs', join(tmpdir(), 'roformer-fewclue'))
    .option('--json <file>', 'write the figures as JSON')
    .parse(process.argv);
  const o = program.opts<{ data: string; tasks: string; model?: string; modelConfig: string; epochs: number; maxSteps: number; lr: number; maxLength: number; out: string; json?: string }>();
  const rows: Array<FinetuneResults & { published: number | null }> = [];
  const failures: Array<{ task: string; error: string }> = [];
  for (const task of o.tasks.split(',')) {
    try {
      const started = Date.now();
      const result = await finetune(fewclueFinetuneConfig(task, join(o.out, task), { ...o, modelConfig: JSON.parse(o.modelConfig) }), {});
      console.log(
        `${task}: test ${(100 * headline(result.test)).toFixed(2)} (majority ${result.majority.test === null ? '–' : (100 * result.majority.test).toFixed(2)}), ` +
          `dev ${(100 * headline(result.dev)).toFixed(2)}, ${result.steps} steps, ${((Date.now() - started) / 60000).toFixed(1)} min`,
      );
      rows.push({ ...result, published: PUBLISHED_CLUE[task] ?? null });
    } catch (error) {
      // one task failing does not lose the others' figures
      console.log(`${task}: FAILED: ${(error as Error).message}`);
      failures.push({ task, error: (error as Error).message });
    }
  }
  console.log('\n| task | test acc. (ours) | majority class | dev acc. | steps | minutes | authors, full CLUE, base |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.task} | ${pct(r.test?.accuracy)} | ${pct(r.majority.test)} | ${pct(r.dev?.accuracy)} | ${r.steps} | ${(r.seconds / 60).toFixed(1)} | ${r.published ?? '–'} |`);
  }
  for (const f of failures) console.log(`| ${f.task} | failed: ${f.error} | | | | | |`);
  if (o.json) await writeFile(o.json, JSON.stringify({ date: new Date().toISOString(), options: o, results: rows, failures }, null, 2) + '\n');
}

main().catch((error: unknown) => {
  console.error(`fewclue: ${(error as Error).message}`);
  process.exit(1);
});

// One fine-tuning run in the terminal, shared by `roformer finetune` and its demo
// (finetune-demo.ts runs it once per demo task).

import type { FinetuneConfig, FinetuneResults } from '../tasks/finetune.js';
import { finetuneTable } from './results-table.js';
import { runStageInTerminal } from './run-stage.js';

/** One fine-tuning run with the terminal view: notes, progress, the results table. */
export async function runFinetune(config: FinetuneConfig, resume: boolean, label = '', modelConfig?: string): Promise<FinetuneResults> {
  const { finetune } = await import('../tasks/finetune.js');
  const { results, writer } = await runStageInTerminal((hooks) => finetune(config, hooks), { resume, modelConfig });
  if (!writer) return results;
  console.log(`\n${label || results.task}: ${results.steps} steps (${results.epochs.toFixed(1)} epochs) in ${Math.round(results.seconds)}s on ${results.examples.train} training examples`);
  console.log(finetuneTable(results));
  console.log(`\nresults ${config.out}/results.json\nmodel   ${results.model}  (roformer eval/predict --model ${results.model})`);
  return results;
}

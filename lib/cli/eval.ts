// `roformer eval`: a fine-tuned model's metrics (and mean loss) on a labelled
// file of one of its tasks: a table, or one JSON object with --json.

import { Command } from 'commander';

import { metricNames, percent, table } from './results-table.js';
import { addFineTunedModelFlags } from './task-options.js';

export function evalCommand(): Command {
  const command = new Command('eval').description("score a fine-tuned model on a labelled file of one of its tasks (the task's metrics and the mean loss)");
  return addFineTunedModelFlags(command)
    .requiredOption('--data <file>', "a labelled file in the task's format")
    .option('--json', 'print one JSON object: {task, data, examples, loss, metrics} (metrics as fractions)')
    .action(async (options: { model: string; task?: string; data: string; batchSize: number; maxLength?: number; json?: boolean }) => {
      const { loadFineTuned, pickTask } = await import('../tasks/fine-tuned.js');
      const { evaluateTask, isLabelled } = await import('../tasks/evaluate.js');
      const { loadExamples } = await import('../tasks/setup.js');
      const loaded = await loadFineTuned(options.model);
      const task = pickTask(loaded, options.task);
      // Notes go to stderr so that --json output stays one parseable object.
      const { examples } = await loadExamples(task, options.data, loaded.tokenizer, options.maxLength, (m) => console.error(`note: ${m}`));
      const labelled = examples.filter((e) => isLabelled(e.example));
      if (labelled.length === 0) throw new Error(`${options.data}: no labelled record to score (for unlabelled data use roformer predict)`);
      const result = await evaluateTask(loaded.trainer, task, labelled, { batchSize: options.batchSize });
      if (options.json) {
        console.log(JSON.stringify({ task: task.name, data: options.data, examples: result.examples, loss: result.loss, metrics: result.metrics }));
        return;
      }
      console.log(`${task.name} on ${options.data}: ${result.examples} labelled examples${examples.length > labelled.length ? ` (${examples.length - labelled.length} unlabelled skipped)` : ''}`);
      const rows = metricNames([result.metrics]).map((name) => [name, percent(result.metrics[name as keyof typeof result.metrics])]);
      if (result.loss !== null) rows.push(['loss', result.loss.toFixed(4)]);
      console.log(table(rows));
    });
}

// `roformer predict`: a fine-tuned model's predictions on a file, one JSON line
// per record in file order, in the task's own terms (label strings, option
// index and text, character spans).

import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';

import { Command } from 'commander';

import type { Choice, TaskRecord } from '../tasks/formats.js';
import type { Task } from '../tasks/registry.js';
import type { LoadedExample, Prediction } from '../tasks/types.js';
import { addFineTunedModelFlags, predictionsFile } from './task-options.js';

export function predictCommand(): Command {
  const command = new Command('predict').description('predict with a fine-tuned model: one JSON line per record of <file>, in file order');
  return addFineTunedModelFlags(command)
    .option('--out <file>', 'write the JSON lines here; its directory is created when missing (default: stdout)', predictionsFile)
    .argument('<file>', "records in the task's format (labels not needed)")
    .addHelpText(
      'after',
      `
Each line is {"id", "line", …} (line: 1-based line of the record in <file>) and, by task kind:
  classification, pairs   "label": the predicted label, "score": its probability
  multilabel              "labels": the predicted labels
  multiple choice         "answer": the chosen option's text, "option": its index (0-based)
  spans (NER, reading)    "spans": [{"label", "text", "start", "end", "score"}], start/end character
                          offsets into the record's text, end EXCLUSIVE (text = text.slice(start, end)).
                          Note CLUE files write entity ends inclusive; these are not.`,
    )
    .action(async (file: string, options: { model: string; task?: string; out?: string; batchSize: number; maxLength?: number }) => {
      const { loadFineTuned, pickTask } = await import('../tasks/fine-tuned.js');
      const { evaluateTask } = await import('../tasks/evaluate.js');
      const { loadExamples } = await import('../tasks/setup.js');
      const loaded = await loadFineTuned(options.model);
      const task = pickTask(loaded, options.task);
      // Notes on stderr: stdout may be the predictions themselves.
      const data = await loadExamples(task, file, loaded.tokenizer, options.maxLength, (m) => console.error(`note: ${m}`));
      const { predictions } = await evaluateTask(loaded.trainer, task, data.examples, { batchSize: options.batchSize });
      const records = new Map(data.records.map((r) => [`${r.line}\u0000${r.id}`, r.record]));
      const lines = data.examples.map((e, i) => JSON.stringify(predictionLine(task, e, predictions[i]!, records.get(`${e.line}\u0000${e.id}`))) + '\n');
      if (options.out) {
        await mkdir(dirname(options.out), { recursive: true }).catch((error: Error) => {
          throw new Error(`--out ${options.out}: cannot create its directory (${error.message})`);
        });
        const stream = createWriteStream(options.out);
        // A write error (no permission, disk full) rejects with the path instead of an unhandled 'error' event.
        await new Promise<void>((done, fail) => {
          stream.on('error', (error) => fail(new Error(`--out ${options.out}: ${error.message}`)));
          for (const line of lines) stream.write(line);
          stream.end(done);
        });
        console.error(`wrote ${lines.length} predictions to ${options.out}`);
      } else {
        process.stdout.write(lines.join(''));
      }
    });
}

const softmax = (scores: number[]) => {
  const max = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
};

/** One output line: the prediction in the task's terms. */
function predictionLine(task: Task, loaded: LoadedExample, p: Prediction, record: TaskRecord | undefined): Record<string, unknown> {
  const at = { id: loaded.id, line: loaded.line };
  switch (p.kind) {
    case 'classification':
      return { ...at, label: task.labels[p.label], score: +softmax(p.scores)[p.label]!.toFixed(4) };
    case 'multilabel':
      return { ...at, labels: p.labels.map((l) => task.labels[l]) };
    case 'multiple-choice': {
      const text = record?.kind === 'multiple-choice' ? optionTexts(record.choices)[p.label] : undefined;
      return { ...at, answer: text ?? null, option: p.label };
    }
    case 'span':
      return { ...at, spans: p.spans.map((s) => ({ label: task.labels[s.label], text: s.text, start: s.charStart, end: s.charEnd, score: +s.score.toFixed(4) })) };
  }
}

/**
 * The option of each choice as a user would name it. A choice is what the
 * model reads, not the option alone: chid fills the candidate idiom into the
 * passage (its `focus` marks where), c3 appends it to the question
 * ("question option", the question shared by all choices).
 */
function optionTexts(choices: readonly Choice[]): string[] {
  if (choices.every((c) => c.focus)) return choices.map((c) => c.text.slice(c.focus![0], c.focus![1]));
  const seconds = choices.map((c) => c.textB ?? '');
  if (seconds.every((s) => s !== '')) {
    // The shared question ends at the last space of the common prefix (options may share their first characters).
    let common = 0;
    while (common < seconds[0]!.length && seconds.every((s) => s[common] === seconds[0]![common])) common++;
    const cut = seconds[0]!.lastIndexOf(' ', common - 1) + 1;
    return seconds.map((s) => s.slice(cut));
  }
  return choices.map((c) => c.text);
}

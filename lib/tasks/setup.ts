// What fine-tuning and multi-task training both need before the first step: the
// encoder and its vocab (a given model dir, or a fresh model with a vocab built
// from the training files), the tasks' examples, and the heads they train.

import { textLines } from '../data/data-file.js';
import { buildVocab, SPECIAL_TOKENS, Tokenizer } from '../data/tokenizer.js';
import type { ModelSize } from '../model/config.js';
import type { EncoderConfig } from '../model/encoder-config.js';
import { createEncoder, type TrainableEncoder } from '../model/model.js';
import { loadEncoder } from '../training/model-source.js';
import { manualSeed } from '../model/runtime.js';
import { VOCAB_FILE } from '../model/model-dir.js';
import type { InputNoiseOptions } from './batch.js';
import type { HeadSpec, HeadSpecs } from '../training/heads.js';
import { formatProblems, loadTaskFile, type LoadedTaskFile } from './load.js';
import type { Task } from './registry.js';
import type { RecordProblem } from './types.js';

/** What a stage reports to, and takes from, its caller: lib/training/stage.ts. */
export type { StageHooks } from '../training/stage.js';

/** The file every fine-tuned model dir and checkpoint carries: its tasks, labels in head order. */
export const TASKS_FILE = 'tasks.json';

export interface EncoderChoice {
  /** A model dir, a checkpoint or a run dir (its latest checkpoint); absent: a fresh model. */
  model?: string;
  /** Size of a fresh model. */
  size: ModelSize;
  /** Keys of a fresh model's config overriding the size (e.g. num_hidden_layers; model_type "gau_alpha" for GAU-α). */
  config?: Partial<EncoderConfig>;
  /** Vocab size of a fresh model's vocab, built from `vocabTexts`. */
  vocabSize: number;
  seed: number;
}

/**
 * The encoder and tokenizer to train: loaded from a model dir (its vocab.txt
 * beside it), or a fresh model whose vocab is built from the training files.
 */
export async function prepareEncoder(choice: EncoderChoice, vocabFiles: readonly string[]): Promise<{ model: TrainableEncoder; tokenizer: Tokenizer; dir: string | null }> {
  if (choice.model) {
    const { model, tokenizer, dir } = await loadEncoder(choice.model, 'a model dir to fine-tune needs the vocab it was trained with');
    // libtorch seeds its generator from the OS at start: a loaded model draws nothing from it, so
    // seed it here, as createEncoder does for a new model — the heads' initialisation and dropout
    // then follow the stage's seed (a resumed run restores the checkpoint's generator state after this).
    manualSeed(choice.seed);
    return { model: model.train(), tokenizer, dir };
  }
  async function* texts() {
    for (const file of vocabFiles) for await (const lines of textLines(file)) yield lines.map((l) => l.text).join('\n');
  }
  const tokenizer = Tokenizer.fromTokens(await buildVocab(texts(), { size: choice.vocabSize }), 'built from the training files');
  const model = createEncoder({ size: choice.size, config: { ...choice.config, vocab_size: tokenizer.size }, seed: choice.seed });
  return { model, tokenizer, dir: null };
}

/** The head a task trains. */
export function headFor(task: Task): HeadSpec {
  // A multiple-choice head scores each option with one output: it has no label names (the task's labels are empty).
  if (task.head === 'multiple-choice') return { kind: task.head, numLabels: 1 };
  return { kind: task.head, numLabels: task.labels.length, labels: task.labels };
}

export function headsFor(tasks: readonly Task[]): HeadSpecs {
  return Object.fromEntries(tasks.map((t) => [t.name, headFor(t)]));
}

/** Loads one file of a task, reporting bad and repaired records (file:line) through `report`. */
export async function loadExamples(
  task: Task,
  file: string,
  tokenizer: Tokenizer,
  maxLength: number | undefined,
  report: (message: string) => void,
  { training = false } = {},
): Promise<LoadedTaskFile> {
  const loaded = await loadTaskFile(task, file, tokenizer, { maxLength, requireLabels: training });
  if (loaded.problems.length > 0) {
    report(`${file}: ${loaded.problems.length} bad record(s) skipped:\n${formatProblems(loaded.problems as RecordProblem[])}`);
  }
  if (loaded.repairs.length > 0) {
    report(`${file}: ${loaded.repairs.length} repair(s), records kept:\n${formatProblems(loaded.repairs as RecordProblem[])}`);
  }
  for (const warning of loaded.warnings) report(`${file}: ${warning}`);
  if (loaded.droppedSpans > 0) report(`${file}: ${loaded.droppedSpans} gold span(s) cut by truncation to ${maxLength ?? task.maxLength} tokens were dropped`);
  return loaded;
}

/** What every checkpoint and the final model dir of a supervised run carry besides the weights. */
export function runFiles(tokenizer: Tokenizer, tasks: readonly Task[]): Record<string, string> {
  return { [VOCAB_FILE]: tokenizer.vocabFileText(), [TASKS_FILE]: JSON.stringify(tasks, null, 2) + '\n' };
}

/** The authors' light input noise for this vocab: [MASK] replaces, special tokens are never touched. */
export function inputNoise(tokenizer: Tokenizer): InputNoiseOptions {
  return { maskId: tokenizer.tokenToId('[MASK]'), vocabSize: tokenizer.size, specialIds: SPECIAL_TOKENS.map((t) => tokenizer.tokenToId(t)) };
}

// Flags shared by the supervised commands (finetune, eval, predict, multitask):
// which task (a built-in name or `--task jsonl` with its fields), a fresh
// model's config overrides, and the one-of checks commander cannot express.

import { existsSync, readFileSync } from 'node:fs';

import type { Command } from 'commander';

import type { EncoderConfig } from '../model/encoder-config.js';
import { EVAL_BATCH_SIZE, FINETUNE_DEFAULTS as D, FINETUNE_KINDS as K } from '../tasks/config.js';
import { TASK_NAMES, type JsonlTaskSpec } from '../tasks/registry.js';
import { outputFile, positiveInteger } from '../util/value-kinds.js';
import { addArchitectureFlags } from './architecture-options.js';
import { parse, settingFlags } from './options.js';

/** The name that selects the generic JSON Lines task. */
export const JSONL_TASK = 'jsonl';

/** The flags that describe a user's JSON Lines task (`--task jsonl`). */
export interface JsonlFlags {
  textField?: string;
  textField2?: string;
  labelField?: string;
  kind?: string;
}

const TASK_HELP = `a built-in task (${TASK_NAMES.join(', ')}) or '${JSONL_TASK}' for your own JSON Lines data (see --text-field)`;

/** The --task flag's help text: every name it accepts. */
export const taskHelp = () => TASK_HELP;

/**
 * What `--task` names: a built-in task's name (checked here, so a typo fails
 * before any model is loaded, with the list of names), or a JsonlTaskSpec
 * built from --text-field/--text-field2/--label-field/--kind.
 */
export async function taskFromFlags(name: string, jsonl: JsonlFlags): Promise<string | JsonlTaskSpec> {
  if (name.toLowerCase() !== JSONL_TASK) {
    const { getTask } = await import('../tasks/registry.js');
    try {
      return getTask(name).name;
    } catch {
      throw new Error(`unknown --task '${name}': use one of ${TASK_NAMES.join(', ')}, or '${JSONL_TASK}' with --text-field and --label-field for your own JSON Lines data`);
    }
  }
  const kind = jsonl.kind ?? (jsonl.textField2 ? 'pair' : 'classification');
  if (kind !== 'classification' && kind !== 'multilabel' && kind !== 'pair') {
    throw new Error(`--kind must be classification, multilabel or pair, got '${kind}'`);
  }
  if (kind === 'pair' && !jsonl.textField2) throw new Error('--kind pair needs two text fields: --text-field A --text-field2 B');
  const textFields = [jsonl.textField ?? (kind === 'pair' ? 'sentence1' : 'text'), ...(jsonl.textField2 ? [jsonl.textField2] : [])];
  return { kind, name: JSONL_TASK, textFields, labelField: jsonl.labelField ?? 'label' };
}

/**
 * `--model-config`: a JSON file, or the JSON itself ('{"num_hidden_layers": 2}').
 * Its keys' types and values are checked against the model size by the stage,
 * with errors naming the key and `modelConfigSource(value)`.
 */
export function modelConfigFromFlag(value: string | undefined): Partial<EncoderConfig> | undefined {
  if (value === undefined) return undefined;
  const inline = value.trim().startsWith('{');
  if (!inline && !existsSync(value)) throw new Error(`--model-config: ${value} is neither a JSON object nor an existing file`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(inline ? value : readFileSync(value, 'utf8'));
  } catch (error) {
    throw new Error(`--model-config: ${inline ? 'invalid JSON' : value}: ${(error as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('--model-config must be a JSON object of config.json keys, e.g. {"num_hidden_layers": 2}');
  return parsed as Partial<EncoderConfig>;
}

/** The flags a user actually gave (commander leaves the others undefined), so they override defaults and nothing else. */
export function given<T extends object>(flags: T): Partial<T> {
  return Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * The flags finetune and multitask share: the optimiser, a fresh model (size, the
 * vocab built `vocabFrom` its training data, config overrides), seed, device, precision.
 */
/** The supervised stages' settings as flags (both share these defaults and kinds: lib/tasks/config.ts). */
const setting = settingFlags(D, K);

export function addTrainingFlags(command: Command, vocabFrom: string): Command {
  // The supervised stages share these defaults (lib/tasks/config.ts).
  return addArchitectureFlags(command)
    .option(...setting('optimizer', '<name>', 'adafactor, adamw or lamb'))
    .option(...setting('lr', '<x>', 'peak learning rate (after the warm-up, constant)'))
    .option(...setting('batchSize', '<n>', 'examples per micro-batch (multitask: unless a task sets its own batchSize)'))
    .option(...setting('size', '<size>', 'fresh model size: small, base, large'))
    .option(...setting('vocabSize', '<n>', `fresh model: tokens in the vocab built from ${vocabFrom}`))
    .option('--model-config <json>', 'fresh model: config.json keys overriding --size, as a JSON file or inline JSON, e.g. \'{"num_hidden_layers": 2}\'')
    // Their defaults differ between finetune and multitask: each command's help says them.
    .option(...setting('evalEvery', '<n>', 'evaluate on dev every n steps', false))
    .option(...setting('saveEvery', '<n>', 'checkpoint every n steps', false))
    .option(...setting('seed', '<n>', 'random seed'))
    .option(...setting('device', '<d>', 'cpu, cuda or cuda:N'))
    .option(...setting('precision', '<p>', 'fp32, bf16 or fp16'));
}

/** The flags eval and predict share: the fine-tuned model, which of its tasks, length and batch size. */
export function addFineTunedModelFlags(command: Command): Command {
  return command
    .requiredOption('--model <dir>', 'a fine-tuned model dir, a finetune/multitask --out dir, a checkpoint or a run dir')
    .option('--task <name>', 'which of the model’s tasks (needed only when it has several)')
    .option(...setting('maxLength', '<n>', 'tokens per sequence (default: the length the model was fine-tuned with)'))
    .option('--batch-size <n>', 'examples per forward pass', parse(positiveInteger, 'batch-size'), EVAL_BATCH_SIZE);
}

/** predict --out: a file path (its directory is created when missing); an existing directory is refused. */
export const predictionsFile = parse(outputFile, 'out');

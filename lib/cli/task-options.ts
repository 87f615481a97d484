// Flags shared by the supervised commands (finetune, eval, predict, multitask):
// which task (a built-in name or `--task jsonl` with its fields), a fresh
// model's config overrides, and the one-of checks commander cannot express.

import { existsSync, readFileSync } from 'node:fs';

import type { Command } from 'commander';

import type { RoFormerV2Config } from '../model/config.js';
import { TASK_NAMES, type JsonlTaskSpec } from '../tasks/registry.js';
import { number } from './options.js';

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

/** `--model-config`: a JSON file, or the JSON itself ('{"num_hidden_layers": 2}'). */
export function modelConfigFromFlag(value: string | undefined): Partial<RoFormerV2Config> | undefined {
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
  return parsed as Partial<RoFormerV2Config>;
}

/** One of a fixed set of values, with an error that names the flag and the choices. */
export const oneOf =
  <T extends string>(flag: string, values: readonly T[]) =>
  (value: string): T => {
    if (!values.includes(value as T)) throw new Error(`--${flag} must be one of ${values.join(', ')}, got '${value}'`);
    return value as T;
  };

/** The flags a user actually gave (commander leaves the others undefined), so they override defaults and nothing else. */
export function given<T extends object>(flags: T): Partial<T> {
  return Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * The flags finetune and multitask share: the optimiser, a fresh model (size, the
 * vocab built `vocabFrom` its training data, config overrides), seed, device, precision.
 */
export function addTrainingFlags(command: Command, vocabFrom: string): Command {
  return command
    .option('--optimizer <name>', 'adafactor (default), adamw or lamb', oneOf('optimizer', ['adafactor', 'adamw', 'lamb'] as const))
    .option('--size <size>', 'fresh model size: small (default), base, large', oneOf('size', ['small', 'base', 'large'] as const))
    .option('--vocab-size <n>', `fresh model: tokens in the vocab built from ${vocabFrom} (default 8000)`, number('vocab-size'))
    .option('--model-config <json>', 'fresh model: config.json keys overriding --size, as a JSON file or inline JSON, e.g. \'{"num_hidden_layers": 2}\'')
    .option('--seed <n>', 'random seed (default 0)', number('seed'))
    .option('--device <d>', 'cpu (default), cuda or cuda:N')
    .option('--precision <p>', 'fp32 (default), bf16 or fp16', oneOf('precision', ['fp32', 'bf16', 'fp16'] as const));
}

/** The flags eval and predict share: the fine-tuned model, which of its tasks, length and batch size. */
export function addFineTunedModelFlags(command: Command): Command {
  return command
    .requiredOption('--model <dir>', 'a fine-tuned model dir, a finetune/multitask --out dir, a checkpoint or a run dir')
    .option('--task <name>', 'which of the model’s tasks (needed only when it has several)')
    .option('--max-length <n>', 'tokens per sequence (default: the length the model was fine-tuned with)', number('max-length'))
    .option('--batch-size <n>', 'examples per forward pass', number('batch-size'), 64);
}

// What a user may point --model at, resolved in one place: a model dir (config.json +
// model.safetensors + vocab.txt), the --out dir of a finetune/multitask run (its model/),
// a checkpoint, or a run dir (its latest checkpoint).

import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { Tokenizer } from '../data/tokenizer.js';
import { CONFIG_FILE, VOCAB_FILE } from '../model/model-dir.js';
import { loadPretrained, type TrainableEncoder } from '../model/model.js';
import { resolveCheckpointDir } from './checkpoint.js';

/** Where a supervised run leaves its final model dir, inside its --out. */
export const MODEL_SUBDIR = 'model';

/** The model dir inside `path` (see above); a CheckpointError names what is missing otherwise. */
export async function resolveModelDir(path: string): Promise<string> {
  if (existsSync(join(path, CONFIG_FILE))) return path;
  if (existsSync(join(path, MODEL_SUBDIR, CONFIG_FILE))) return join(path, MODEL_SUBDIR);
  return resolveCheckpointDir(path);
}

/**
 * The encoder and its vocab from anything resolveModelDir() accepts. `needsVocab`
 * completes "… has no vocab.txt: " (why this use of the model needs it).
 */
export async function loadEncoder(path: string, needsVocab: string): Promise<{ model: TrainableEncoder; tokenizer: Tokenizer; dir: string }> {
  const dir = await resolveModelDir(path);
  const vocab = join(dir, VOCAB_FILE);
  if (!existsSync(vocab)) throw new Error(`${dir} has no ${VOCAB_FILE}: ${needsVocab}`);
  const tokenizer = await Tokenizer.fromFile(vocab);
  const model = await loadPretrained(dir);
  if (model.config.vocab_size !== tokenizer.size) {
    throw new Error(`${dir}: ${VOCAB_FILE} has ${tokenizer.size} tokens but the model's vocab_size is ${model.config.vocab_size} (${CONFIG_FILE})`);
  }
  return { model, tokenizer, dir };
}

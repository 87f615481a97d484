// A fine-tuned model dir, ready to evaluate or predict with: the encoder
// (config.json + model.safetensors, as fromPretrained reads it), its vocab.txt,
// its heads (heads.json + heads.safetensors) and tasks.json (labels in head order).

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { Tokenizer } from '../data/tokenizer.js';
import { loadPretrained, type TrainableEncoder } from '../model/model.js';
import { resolveModelDir } from '../training/model-source.js';
import { VOCAB_FILE } from '../model/model-dir.js';
import { Trainer } from '../training/trainer.js';
import { HEADS_CONFIG_FILE } from '../training/heads.js';
import { taskFromJSON, type Task } from './registry.js';
import { headsFor, TASKS_FILE } from './setup.js';

export interface FineTunedModel {
  dir: string;
  model: TrainableEncoder;
  tokenizer: Tokenizer;
  tasks: Task[];
  /** Holds the heads; predict() and evaluate through it. */
  trainer: Trainer;
}

export async function loadFineTuned(path: string): Promise<FineTunedModel> {
  const dir = await resolveModelDir(path);
  for (const file of [TASKS_FILE, HEADS_CONFIG_FILE, VOCAB_FILE]) {
    if (!existsSync(join(dir, file))) throw new Error(`${dir} is not a fine-tuned model dir: it has no ${file} (fine-tune one with roformer finetune)`);
  }
  const raw = JSON.parse(await readFile(join(dir, TASKS_FILE), 'utf8')) as unknown;
  if (!Array.isArray(raw)) throw new Error(`${join(dir, TASKS_FILE)}: expected a JSON array of tasks`);
  const tasks = raw.map((t, i) => taskFromJSON(t, `${join(dir, TASKS_FILE)}[${i}]`) as Task);
  const tokenizer = await Tokenizer.fromFile(join(dir, VOCAB_FILE));
  const model = await loadPretrained(dir);
  const trainer = new Trainer(model, { optimizer: 'adafactor', heads: headsFor(tasks) });
  await trainer.loadHeads(dir);
  return { dir, model, tokenizer, tasks, trainer };
}

/** The task of a fine-tuned model by name; the only one when `name` is absent. */
export function pickTask(loaded: FineTunedModel, name?: string): Task {
  if (!name) {
    if (loaded.tasks.length === 1) return loaded.tasks[0]!;
    throw new Error(`${loaded.dir} has ${loaded.tasks.length} tasks (${loaded.tasks.map((t) => t.name).join(', ')}): pass --task`);
  }
  const task = loaded.tasks.find((t) => t.name.toLowerCase() === name.toLowerCase());
  if (!task) throw new Error(`${loaded.dir} has no head for task '${name}' (it has: ${loaded.tasks.map((t) => t.name).join(', ')})`);
  return task;
}

// Training checkpoints: a model dir in the Hugging Face layout plus the training
// state, written so that a crash at any moment leaves the previous checkpoint
// loadable.
//
//   <run dir>/
//     latest                      "checkpoint-1200": the newest complete checkpoint
//     checkpoint-1200/
//       config.json               \  the model, loadable by RoFormerV2.fromPretrained
//       model.safetensors         /
//       vocab.txt                 when a tokenizer exists
//       heads.json                \  task heads, when the trainer has any
//       heads.safetensors         /  (lib/tasks/decode.ts)
//       optimizer.safetensors     optimiser moments and random generator states
//       trainer_state.json        step, loss-scale state, options, data position
//
// Each checkpoint is written into a temporary directory and renamed into place
// only when complete; `latest` is then replaced atomically.

import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

import type { DType, Tensor, TrainerCounters } from '../../bindings/native.js';
import { readModelDir, writeModelDir } from '../model/model-dir.js';
import type { EncoderConfig } from '../model/encoder-config.js';
import { readSafetensors, writeSafetensorsAtomic, type SafetensorsDtype } from '../model/safetensors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { tensorFromBytes } from '../model/tensor.js';
import { readHeads, writeHeads, type HeadSpecs } from './heads.js';

export const TRAINER_STATE_FILE = 'trainer_state.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const LATEST_FILE = 'latest';
const FORMAT = 'roformer-v2-trainer/1';

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export interface TrainerState extends TrainerCounters {
  format: typeof FORMAT;
  /** Trainer options the state belongs to (the optimiser kind must match on resume). */
  options: Record<string, unknown>;
  /** Where the data pipeline was; filled and read by the training loop. */
  dataPosition: unknown;
  savedAt: string;
}

export interface Checkpoint {
  dir: string;
  config: EncoderConfig;
  modelState: Record<string, Tensor>;
  trainerState: Record<string, Tensor>;
  state: TrainerState;
  /** The task heads' specs and weights, when the checkpoint has heads. */
  heads: { specs: HeadSpecs; state: Record<string, Tensor> } | null;
}

const DTYPE_TO_SAFETENSORS: Partial<Record<DType, SafetensorsDtype>> = { float32: 'F32', float64: 'F64', float16: 'F16', bfloat16: 'BF16', uint8: 'U8', int64: 'I64' };
const SAFETENSORS_TO_DTYPE: Partial<Record<SafetensorsDtype, DType>> = { F32: 'float32', F64: 'float64', F16: 'float16', BF16: 'bfloat16', U8: 'uint8', I64: 'int64' };

/** Writes a checkpoint into `runDir` and points `latest` at it; returns its directory. */
export async function writeCheckpoint(
  runDir: string,
  contents: {
    config: EncoderConfig;
    parameters: Record<string, Tensor>;
    trainerState: Record<string, Tensor>;
    state: Omit<TrainerState, 'format' | 'savedAt'>;
    heads?: { specs: HeadSpecs; parameters: Record<string, Tensor> };
    files?: Record<string, string | Buffer>;
    keepLast?: number;
  },
): Promise<string> {
  const name = `checkpoint-${contents.state.step}`;
  const finalDir = join(runDir, name);
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmpDir = join(runDir, `.${name}.tmp-${tag}`);
  await mkdir(tmpDir, { recursive: true });
  try {
    await writeModelDir(tmpDir, contents.config, contents.parameters);
    if (contents.heads && Object.keys(contents.heads.specs).length > 0) await writeHeads(tmpDir, contents.heads.specs, contents.heads.parameters);
    await writeSafetensorsAtomic(
      join(tmpDir, OPTIMIZER_FILE),
      Object.entries(contents.trainerState).map(([key, t]) => {
        const dtype = DTYPE_TO_SAFETENSORS[t.dtype];
        if (!dtype) throw new CheckpointError(`cannot save trainer state ${key} of dtype ${t.dtype}`);
        return { name: key, dtype, shape: t.shape, data: t.toBuffer() };
      }),
    );
    // Every file is fsynced (writeFileAtomic) before the directory is renamed into place.
    for (const [file, data] of Object.entries(contents.files ?? {})) await writeFileAtomic(join(tmpDir, file), [data]);
    const state: TrainerState = { format: FORMAT, ...contents.state, savedAt: new Date().toISOString() };
    await writeFileAtomic(join(tmpDir, TRAINER_STATE_FILE), [JSON.stringify(state, null, 2) + '\n']);

    // Swap into place. Re-saving the same step replaces the old copy only once the new one is complete.
    if (existsSync(finalDir)) {
      const oldDir = join(runDir, `.${name}.old-${tag}`);
      await rename(finalDir, oldDir);
      await rename(tmpDir, finalDir);
      await rm(oldDir, { recursive: true, force: true });
    } else {
      await rename(tmpDir, finalDir);
    }
  } catch (error) {
    await rm(tmpDir, { recursive: true, force: true });
    throw error;
  }
  await writeFileAtomic(join(runDir, LATEST_FILE), [name + '\n']);
  await pruneCheckpoints(runDir, contents.keepLast ?? 3, name);
  return finalDir;
}

/** Removes all but the newest `keep` checkpoints (never `current`), and leftovers of interrupted saves. */
async function pruneCheckpoints(runDir: string, keep: number, current: string): Promise<void> {
  const entries = await readdir(runDir);
  for (const entry of entries) {
    if (/^\.checkpoint-\d+\.(tmp|old)-/.test(entry)) await rm(join(runDir, entry), { recursive: true, force: true });
  }
  if (keep <= 0) return;
  const steps = entries
    .map((entry) => /^checkpoint-(\d+)$/.exec(entry))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ name: m[0], step: Number(m[1]) }))
    .sort((a, b) => b.step - a.step);
  for (const { name } of steps.slice(keep)) {
    if (name !== current) await rm(join(runDir, name), { recursive: true, force: true });
  }
}

/** A checkpoint dir itself, or the one a run dir's `latest` points at. */
export async function resolveCheckpointDir(path: string): Promise<string> {
  if (existsSync(join(path, TRAINER_STATE_FILE))) return path;
  if (existsSync(join(path, LATEST_FILE))) {
    const name = (await readFile(join(path, LATEST_FILE), 'utf8')).trim();
    const dir = join(path, name);
    if (!existsSync(dir)) {
      // Killed while re-saving the same step: the complete previous copy is still there under .old-*.
      const old = (await readdir(path)).find((entry) => entry.startsWith(`.${name}.old-`));
      if (old && existsSync(join(path, old, TRAINER_STATE_FILE))) return join(path, old);
    }
    if (!existsSync(join(dir, TRAINER_STATE_FILE))) {
      throw new CheckpointError(`${join(path, LATEST_FILE)} points at ${name}, which is not a complete checkpoint`);
    }
    return dir;
  }
  throw new CheckpointError(
    `${path} is not a checkpoint: it has no ${TRAINER_STATE_FILE} (nor a '${LATEST_FILE}' file of a run directory)`,
  );
}

/** Reads and checks a whole checkpoint; nothing is applied yet. The caller disposes the tensors. */
export async function readCheckpoint(path: string): Promise<Checkpoint> {
  const dir = await resolveCheckpointDir(path);
  const statePath = join(dir, TRAINER_STATE_FILE);
  let state: TrainerState;
  try {
    state = JSON.parse(await readFile(statePath, 'utf8')) as TrainerState;
  } catch (error) {
    throw new CheckpointError(`${statePath}: unreadable trainer state (${(error as Error).message})`);
  }
  if (state?.format !== FORMAT) throw new CheckpointError(`${statePath}: not a ${FORMAT} trainer state`);
  for (const key of ['step', 'skippedSteps', 'lossScale', 'growthTracker'] as const) {
    if (typeof state[key] !== 'number' || !Number.isFinite(state[key])) {
      throw new CheckpointError(`${statePath}: ${key} must be a finite number`);
    }
  }
  const { config, state: modelState } = await readModelDir(dir);
  const trainerState: Record<string, Tensor> = {};
  try {
    const file = await readSafetensors(join(dir, OPTIMIZER_FILE));
    for (const [name, entry] of file.tensors) {
      const dtype = SAFETENSORS_TO_DTYPE[entry.dtype];
      if (!dtype) throw new CheckpointError(`${join(dir, OPTIMIZER_FILE)}: tensor ${name} has unsupported dtype ${entry.dtype}`);
      trainerState[name] = tensorFromBytes(entry.data, entry.shape, dtype);
    }
    const heads = await readHeads(dir);
    return { dir, config, modelState, trainerState, state, heads };
  } catch (error) {
    for (const t of [...Object.values(modelState), ...Object.values(trainerState)]) t.dispose();
    throw error;
  }
}

/** Names every size key where a checkpoint's config differs from the model's. */
export function configMismatches(checkpoint: EncoderConfig, model: EncoderConfig): string[] {
  const keys = ['vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'type_vocab_size'] as const;
  return keys.filter((k) => checkpoint[k] !== model[k]).map((k) => `${k}: checkpoint ${checkpoint[k]}, model ${model[k]}`);
}

// Task heads: what each is (a spec) and how a model dir or checkpoint stores them. Here,
// below the stages, so that the trainer and checkpoints reach them without importing a
// stage; how a head's raw outputs become predictions is the tasks' (lib/tasks/decode.ts).
//
//   <model dir or checkpoint>/
//     config.json, model.safetensors   the encoder (RoFormerV2.fromPretrained loads it alone)
//     heads.json                       {"format": "roformer-v2-heads/1", "heads": {tnews: {kind, numLabels}, ...}}
//     heads.safetensors                "heads.<task>.<weight>" tensors
//
// The heads themselves are native (native/heads.h) and live in the Trainer.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { HEAD_KINDS, type HeadKind, type NativeHeadConfig, type Tensor } from '../../bindings/native.js';
import { readSafetensors, writeSafetensorsAtomic, type SafetensorsDtype } from '../model/safetensors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { tensorFromBytes } from '../model/tensor.js';

export const HEADS_CONFIG_FILE = 'heads.json';
export const HEADS_WEIGHTS_FILE = 'heads.safetensors';
const FORMAT = 'roformer-v2-heads/1';

/** One head: enough to rebuild it. */
export interface HeadSpec {
  kind: HeadKind;
  /** Classes (classification), labels (multilabel), span types (span); 1 for multiple-choice. */
  numLabels: number;
  /** span: the q/k size per label (default 64; even). */
  headSize?: number;
  /** Optional names of the labels, index = label id (kept for predictions). */
  labels?: string[];
}

export type HeadSpecs = Record<string, HeadSpec>;

export class HeadsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HeadsError';
  }
}

/** Checks head specs (from an option or heads.json), naming the first bad field. */
export function validateHeadSpecs(raw: unknown, source = 'heads'): HeadSpecs {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new HeadsError(`${source} must be an object of task name → head spec`);
  const specs: HeadSpecs = {};
  for (const [task, value] of Object.entries(raw as Record<string, unknown>)) {
    const where = `${source}.${task}`;
    if (!task || task === 'mlm' || task.includes('.')) throw new HeadsError(`${where}: a task name is non-empty, has no '.', and is not 'mlm'`);
    const spec = value as Partial<HeadSpec> | null;
    if (typeof spec !== 'object' || spec === null) throw new HeadsError(`${where} must be an object {kind, numLabels}`);
    if (!HEAD_KINDS.includes(spec.kind as HeadKind)) throw new HeadsError(`${where}.kind must be one of ${HEAD_KINDS.join(', ')}, got ${JSON.stringify(spec.kind)}`);
    const numLabels = spec.numLabels ?? (spec.kind === 'multiple-choice' ? 1 : undefined);
    if (!Number.isInteger(numLabels) || numLabels! < 1) throw new HeadsError(`${where}.numLabels must be a positive integer, got ${JSON.stringify(spec.numLabels)}`);
    if (spec.headSize !== undefined && (!Number.isInteger(spec.headSize) || spec.headSize < 2 || spec.headSize % 2 !== 0)) {
      throw new HeadsError(`${where}.headSize must be an even integer >= 2, got ${JSON.stringify(spec.headSize)}`);
    }
    if (spec.labels !== undefined && (!Array.isArray(spec.labels) || spec.labels.length !== numLabels || spec.labels.some((l) => typeof l !== 'string'))) {
      throw new HeadsError(`${where}.labels must be ${numLabels} strings (one per label)`);
    }
    specs[task] = {
      kind: spec.kind as HeadKind,
      numLabels: numLabels!,
      ...(spec.kind === 'span' ? { headSize: spec.headSize ?? 64 } : {}),
      ...(spec.labels ? { labels: [...spec.labels] } : {}),
    };
  }
  return specs;
}

/** The native side's view of the specs (label names stay in TypeScript). */
export function nativeHeads(specs: HeadSpecs): Record<string, NativeHeadConfig> {
  return Object.fromEntries(
    Object.entries(specs).map(([task, s]) => [task, { kind: s.kind, numLabels: s.numLabels, ...(s.headSize !== undefined ? { headSize: s.headSize } : {}) }]),
  );
}

/** Differences between two sets of specs that make their weights incompatible ([] = compatible). */
export function headMismatches(saved: HeadSpecs, ours: HeadSpecs): string[] {
  const problems: string[] = [];
  for (const task of new Set([...Object.keys(saved), ...Object.keys(ours)])) {
    const a = saved[task], b = ours[task];
    if (!a) problems.push(`head ${task} is not in the checkpoint`);
    else if (!b) problems.push(`the checkpoint has a head ${task} this trainer lacks`);
    else problems.push(...shapeDifferences(task, a, b, 'the checkpoint'));
  }
  return problems;
}

/** How one saved head differs in shape from ours (kind, labels, span size); `where` names the saved one's place. */
function shapeDifferences(task: string, saved: HeadSpec, ours: HeadSpec, where: string): string[] {
  return (['kind', 'numLabels', 'headSize'] as const)
    .filter((key) => saved[key] !== ours[key])
    .map((key) => `head ${task}: ${key} ${String(saved[key])} in ${where}, ${String(ours[key])} here`);
}

/**
 * Why a saved head cannot start one of ours ([] = it can): a different shape, or the
 * same labels in another order (its weights would score the wrong classes).
 */
export function continuationProblems(task: string, saved: HeadSpec, ours: HeadSpec, where: string): string[] {
  const problems = shapeDifferences(task, saved, ours, where);
  if (problems.length === 0 && saved.labels && ours.labels && saved.labels.join('\u0000') !== ours.labels.join('\u0000')) {
    problems.push(`head ${task}: labels ${JSON.stringify(saved.labels)} in ${where}, ${JSON.stringify(ours.labels)} here`);
  }
  return problems;
}

const SAFETENSORS_DTYPE: Partial<Record<string, SafetensorsDtype>> = { float32: 'F32', float64: 'F64', float16: 'F16', bfloat16: 'BF16' };
const FROM_SAFETENSORS = { F32: 'float32', F64: 'float64', F16: 'float16', BF16: 'bfloat16' } as const;

/** Writes heads.json and heads.safetensors into `dir` (each atomically). */
export async function writeHeads(dir: string, specs: HeadSpecs, parameters: Record<string, Tensor>): Promise<void> {
  await writeSafetensorsAtomic(
    join(dir, HEADS_WEIGHTS_FILE),
    Object.entries(parameters).map(([name, t]) => {
      const dtype = SAFETENSORS_DTYPE[t.dtype];
      if (!dtype) throw new HeadsError(`cannot save head tensor ${name} of dtype ${t.dtype}`);
      return { name, dtype, shape: t.shape, data: t.toBuffer() };
    }),
  );
  await writeFileAtomic(join(dir, HEADS_CONFIG_FILE), [JSON.stringify({ format: FORMAT, heads: specs }, null, 2) + '\n']);
}

/** The heads of a model dir or checkpoint, or null when it has none. The caller disposes the tensors. */
export async function readHeads(dir: string): Promise<{ specs: HeadSpecs; state: Record<string, Tensor> } | null> {
  const configPath = join(dir, HEADS_CONFIG_FILE);
  if (!existsSync(configPath)) return null;
  let raw: { format?: unknown; heads?: unknown };
  try {
    raw = JSON.parse(await readFile(configPath, 'utf8'));
  } catch (error) {
    throw new HeadsError(`${configPath}: unreadable (${(error as Error).message})`);
  }
  if (raw?.format !== FORMAT) throw new HeadsError(`${configPath}: not a ${FORMAT} file`);
  const specs = validateHeadSpecs(raw.heads, configPath);
  const weightsPath = join(dir, HEADS_WEIGHTS_FILE);
  if (!existsSync(weightsPath)) throw new HeadsError(`${weightsPath}: missing (${configPath} names heads)`);
  const file = await readSafetensors(weightsPath);
  const state: Record<string, Tensor> = {};
  for (const [name, entry] of file.tensors) {
    const dtype = FROM_SAFETENSORS[entry.dtype as keyof typeof FROM_SAFETENSORS];
    if (!dtype) {
      for (const t of Object.values(state)) t.dispose();
      throw new HeadsError(`${weightsPath}: tensor ${name} has unsupported dtype ${entry.dtype}`);
    }
    state[name] = tensorFromBytes(entry.data, entry.shape, dtype);
  }
  return { specs, state };
}

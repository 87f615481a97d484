// Model directories in the Hugging Face RoFormerV2 layout: config.json + model.safetensors
// (or, as the released PyTorch checkpoints ship, pytorch_model.bin: read, never written).
// A config.json with `model_type: "gau_alpha"` is a GAU-α dir in the PyTorch port's names.
//
// Loading is strict: every missing, unexpected or mis-shaped tensor is named in
// one error, before any weight is touched. Saving is atomic per file: a failed
// save leaves the previous files intact.

import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import type { DType, Tensor } from '../../bindings/native.js';
import { checkpointNamesOf, SINUSOIDAL_TABLE_NAME, TIED_DECODER_NAME } from './checkpoint-names.js';
import { encoderConfigToJson, validateEncoderConfig, type EncoderConfig } from './encoder-config.js';
import type { GauAlphaConfig } from './gau-alpha-config.js';
import { readPytorchBin } from './pytorch-bin.js';
import {
  readSafetensors,
  writeSafetensorsAtomic,
  type SafetensorsDtype,
  type SafetensorsEntry,
  type SafetensorsTensorInput,
} from './safetensors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { tensorFromBytes } from './tensor.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
/** The WordPiece vocab a model was trained with, one token a line (beside config.json, as Hugging Face keeps it). */
export const VOCAB_FILE = 'vocab.txt';
/** The PyTorch port's weights file, read when a dir has no model.safetensors. */
export const PYTORCH_WEIGHTS_FILE = 'pytorch_model.bin';

export class ModelDirError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelDirError';
  }
}

const FLOAT_DTYPES: Partial<Record<SafetensorsDtype, DType>> = {
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  F64: 'float64',
};
const SAFETENSORS_DTYPE: Partial<Record<DType, SafetensorsDtype>> = {
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  float64: 'F64',
};

/** Every native parameter name of a model with this config, with its shape. */
export function expectedParameterShapes(config: EncoderConfig): Map<string, number[]> {
  if (config.model_type === 'gau_alpha') return gauAlphaParameterShapes(config);
  const d = config.hidden_size;
  const shapes = new Map<string, number[]>([
    ['word_embeddings.weight', [config.vocab_size, d]],
    ['token_type_embeddings.weight', [config.type_vocab_size, d]],
  ]);
  for (let i = 0; i < config.num_hidden_layers; i++) {
    for (const part of ['query', 'key', 'value', 'output']) shapes.set(`layer.${i}.attention.${part}.weight`, [d, d]);
    shapes.set(`layer.${i}.intermediate.weight`, [config.intermediate_size, d]);
    shapes.set(`layer.${i}.output.weight`, [d, config.intermediate_size]);
  }
  return shapes;
}

function gauAlphaParameterShapes(config: GauAlphaConfig): Map<string, number[]> {
  const { hidden_size: d, intermediate_size: e, attention_key_size: s } = config;
  const shapes = new Map<string, number[]>([
    ['word_embeddings.weight', [config.vocab_size, d]],
    ['token_type_embeddings.weight', [config.type_vocab_size, d]],
  ]);
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const gau = `layer.${i}.gau`;
    shapes.set(`${gau}.i_dense.weight`, [2 * e + s, d]);
    shapes.set(`${gau}.o_dense.weight`, [d, e]);
    for (const scale of ['q_scaleoffset', 'k_scaleoffset']) shapes.set(`${gau}.${scale}.weight`, [s]);
    if (config.use_bias) {
      shapes.set(`${gau}.i_dense.bias`, [2 * e + s]);
      shapes.set(`${gau}.o_dense.bias`, [d]);
      for (const scale of ['q_scaleoffset', 'k_scaleoffset']) shapes.set(`${gau}.${scale}.bias`, [s]);
    }
  }
  return shapes;
}

export async function readModelConfig(dir: string): Promise<EncoderConfig> {
  const path = join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ModelDirError(`${path}: cannot read the model config (${(error as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ModelDirError(`${path}: invalid JSON (${(error as Error).message})`);
  }
  return validateEncoderConfig(raw, path);
}

/**
 * Reads a model dir and returns its config and weights by native name, checked
 * against the shapes the config implies. The caller owns (and disposes) the tensors.
 */
export async function readModelDir(dir: string): Promise<{ config: EncoderConfig; state: Record<string, Tensor> }> {
  const config = await readModelConfig(dir);
  const names = checkpointNamesOf(config.model_type);
  const weights = await readWeights(dir);
  const path = weights.path;
  const tensors = new Map([...weights.tensors].map(([name, entry]) => [names.withModelPrefix(name), entry]));

  const expected = expectedParameterShapes(config);
  const problems: string[] = [];
  const found = new Map<string, { shape: number[]; dtype: DType; data: Buffer }>();
  for (const [name, entry] of tensors) {
    if (name === TIED_DECODER_NAME) continue; // checked against the embeddings below
    if (config.model_type === 'roformer' && name === SINUSOIDAL_TABLE_NAME && entry.shape.length === 2 && entry.shape[1] === config.hidden_size / config.num_attention_heads) {
      continue; // the HF port's fixed RoPE table: recomputed here for any length
    }
    const nativeName = names.fromHuggingFace(name);
    const shape = nativeName === undefined ? undefined : expected.get(nativeName);
    if (nativeName === undefined || shape === undefined) {
      problems.push(`unexpected tensor ${name} ${JSON.stringify(entry.shape)}`);
      continue;
    }
    const dtype = FLOAT_DTYPES[entry.dtype];
    if (!dtype) {
      problems.push(`tensor ${name} has dtype ${entry.dtype}; expected F32, F16, BF16 or F64`);
    } else if (JSON.stringify(entry.shape) !== JSON.stringify(shape)) {
      problems.push(`tensor ${name} has shape ${JSON.stringify(entry.shape)}, expected ${JSON.stringify(shape)}`);
    } else {
      found.set(nativeName, { shape, dtype, data: entry.data });
    }
  }
  for (const nativeName of expected.keys()) {
    const name = names.toHuggingFace(nativeName);
    if (!tensors.has(name)) problems.push(`missing tensor ${name}`);
  }
  const decoder = tensors.get(TIED_DECODER_NAME);
  const embeddings = tensors.get(names.wordEmbeddings);
  if (decoder && embeddings) {
    if (JSON.stringify(decoder.shape) !== JSON.stringify(embeddings.shape)) {
      problems.push(`tensor ${TIED_DECODER_NAME} has shape ${JSON.stringify(decoder.shape)}, expected ${JSON.stringify(embeddings.shape)} (tied to the word embeddings)`);
    } else if (decoder.dtype !== embeddings.dtype || !decoder.data.equals(embeddings.data)) {
      problems.push(`tensor ${TIED_DECODER_NAME} differs from ${names.wordEmbeddings}, but ${config.model_type === 'gau_alpha' ? 'GAU-α' : 'RoFormerV2'} ties them`);
    }
  }
  if (problems.length > 0) {
    throw new ModelDirError(`${path}: does not match ${join(dir, CONFIG_FILE)} (${problems.length} problem(s)):\n  - ${problems.join('\n  - ')}`);
  }

  const state: Record<string, Tensor> = {};
  for (const [name, { shape, dtype, data }] of found) state[name] = tensorFromBytes(data, shape, dtype);
  return { config, state };
}

/** The tensors of model.safetensors or, failing that, of pytorch_model.bin, with the file read. */
async function readWeights(dir: string): Promise<{ path: string; tensors: Map<string, SafetensorsEntry> }> {
  const safetensorsPath = join(dir, WEIGHTS_FILE);
  if (existsSync(safetensorsPath)) return { path: safetensorsPath, tensors: (await readSafetensors(safetensorsPath)).tensors };
  const pytorchPath = join(dir, PYTORCH_WEIGHTS_FILE);
  if (existsSync(pytorchPath)) return { path: pytorchPath, tensors: await readPytorchBin(pytorchPath) };
  throw new ModelDirError(`${safetensorsPath}: not found (nor ${PYTORCH_WEIGHTS_FILE})`);
}


/**
 * Writes config.json and model.safetensors (Hugging Face names, the tied decoder
 * included as the released checkpoints have it). Each file is replaced atomically.
 */
export async function writeModelDir(dir: string, config: EncoderConfig, parameters: Record<string, Tensor>): Promise<void> {
  const names = checkpointNamesOf(config.model_type);
  const tensors: SafetensorsTensorInput[] = [];
  for (const [nativeName, tensor] of Object.entries(parameters)) {
    const dtype = SAFETENSORS_DTYPE[tensor.dtype];
    if (!dtype) throw new ModelDirError(`cannot save parameter ${nativeName} of dtype ${tensor.dtype}`);
    tensors.push({ name: names.toHuggingFace(nativeName), dtype, shape: tensor.shape, data: tensor.toBuffer() });
  }
  const embeddings = tensors.find((t) => t.name === names.wordEmbeddings);
  if (embeddings) tensors.push({ ...embeddings, name: TIED_DECODER_NAME });

  await writeSafetensorsAtomic(join(dir, WEIGHTS_FILE), tensors);
  await writeFileAtomic(join(dir, CONFIG_FILE), [JSON.stringify(encoderConfigToJson(config), null, 2) + '\n']);
}

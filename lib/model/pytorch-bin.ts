// pytorch_model.bin: the weights torch.save writes (its zip format, PyTorch ≥ 1.6),
// read without running any Python or pickle code.
//
//   <archive>/data.pkl      the state dict, pickled: names → tensor rebuilds (torch-pickle.ts)
//   <archive>/data/<key>    each storage's raw little-endian bytes
//   <archive>/byteorder     'little' or 'big' (PyTorch ≥ 2.1 only)
//
// A tensor is a strided view into a storage: several tensors may share one (tied
// weights, a fused q/k/v block), and a view may start at an offset or be transposed.
// Each tensor comes back contiguous, in the shape safetensors tensors have, so the
// model dir checks both formats with one piece of code.

import { readFile } from 'node:fs/promises';

import { unzipSync } from 'fflate';

import { DTYPE_BYTES, type SafetensorsEntry } from './safetensors.js';
import { describe, isTensor, unpickleStateDict, type TensorRef } from './torch-pickle.js';

export class PytorchBinError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PytorchBinError';
  }
}

/** The tensors of a pytorch_model.bin by name, in the order the state dict lists them. */
export async function readPytorchBin(path: string): Promise<Map<string, SafetensorsEntry>> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new PytorchBinError(`${path}: cannot read (${(error as Error).message})`);
  }
  return parsePytorchBin(bytes, path);
}

export function parsePytorchBin(bytes: Uint8Array, source: string): Map<string, SafetensorsEntry> {
  const fail = (problem: string): never => {
    throw new PytorchBinError(`${source}: ${problem}`);
  };
  const entries = unzipArchive(bytes, fail);
  const pickleName = [...entries.keys()].find((name) => /^[^/]+\/data\.pkl$/.test(name));
  if (pickleName === undefined) return fail('no <archive>/data.pkl in the zip: not a torch.save checkpoint');
  const prefix = pickleName.slice(0, -'data.pkl'.length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder && new TextDecoder().decode(byteorder).trim() !== 'little') fail('is saved big-endian; only little-endian checkpoints are read');

  const stateDict = unpickleStateDict(entries.get(pickleName)!, source);
  if (!(stateDict instanceof Map)) return fail(`holds a ${describe(stateDict)}, not a state dict (a dict of tensors)`);
  const tensors = new Map<string, SafetensorsEntry>();
  for (const [name, value] of stateDict) {
    if (typeof name !== 'string') return fail(`has a key that is a ${describe(name)}, not a tensor name`);
    if (!isTensor(value)) return fail(`entry ${name} is a ${describe(value)}, not a tensor (a state dict maps names to tensors)`);
    const storage = entries.get(`${prefix}data/${value.storage.key}`);
    if (storage === undefined) return fail(`tensor ${name} ${JSON.stringify(value.shape)} is in storage ${value.storage.key}, which the zip lacks (${prefix}data/${value.storage.key})`);
    tensors.set(name, { name, dtype: value.storage.dtype, shape: value.shape, data: contiguousBytes(name, value, storage, fail) });
  }
  return tensors;
}

function unzipArchive(bytes: Uint8Array, fail: (problem: string) => never): Map<string, Uint8Array> {
  const isZip = bytes[0] === 0x50 && bytes[1] === 0x4b; // 'PK'
  if (!isZip) {
    const legacy = bytes[0] === 0x80; // a bare pickle: torch.save before PyTorch 1.6
    fail(legacy
      ? 'is in the legacy torch.save format (before PyTorch 1.6), which is not read: re-save it with a current PyTorch'
      : 'is not a zip archive, so not a torch.save checkpoint');
  }
  try {
    return new Map(Object.entries(unzipSync(bytes)));
  } catch (error) {
    return fail(`is not a readable zip archive (${(error as Error).message}): truncated or corrupt`);
  }
}

/** The tensor's elements in row-major order, copied out of its storage's bytes. */
function contiguousBytes(name: string, tensor: TensorRef, storage: Uint8Array, fail: (problem: string) => never): Buffer {
  const { shape, stride, offset } = tensor;
  const elementBytes = DTYPE_BYTES[tensor.storage.dtype];
  const numel = shape.reduce((a, b) => a * b, 1);
  const held = Math.floor(storage.length / elementBytes);
  const lastElement = offset + shape.reduce((sum, size, d) => sum + (size - 1) * stride[d]!, 0);
  if (numel > 0 && lastElement >= held) {
    fail(`tensor ${name} ${JSON.stringify(shape)} ends at element ${lastElement} of storage ${tensor.storage.key}, ` +
      `which holds ${held} elements (the pickle declares ${tensor.storage.numel}): the storage is shorter than its tensor`);
  }
  const out = Buffer.alloc(numel * elementBytes);
  if (numel === 0) return out;
  const rowMajor = shape.every((_, d) => shape[d] === 1 || stride[d] === shape.slice(d + 1).reduce((a, b) => a * b, 1));
  if (rowMajor) {
    out.set(storage.subarray(offset * elementBytes, (offset + numel) * elementBytes));
    return out;
  }
  // An odometer over the index, innermost dimension fastest.
  const index = new Array<number>(shape.length).fill(0);
  let source = offset;
  for (let i = 0; i < numel; i++) {
    out.set(storage.subarray(source * elementBytes, (source + 1) * elementBytes), i * elementBytes);
    for (let d = shape.length - 1; d >= 0; d--) {
      index[d]!++;
      source += stride[d]!;
      if (index[d]! < shape[d]!) break;
      source -= index[d]! * stride[d]!;
      index[d] = 0;
    }
  }
  return out;
}
